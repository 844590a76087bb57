"""The CPU row of the bill's device table (xlt_search/search/devices.yaml), measured on this machine.

    python benchmarks/device_rates.py --write    # measure, print the row and write it in the table
    python benchmarks/device_rates.py --quick    # a smoke run: shorter trials, nothing written

1. Trials run alone (`run_trial`, no Ray, 1 thread) on the quickstart's data, in configurations
   that vary the optimizer steps, the batch size, the evaluations and the phases. The bill's own
   arithmetic (`bill.trial_work`) counts each one's steps, evaluation batches and FLOPs, and a
   least-squares fit of their wall times gives what a step costs whatever its size, what an
   evaluation batch costs, the FLOP rate, and what a trial costs before its first step.
2. Two searches through the CLI of one pool task and n identical trials (one per seed), one at a
   time, FIFO: what a trial costs beyond its own run (its start under Tune, checkpoints, MLflow)
   from their difference, and what the search costs once (Ray's start, the data's check, the
   report) from the one-trial search.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import transformers
import yaml
from common import run_search

from xlt_search.search import prepare_search_data, trial_config
from xlt_search.search.bill import ModelShape, read_counts, trial_work
from xlt_search.search.devices import DEVICES_FILE
from xlt_search.spec import Domain, load_spec
from xlt_search.subsets import subset_key
from xlt_search.trial import run_trial

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "search_spaces" / "quickstart.yaml"

# (subset, intermediate_steps, target_steps, report_every_steps, probe_steps, batch size)
CONFIGURATIONS = (
    ((), 0, 200, 10_000, 0, 32),
    ((), 0, 600, 10_000, 0, 32),
    ((), 0, 200, 10_000, 0, 128),
    ((), 0, 100, 100, 0, 8),
    ((), 0, 200, 40, 0, 32),
    (("syn_sentiment", "syn_kind"), 300, 200, 10_000, 0, 32),
    (("syn_topic_choice",), 200, 100, 100, 50, 16),
)


def variant(spec, steps: tuple) -> tuple:
    """The spec with one configuration's budget and batch size, and its subset."""
    subset, intermediate, target, every, probe, batch = steps
    budget = dataclasses.replace(
        spec.budget,
        intermediate_steps=intermediate,
        target_steps=target,
        report_every_steps=every,
        probe_steps=probe,
    )
    hyperparameters = {
        **spec.hyperparameters,
        "per_device_batch_size": Domain("constant", (batch,)),
    }
    return dataclasses.replace(spec, budget=budget, hyperparameters=hyperparameters), subset


def time_trials(spec, model: str, data, shape: ModelShape, counts, scale: float) -> list[tuple]:
    """Each configuration's (steps, eval batches, FLOPs) and wall seconds, `run_trial` alone."""
    rows = []
    for number, steps in enumerate((CONFIGURATIONS[0], *CONFIGURATIONS)):
        subset, intermediate, target, every, probe, batch = steps
        scaled = (subset, int(intermediate * scale), int(target * scale), every, probe, batch)
        changed, subset = variant(spec, scaled)
        work = trial_work(changed, shape, counts, subset)
        config = trial_config(
            changed,
            model,
            {
                "tasks": subset_key(subset),
                "seed": 0,
                "learning_rate": 1e-3,
                "per_device_batch_size": batch,
            },
        )
        started = time.perf_counter()
        run_trial(config, data, lambda metrics, save: None)
        seconds = time.perf_counter() - started
        if number == 0:  # the first trial of a process pays for lazy initialization: not timed
            continue
        rows.append((scaled, work, seconds))
        print(
            f"  {subset_key(subset) or 'baseline':>28} {scaled[1]:>4}+{scaled[2]:>4} steps, "
            f"batch {batch:>3}, report every {every:>5}: {work.train_steps:>5} steps, "
            f"{work.eval_batches:>4} eval batches, {work.train_flops + work.eval_flops:.3g} FLOP, "
            f"{seconds:.2f} s",
            flush=True,
        )
    return rows


def fit(rows: list[tuple]) -> dict[str, float]:
    """Least squares: seconds = start + steps x step + eval batches x eval batch + FLOPs / rate."""
    x = np.array(
        [[1.0, w.train_steps, w.eval_batches, w.train_flops + w.eval_flops] for _, w, _ in rows]
    )
    y = np.array([seconds for _, _, seconds in rows])
    (start, step, batch, per_flop), *_ = np.linalg.lstsq(x, y, rcond=None)
    print("fit: predicted against measured, run_trial alone")
    for (_, _, seconds), predicted in zip(rows, x @ [start, step, batch, per_flop], strict=True):
        print(f"  {predicted:7.2f} s against {seconds:7.2f} s ({predicted / seconds - 1:+.0%})")
    return {
        "flops_per_s": 1 / per_flop,
        "step_overhead_s": step,
        "eval_batch_overhead_s": batch,
        "run_trial_start_s": start,
    }


def search_overheads(
    spec_text: str, rates: dict[str, float], shape, counts, spec, n: int, scale: float
) -> dict[str, float]:
    """Per-trial and per-search overheads from searches of 1 and `n` identical trials."""
    raw = yaml.safe_load(spec_text)
    budget = {
        "intermediate_steps": int(200 * scale),
        "target_steps": int(200 * scale),
        "report_every_steps": int(100 * scale),
        "probe_steps": int(20 * scale),
        "scheduler": "fifo",
    }
    raw.update(
        name="device-rates",
        mlflow={"experiment": "device-rates"},
        pool=["syn_sentiment"],
        subsets={"sampler": "stratified", "sizes": [1], "per_size": 1, "baseline": False},
        budget=budget,
        max_concurrent_trials=1,
    )
    changed = dataclasses.replace(
        spec,
        pool=("syn_sentiment",),
        budget=dataclasses.replace(spec.budget, **budget),
    )
    work = trial_work(changed, shape, counts, ("syn_sentiment",))
    compute = (
        work.train_steps * rates["step_overhead_s"]
        + work.eval_batches * rates["eval_batch_overhead_s"]
        + (work.train_flops + work.eval_flops) / rates["flops_per_s"]
    )
    walls = {}
    for seeds in (1, n):
        with tempfile.TemporaryDirectory() as folder:
            _, walls[seeds], _ = run_search({**raw, "seeds": seeds}, Path(folder))
        print(f"  a search of {seeds} trial(s): {walls[seeds]:.1f} s wall", flush=True)
    trial = (walls[n] - walls[1]) / (n - 1) - compute
    return {"trial_overhead_s": trial, "search_overhead_s": walls[1] - trial - compute}


def write_row(row: dict[str, float | str]) -> str:
    """The table's cpu block, as YAML lines."""
    lines = ["cpu:"]
    for key, value in row.items():
        shown = f'"{value}"' if isinstance(value, str) else f"{value:.4g}"
        lines.append(f"  {key}: {shown}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short trials, a smoke run")
    parser.add_argument("--write", action="store_true", help=f"write the row in {DEVICES_FILE}")
    parser.add_argument("--trials", type=int, default=4, help="trials of the larger search")
    args = parser.parse_args()
    scale = 0.1 if args.quick else 1.0
    torch.set_num_threads(1)
    transformers.utils.logging.disable_progress_bar()

    spec = load_spec(QUICKSTART)
    model, data = prepare_search_data(spec)
    shape, counts = read_counts(spec)
    print("trials alone (run_trial, 1 thread):")
    rates = fit(time_trials(spec, model, data, shape, counts, scale))
    print("searches through the CLI, one trial at a time:")
    overheads = search_overheads(
        QUICKSTART.read_text(), rates, shape, counts, spec, args.trials, scale
    )
    row = {
        "source": "measured",
        "date": time.strftime("%Y-%m-%d"),
        "command": "python benchmarks/device_rates.py --write",
        **{k: v for k, v in rates.items() if k != "run_trial_start_s"},
        **overheads,
    }
    block = write_row(row)
    print(block)
    if args.write and not args.quick:
        table = DEVICES_FILE.read_text()
        DEVICES_FILE.write_text(re.sub(r"^cpu:\n(  .*\n)+", block + "\n", table, flags=re.M))
        print(f"wrote the cpu row in {DEVICES_FILE}")


if __name__ == "__main__":
    main()

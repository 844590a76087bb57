"""The synthetic suite's exhaustive table: every subset of the pool, the baseline included, trained
through the real search at the quickstart's budget, with the score at every report.

    python benchmarks/exhaustive_table.py                  # 9 tasks: 512 subsets x 2 seeds
    python benchmarks/exhaustive_table.py --pool-size 6    # the first 6 tasks: 64 x 2
    python benchmarks/exhaustive_table.py --seeds 1 --first-seed 1   # one seed's shard: 512 x 1

Runs the quickstart spec (or `--spec`) through the CLI as a grid over every subset of its pool
(or of its first `--pool-size` tasks) and the baseline, `--seeds` training seeds each, under FIFO
(no trial is cut, so every report is there to replay an early-stopping policy on), in a fresh
folder with its own MLflow store and the default data cache (prepared first, apart from the
timing). A table can be made in shards, one training seed each (`--seeds 1 --first-seed S`, each
its own search and file), which `benchmarks/replay.py` reads together. Writes `--out` (CSV: tasks, n_tasks, seed, budget_steps, score, one row per report) and
prints: trials, wall time, the driver's CPU seconds per trial (Tune's loop, the MLflow callback,
the report), the report's own time (`xlt-search report` again on the finished search), and the
best subset by its mean over seeds. `benchmarks/replay.py` replays samplers on the table.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from common import run_search

ROOT = Path(__file__).resolve().parents[1]


def table_spec(spec: dict, pool_size: int | None, seeds: int, first_seed: int | None) -> dict:
    """`spec` as the exhaustive grid: every subset and the baseline, FIFO, `seeds` seeds from
    `first_seed` (default: the spec's own)."""
    pool = spec["pool"][:pool_size] if pool_size else spec["pool"]
    return {
        **spec,
        "name": "exhaustive",
        "mlflow": {"experiment": "exhaustive"},
        "pool": pool,
        "subsets": {"sampler": "grid", "baseline": True},
        "seed": spec.get("seed", 0) if first_seed is None else first_seed,
        "seeds": seeds,
        "budget": {**spec["budget"], "scheduler": "fifo"},
    }


def rows(uri: str) -> list[dict]:
    """Every report of every trial: tasks, n_tasks, seed, budget_steps, score."""
    from mlflow import MlflowClient

    from xlt_search.tracking import load_trials

    client = MlflowClient(tracking_uri=uri)
    found = []
    for trial in load_trials("exhaustive", uri).itertuples():
        for metric in sorted(
            client.get_metric_history(trial.run_id, "score"), key=lambda m: m.step
        ):
            found.append(
                {
                    "tasks": trial.tasks,
                    "n_tasks": trial.n_tasks,
                    "seed": int(trial.seed),
                    "budget_steps": metric.step,
                    "score": round(metric.value, 6),
                }
            )
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, default=ROOT / "search_spaces" / "quickstart.yaml")
    parser.add_argument("--pool-size", type=int, help="the first N pool tasks (default: all)")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--first-seed", type=int, help="the first training seed (default: spec's)")
    parser.add_argument("--out", type=Path, help="the table (default: benchmarks/tables/...)")
    args = parser.parse_args()

    spec = yaml.safe_load(args.spec.read_text())
    spec = table_spec(spec, args.pool_size, args.seeds, args.first_seed)
    name = f"exhaustive_{len(spec['pool'])}"
    if args.first_seed is not None:  # a shard: its seed, or its seeds' range
        last = spec["seed"] + args.seeds - 1
        name += f"_seed{last}" if args.seeds == 1 else f"_seeds{spec['seed']}-{last}"
    out = args.out or ROOT / "benchmarks" / "tables" / f"{name}.csv"
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work)
        run_search(spec, folder, "prepare")
        uri, seconds, driver_cpu = run_search(spec, folder)
        found = rows(uri)
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "xlt_search", "report", "exhaustive", "--out", str(folder)],
            cwd=folder,
            env={**os.environ, "MLFLOW_TRACKING_URI": uri},
            check=True,
            stdout=subprocess.DEVNULL,
        )
        report_s = time.perf_counter() - started
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(found[0]))
        writer.writeheader()
        writer.writerows(found)

    trials = len({(r["tasks"], r["seed"]) for r in found})
    last = {}
    for r in found:  # each trial's last report, its whole budget under FIFO
        last[(r["tasks"], r["seed"])] = r["score"]
    means: dict[str, list[float]] = {}
    for (tasks, _), score in last.items():
        means.setdefault(tasks, []).append(score)
    best = max(means, key=lambda t: sum(means[t]) / len(means[t]))
    print(f"table        {out} ({len(found)} reports)")
    print(f"trials       {trials}: {len(means)} subsets x {args.seeds} seeds")
    print(f"wall         {seconds:.0f} s ({seconds / trials:.1f} s a trial)")
    print(f"driver CPU   {driver_cpu:.0f} s ({driver_cpu / trials:.3f} s a trial)")
    print(f"report       {report_s:.1f} s on {trials} trials")
    print(f"best         {best or 'baseline'}: {sum(means[best]) / len(means[best]):.4f}")


if __name__ == "__main__":
    main()

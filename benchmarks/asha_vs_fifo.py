"""ASHA against FIFO on the synthetic suite: optimizer steps until a trial ends within 1 point of
FIFO's best.

    python benchmarks/asha_vs_fifo.py        # subsets and the learning rate, three rungs
    python benchmarks/asha_vs_fifo.py --spec search_spaces/quickstart.yaml    # fixed lr, one rung
    python benchmarks/asha_vs_fifo.py --spec tests/specs/e2e.yaml      # smaller, for a smoke run

Runs the spec twice through the CLI, each in a temporary folder with its own MLflow store: once
with its ASHA scheduler, once with FIFO (every trial to its whole budget); the subsets, seeds and
hyperparameters are the spec's in both. From MLflow it orders every trial's reports by time and
counts the optimizer steps all trials had taken by each moment (the budget_steps axis: intermediate
plus target steps; probe steps are measurement and are not on it). It prints, per scheduler: trials,
completed trials, the steps and wall time of the whole search, the best completed score, and the
steps spent when a trial first finished with a score within `--within` (0.01: one point) of FIFO's
best. The goal: ASHA gets there in at most a third of FIFO's steps, the steps FIFO spends to know
its best (its whole search); the ratio to the steps FIFO had spent when its best trial ended (which
depends on the order trials ran in) is printed too.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import yaml
from common import run_search

ROOT = Path(__file__).resolve().parents[1]


def timeline(experiment: str, uri: str) -> list[tuple[int, str, int, float, bool]]:
    """Every report of every trial as (time in ms, run id, budget_steps, score, final), by time."""
    from mlflow import MlflowClient

    from xlt_search.tracking import load_trials

    client = MlflowClient(tracking_uri=uri)
    events = []
    for run_id in load_trials(experiment, uri)["run_id"]:
        history = {
            key: {m.step: m for m in client.get_metric_history(run_id, key)}
            for key in ("score", "final")
        }
        for step, score in history["score"].items():
            final = step in history["final"] and history["final"][step].value == 1.0
            events.append((score.timestamp, run_id, step, score.value, final))
    return sorted(events)


def steps_to_reach(events: list[tuple[int, str, int, float, bool]], target: float) -> int | None:
    """The optimizer steps all trials had taken when a trial first ended with `target` or more."""
    reached: dict[str, int] = {}
    for _, run_id, step, score, final in events:
        reached[run_id] = max(reached.get(run_id, 0), step)
        if final and score >= target:
            return sum(reached.values())
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--spec", type=Path, default=ROOT / "benchmarks" / "specs" / "asha_vs_fifo.yaml"
    )
    parser.add_argument("--within", type=float, default=0.01, help="of FIFO's best score")
    parser.add_argument("--seed", type=int, help="the search's seed (default: the spec's)")
    args = parser.parse_args()

    spec = yaml.safe_load(args.spec.read_text())
    if args.seed is not None:
        spec["seed"] = args.seed
    if spec["budget"].get("scheduler", "asha") != "asha":
        parser.error(f"{args.spec} does not use ASHA")
    experiment = spec.get("mlflow", {}).get("experiment") or spec["name"]
    results = {}
    with tempfile.TemporaryDirectory() as work:
        for scheduler in ("asha", "fifo"):
            folder = Path(work) / scheduler
            folder.mkdir()
            changed = {**spec, "budget": {**spec["budget"], "scheduler": scheduler}}
            uri, seconds = run_search(changed, folder)
            events = timeline(experiment, uri)
            finals = [score for _, _, _, score, final in events if final]
            results[scheduler] = {
                "events": events,
                "seconds": seconds,
                "trials": len({run_id for _, run_id, _, _, _ in events}),
                "completed": len(finals),
                "best": max(finals),
                "steps": sum(
                    max(step for _, r, step, _, _ in events if r == run_id)
                    for run_id in {run_id for _, run_id, _, _, _ in events}
                ),
            }
    target = results["fifo"]["best"] - args.within
    print(
        f"spec {args.spec}, seed {spec.get('seed', 0)}; "
        f"target: FIFO's best {results['fifo']['best']:.4f} - {args.within}"
    )
    header = ("scheduler", "trials", "completed", "steps", "wall s", "best", "steps to target")
    rows = []
    for scheduler, found in results.items():
        needed = steps_to_reach(found["events"], target)
        rows.append(
            (
                scheduler,
                str(found["trials"]),
                str(found["completed"]),
                str(found["steps"]),
                f"{found['seconds']:.0f}",
                f"{found['best']:.4f}",
                "never" if needed is None else str(needed),
            )
        )
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(text.rjust(width) for text, width in zip(row, widths, strict=True)))
    asha, fifo = (steps_to_reach(results[s]["events"], target) for s in ("asha", "fifo"))
    if asha is not None and fifo:
        print(
            f"ASHA's steps to the target / FIFO's whole search: "
            f"{asha / results['fifo']['steps']:.2f} (goal <= 0.33); "
            f"/ FIFO's own steps to it: {asha / fifo:.2f}"
        )


if __name__ == "__main__":
    main()

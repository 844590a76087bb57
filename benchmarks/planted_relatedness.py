"""Does the synthetic world give the planted answer? One trial per condition and seed, on one thread.

    python benchmarks/planted_relatedness.py --seeds 0 1 2

Prints, per condition (no intermediate task; the helpful, neutral or conflicting tasks alone; all nine),
the accuracy on English, the close family and the far family for each target, the trial's score, and
its wall time. The budget is the quickstart's by default (400 intermediate steps, 400 steps per
target, batch 32), with a report halfway through the intermediate phase and at its end, each with a
probe of a quarter of the target steps.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from xlt_search.data import prepare_data
from xlt_search.synthetic import (
    DEFAULT_POOL,
    LANGUAGES,
    RELATEDNESS,
    SYNTHETIC_MODEL,
    resolve_model,
)
from xlt_search.tasks.synthetic import ALL_LANGUAGES
from xlt_search.trial import TargetConfig, TrialConfig, required_splits, run_trial

TARGETS = ("syn_nli", "syn_copa")
LANGUAGES_BY_CODE = {language.code: language.family for language in LANGUAGES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--intermediate-steps", type=int, default=400)
    parser.add_argument("--target-steps", type=int, default=400, help="per target")
    args = parser.parse_args()

    planted = RELATEDNESS["syn_nli"]
    conditions = {
        "none": (),
        **{
            kind: tuple(sorted(t for t in DEFAULT_POOL if planted[t] == kind))
            for kind in ("helpful", "neutral", "conflicting")
        },
        "all nine": tuple(sorted(DEFAULT_POOL)),
    }
    languages = ALL_LANGUAGES
    targets = tuple(TargetConfig(task, languages) for task in TARGETS)
    model = resolve_model(SYNTHETIC_MODEL)
    with tempfile.TemporaryDirectory() as cache:
        data = prepare_data(
            required_splits(DEFAULT_POOL, targets),
            tokenizer=model,
            max_seq_length=32,
            max_train_examples=None,
            cache_dir=Path(cache),
            seed=0,
        )
        header = ["condition"] + [f"{t} {g}" for t in TARGETS for g in ("en", "close", "far")]
        print(" | ".join(header + ["score", "s/trial"]))
        for name, tasks in conditions.items():
            runs, seconds = [], []
            for seed in args.seeds:
                config = TrialConfig(
                    model=model,
                    tasks=tasks,
                    targets=targets,
                    intermediate_steps=args.intermediate_steps,
                    target_steps=args.target_steps,
                    report_every_steps=max(1, args.intermediate_steps // 2),
                    probe_steps=args.target_steps // 4,
                    learning_rate=args.learning_rate,
                    per_device_batch_size=32,
                    seed=seed,
                )
                started = time.perf_counter()
                runs.append(run_trial(config, data, lambda metrics, save_state: None))
                seconds.append(time.perf_counter() - started)
            cells = [name]
            for task in TARGETS:
                for group in ("en", "synthetic-close", "synthetic-far"):
                    codes = [
                        c for c in languages if c == group or LANGUAGES_BY_CODE.get(c) == group
                    ]
                    cells.append(
                        f"{statistics.mean(r[f'lang.{task}.{c}'] for r in runs for c in codes):.3f}"
                    )
            cells.append(f"{statistics.mean(r['score'] for r in runs):.3f}")
            cells.append(f"{statistics.mean(seconds):.1f}")
            print(" | ".join(cells), flush=True)


if __name__ == "__main__":
    main()

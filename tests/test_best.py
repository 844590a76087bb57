"""The best configuration: completed trials only, the mean over seeds with its interval."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from xlt_search.analysis.best import best_configuration, parent_marks


def table(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(
        rows, columns=["run_id", "tasks", "n_tasks", "status", "score", "seed", "learning_rate"]
    )


def test_the_best_is_the_highest_mean_over_seeds_of_completed_trials() -> None:
    trials = table(
        [
            ("r0", "", 0, "completed", 0.50, 0, 1e-3),
            ("r1", "a", 1, "completed", 0.70, 0, 1e-3),
            ("r2", "a", 1, "completed", 0.60, 1, 1e-3),
            ("r3", "a+b", 2, "completed", 0.64, 0, 1e-3),
            ("r4", "a+b", 2, "completed", 0.66, 1, 1e-3),
            ("r5", "b", 1, "early_stopped", 0.99, 0, 1e-3),  # a probe's score: not final
        ]
    )
    best = best_configuration(trials)
    assert (best.tasks, best.n_tasks, best.seeds) == ("a+b", 2, 2)
    assert best.score == pytest.approx(0.65)
    assert best.run_id == "r4" and set(best.run_ids) == {"r3", "r4"}
    # Student's t with one degree of freedom: 12.706 * 0.01414 / sqrt(2)
    assert best.high - best.score == pytest.approx(12.706 * 0.01, rel=1e-3)
    assert best.hyperparameters == {"learning_rate": 1e-3}
    assert "best configuration: a+b (k=2), score 0.6500 [" in best.line()
    tags, metrics = parent_marks(best, "verdict")
    assert tags["xlt.best"] == "a+b" and tags["xlt.best_run_id"] == "r4"
    assert metrics["best.score"] == pytest.approx(0.65) and metrics["best.n_tasks"] == 2


def test_one_seed_has_no_interval_and_nothing_completed_has_no_best() -> None:
    best = best_configuration(table([("r1", "", 0, "completed", 0.5, 0, 1e-3)]))
    assert best.subset == "baseline" and math.isnan(best.low)
    assert best_configuration(table([("r1", "a", 1, "running", 0.5, 0, 1e-3)])) is None
    assert parent_marks(None, "v") == ({"mlflow.note.content": "v"}, {})

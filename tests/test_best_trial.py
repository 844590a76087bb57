"""The trial export takes by default, on tables shaped as `tracking.load_trials` returns them."""

from __future__ import annotations

import math

import pandas as pd

from xlt_search.analysis.best import best_trial


def trials(*rows: tuple[str, str, float, int]) -> pd.DataFrame:
    """Rows of (run_id, status, score, start_time), sorted as load_trials sorts: by subset."""
    table = pd.DataFrame(rows, columns=["run_id", "status", "score", "start_time"])
    return table.assign(tasks=table["run_id"], n_tasks=1)  # one configuration per trial


def test_the_best_is_the_completed_trial_with_the_highest_score() -> None:
    table = trials(
        ("early", "early_stopped", 0.9, 1),  # scored at a rung: not a candidate
        ("errored", "errored", math.nan, 2),
        ("low", "completed", 0.4, 3),
        ("high", "completed", 0.6, 4),
        ("running", "running", 0.8, 5),
    )
    assert best_trial(table)["run_id"] == "high"


def test_a_tie_goes_to_the_trial_that_started_first() -> None:
    table = trials(
        ("later", "completed", 0.6, 20),
        ("first", "completed", 0.6, 10),
        ("lower", "completed", 0.5, 5),
    )
    assert best_trial(table)["run_id"] == "first"
    # without start times, the table's order decides
    assert best_trial(table.drop(columns="start_time"))["run_id"] == "later"


def test_no_completed_trial_means_none() -> None:
    assert best_trial(trials(("early", "early_stopped", 0.9, 1))) is None
    assert best_trial(trials(("unscored", "completed", math.nan, 1))) is None
    assert best_trial(trials()) is None

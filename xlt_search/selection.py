"""Which trial of a search is its best: one rule, for the export and the report alike."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

COMPLETED = "completed"  # the `status` of a trial that ran its whole budget


def best_trial(trials: pd.DataFrame) -> pd.Series | None:
    """The best trial of a search, from the table `tracking.load_trials` returns: of the completed
    trials (status `completed`) with a score, the one with the highest final `score`; a tie goes
    to the trial whose run started first (`start_time`; without that column, the table's order).
    None when no trial completed.

    Only a completed trial counts: an early-stopped one was scored at a rung, before the end of
    its budget, and an errored one not at all.
    """
    completed = trials[(trials["status"] == COMPLETED) & trials["score"].notna()]
    if completed.empty:
        return None
    if "start_time" in completed:
        completed = completed.sort_values("start_time", kind="stable")
    return completed.iloc[int(completed["score"].to_numpy().argmax())]

"""The best configuration of a search: its subset, hyperparameters, score and MLflow run.

A configuration is a subset with its hyperparameters (`curves.configuration_keys`); with several
seeds its score is the mean over its completed seeds, with a Student-t 95% interval over them.
Only completed trials compete: an early-stopped trial's last score is a probe's, not a final one.
The same rule picks the trial `xlt-search export` takes away: the best configuration's best seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from xlt_search.analysis.controls import candidates
from xlt_search.analysis.curves import configuration_keys
from xlt_search.names import COMPLETED

if TYPE_CHECKING:
    import pandas as pd

TAG = "xlt.best"  # the parent run's tag: the best subset ("baseline" for the empty one)
RUN_TAG = "xlt.best_run_id"  # the child run of the best configuration's best seed


@dataclass(frozen=True)
class BestConfiguration:
    """The completed configuration with the highest mean score."""

    tasks: str  # the subset key; "" for the no-intermediate baseline
    n_tasks: int
    hyperparameters: dict[str, Any]
    score: float  # mean over its seeds
    low: float  # Student-t 95% interval over seeds; NaN with one seed
    high: float
    seeds: int
    run_id: str  # the run of its best seed
    run_ids: tuple[str, ...]  # every seed's run

    @property
    def subset(self) -> str:
        return self.tasks or "baseline"

    def line(self) -> str:
        """One line, as the end of a search prints it."""
        interval = (
            f" [{self.low:.4f}, {self.high:.4f}] over {self.seeds} seeds"
            if not math.isnan(self.low)
            else ""
        )
        hyper = ", ".join(f"{k}={v}" for k, v in self.hyperparameters.items())
        return (
            f"best configuration: {self.subset} (k={self.n_tasks}), score {self.score:.4f}"
            f"{interval}{'; ' + hyper if hyper else ''}; MLflow run {self.run_id}"
        )


def best_configuration(trials: pd.DataFrame) -> BestConfiguration | None:
    """The best completed configuration of `trials` (`tracking.load_trials`'s table), or None
    when no trial completed. Ties go to the configuration, and then the seed, whose run started
    first (`start_time`; without that column, the table's order)."""
    from scipy import stats

    from xlt_search.spec import HYPERPARAMETERS

    trials = candidates(trials)  # a control is a reference, never the best
    done = trials[(trials["status"] == COMPLETED) & trials["score"].notna()]
    if done.empty:
        return None
    if "start_time" in done:
        done = done.sort_values("start_time", kind="stable")
    keys = configuration_keys(done)
    means = done["score"].astype(float).groupby(keys, sort=False).mean()
    chosen = done[keys == means.idxmax()]
    scores = chosen["score"].astype(float)
    low = high = math.nan
    if len(chosen) > 1:
        half = stats.t.ppf(0.975, len(chosen) - 1) * scores.std(ddof=1) / math.sqrt(len(chosen))
        low, high = scores.mean() - half, scores.mean() + half
    top = chosen.loc[scores.idxmax()]
    hyper = {
        name: top[name].item() if hasattr(top[name], "item") else top[name]
        for name in HYPERPARAMETERS
        if name in chosen.columns
    }
    return BestConfiguration(
        tasks=str(top["tasks"]),
        n_tasks=int(top["n_tasks"]),
        hyperparameters=hyper,
        score=float(scores.mean()),
        low=float(low),
        high=float(high),
        seeds=len(chosen),
        run_id=str(top["run_id"]),
        run_ids=tuple(str(r) for r in chosen["run_id"]),
    )


def best_trial(trials: pd.DataFrame) -> pd.Series | None:
    """The trial `xlt-search export` takes by default: the best configuration's best seed (its
    row of `trials`), or None when no trial completed."""
    best = best_configuration(trials)
    return None if best is None else trials[trials["run_id"] == best.run_id].iloc[0]


def parent_marks(best: BestConfiguration | None, verdict: str) -> tuple[dict, dict]:
    """The tags and metrics the parent run carries so that MLflow's UI shows the answer as it
    opens: the best subset and run, and the report's verdict as the run's description."""
    tags = {"mlflow.note.content": verdict}
    if best is None:
        return tags, {}
    tags.update({TAG: best.subset, RUN_TAG: best.run_id})
    metrics = {"best.score": best.score, "best.n_tasks": float(best.n_tasks)}
    if not math.isnan(best.low):
        metrics.update({"best.score_low": best.low, "best.score_high": best.high})
    return tags, metrics

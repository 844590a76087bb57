"""Tune's trial events on the driver: logged to MLflow through the search's logger, and printed.

Only the driver runs callbacks, so on a cluster only the head talks to the tracking server. Tune
pickles the callbacks with its experiment and unpickles them when a search resumes, and a logger
(its delivery thread, its queue) cannot be pickled: the MLflow callback keeps its search's parent
run id and finds the live logger among those `delivering_to` registered in this process.

This module imports Ray at the top: import it only where a search runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray.tune import Callback

from xlt_search import subsets
from xlt_search.names import COMPLETED, EARLY_STOPPED, ERRORED

if TYPE_CHECKING:
    from xlt_search.tracking import SearchLogger, TrialStatus

# The loggers of the searches running in this process, by parent run; and, for a resumed
# search, the last step each trial had logged before it was interrupted.
_LOGGERS: dict[str, SearchLogger] = {}
_LOGGED_UNTIL: dict[str, dict[str, int]] = {}


@contextlib.contextmanager
def delivering_to(logger: SearchLogger) -> Iterator[None]:
    """During the block, the MLflow callbacks of `logger`'s search (its parent run) log to it."""
    _LOGGERS[logger.parent_run_id] = logger
    try:
        yield
    finally:
        _LOGGERS.pop(logger.parent_run_id, None)
        _LOGGED_UNTIL.pop(logger.parent_run_id, None)


def skip_logged(parent_run_id: str, logged_until: Mapping[str, int]) -> None:
    """A resumed search's results at or before `logged_until[trial_id]` (the budget_steps each
    trial had logged) are not logged again: Tune resumes a trial from the checkpoint its
    experiment state last recorded, so it may report again a step MLflow holds already."""
    _LOGGED_UNTIL[parent_run_id] = dict(logged_until)


class MLflowCallback(Callback):
    """Forwards Tune's trial events to the search's MLflow logger: a child run per trial, with its
    params, its metrics at step=budget_steps, and its `status` tag when it ends."""

    def __init__(self, parent_run_id: str, pool: tuple[str, ...], seed: int) -> None:
        self.parent_run_id, self.pool, self.seed = parent_run_id, pool, seed

    @property
    def logger(self) -> SearchLogger:
        """The live logger of this callback's search."""
        return _LOGGERS[self.parent_run_id]

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # A retried or resumed trial reopens its run rather than starting another.
        params = _trial_params(trial.config, self.pool)
        name = f"k{params['n_tasks']}-{params['tasks'] or 'baseline'}"
        if trial.config["seed"] != self.seed:
            name += f"-seed{trial.config['seed']}"
        self.logger.trial_started(trial.trial_id, name[:250], params)

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        metrics = {
            key: value
            for key, value in result.items()
            if isinstance(value, int | float) and not isinstance(value, bool) and _is_metric(key)
        }
        step = int(result["budget_steps"])
        if step <= _LOGGED_UNTIL.get(self.parent_run_id, {}).get(trial.trial_id, -1):
            return  # logged before the search was interrupted
        self.logger.trial_result(trial.trial_id, metrics, step=step)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.logger.trial_ended(trial.trial_id, _ended_status(trial))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # The trial's local error file: written before this call, unlike its synced copy.
        path = trial.error_file
        text = Path(path).read_text() if path and Path(path).is_file() else "unknown error"
        reason = next(
            (line for line in reversed(str(text).splitlines()) if line.strip()), "unknown"
        )
        self.logger.trial_ended(trial.trial_id, ERRORED, error=reason[:500])


def _trial_params(config: Mapping[str, Any], pool: tuple[str, ...]) -> dict[str, Any]:
    """The MLflow params of a trial: its subset's params, its seed, its hyperparameters."""
    from xlt_search.spec import HYPERPARAMETERS

    return {
        **subsets.subset_params(subsets.parse_subset_key(config["tasks"]), pool),
        "seed": config["seed"],
        **{name: config[name] for name in HYPERPARAMETERS if name in config},
    }


def _is_metric(key: str) -> bool:
    """Ours, not Tune's bookkeeping (time_this_iter_s, training_iteration, ...)."""
    ours = ("score", "loss", "budget_steps", "final", "phase", "restored_from")
    return key in ours or key.split(".")[0] in ("score", "lang", "family")


def _ended_status(trial: Any) -> TrialStatus:
    """A trial that ended without error: completed if it ran its whole budget, else ASHA cut it."""
    final = (trial.last_result or {}).get("final", 0.0) == 1.0
    return COMPLETED if final else EARLY_STOPPED


class ProgressCallback(Callback):
    """Prints one line per finished trial: how far the search is, the trial's subset, status and
    score, and the best score so far."""

    def __init__(self, num_trials: int) -> None:
        self.num_trials = num_trials
        self.ended, self.best = 0, (float("-inf"), "")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line(trial, _ended_status(trial))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line(trial, ERRORED)

    def _line(self, trial: Any, status: str) -> None:
        self.ended += 1
        result = trial.last_result or {}
        score = result.get("score")
        size, subset = trial.config.get("n_tasks"), trial.config.get("tasks") or "baseline"
        if status == COMPLETED and score is not None and size:
            self.best = max(self.best, (score, f"k={size}"))
        shown = f"{score:.4f}" if score is not None else "-"
        best = f" | best completed {self.best[0]:.4f} ({self.best[1]})" if self.best[1] else ""
        print(
            f"[{self.ended:>{len(str(self.num_trials))}}/{self.num_trials}] {status:<13} "
            f"score {shown} at budget_steps {result.get('budget_steps', 0):<5}{best} | "
            f"k={size} {subset}",
            flush=True,
        )

"""Tune's trial events on the driver: logged to MLflow through the search's logger, and printed
as the search's progress.

Only the driver runs callbacks, so on a cluster only the head talks to the tracking server. Tune
pickles the callbacks with its experiment and unpickles them when a search resumes, and a logger
(its delivery thread, its queue) cannot be pickled: the MLflow callback keeps its search's parent
run id and finds the live logger among those `delivering_to` registered in this process.

This module imports Ray at the top: import it only where a search runs.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray.tune import Callback

from xlt_search import subsets
from xlt_search.names import (
    ALIGN,
    COMPLETED,
    CONTROL_PARAM,
    EARLY_STOPPED,
    ERRORED,
    GUIDED_PREFIX,
    MIXED,
    RUN_STATUS,
    RUNNING,
)
from xlt_search.search.plan import trial_budget_steps
from xlt_search.search.progress import PENDING, STATUS_EVERY_S, SearchProgress, TrialProgress

if TYPE_CHECKING:
    from xlt_search.search.plan import SearchPlan
    from xlt_search.tracking import SearchLogger, TrialStatus

# The loggers of the searches running in this process, by parent run; and, for a resumed
# search, the last step each trial had logged before it was interrupted.
_LOGGERS: dict[str, SearchLogger] = {}
_LOGGED_UNTIL: dict[str, dict[str, int]] = {}
_status_every_s = STATUS_EVERY_S  # the status line's period, while a search runs


@contextlib.contextmanager
def delivering_to(logger: SearchLogger) -> Iterator[None]:
    """During the block, the MLflow callbacks of `logger`'s search (its parent run) log to it."""
    _LOGGERS[logger.parent_run_id] = logger
    try:
        yield
    finally:
        _LOGGERS.pop(logger.parent_run_id, None)
        _LOGGED_UNTIL.pop(logger.parent_run_id, None)


@contextlib.contextmanager
def status_every(seconds: float) -> Iterator[None]:
    """During the block, the progress callbacks print the status line every `seconds` (and
    after each finished trial); a resumed search's callback, unpickled, reads it too."""
    global _status_every_s
    previous, _status_every_s = _status_every_s, seconds
    try:
        yield
    finally:
        _status_every_s = previous


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
        if params.get(CONTROL_PARAM):  # control-word-shuffle
            name = f"control-{params[CONTROL_PARAM].replace('_', '-')}"
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
    """The MLflow params of a trial: its subset's params, its seed, its control if it is one,
    its hyperparameters, the guided sampler's prediction of it."""
    from xlt_search.spec import HYPERPARAMETERS

    control = config.get(CONTROL_PARAM)
    return {
        **subsets.subset_params(subsets.parse_subset_key(config["tasks"]), pool),
        "seed": config["seed"],
        **({CONTROL_PARAM: control} if control else {}),
        **{name: config[name] for name in HYPERPARAMETERS if name in config},
        **{key: value for key, value in config.items() if key.startswith(GUIDED_PREFIX)},
    }


def _is_metric(key: str) -> bool:
    """Ours, not Tune's bookkeeping (time_this_iter_s, training_iteration, ...)."""
    ours = ("score", "loss", "budget_steps", "final", "phase", "restored_from")
    return key in ours or key.split(".")[0] in ("score", "lang", "family", MIXED, "label", ALIGN)


def _ended_status(trial: Any) -> TrialStatus:
    """A trial that ended without error: completed if it ran its whole budget, else ASHA cut it."""
    final = (trial.last_result or {}).get("final", 0.0) == 1.0
    return COMPLETED if final else EARLY_STOPPED


class ProgressCallback(Callback):
    """Prints a line per finished trial (its subset, how it ended, its score) followed by the
    search's status line, and the status line again whenever `status_every_s` pass without one
    (see `search.progress`). A resumed search counts its restored trials too.

    It keeps one `TrialProgress` per trial, updated by that trial's events, so that a step of
    Tune's loop costs the same at 20 trials and at 2,000: Tune passes every trial to every call.
    """

    def __init__(self, plan: SearchPlan) -> None:
        self.plan = plan

    def setup(self, **info: Any) -> None:
        # Called as each run of the search starts (Tune pickles the callback, not this state).
        self.progress = SearchProgress(
            self.plan.num_trials, self.plan.budget_steps, time.monotonic()
        )
        self.seen: dict[str, TrialProgress] = {}  # each trial Tune has made, by id
        self.listed = 0  # how many of Tune's trials (a list that only grows) were looked at
        self.last_line_s = float("-inf")
        self.every_s = _status_every_s

    def on_step_begin(self, iteration: int, trials: list, **info: Any) -> None:
        # The trials past those looked at are new; restored ones come first, with the status
        # and budget_steps they had.
        for trial in trials[self.listed :]:
            if trial.trial_id not in self.seen:
                self._update(trial, _tune_status(trial))
        self.listed = len(trials)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if time.monotonic() - self.last_line_s >= self.every_s:
            self._status()

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._update(trial, RUNNING)

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        self._update(trial, RUNNING, result)  # Tune calls this before it stores the result

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._update(trial, PENDING)  # it failed and waits for its retry

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ended(trial, _ended_status(trial))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ended(trial, ERRORED)

    def _ended(self, trial: Any, status: str) -> None:
        self._update(trial, status)
        result = trial.last_result or {}
        score = result.get("score")
        shown = f"{score:.4f}" if score is not None else "-"
        total = self.plan.num_trials
        done = sum(progress.status in RUN_STATUS for progress in self.seen.values())
        print(
            f"[{done:>{len(str(total))}}/{total}] {status:<13} score "
            f"{shown} at budget_steps {result.get('budget_steps', 0):<5} | "
            f"k={_size(trial)} {_subset(trial)}",
            flush=True,
        )
        self._status()

    def _status(self) -> None:
        print(self.progress.status_line(self.seen, time.monotonic()), flush=True)
        self.last_line_s = time.monotonic()

    def _update(self, trial: Any, status: str, result: dict | None = None) -> None:
        """Record the trial's `status` and its latest `result` (by default the one Tune holds)."""
        result = (trial.last_result or {}) if result is None else result
        budget_steps = int(result.get("budget_steps", 0))
        self.progress.first_seen(trial.trial_id, budget_steps)  # its first sighting
        size = _size(trial)
        self.seen[trial.trial_id] = TrialProgress(
            status=status,
            budget_steps=budget_steps,
            planned_steps=trial_budget_steps(self.plan.spec, size),
            score=result.get("score"),
            size=size,
            subset=trial.config.get("tasks") or "",
        )


def _tune_status(trial: Any) -> str:
    """A trial's status as Tune holds it (a restored trial's, or a new one's: pending)."""
    if trial.status == "TERMINATED":
        return _ended_status(trial)
    return {"RUNNING": RUNNING, "ERROR": ERRORED}.get(trial.status, PENDING)


def _subset(trial: Any) -> str:
    """The trial's subset as its line shows it: the baseline, a control, or the subset's key."""
    control = trial.config.get(CONTROL_PARAM)
    return f"control {control}" if control else trial.config.get("tasks") or "baseline"


def _size(trial: Any) -> int:
    """The trial's subset size, from its subset: a restored trial's `n_tasks` may still be Tune's
    placeholder for the value it derives from `tasks`."""
    return len(subsets.parse_subset_key(trial.config.get("tasks") or ""))

"""Where a running search stands, as one status line: its trials by state, the time it has run,
how many budget_steps are done and how many it may still take, an ETA from the measured rate, and
the best completed trial so far.

No Ray here: the Tune callback (`callbacks.ProgressCallback`) turns Tune's trials into
`TrialProgress` records and prints the lines this module makes.

The ETA is an upper bound under ASHA: it counts every running or pending trial's whole budget,
and ASHA cuts some of them early.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from xlt_search.names import COMPLETED, EARLY_STOPPED, ERRORED, RUNNING

PENDING = "pending"  # not started yet, or waiting for its resources (a retry too)
STATUS_PREFIX = "status:"  # every status line starts so: `grep ^status:` follows a search
STATUS_EVERY_S = 30.0  # the status line's default period


@dataclass(frozen=True)
class TrialProgress:
    """One trial as the status line counts it."""

    status: str  # RUNNING, PENDING, or how it ended: COMPLETED, EARLY_STOPPED, ERRORED
    budget_steps: int  # the last it reported (0 before its first report)
    planned_steps: int  # its whole budget
    score: float | None = None  # its last reported score
    size: int = 0  # its subset's size (0: the baseline)
    subset: str = ""  # its subset's key (`tasks`)


class SearchProgress:
    """The status lines of one run of a search (a resumed search is a new run).

    `num_trials` and `planned_steps` are the whole search's (every trial's whole budget). The rate
    counts only the steps taken since `started_s` (`time.monotonic()`): the budget_steps a trial
    had when this run first saw it (`first_seen`, a restored trial's) were taken before.
    """

    def __init__(self, num_trials: int, planned_steps: int, started_s: float) -> None:
        self.num_trials, self.planned_steps, self.started_s = num_trials, planned_steps, started_s
        self._steps_before: dict[str, int] = {}

    def first_seen(self, trial_id: str, budget_steps: int) -> None:
        """Record the budget_steps a trial had when this run first saw it (once per trial)."""
        self._steps_before.setdefault(trial_id, budget_steps)

    def status_line(self, trials: Mapping[str, TrialProgress], now_s: float) -> str:
        """The status line: `trials` are those Tune knows (by trial id), the rest are pending."""
        counts = dict.fromkeys((RUNNING, PENDING, COMPLETED, EARLY_STOPPED, ERRORED), 0)
        for trial in trials.values():
            counts[trial.status] += 1
        counts[PENDING] += max(0, self.num_trials - len(trials))

        done_steps = sum(t.budget_steps for t in trials.values())
        unseen_steps = self.planned_steps - sum(t.planned_steps for t in trials.values())
        to_go_steps = max(0, unseen_steps) + sum(
            max(0, t.planned_steps - t.budget_steps)
            for t in trials.values()
            if t.status in (RUNNING, PENDING)
        )
        this_run_steps = sum(
            max(0, t.budget_steps - self._steps_before.get(trial_id, 0))
            for trial_id, t in trials.items()
        )
        elapsed_s = max(0.0, now_s - self.started_s)
        if this_run_steps and elapsed_s > 0:
            rate = this_run_steps / elapsed_s
            eta = f"{rate:.1f}/s, ETA at most {format_duration(to_go_steps / rate)}"
        else:
            eta = "ETA unknown"
        return " | ".join(
            [
                f"{STATUS_PREFIX} {counts[RUNNING]} running, {counts[PENDING]} pending, "
                f"{counts[COMPLETED]} done, {counts[EARLY_STOPPED]} stopped, "
                f"{counts[ERRORED]} errored",
                f"elapsed {format_duration(elapsed_s)}",
                f"{done_steps} of at most {done_steps + to_go_steps} budget_steps, {eta}",
                _best(trials.values()),
            ]
        )


def _best(trials: Iterable[TrialProgress]) -> str:
    """The best completed trial that trained a subset (the baseline is the reference, not one)."""
    scored = [t for t in trials if t.status == COMPLETED and t.size and t.score is not None]
    if not scored:
        return "best completed: none yet"
    best = max(scored, key=lambda t: t.score)
    return f"best completed {best.score:.4f} k={best.size} {best.subset}"


def format_duration(seconds: float) -> str:
    """`42s`, `3m05s`, `2h07m`: to the second below an hour, to the minute above."""
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"

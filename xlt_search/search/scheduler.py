"""ASHA that promotes within each subset size, so every size of the scaling curve keeps survivors.

Tune's ASHA compares every trial with every other at a rung. In a search whose purpose is the
curve of score against the number of intermediate tasks, that empties sizes: when small subsets
probe worse than large ones, ASHA cuts all of them, and the curve has no completed trial there.
Here each size has its own rungs (its own `_Bracket` of Tune's ASHA): a trial is compared only with
the trials of its own size, and the first `survivors_per_size` trials of a size to reach a rung
always continue (Tune's ASHA lets only the first through), so each size ends with at least that
many completed configurations, its best ones among those that came later. The no-intermediate baseline (and its controls, which train no subset
either) is never stopped and enters no rung: it is the curve's reference line, not a candidate.

This module imports Ray at the top: import it only where a search runs.
"""

from __future__ import annotations

import copy
from typing import Any

from ray.tune.schedulers import ASHAScheduler, TrialScheduler


class SizeStratifiedASHA(ASHAScheduler):
    """Tune's ASHA (one bracket) with a separate set of rungs for each `n_tasks` of the config."""

    def __init__(self, survivors_per_size: int = 1, **asha: Any) -> None:
        super().__init__(brackets=1, **asha)
        self._fresh_bracket = copy.deepcopy(self._brackets[0])  # no trial recorded yet
        self._bracket_by_size: dict[int, Any] = {}
        self._survivors = survivors_per_size

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        super().on_trial_add(tune_controller, trial)  # checks the metric, files the trial
        size = int(trial.config.get("n_tasks", -1))
        if size not in self._bracket_by_size:
            self._bracket_by_size[size] = copy.deepcopy(self._fresh_bracket)
        self._trial_info[trial.trial_id] = self._bracket_by_size[size]

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if trial.config.get("n_tasks") == 0:
            return TrialScheduler.CONTINUE
        action = super().on_trial_result(tune_controller, trial, result)
        ended = result.get(self._time_attr, 0) >= self._max_t  # Tune stops a trial at its end
        if action == TrialScheduler.STOP and not ended and self._among_first(trial, result):
            self._num_stopped -= 1
            return TrialScheduler.CONTINUE
        return action

    def _among_first(self, trial: Any, result: dict) -> bool:
        """Whether the rung this result just entered holds at most `survivors_per_size` trials
        of the trial's size, itself included."""
        steps = result.get(self._time_attr, 0)
        for milestone, recorded in self._trial_info[trial.trial_id]._rungs:
            if steps >= milestone and trial.trial_id in recorded:
                return len(recorded) <= self._survivors
        return False

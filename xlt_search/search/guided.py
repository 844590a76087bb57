"""The guided sampler as Tune's searcher: each new trial's subset from `GuidedProposer`, which
learns from every report of the trials so far (those ASHA cuts early included).

The proposer's prediction for the subset it picks goes into the trial's config as
`guided.mean` and `guided.sd` (the score the surrogate expected at the whole budget) and
`guided.step` (the trial's place in the search; the first pool-size-plus-one are the design),
which the MLflow callback logs as params. The searcher's state (the proposer, the trials' subsets)
is pickled by Tune with the experiment, so a resumed search proposes as it would have.

This module imports Ray at the top: import it only where a search runs.
"""

from __future__ import annotations

import math
import pickle
from typing import Any

import numpy as np
from ray.tune.search import Searcher
from ray.tune.search.sample import Domain

from xlt_search import subsets
from xlt_search.guided import GuidedProposer
from xlt_search.names import BUDGET_STEPS, GUIDED_PREFIX, SCORE


class GuidedSearch(Searcher):
    """Tune's searcher of a `sampler: guided` search: a subset per trial from the proposer, the
    other hyperparameters drawn at random from their domains (`space`), all from `seed`."""

    def __init__(
        self,
        pool: tuple[str, ...],
        sizes: tuple[int, ...],
        seed: int,
        max_budget_steps: int,
        space: dict[str, Any],
    ) -> None:
        super().__init__(metric=SCORE, mode="max")
        self.proposer = GuidedProposer(pool, sizes, seed)
        self.seed, self.max_budget_steps, self.space = seed, max_budget_steps, space
        self.subset_of: dict[str, tuple[str, ...]] = {}  # trial id -> its subset

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if trial_id in self.subset_of:  # asked again for a trial it answered
            return None
        proposal = self.proposer.propose()
        if proposal is None:
            return Searcher.FINISHED
        chosen, prediction = proposal
        step = len(self.proposer.proposed)
        self.subset_of[trial_id] = chosen
        rng = np.random.default_rng([self.seed, step, 1])
        return {
            **subsets.subset_params(chosen, self.proposer.pool),
            "seed": self.seed,
            **{
                name: d.sample(random_state=rng) if isinstance(d, Domain) else d
                for name, d in self.space.items()
            },
            f"{GUIDED_PREFIX}mean": round(prediction.mean, 6),
            f"{GUIDED_PREFIX}sd": round(prediction.sd, 6),
            f"{GUIDED_PREFIX}step": step,
        }

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._observe(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        if result and not error:  # an errored trial's subset stays proposed, not observed
            self._observe(trial_id, result)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as file:
            pickle.dump(self.__dict__, file)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as file:
            self.__dict__.update(pickle.load(file))

    def _observe(self, trial_id: str, result: dict) -> None:
        score, steps = result.get(SCORE), result.get(BUDGET_STEPS)
        if trial_id not in self.subset_of or score is None or steps is None:
            return
        share = float(steps) / self.max_budget_steps
        if math.isfinite(float(score)):
            self.proposer.observe(self.subset_of[trial_id], share, float(score))

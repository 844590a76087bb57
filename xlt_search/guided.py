"""The guided sampler: which subsets to train next, learned from the trials so far.

A Bayesian linear surrogate of a trial's score over its subset: an intercept, one main effect per
pool task, one interaction per pair of tasks, and the log of the share of its budget the trial
had spent when it reported (so a trial ASHA cut early still says what its tasks are worth). With
a normal-inverse-gamma prior the posterior is exact, and the prior keeps the weights small until
trials say otherwise (the linear surrogate over subset indicators of Li, Nguyen & Zhang 2023,
with pairs).

The proposer starts with a stratified design (every task as often as the next) of one subset per
pool task plus one, which any linear model on the main effects needs to be determined; then it
proposes by Thompson sampling: one draw of the weights from the posterior, every subset of the
allowed sizes scored at its whole budget, the best not yet proposed taken; every third proposal
explores instead. A task's contribution is its Shapley value under the surrogate. No Ray here:
the Tune searcher that drives it is search/guided.py.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import NormalDist

import numpy as np

from xlt_search import subsets

# Prior variances of the weights, in units of the scores' own spread (the scores are standardized
# before each fit): the intercept and the budget's slope are left loose.
PRIOR_VARIANCE = {"intercept": 100.0, "main": 0.5, "pair": 0.5, "budget": 100.0}
# The noise variance's inverse-gamma prior: weak (worth two observations), its mode a noise sd
# of a fifth of the scores' spread.
PRIOR_SHAPE, PRIOR_SCALE = 1.0, 0.1
MAX_CANDIDATES = 4096  # subsets scored per proposal; a larger space is sampled at random
# After the design, every third proposal is an untried subset at random: a search that only
# exploits learns the pairs it keeps trying, not what the tasks it leaves out are worth (measured
# on a planted landscape of nine tasks, 20 seeds: the contributions' Spearman median 0.93, no
# task told apart with the wrong sign, against 2 such claims when it never explores; the best
# found after a median of 17.5 trials either way).
EXPLORE_EVERY = 3
FAMILYWISE_ERROR = 0.05  # the chance that `effects` tells apart any task of no effect


@dataclass(frozen=True)
class Prediction:
    """The surrogate's reading of one subset at its whole budget, in the score's units."""

    mean: float
    sd: float


@dataclass(frozen=True)
class Posterior:
    """The surrogate's posterior: the weights' mean and covariance scale, the noise's shape and
    scale, and the standardization of the scores it was fitted on."""

    mean: np.ndarray
    covariance: np.ndarray  # times the noise variance, the weights' covariance
    shape: float
    scale: float
    centre: float
    spread: float

    @property
    def noise_variance(self) -> float:
        """The noise variance at the posterior mean of its inverse (the noise's precision)."""
        return self.scale / self.shape

    def predict(self, features: np.ndarray) -> list[Prediction]:
        """Posterior predictive mean and sd of each row."""
        mean = features @ self.mean
        spread = 1.0 + np.einsum("ij,jk,ik->i", features, self.covariance, features)
        var = self.noise_variance * spread
        return [
            Prediction(float(self.centre + self.spread * m), float(self.spread * math.sqrt(v)))
            for m, v in zip(mean, var, strict=True)
        ]

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """One draw of the weights: the noise variance from its inverse gamma, then the weights."""
        noise = self.scale / rng.gamma(self.shape)
        return rng.multivariate_normal(self.mean, noise * self.covariance, method="cholesky")


def features(chosen: Sequence[Sequence[str]], pool: Sequence[str], share: Sequence[float]):
    """The surrogate's feature rows: 1, each task's indicator, each pair's, log(budget share)."""
    index = {task: i for i, task in enumerate(pool)}
    n = len(pool)
    pairs = _pairs(n)
    rows = np.zeros((len(chosen), 2 + n + len(pairs)))
    for row, (subset, spent) in enumerate(zip(chosen, share, strict=True)):
        z = np.zeros(n)
        z[[index[t] for t in subset]] = 1.0
        rows[row, 0] = 1.0
        rows[row, 1 : 1 + n] = z
        rows[row, 1 + n : 1 + n + len(pairs)] = [z[i] * z[j] for i, j in pairs]
        rows[row, -1] = math.log(min(max(spent, 1e-6), 1.0))
    return rows


def _pairs(n_tasks: int) -> list[tuple[int, int]]:
    """The pairs of task indices, in `features`' order."""
    return list(itertools.combinations(range(n_tasks), 2))


def prior_variances(n_tasks: int) -> np.ndarray:
    """The prior variance of each feature's weight, in `features`' order."""
    v = PRIOR_VARIANCE
    n_pairs = n_tasks * (n_tasks - 1) // 2
    return np.array(
        [v["intercept"]] + [v["main"]] * n_tasks + [v["pair"]] * n_pairs + [v["budget"]]
    )


def fit(x: np.ndarray, y: np.ndarray, n_tasks: int) -> Posterior:
    """The normal-inverse-gamma posterior of the weights given feature rows `x`, scores `y`."""
    centre = float(y.mean()) if len(y) else 0.0
    spread = float(y.std()) if len(y) > 1 and y.std() > 1e-9 else 1.0
    t = (y - centre) / spread
    precision0 = np.diag(1.0 / prior_variances(n_tasks))
    precision = precision0 + x.T @ x
    covariance = np.linalg.inv(precision)
    covariance = (covariance + covariance.T) / 2
    mean = covariance @ (x.T @ t)
    shape = PRIOR_SHAPE + len(t) / 2
    scale = PRIOR_SCALE + 0.5 * float(t @ t - mean @ precision @ mean)
    return Posterior(mean, covariance, shape, max(scale, 1e-9), centre, spread)


@dataclass(frozen=True)
class Effect:
    """A task's contribution to the score (posterior mean and sd, in the score's units), and
    whether it is told apart from zero: its interval clear of zero at a 5% chance, over all the
    pool's tasks together, that any effect of none is (Bonferroni)."""

    task: str
    mean: float
    sd: float
    told_apart: bool


@dataclass
class GuidedProposer:
    """Proposes distinct subsets of the allowed sizes: a stratified design, then Thompson sampling
    on the surrogate fitted to every observation so far. Deterministic in its seed and in the
    observations it is given; picklable, so Tune checkpoints it with the search."""

    pool: tuple[str, ...]
    sizes: tuple[int, ...]
    seed: int
    design: list[tuple[str, ...]] = field(init=False)
    proposed: list[tuple[str, ...]] = field(default_factory=list, init=False)
    # subset key -> (budget share, score) of its latest report
    observed: dict[str, tuple[float, float]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.pool = tuple(sorted(self.pool))
        n_design = len(self.pool) + 1
        per_size = max(1, math.ceil(n_design / len(self.sizes)))
        by_size: dict[int, list[tuple[str, ...]]] = {}
        for s in subsets.stratified(self.pool, self.sizes, per_size, self.seed):
            by_size.setdefault(len(s), []).append(s)
        # sizes interleaved, so the first trials already span every size
        rounds = [
            [group[i] for group in by_size.values() if i < len(group)] for i in range(per_size)
        ]
        self.design = [s for r in rounds for s in r][:n_design]

    @property
    def space_size(self) -> int:
        """How many subsets the allowed sizes hold."""
        return subsets.count(len(self.pool), self.sizes)

    def observe(self, subset: Sequence[str], share: float, score: float) -> None:
        """A trial of `subset` reported `score` after spending `share` of its budget (its latest
        report replaces the ones before). Scores that are not finite are not observations."""
        if math.isfinite(score) and math.isfinite(share) and share > 0:
            self.observed[subsets.subset_key(subset)] = (float(share), float(score))

    def posterior(self) -> Posterior:
        """The surrogate fitted to the observations so far (the prior if there are none)."""
        keys = list(self.observed)
        x = features(
            [subsets.parse_subset_key(k) for k in keys],
            self.pool,
            [self.observed[k][0] for k in keys],
        )
        y = np.array([self.observed[k][1] for k in keys])
        return fit(x, y, len(self.pool))

    def propose(self) -> tuple[tuple[str, ...], Prediction] | None:
        """The next subset and the surrogate's prediction of it, or None when every subset of the
        allowed sizes has been proposed."""
        if len(self.proposed) >= self.space_size:
            return None
        posterior = self.posterior()
        step = len(self.proposed)
        rng = np.random.default_rng([self.seed, step])
        if step < len(self.design):
            chosen = self.design[step]
        elif (step - len(self.design)) % EXPLORE_EVERY == EXPLORE_EVERY - 1:
            candidates = self._candidates(step)
            chosen = candidates[int(rng.integers(len(candidates)))]
        else:
            candidates = self._candidates(step)
            scores = features(candidates, self.pool, [1.0] * len(candidates)) @ posterior.draw(rng)
            chosen = candidates[int(np.argmax(scores))]
        self.proposed.append(chosen)
        return chosen, posterior.predict(features([chosen], self.pool, [1.0]))[0]

    def effects(self) -> list[Effect]:
        """Each task's Shapley value under the surrogate, the largest first: its main effect
        plus half of each of its pairs' (exact for a model of pairs), with its posterior sd."""
        posterior, n = self.posterior(), len(self.pool)
        pairs = _pairs(n)
        z = NormalDist().inv_cdf(1 - FAMILYWISE_ERROR / (2 * n))
        found = []
        for i, task in enumerate(self.pool):
            weights = np.zeros(len(posterior.mean))
            weights[1 + i] = 1.0
            weights[1 + n : 1 + n + len(pairs)] = [0.5 * (i in pair) for pair in pairs]
            mean = posterior.spread * float(weights @ posterior.mean)
            var = posterior.noise_variance * float(weights @ posterior.covariance @ weights)
            sd = posterior.spread * math.sqrt(var)
            found.append(Effect(task, mean, sd, abs(mean) > z * sd))
        return sorted(found, key=lambda e: -e.mean)

    def _candidates(self, step: int) -> list[tuple[str, ...]]:
        """The subsets not yet proposed: all of them, or at most MAX_CANDIDATES of a large space
        drawn at random (asking for as many more as are taken leaves that many untaken)."""
        taken = set(self.proposed)
        if self.space_size <= MAX_CANDIDATES:
            drawn = subsets.grid(self.pool, self.sizes)
        else:
            wanted = min(self.space_size, MAX_CANDIDATES + len(taken))
            seed = random.Random(f"{self.seed}-{step}").randrange(2**32)
            drawn = subsets.random_subsets(self.pool, self.sizes, wanted, seed)
        return [s for s in drawn if s not in taken][:MAX_CANDIDATES]

"""The guided sampler: which subsets to train next, learned from the trials so far.

A Bayesian linear surrogate of a trial's score over its subset, in two readings of the subset
averaged by how well each explains the trials (their marginal likelihoods):

- `indicators`: one main effect per pool task and one interaction per pair, each worth the same
  whatever else the subset holds (the linear surrogate over subset indicators of Li, Nguyen &
  Zhang 2023, with pairs);
- `mixture`: the same over the subset's proportions, each task 1/|subset| (the share of a fixed
  budget it trains on) and each pair the product of its two shares: Scheffe's quadratic mixture
  model, the regression on mixture weights of RegMix (Liu et al. 2024). A task worth much alone
  is diluted by every task added beside it.

Each reading has an intercept and the log of the share of its budget the trial had spent when
it reported (so a trial ASHA cut early still says what its tasks are worth). With a
normal-inverse-gamma prior the posterior and the marginal likelihood are exact, and the prior
keeps the weights small until trials say otherwise.

The proposer starts with a stratified design (every task as often as the next) of one subset per
pool task plus one, which any linear model on the main effects needs to be determined; then it
proposes by Thompson sampling: one draw of the weights from the posterior, every subset of the
allowed sizes scored at its whole budget by a reading drawn by its posterior probability, the
best not yet proposed taken; every third proposal explores instead. A task's contribution is its
Shapley value under the surrogate (the readings' values averaged alike). No Ray here:
the Tune searcher that drives it is search/guided.py.
"""

from __future__ import annotations

import functools
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
READINGS = ("indicators", "mixture")
# Shapley values are sums over every subset of the other tasks up to this pool size; past it,
# over SHAPLEY_PERMUTATIONS orders of the pool drawn at random (a fixed draw).
MAX_EXACT_SHAPLEY, SHAPLEY_PERMUTATIONS = 12, 2000


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
    log_evidence: float  # the marginal likelihood of the standardized scores

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


def features(
    chosen: Sequence[Sequence[str]],
    pool: Sequence[str],
    share: Sequence[float],
    reading: str = "indicators",
) -> np.ndarray:
    """The surrogate's feature rows in `reading`: 1, each task's indicator (or its proportion of
    the subset), each pair's product, log(budget share)."""
    index = {task: i for i, task in enumerate(pool)}
    z = np.zeros((len(chosen), len(pool)))
    for row, subset in enumerate(chosen):
        z[row, [index[t] for t in subset]] = 1.0
    if reading == "mixture":
        z /= np.maximum(z.sum(axis=1, keepdims=True), 1.0)
    first, second = np.array(_pairs(len(pool)), dtype=int).reshape(-1, 2).T
    spent = np.log(np.clip(np.asarray(share, dtype=float).reshape(-1), 1e-6, 1.0))
    if len(spent) != len(chosen):
        raise ValueError(f"{len(chosen)} subsets but {len(spent)} budget shares")
    return np.column_stack([np.ones(len(chosen)), z, z[:, first] * z[:, second], spent])


def _pairs(n_tasks: int) -> list[tuple[int, int]]:
    """The pairs of task indices, in `features`' order."""
    return list(itertools.combinations(range(n_tasks), 2))


def prior_variances(n_tasks: int, sizes: Sequence[int], reading: str) -> np.ndarray:
    """The prior variance of each feature's weight in `reading`, in `features`' order. A mixture
    feature is smaller than its indicator (1/|subset|, and its square for a pair), so its weight
    gets the variance that moves a subset's score as much: scaled by the ratio of the indicator's
    mean square to the proportion's, over the subsets of the allowed sizes."""
    v = PRIOR_VARIANCE
    n_pairs = n_tasks * (n_tasks - 1) // 2
    main = pair = 1.0
    if reading == "mixture":

        def ratio(held: int) -> float:
            holding = [(k, math.comb(n_tasks - held, k - held)) for k in sizes if k >= held]
            small = sum(c / k ** (2 * held) for k, c in holding)
            return sum(c for _, c in holding) / small if small else 1.0

        main, pair = ratio(1), ratio(2)
    return np.array(
        [v["intercept"]]
        + [v["main"] * main] * n_tasks
        + [v["pair"] * pair] * n_pairs
        + [v["budget"]]
    )


def fit(x: np.ndarray, y: np.ndarray, variances: np.ndarray) -> Posterior:
    """The normal-inverse-gamma posterior of the weights given feature rows `x`, scores `y` and
    the weights' prior variances."""
    centre = float(y.mean()) if len(y) else 0.0
    spread = float(y.std()) if len(y) > 1 and y.std() > 1e-9 else 1.0
    t = (y - centre) / spread
    precision0 = np.diag(1.0 / variances)
    precision = precision0 + x.T @ x
    covariance = np.linalg.inv(precision)
    covariance = (covariance + covariance.T) / 2
    mean = covariance @ (x.T @ t)
    shape = PRIOR_SHAPE + len(t) / 2
    scale = max(PRIOR_SCALE + 0.5 * float(t @ t - mean @ precision @ mean), 1e-9)
    log_evidence = (
        -len(t) / 2 * math.log(2 * math.pi)
        + 0.5 * (np.linalg.slogdet(precision0)[1] - np.linalg.slogdet(precision)[1])
        + PRIOR_SHAPE * math.log(PRIOR_SCALE)
        - shape * math.log(scale)
        + math.lgamma(shape)
        - math.lgamma(PRIOR_SHAPE)
    )
    return Posterior(mean, covariance, shape, scale, centre, spread, log_evidence)


@dataclass(frozen=True)
class Surrogate:
    """The readings' posteriors, each with its posterior probability (equal before any trial)."""

    pool: tuple[str, ...]
    posteriors: dict[str, Posterior]
    weights: dict[str, float]

    def predict(self, chosen: Sequence[Sequence[str]], share: Sequence[float]) -> list[Prediction]:
        """The posterior predictive mean and sd of each subset at its budget share: the
        readings' predictions mixed by their probabilities."""
        by_reading = {
            r: p.predict(features(chosen, self.pool, share, r)) for r, p in self.posteriors.items()
        }
        return [
            _mixed([(self.weights[r], by_reading[r][i]) for r in self.posteriors])
            for i in range(len(chosen))
        ]

    def draw(self, chosen: Sequence[Sequence[str]], rng: np.random.Generator) -> np.ndarray:
        """One posterior draw of the subsets' scores at their whole budget: a reading drawn by
        its probability, then its weights."""
        reading = READINGS[int(rng.choice(len(READINGS), p=[self.weights[r] for r in READINGS]))]
        rows = features(chosen, self.pool, [1.0] * len(chosen), reading)
        return rows @ self.posteriors[reading].draw(rng)


def _mixed(parts: list[tuple[float, Prediction]]) -> Prediction:
    """The mean and sd of a mixture of predictions, each with its weight."""
    mean = sum(w * p.mean for w, p in parts)
    second = sum(w * (p.sd**2 + p.mean**2) for w, p in parts)
    return Prediction(mean, math.sqrt(max(second - mean**2, 0.0)))


@functools.cache
def shapley_rows(n_tasks: int, reading: str) -> np.ndarray:
    """Row i: the weights' combination that is task i's Shapley value in `reading` (a linear
    model's Shapley value is linear in its weights), over a pool of `n_tasks`."""
    pool = tuple(range(n_tasks))
    rows = np.zeros((n_tasks, 2 + n_tasks + len(_pairs(n_tasks))))
    if n_tasks <= MAX_EXACT_SHAPLEY:
        for i in pool:
            others = [t for t in pool if t != i]
            without = [s for k in range(n_tasks) for s in itertools.combinations(others, k)]
            weight = np.array(
                [math.factorial(len(s)) * math.factorial(n_tasks - len(s) - 1) for s in without]
            ) / math.factorial(n_tasks)
            gain = features([(*s, i) for s in without], pool, [1.0] * len(without), reading)
            gain -= features(without, pool, [1.0] * len(without), reading)
            rows[i] = weight @ gain
        return rows
    rng = np.random.default_rng(0)
    for _ in range(SHAPLEY_PERMUTATIONS):
        order = [int(t) for t in rng.permutation(n_tasks)]
        prefixes = [tuple(order[:k]) for k in range(n_tasks + 1)]
        x = features(prefixes, pool, [1.0] * len(prefixes), reading)
        rows[order] += np.diff(x, axis=0)
    return rows / SHAPLEY_PERMUTATIONS


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

    def surrogate(self) -> Surrogate:
        """The surrogate fitted to the observations so far (the prior if there are none)."""
        keys = list(self.observed)
        chosen = [subsets.parse_subset_key(k) for k in keys]
        share = [self.observed[k][0] for k in keys]
        y = np.array([self.observed[k][1] for k in keys])
        posteriors = {
            r: fit(
                features(chosen, self.pool, share, r),
                y,
                prior_variances(len(self.pool), self.sizes, r),
            )
            for r in READINGS
        }
        top = max(p.log_evidence for p in posteriors.values())
        odds = {r: math.exp(p.log_evidence - top) for r, p in posteriors.items()}
        weights = {r: odds[r] / sum(odds.values()) for r in READINGS}
        return Surrogate(self.pool, posteriors, weights)

    def propose(self) -> tuple[tuple[str, ...], Prediction] | None:
        """The next subset and the surrogate's prediction of it, or None when every subset of the
        allowed sizes has been proposed."""
        if len(self.proposed) >= self.space_size:
            return None
        surrogate = self.surrogate()
        step = len(self.proposed)
        rng = np.random.default_rng([self.seed, step])
        if step < len(self.design):
            chosen = self.design[step]
        elif (step - len(self.design)) % EXPLORE_EVERY == EXPLORE_EVERY - 1:
            candidates = self._candidates(step)
            chosen = candidates[int(rng.integers(len(candidates)))]
        else:
            candidates = self._candidates(step)
            chosen = candidates[int(np.argmax(surrogate.draw(candidates, rng)))]
        self.proposed.append(chosen)
        return chosen, surrogate.predict([chosen], [1.0])[0]

    def effects(self) -> list[Effect]:
        """Each task's Shapley value under the surrogate, the largest first, with its posterior
        sd: each reading's value (linear in its weights) mixed by the readings' probabilities."""
        surrogate, n = self.surrogate(), len(self.pool)
        z = NormalDist().inv_cdf(1 - FAMILYWISE_ERROR / (2 * n))
        found = []
        for i, task in enumerate(self.pool):
            parts = []
            for reading, posterior in surrogate.posteriors.items():
                row = shapley_rows(n, reading)[i]
                var = posterior.noise_variance * float(row @ posterior.covariance @ row)
                shapley = Prediction(
                    posterior.spread * float(row @ posterior.mean),
                    posterior.spread * math.sqrt(var),
                )
                parts.append((surrogate.weights[reading], shapley))
            value = _mixed(parts)
            found.append(Effect(task, value.mean, value.sd, abs(value.mean) > z * value.sd))
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

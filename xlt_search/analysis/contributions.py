"""Each intermediate task's effect on the target score, estimated from the trials of a search.

Two estimators over the same rows (one trial per row, its `use.<task>` flags and its score):

- **regression**: least squares of the score on the flags, `score = b + sum_i a_i * use_i`. `a_i`
  is the gain of adding task i; since `n_tasks` is the sum of the flags, the same fit reads as
  `b + mean(a) * n_tasks + sum_i (a_i - mean(a)) * use_i`, so the mean of the `a_i` is the slope
  in `n_tasks` (one more task of average worth) and each task's offset from it is what it adds
  beyond an average task.
- **Shapley**: the Shapley values of the subsets' scores, estimated from the subsets that were
  sampled with KernelSHAP's weighted least squares (Lundberg and Lee 2017): a subset of size s out
  of M tasks weighs (M - 1) / (C(M, s) s (M - s)), the whole pool a near-infinite weight. They
  weigh small and near-full subsets most, where one task's presence is clearest.

Intervals come from resampling the configurations with replacement, each with all its seeds. The
no-intermediate baseline is the empty subset: it enters both fits (with KernelSHAP's near-infinite weight, as the game's value of
no task) when its score is comparable, that is on final scores. Read at an ASHA rung its score
means something else (plain target fine-tuning rather than a probe), so it is left out and both
fits estimate their own intercept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import TYPE_CHECKING

from xlt_search.analysis import curves
from xlt_search.analysis.controls import candidates
from xlt_search.analysis.curves import percentile_interval
from xlt_search.names import COMPLETED, EARLY_STOPPED
from xlt_search.subsets import flag_name

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

BOOTSTRAP_SAMPLES = 1000
FULL_POOL_WEIGHT = 1.0e4  # KernelSHAP's infinite weight on the whole pool, relative to size 1


def design(trials: pd.DataFrame, pool: Sequence[str]) -> np.ndarray:
    """The 0/1 matrix of `use.<task>` flags, one row per trial, one column per pool task."""
    import numpy as np

    return np.column_stack(
        [trials[flag_name(task)].astype(bool).to_numpy() for task in pool]
    ).astype(float)


def additive_effects(
    flags: np.ndarray, scores: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    """The `a_i` of `scores = b + flags @ a` by (weighted) least squares, one column of `scores`
    at a time (`scores` may be 2-D); minimum-norm where the flags do not pin them down."""
    import numpy as np

    x = np.column_stack([np.ones(len(flags)), flags])
    y = scores if scores.ndim == 2 else scores[:, None]
    if weights is not None:
        root = np.sqrt(weights)[:, None]
        x, y = x * root, y * root
    solution = np.linalg.lstsq(x, y, rcond=None)[0][1:]
    return solution if scores.ndim == 2 else solution[:, 0]


def shapley_weights(flags: np.ndarray) -> np.ndarray:
    """KernelSHAP's weight for each row's subset (see the module's docstring)."""
    import numpy as np

    m = flags.shape[1]
    sizes = flags.sum(axis=1).astype(int)
    weights = np.zeros(len(flags))
    inner = (sizes > 0) & (sizes < m)
    weights[inner] = [(m - 1) / (math.comb(m, s) * s * (m - s)) for s in sizes[inner]]
    weights[(sizes == 0) | (sizes == m)] = FULL_POOL_WEIGHT / m  # 1/m: a single task's weight
    return weights


def task_contributions(
    trials: pd.DataFrame,
    pool: Sequence[str],
    metric: str = "score",
    with_baseline: bool = True,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
    seed_std: float = math.nan,
) -> pd.DataFrame:
    """One row per pool task: how many trials trained it, its regression effect and Shapley value
    on `metric`, each with a 95% bootstrap interval where the data can carry one (else NaN, and
    `interval` says why), whether the effect is distinguishable from zero and from seed noise
    (`seed_std`, the seed-to-seed standard deviation; NaN: unknown), and its rank by Shapley
    value (1: best).

    Rows are the trials that count (`counted_rows`), the baseline among them only `with_baseline`.
    A fit that the rows cannot determine (fewer trials than unknowns + 1, or subsets that do not
    separate the tasks) is refused: every estimate is NaN, no rank is given, and
    `table.attrs["refused"]` says what is missing.
    """
    import numpy as np

    rows = counted_rows(trials, with_baseline).dropna(subset=[metric])
    flags, scores = design(rows, pool), rows[metric].astype(float).to_numpy()
    refused = underdetermined(flags, pool)
    if refused:
        return refused_table(pool, flags, refused, len(rows))
    weights = shapley_weights(flags)
    effect = additive_effects(flags, scores)
    shapley = additive_effects(flags, scores, weights)
    draws = _configuration_draws(rows, samples, seed)
    boot_effect = np.array([additive_effects(flags[d], scores[d]) for d in draws])
    boot_shapley = np.array([additive_effects(flags[d], scores[d], weights[d]) for d in draws])
    effect_ci, shapley_ci = percentile_interval(boot_effect), percentile_interval(boot_shapley)
    why_not = _no_interval(flags)
    for ci in (effect_ci, shapley_ci):
        for bound in ci:
            bound[np.array([bool(w) for w in why_not])] = math.nan
    table = _table(pool, flags, effect, effect_ci, shapley, shapley_ci)
    table["interval"] = why_not
    noise = seed_std * np.sqrt(np.diag(_inverse_gram(flags)))[1:]  # an effect's error from seeds
    # Every task is tested at once: Bonferroni's bound keeps the chance that any null task is
    # called distinguishable at 5%.
    z = float(NormalDist().inv_cdf(1 - 0.05 / (2 * len(pool))))
    table["distinguishable"] = [
        _distinguishable(e, lo, hi, z * error)
        for e, lo, hi, error in zip(effect, effect_ci[0], effect_ci[1], noise, strict=True)
    ]
    table["rank"] = table["shapley"].rank(ascending=False, method="min").fillna(0).astype(int)
    table = table.sort_values("rank", kind="stable").reset_index(drop=True)
    table.attrs.update(trials=len(rows), refused=None)  # the trials both fits used
    return table


def _configuration_draws(rows: pd.DataFrame, samples: int, seed: int) -> list[np.ndarray]:
    """`samples` bootstrap draws of `rows`' positions, resampling configurations (a subset with
    its hyperparameters), each drawn with all of its seeds: the seeds of one configuration share
    whatever the flags do not carry (its hyperparameters, its tasks' interactions), so drawing
    them as separate trials would make the intervals too narrow. With one seed a configuration,
    these are the trials' own draws."""
    import numpy as np

    codes = curves.configuration_keys(rows).factorize()[0] if len(rows) else np.array([], int)
    members = [np.flatnonzero(codes == c) for c in range(codes.max(initial=-1) + 1)]
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(members), size=(samples, len(members)))
    return [np.concatenate([members[c] for c in pick]) for pick in picks]


GAINS_COLUMNS = ("task", "target", "language", "family", "gain")
MIN_TRIALS_PER_SIDE = 3  # an interval needs the task in, and out of, at least this many trials
MIN_RESIDUAL_DOF = 3  # and this many trials beyond the unknowns of the fit


def counted_rows(trials: pd.DataFrame, with_baseline: bool) -> pd.DataFrame:
    """The trials the fits use: those that ran to their end or to an ASHA cut (never a running,
    interrupted or failed trial, whose last score is a probe's, nor a control), the baseline
    only `with_baseline`."""
    trials = candidates(trials)  # never a control
    kept = trials["status"].isin((COMPLETED, EARLY_STOPPED))
    return trials[kept if with_baseline else kept & (trials["n_tasks"] > 0)]


def underdetermined(flags: np.ndarray, pool: Sequence[str]) -> str | None:
    """Why the rows cannot determine an effect per task and an intercept, or None when they can."""
    import numpy as np

    unknowns = len(pool) + 1
    if len(flags) < unknowns + 1:
        return (
            f"{len(flags)} usable trials for {unknowns} unknowns ({len(pool)} task effects and "
            f"the intercept): at least {unknowns + 1} completed (or early-stopped) trials are "
            "needed; run more subsets, or let the search finish"
        )
    constant = [t for t, column in zip(pool, flags.T, strict=True) if column.min() == column.max()]
    if constant:
        return (
            f"{', '.join(constant)} {'is' if len(constant) == 1 else 'are'} in every usable trial "
            "or in none, so no effect can be told apart from the intercept; sample subsets "
            "with and without each task"
        )
    x = np.column_stack([np.ones(len(flags)), flags])
    if np.linalg.matrix_rank(x) < unknowns:
        return (
            "the subsets do not separate the tasks' effects (some tasks always appear together); "
            "sample more varied subsets (sampler: stratified or random)"
        )
    return None


def refused_table(pool: Sequence[str], flags: np.ndarray, reason: str, trials: int) -> pd.DataFrame:
    """The contributions table of a fit that is not made: counts only, every estimate NaN."""
    import numpy as np

    nothing = np.full(len(pool), math.nan)
    table = _table(pool, flags, nothing, (nothing, nothing), nothing, (nothing, nothing))
    table["interval"] = "no fit"
    table["distinguishable"] = "no fit"
    table["rank"] = 0
    table.attrs.update(trials=trials, refused=reason)
    return table


def _table(
    pool: Sequence[str],
    flags: np.ndarray,
    effect: np.ndarray,
    effect_ci: tuple[np.ndarray, np.ndarray],
    shapley: np.ndarray,
    shapley_ci: tuple[np.ndarray, np.ndarray],
) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(
        {
            "task": list(pool),
            "trials_with": flags.sum(axis=0).astype(int) if len(flags) else 0,
            "effect": effect,
            "effect_low": effect_ci[0],
            "effect_high": effect_ci[1],
            "shapley": shapley,
            "shapley_low": shapley_ci[0],
            "shapley_high": shapley_ci[1],
        }
    )


def _no_interval(flags: np.ndarray) -> list[str]:
    """Per task, why its interval would not be one ("" where it is)."""
    residual = len(flags) - (flags.shape[1] + 1)
    reasons = []
    for column in flags.T:
        with_it, without = int(column.sum()), int(len(column) - column.sum())
        if residual < MIN_RESIDUAL_DOF:
            reasons.append(f"{residual} trials beyond the {flags.shape[1] + 1} unknowns")
        elif min(with_it, without) < MIN_TRIALS_PER_SIDE:
            reasons.append(f"{with_it} trials with it, {without} without")
        else:
            reasons.append("")
    return reasons


def _inverse_gram(flags: np.ndarray) -> np.ndarray:
    import numpy as np

    x = np.column_stack([np.ones(len(flags)), flags])
    return np.linalg.pinv(x.T @ x)


def _distinguishable(effect: float, low: float, high: float, threshold: float) -> str:
    """Whether an effect is told apart from zero (its interval excludes it) and from seed noise
    (it exceeds `threshold`: its standard error under the seed-to-seed deviation, times the
    corrected normal quantile)."""
    if math.isnan(low):
        return "no interval"
    if low <= 0.0 <= high:
        return "no"
    if math.isnan(threshold):
        return "from zero; seed noise unknown"
    return "yes" if abs(effect) > threshold else "no: within seed noise"


def language_gains(
    trials: pd.DataFrame,
    pool: Sequence[str],
    languages: dict[str, str],
    with_baseline: bool = True,
) -> pd.DataFrame:
    """The task x target x language table: for every `lang.<target>.<language>` score, each pool
    task's regression effect (the gain of adding it, over the no-intermediate model).

    `languages` maps a language code to its family. Columns: task, target, language, family,
    gain; English rows included (the source language, for comparison).
    """
    import pandas as pd

    columns = [
        c
        for c in trials.columns
        if isinstance(c, str) and c.startswith("lang.") and c.count(".") == 2
    ]
    rows = counted_rows(trials, with_baseline).dropna(subset=columns)
    if not columns or underdetermined(design(rows, pool), pool):
        return pd.DataFrame(columns=list(GAINS_COLUMNS))
    gains = additive_effects(design(rows, pool), rows[columns].astype(float).to_numpy())
    records = []
    for j, column in enumerate(columns):
        _, target, language = column.split(".")
        for i, task in enumerate(pool):
            records.append(
                {
                    "task": task,
                    "target": target,
                    "language": language,
                    "family": languages.get(language, "unknown"),
                    "gain": float(gains[i, j]),
                }
            )
    return pd.DataFrame(records)

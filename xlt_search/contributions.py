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

Intervals come from resampling the trials with replacement. The no-intermediate baseline is the
empty subset: it enters both fits (with KernelSHAP's near-infinite weight, as the game's value of
no task) when its score is comparable, that is on final scores. Read at an ASHA rung its score
means something else (plain target fine-tuning rather than a probe), so it is left out and both
fits estimate their own intercept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from xlt_search.curves import percentile_interval

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

BOOTSTRAP_SAMPLES = 1000
FULL_POOL_WEIGHT = 1.0e4  # KernelSHAP's infinite weight on the whole pool, relative to size 1


def design(trials: pd.DataFrame, pool: Sequence[str]) -> np.ndarray:
    """The 0/1 matrix of `use.<task>` flags, one row per trial, one column per pool task."""
    import numpy as np

    return np.column_stack([trials[f"use.{task}"].astype(bool).to_numpy() for task in pool]).astype(
        float
    )


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
) -> pd.DataFrame:
    """One row per pool task: how many trials trained it, its regression effect and Shapley value
    on `metric`, each with a 95% bootstrap interval, and its rank by Shapley value (1: best).

    Rows are the trials that did not fail and have `metric`, the baseline among them only
    `with_baseline`; NaN where fewer than two remain.
    """
    import numpy as np
    import pandas as pd

    rows = fitted_rows(trials, with_baseline).dropna(subset=[metric])
    flags, scores = design(rows, pool), rows[metric].astype(float).to_numpy()
    if len(rows) < 2:
        nothing = np.full(len(pool), math.nan)
        effect = shapley = nothing
        effect_ci = shapley_ci = (nothing, nothing)
    else:
        weights = shapley_weights(flags)
        effect = additive_effects(flags, scores)
        shapley = additive_effects(flags, scores, weights)
        rng = np.random.default_rng(seed)
        draws = rng.integers(0, len(rows), size=(samples, len(rows)))
        boot_effect = np.array([additive_effects(flags[d], scores[d]) for d in draws])
        boot_shapley = np.array([additive_effects(flags[d], scores[d], weights[d]) for d in draws])
        effect_ci = percentile_interval(boot_effect)
        shapley_ci = percentile_interval(boot_shapley)
    table = pd.DataFrame(
        {
            "task": list(pool),
            "trials_with": flags.sum(axis=0).astype(int) if len(rows) else 0,
            "effect": effect,
            "effect_low": effect_ci[0],
            "effect_high": effect_ci[1],
            "shapley": shapley,
            "shapley_low": shapley_ci[0],
            "shapley_high": shapley_ci[1],
        }
    )
    table["rank"] = table["shapley"].rank(ascending=False, method="min").fillna(0).astype(int)
    table = table.sort_values("rank", kind="stable").reset_index(drop=True)
    table.attrs["trials"] = len(rows)  # the trials both fits used
    return table


def fitted_rows(trials: pd.DataFrame, with_baseline: bool) -> pd.DataFrame:
    """The trials the fits use: those that did not fail, the baseline only `with_baseline`."""
    kept = trials["status"] != "errored"
    return trials[kept if with_baseline else kept & (trials["n_tasks"] > 0)]


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
    rows = fitted_rows(trials, with_baseline).dropna(subset=columns)
    if len(rows) < 2 or not columns:
        return pd.DataFrame(columns=["task", "target", "language", "family", "gain"])
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

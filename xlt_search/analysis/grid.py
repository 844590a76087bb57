"""A grid hyperparameter read value against value (`{grid: [...]}` in the spec): does robust
training, say, beat plain training on the same subsets?

Every value of a grid runs every configuration and seed, so each trial at a value has a twin at
the grid's first value (the reference, e.g. `none`) that differs in nothing else: the same
subset, seed and other hyperparameters. Per value and metric, the mean of the twins' differences
(value minus reference) over the completed pairs, with a Student-t 95% interval over the pairs,
and a verdict in words. Pairs at one subset size are not independent of the others' noise, and a
value that helps only some subsets shows as a wide interval: the per-metric rows (per target,
per language family, the mixed-language cells' mean) say where it helps.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from xlt_search.analysis import curves
from xlt_search.analysis.controls import paired_interval
from xlt_search.names import COMPLETED, MIXED

if TYPE_CHECKING:
    import pandas as pd

    from xlt_search.spec import SearchSpec

CSV_NAME = "grid.csv"
COLUMNS = (
    "hyperparameter",
    "value",
    "reference",
    "metric",
    "pairs",
    "reference_score",
    "value_score",
    "difference",
    "ci_low",
    "ci_high",
    "verdict",
)


def grid_table(spec: SearchSpec, trials: pd.DataFrame) -> pd.DataFrame:
    """Every grid hyperparameter's values against its first, on the average score, each target's,
    each family's and each mixed-language matrix's off-diagonal mean."""
    import pandas as pd

    grids = {n: d.values for n, d in spec.hyperparameters.items() if d.kind == "grid"}
    done = trials[trials["status"] == COMPLETED]
    rows = []
    for name, values in grids.items():
        if name not in done:
            continue
        others = [c for c in ("tasks", "seed", *spec.hyperparameters) if c != name and c in done]
        twins = done.assign(_twin=done[others].astype(str).agg("|".join, axis=1))
        reference = twins[twins[name].astype(str) == str(values[0])].set_index("_twin")
        off = [c for c in done.columns if isinstance(c, str) and c.startswith(f"{MIXED}.")]
        metrics = curves.curve_metrics(done) + sorted(c for c in off if c.endswith(".off_diagonal"))
        for value in values[1:]:
            at = twins[twins[name].astype(str) == str(value)].set_index("_twin")
            for metric in metrics:
                ours, theirs = at[metric].astype(float), reference[metric].astype(float)
                paired = (ours - theirs).dropna()
                low, high = paired_interval(paired)
                mean = float(paired.mean()) if len(paired) else math.nan
                rows.append(
                    (
                        name,
                        value,
                        values[0],
                        metric,
                        len(paired),
                        float(theirs[paired.index].mean()),
                        float(ours[paired.index].mean()),
                        mean,
                        low,
                        high,
                        verdict(value, values[0], mean, low, high),
                    )
                )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def verdict(value: object, reference: object, difference: float, low: float, high: float) -> str:
    """In words: does `value` beat `reference`?"""
    if math.isnan(difference):
        return "unknown: no pair completed"
    if math.isnan(low):
        return f"one pair: {value} {'above' if difference > 0 else 'at or below'} {reference}, no interval"
    if low > 0:
        return f"{value} beats {reference}"
    if high < 0:
        return f"{reference} beats {value}"
    return "cannot tell"


def section(table: pd.DataFrame) -> list[str]:
    """The summary's section (none without a grid hyperparameter)."""
    if table.empty:
        return []
    out = [
        "",
        "## Grid hyperparameters, value against value",
        "",
        "Each value's trials against their twins at the grid's first value (same subset, seed and "
        f"other hyperparameters): the mean difference with a 95% t-interval over the pairs (`{CSV_NAME}`).",
        "",
        "| hyperparameter | value - reference | metric | pairs | difference [95%] | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for r in table.itertuples():
        interval = "" if math.isnan(r.ci_low) else f" [{r.ci_low:+.4f}, {r.ci_high:+.4f}]"
        out.append(
            f"| {r.hyperparameter} | {r.value} - {r.reference} | {r.metric} | {r.pairs} | "
            f"{r.difference:+.4f}{interval} | {r.verdict} |"
        )
    return out

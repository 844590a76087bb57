"""The control trials of a search (`subsets.controls`) read against its baseline.

A control is the no-intermediate baseline trained on target data made uninformative in one known
way (`word_shuffle`: every text field's words shuffled). It is a reference, never a candidate:
`candidates` is what every analysis of subsets reads (the scaling curve, seed variance, task
contributions, the best configuration, the learning check), so a control never enters them. If
the shuffled baseline scores as well as the real one, the score comes from surface cues (which
words occur), not from what word order carries.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from xlt_search.names import COMPLETED, CONTROL_PARAM

if TYPE_CHECKING:
    import pandas as pd

CSV_NAME = "controls.csv"
CONFIDENCE = 0.95
COLUMNS = (
    "control",
    "metric",
    "baseline",
    "control_score",
    "difference",
    "ci_low",
    "ci_high",
    "seeds",
    "verdict",
)


def is_control(trials: pd.DataFrame) -> pd.Series:
    """Whether each trial of `trials` (`tracking.load_trials`'s table) is a control trial."""
    if CONTROL_PARAM not in trials:
        return trials["n_tasks"] != trials["n_tasks"]  # all False, on the table's index
    return trials[CONTROL_PARAM].fillna("").astype(str) != ""


def candidates(trials: pd.DataFrame) -> pd.DataFrame:
    """The trials that trained a candidate subset, or the baseline: every trial but controls."""
    return trials[~is_control(trials)]


def control_table(trials: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Each control against the baseline on each of `metrics` (`score`, `score.<target>`), over
    their completed trials: the means, the baseline's minus the control's, and a Student-t 95%
    interval of that difference over the seeds both completed (paired by seed: the same seed
    draws the same initial head and batch order), where two seeds or more allow one."""
    import pandas as pd

    done = trials[trials["status"] == COMPLETED]
    controls = done[is_control(done)]
    baseline = done[~is_control(done) & (done["n_tasks"] == 0)]
    rows = []
    for control, runs in controls.groupby(CONTROL_PARAM, sort=True) if len(controls) else ():
        for metric in metrics:
            ours = baseline.set_index("seed")[metric].astype(float).dropna()
            theirs = runs.set_index("seed")[metric].astype(float).dropna()
            paired = (ours - theirs).dropna()
            difference = float(ours.mean() - theirs.mean())
            low, high = paired_interval(paired)
            rows.append(
                {
                    "control": control,
                    "metric": metric,
                    "baseline": float(ours.mean()),
                    "control_score": float(theirs.mean()),
                    "difference": difference,
                    "ci_low": float(low),
                    "ci_high": float(high),
                    "seeds": len(paired),
                    "verdict": verdict(difference, low, high),
                }
            )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def paired_interval(differences: pd.Series) -> tuple[float, float]:
    """The Student-t 95% interval of the mean of paired differences; NaNs with fewer than two."""
    from scipy import stats

    if len(differences) < 2:
        return math.nan, math.nan
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, len(differences) - 1) * differences.std(ddof=1)
    half /= math.sqrt(len(differences))
    return float(differences.mean() - half), float(differences.mean() + half)


def verdict(difference: float, low: float, high: float) -> str:
    """In words: does the baseline beat the control?"""
    if math.isnan(difference):
        return "unknown: the baseline or the control did not complete"
    if math.isnan(low):
        side = "above" if difference > 0 else "at or below"
        return f"the baseline scores {side} the control (one seed: no interval; set seeds: 3)"
    if low > 0:
        return "the baseline beats the control"
    if high < 0:
        return "the control beats the baseline: the score comes from surface cues"
    return "the baseline does not beat the control: the score may come from surface cues"


def lines(table: pd.DataFrame) -> list[str]:
    """The conclusion's lines: each control's verdict on the average score."""
    return [
        f"control {row['control']}: baseline {row['baseline']:.4f}, control "
        f"{row['control_score']:.4f}, difference {row['difference']:+.4f}"
        + ("" if math.isnan(row["ci_low"]) else f" [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]")
        + f": {row['verdict']}"
        for _, row in table[table["metric"] == "score"].iterrows()
    ]


def section(table: pd.DataFrame) -> list[str]:
    """The summary's section on the controls (none when the search ran no control)."""
    if table.empty:
        return []
    out = [
        "## Controls",
        "",
        "Each control is the baseline (no intermediate task) trained on target data made "
        "uninformative in one way; `word_shuffle`: every text field's words shuffled within the "
        "field, labels kept, evaluation data untouched. A baseline that does not beat its "
        "word-shuffled control transfers through surface cues, not word order. *Difference*: "
        "the baseline's score minus the control's, with a 95% t-interval over the seeds both "
        f"completed, paired by seed (`{CSV_NAME}`).",
        "",
        "| control | score | baseline | control | difference [95%] | seeds | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for _, row in table.iterrows():
        interval = (
            "" if math.isnan(row["ci_low"]) else f" [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]"
        )
        out.append(
            f"| {row['control']} | {row['metric']} | {row['baseline']:.4f} | "
            f"{row['control_score']:.4f} | {row['difference']:+.4f}{interval} | {row['seeds']} | "
            f"{row['verdict']} |"
        )
    return [*out, ""]

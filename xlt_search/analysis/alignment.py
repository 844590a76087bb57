"""The alignment diagnostic against the score: does a trial whose encoder aligns a language better
with English (`align.<lang>`, trial/alignment.py) transfer better to it (`lang.<target>.<lang>`)?

One point per completed trial and language: its alignment after the map and its zero-shot score
in that language (the mean over the targets that have it). Per language family, Spearman's rank
correlation of the two over the family's points, with a 95% percentile interval from a bootstrap
over trials (a trial's languages drawn together). Later work finds alignment a poor predictor of
transfer: an interval that covers 0 is read as "no relation can be claimed", not as "none".
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from xlt_search.analysis.curves import percentile_interval
from xlt_search.names import ALIGN, COMPLETED

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

CSV_NAME = "alignment.csv"
PNG_NAME = "alignment.png"
MIN_POINTS = 6  # a rank correlation on fewer says nothing
BOOTSTRAP_SAMPLES = 1000
_ALIGN = re.compile(rf"^{ALIGN}\.([^.]+)$")


def alignment_points(trials: pd.DataFrame, families: Mapping[str, str]) -> pd.DataFrame:
    """`trial, language, family, alignment, score`: every completed trial's aligned languages."""
    import pandas as pd

    done = trials[trials["status"] == COMPLETED]
    points = []
    for column in [c for c in done.columns if isinstance(c, str) and _ALIGN.match(c)]:
        lang = _ALIGN.match(column).group(1)
        scores = [
            c for c in done.columns if isinstance(c, str) and re.match(rf"^lang\.[^.]+\.{lang}$", c)
        ]
        for trial, row in done.iterrows():
            score = row[scores].astype(float).mean() if scores else float("nan")
            if pd.notna(row[column]) and pd.notna(score):
                family = families.get(lang, "?")
                points.append((trial, lang, family, float(row[column]), float(score)))
    return pd.DataFrame(points, columns=["trial", "language", "family", "alignment", "score"])


def correlations(points: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Per family: `family, points, rho, rho_low, rho_high, reading`."""
    import numpy as np
    import pandas as pd

    rows = []
    for family, group in points.groupby("family", sort=True):
        if len(group) < MIN_POINTS or group["alignment"].nunique() < 2:
            rows.append(
                (family, len(group), np.nan, np.nan, np.nan, "not measured: too few points")
            )
            continue
        alignment, score = group["alignment"].to_numpy(), group["score"].to_numpy()
        rho = _spearman(alignment, score)
        members = [np.flatnonzero(group["trial"].to_numpy() == t) for t in group["trial"].unique()]
        rng = np.random.default_rng(seed)
        draws = []
        for pick in rng.integers(0, len(members), size=(BOOTSTRAP_SAMPLES, len(members))):
            rows_drawn = np.concatenate([members[m] for m in pick])
            draws.append(_spearman(alignment[rows_drawn], score[rows_drawn]))
        (low,), (high,) = percentile_interval(np.array(draws)[:, None])
        reading = (
            "better aligned, better transfer"
            if low > 0
            else "better aligned, worse transfer"
            if high < 0
            else "no relation can be claimed"
        )
        rows.append((family, len(group), rho, low, high, reading))
    return pd.DataFrame(rows, columns=["family", "points", "rho", "rho_low", "rho_high", "reading"])


def _spearman(alignment: np.ndarray, score: np.ndarray) -> float:
    """Spearman's rho; 0 where a side is constant (no ranking to relate)."""
    from scipy import stats

    if len(set(alignment)) < 2 or len(set(score)) < 2:
        return 0.0
    return float(stats.spearmanr(alignment, score).statistic)


def write_alignment(
    trials: pd.DataFrame, families: Mapping[str, str], out_dir: Path, seed: int = 0
) -> tuple[list[Path], list[str]]:
    """`alignment.csv` (the correlations), `alignment.png` (the points by family) and the
    summary's section; nothing when no trial measured alignment."""
    points = alignment_points(trials, families)
    if points.empty:
        return [], []
    table = correlations(points, seed)
    files = [out_dir / CSV_NAME, out_dir / PNG_NAME]
    table.to_csv(files[0], index=False)
    _plot(points, files[1])
    lines = ["", "## Alignment against transfer", ""]
    lines += [
        f"- {r.family}: {r.reading}"
        + (
            ""
            if r.rho != r.rho
            else f", Spearman {r.rho:+.2f} [{r.rho_low:+.2f}, {r.rho_high:+.2f}]"
        )
        + f" over {r.points} trial-languages"
        for r in table.itertuples()
    ]
    return files, lines


def _plot(points: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4.5))
    for family, group in points.groupby("family", sort=True):
        axes.scatter(group["alignment"], group["score"], label=family, alpha=0.7)
    axes.set(xlabel="alignment with English (retrieval after the map)", ylabel="zero-shot score")
    axes.legend(title="family")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)

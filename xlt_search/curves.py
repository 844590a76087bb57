"""The scaling curve: zero-shot score against the number of intermediate tasks; table, CSV, PNG.

Statistics use the completed trials only (those that ran their whole budget); trials that ASHA
stopped early, or that failed, are counted beside them, so early stopping never biases the curve
silently.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

CURVE_COLUMNS = ("n_tasks", "trials", "completed", "best", "mean", "std")
CSV_NAME = "scaling_curve.csv"
PNG_NAME = "scaling_curve.png"


def scaling_curve(trials: pd.DataFrame, sizes: Iterable[int] | None = None) -> pd.DataFrame:
    """One row per subset size: trials, completed trials, and best / mean / std of their scores.

    `trials` needs the columns n_tasks, status and score (as `tracking.load_trials` gives them); the
    score of a trial is its last reported one. Rows cover `sizes`, or else every size that has a
    trial. `std` is the sample standard deviation; a size with no completed trial gets NaN
    statistics, and one with a single completed trial a NaN `std`.
    """
    import pandas as pd

    missing = [c for c in ("n_tasks", "status", "score") if c not in trials.columns]
    if missing:
        raise ValueError(f"the trials table lacks the column(s) {', '.join(missing)}")
    n_tasks = trials["n_tasks"].astype(int)
    wanted = sorted(set(sizes)) if sizes is not None else sorted(set(n_tasks))
    rows = []
    for k in wanted:
        of_size = trials[n_tasks == k]
        scores = of_size.loc[of_size["status"] == "completed", "score"].astype(float).dropna()
        rows.append(
            {
                "n_tasks": k,
                "trials": len(of_size),
                "completed": len(scores),
                "best": scores.max() if len(scores) else math.nan,
                "mean": scores.mean() if len(scores) else math.nan,
                "std": scores.std(ddof=1) if len(scores) > 1 else math.nan,
            }
        )
    table = pd.DataFrame(rows, columns=list(CURVE_COLUMNS))
    return table.astype(
        {
            "n_tasks": int,
            "trials": int,
            "completed": int,
            "best": float,
            "mean": float,
            "std": float,
        }
    )


def format_table(curve: pd.DataFrame) -> str:
    """The curve as aligned text columns, scores to 4 decimals, '-' where there is no value."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            return "-" if math.isnan(value) else f"{value:.4f}"
        return str(value)

    header = list(CURVE_COLUMNS)
    body = [[cell(row[c]) for c in header] for row in curve[header].to_dict("records")]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    return "\n".join(
        "  ".join(text.rjust(width) for text, width in zip(line, widths, strict=True))
        for line in [header, *body]
    )


def write_curve(curve: pd.DataFrame, out_dir: Path, title: str) -> tuple[Path, Path]:
    """Write `scaling_curve.csv` (the table's columns) and `scaling_curve.png` into `out_dir`.

    The plot shows, against the number of intermediate tasks, the best completed trial's score and
    the mean +- std over completed trials; under each size, completed / all trials.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = out_dir / CSV_NAME, out_dir / PNG_NAME
    curve[list(CURVE_COLUMNS)].to_csv(csv_path, index=False)

    # An explicit Agg canvas, not pyplot: no global backend is switched, no window opens.
    figure = Figure(figsize=(7.0, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    sizes = curve["n_tasks"].tolist()
    axes.errorbar(
        sizes,
        curve["mean"],
        yerr=curve["std"].fillna(0.0),
        fmt="o-",
        capsize=4,
        label="mean ± std over completed trials",
    )
    axes.plot(sizes, curve["best"], "s--", label="best completed trial")
    axes.set_xticks(
        sizes,
        [
            f"{k}\n{c}/{t}"
            for k, c, t in zip(sizes, curve["completed"], curve["trials"], strict=True)
        ],
    )
    axes.set_xlabel("intermediate tasks in the subset (count); below: completed / trials")
    axes.set_ylabel("zero-shot score (0-1, mean over non-English languages)")
    axes.set_title(f"{title}: score against number of intermediate tasks")
    axes.grid(alpha=0.3)
    if curve["completed"].sum() == 0:
        axes.text(0.5, 0.5, "no completed trials", transform=axes.transAxes, ha="center")
    else:
        axes.legend(loc="best")
    figure.savefig(png_path, dpi=120)
    return csv_path, png_path

"""Scaling curves: a score against the number of intermediate tasks, with bootstrap intervals.

Statistics use the completed trials only (those that ran their whole budget); trials that ASHA
stopped early, or that failed, are counted beside them (and drawn apart), so early stopping never
biases a curve silently. Size 0 is the no-intermediate baseline, the reference every search runs.

A configuration is a subset with its hyperparameters; with several seeds per configuration, a
size's interval comes from a two-level bootstrap: configurations drawn with replacement, then each
drawn configuration's seeds drawn with replacement.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from xlt_search.analysis.controls import candidates
from xlt_search.names import COMPLETED, EARLY_STOPPED

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

CURVE_COLUMNS = (
    "curve",
    "n_tasks",
    "trials",
    "completed",
    "early_stopped",
    "best",
    "mean",
    "std",
    "ci_low",
    "ci_high",
    "gain",
)
CSV_NAME = "scaling_curve.csv"
PNG_NAME = "scaling_curve.png"
CONFIDENCE = 0.95
BOOTSTRAP_SAMPLES = 2000


def curve_metrics(trials: pd.DataFrame) -> list[str]:
    """The scores a search has curves for: `score` (the average), then `score.<target>` for each
    target and `family.<family>` for each language family, as the trials reported them."""
    columns = [c for c in trials.columns if isinstance(c, str)]
    targets = sorted(c for c in columns if c.startswith("score."))
    families = sorted(c for c in columns if c.startswith("family."))
    return ["score", *targets, *families]


def configuration_keys(trials: pd.DataFrame) -> pd.Series:
    """One label per trial naming its configuration: the subset and every hyperparameter that
    was logged, but not the seed. Trials that share a label are seeds of one configuration."""
    from xlt_search.spec import HYPERPARAMETERS

    hyper = [name for name in HYPERPARAMETERS if name in trials.columns]
    return trials.apply(
        lambda row: "|".join([str(row["tasks"]), *(f"{h}={row[h]}" for h in hyper)]), axis=1
    )


def scaling_curve(
    trials: pd.DataFrame,
    sizes: Iterable[int] | None = None,
    metric: str = "score",
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per subset size for `metric`: trials, completed and early-stopped trials, and the
    best, mean, std and bootstrap interval of the completed trials' scores.

    `trials` needs the columns tasks, n_tasks, status and `metric` (as `tracking.load_trials`
    gives them; a trial's score is its last reported one). Rows cover size 0 when the search ran
    the baseline, then `sizes`, or else every size that has a trial. `best` is the best
    configuration's mean over its seeds; `std` the sample standard deviation over completed
    trials; `gain` the mean minus the baseline's mean. A size with no completed trial gets NaN
    statistics; an interval needs two completed trials.
    """
    import numpy as np
    import pandas as pd

    missing = [c for c in ("tasks", "n_tasks", "status", metric) if c not in trials.columns]
    if missing:
        raise ValueError(f"the trials table lacks the column(s) {', '.join(missing)}")
    trials = candidates(trials)  # a control is no point of the curve, not even its baseline
    n_tasks = trials["n_tasks"].astype(int)
    wanted = sorted(set(sizes)) if sizes is not None else sorted(set(n_tasks) - {0})
    if (n_tasks == 0).any():
        wanted = [0, *(k for k in wanted if k != 0)]
    configurations = configuration_keys(trials) if len(trials) else pd.Series(dtype=str)
    rng = np.random.default_rng(seed)
    rows = []
    for k in wanted:
        of_size = trials[n_tasks == k]
        done = (of_size["status"] == COMPLETED) & of_size[metric].notna()
        scores = of_size.loc[done, metric].astype(float)
        groups = [g.to_numpy() for _, g in scores.groupby(configurations[scores.index])]
        low, high = _bootstrap_interval(groups, samples, rng)
        rows.append(
            {
                "curve": metric,
                "n_tasks": k,
                "trials": len(of_size),
                "completed": len(scores),
                "early_stopped": int((of_size["status"] == EARLY_STOPPED).sum()),
                "best": max((g.mean() for g in groups), default=math.nan),
                "mean": scores.mean() if len(scores) else math.nan,
                "std": scores.std(ddof=1) if len(scores) > 1 else math.nan,
                "ci_low": low,
                "ci_high": high,
            }
        )
    table = pd.DataFrame(rows, columns=list(CURVE_COLUMNS[:-1]))
    baseline = table.loc[table["n_tasks"] == 0, "mean"]
    table["gain"] = table["mean"] - (baseline.iloc[0] if len(baseline) else math.nan)
    return table.astype(
        {
            "curve": str,
            "n_tasks": int,
            "trials": int,
            "completed": int,
            "early_stopped": int,
            **dict.fromkeys(("best", "mean", "std", "ci_low", "ci_high", "gain"), float),
        }
    )


def scaling_curves(
    trials: pd.DataFrame, sizes: Iterable[int] | None = None, seed: int = 0
) -> pd.DataFrame:
    """`scaling_curve` for every metric of `curve_metrics`, stacked (the `curve` column)."""
    import pandas as pd

    sizes = list(sizes) if sizes is not None else None
    return pd.concat(
        [scaling_curve(trials, sizes, metric, seed=seed) for metric in curve_metrics(trials)],
        ignore_index=True,
    )


def seed_variance(trials: pd.DataFrame, metric: str = "score") -> pd.DataFrame:
    """The configurations that completed with two seeds or more: their size, seeds, and the mean
    and sample std of `metric` over those seeds."""
    import pandas as pd

    columns = ["configuration", "tasks", "n_tasks", "seeds", "mean", "std"]
    trials = candidates(trials)
    done = trials[(trials["status"] == COMPLETED) & trials[metric].notna()]
    if done.empty:
        return pd.DataFrame(columns=columns)
    grouped = done.assign(configuration=configuration_keys(done)).groupby("configuration")
    table = grouped.agg(
        tasks=("tasks", "first"),
        n_tasks=("n_tasks", "first"),
        seeds=(metric, "size"),
        mean=(metric, "mean"),
        std=(metric, "std"),
    ).reset_index()
    return table.loc[table["seeds"] > 1, columns].reset_index(drop=True)


def pooled_seed_std(variance: pd.DataFrame) -> float:
    """The seed-to-seed standard deviation pooled over configurations (NaN with none)."""
    if variance.empty:
        return math.nan
    degrees = variance["seeds"] - 1
    return float(math.sqrt((degrees * variance["std"] ** 2).sum() / degrees.sum()))


def beyond_seed_noise(curve: pd.DataFrame, seed_std: float) -> pd.Series:
    """For each size of `curve`, whether its gain over the baseline is larger than seed noise:
    more than twice its standard error, `seed_std * sqrt(1/n + 1/n_baseline)` over the completed
    trials. False where either side has no completed trial or `seed_std` is unknown."""
    import pandas as pd

    baseline = curve.loc[curve["n_tasks"] == 0, "completed"]
    if not len(baseline) or baseline.iloc[0] == 0 or math.isnan(seed_std):
        return pd.Series(False, index=curve.index)
    error = seed_std * ((1 / curve["completed"].clip(lower=1)) + 1 / baseline.iloc[0]) ** 0.5
    return (curve["gain"].abs() > 2 * error) & (curve["completed"] > 0) & (curve["n_tasks"] > 0)


def _bootstrap_interval(
    groups: Sequence[np.ndarray], samples: int, rng: np.random.Generator
) -> tuple[float, float]:
    """The percentile interval of the mean under the two-level bootstrap (configurations, then
    seeds within each); NaN with fewer than two values."""
    import numpy as np

    if sum(len(g) for g in groups) < 2:
        return math.nan, math.nan
    most = max(len(g) for g in groups)
    values = np.full((len(groups), most), np.nan)
    for i, group in enumerate(groups):
        values[i, : len(group)] = group
    counts = np.array([len(g) for g in groups])
    picked = rng.integers(0, len(groups), size=(samples, len(groups)))
    seats = np.arange(most)
    within = np.floor(rng.random((samples, len(groups), most)) * counts[picked][..., None])
    drawn = values[picked[..., None], within.astype(int)]
    used = seats < counts[picked][..., None]  # a configuration contributes its own seed count
    means = np.where(used, drawn, 0.0).sum(axis=(1, 2)) / used.sum(axis=(1, 2))
    low, high = percentile_interval(means)
    return float(low), float(high)


def percentile_interval(draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The CONFIDENCE percentile interval of bootstrap `draws` (one draw per row)."""
    import numpy as np

    tail = (1 - CONFIDENCE) / 2
    low, high = np.quantile(draws, [tail, 1 - tail], axis=0)
    return low, high


def format_table(curve: pd.DataFrame) -> str:
    """A curve as aligned text columns, scores to 4 decimals, '-' where there is no value."""
    header = [c for c in CURVE_COLUMNS if c != "curve"]

    def cell(value: object) -> str:
        if isinstance(value, float):
            return "-" if math.isnan(value) else f"{value:.4f}"
        return str(value)

    body = [[cell(row[c]) for c in header] for row in curve[header].to_dict("records")]
    body = [["0 (baseline)" if row[0] == "0" else row[0], *row[1:]] for row in body]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    return "\n".join(
        "  ".join(text.rjust(width) for text, width in zip(line, widths, strict=True))
        for line in [header, *body]
    )


def write_curves(
    curves: pd.DataFrame,
    trials: pd.DataFrame,
    out_dir: Path,
    title: str,
    stem: str = "scaling_curve",
    what: str = "zero-shot score (non-English mean)",
) -> tuple[Path, Path]:
    """Write `<stem>.csv` (every curve, long) and `<stem>.png` (one panel per curve) into
    `out_dir`; `what` names the curves' values (the panels' y axis).

    Each panel shows, against the number of intermediate tasks, the mean of the completed trials
    with its interval, the best configuration, the baseline as a horizontal line with its
    interval as a band, and the early-stopped trials apart, as crosses at their last score.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = out_dir / f"{stem}.csv", out_dir / f"{stem}.png"
    curves[list(CURVE_COLUMNS)].to_csv(csv_path, index=False)

    names = list(dict.fromkeys(curves["curve"]))
    columns = min(3, len(names))
    rows = math.ceil(len(names) / columns)
    # An explicit Agg canvas, not pyplot: no global backend is switched, no window opens.
    figure = Figure(figsize=(5.2 * columns, 3.9 * rows), layout="constrained")
    FigureCanvasAgg(figure)
    for index, name in enumerate(names):
        axes = figure.add_subplot(rows, columns, index + 1)
        _draw_curve(axes, curves[curves["curve"] == name], trials, name, what)
        if index == 0:
            axes.legend(loc="best", fontsize="small")
    figure.suptitle(f"{title}: {what.split(' (')[0]} against the number of intermediate tasks")
    figure.savefig(png_path, dpi=110)
    return csv_path, png_path


def _draw_curve(
    axes: object, curve: pd.DataFrame, trials: pd.DataFrame, metric: str, what: str
) -> None:
    sized = curve[curve["n_tasks"] > 0]
    baseline = curve[curve["n_tasks"] == 0]
    sizes = sized["n_tasks"].tolist()
    if len(baseline) and not math.isnan(baseline["mean"].iloc[0]):
        row = baseline.iloc[0]
        axes.axhline(row["mean"], color="grey", linestyle=":", label="no intermediate task")
        if not math.isnan(row["ci_low"]):
            axes.axhspan(row["ci_low"], row["ci_high"], color="grey", alpha=0.15)
    low = (sized["mean"] - sized["ci_low"]).fillna(0.0).clip(lower=0.0)
    high = (sized["ci_high"] - sized["mean"]).fillna(0.0).clip(lower=0.0)
    axes.errorbar(
        sizes, sized["mean"], yerr=[low, high], fmt="o-", capsize=3, label="mean, 95% interval"
    )
    axes.plot(sizes, sized["best"], "s--", label="best configuration")
    if metric in trials.columns:
        cut = trials[(trials["status"] == EARLY_STOPPED) & (trials["n_tasks"] > 0)]
        axes.plot(
            cut["n_tasks"] + 0.15,
            cut[metric],
            "x",
            color="tab:red",
            alpha=0.6,
            label="early-stopped (last score)",
        )
    axes.set_xticks(
        sizes,
        [
            f"{k}\n{c}/{t}"
            for k, c, t in zip(sizes, sized["completed"], sized["trials"], strict=True)
        ],
    )
    axes.set_xlabel("intermediate tasks; below: completed / trials")
    axes.set_ylabel(what)
    axes.set_title(metric)
    axes.grid(alpha=0.3)
    if sized["completed"].sum() == 0:
        axes.text(0.5, 0.5, "no completed trials", transform=axes.transAxes, ha="center")

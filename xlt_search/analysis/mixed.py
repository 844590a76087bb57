"""Mixed-language matrices: for each target with mixed languages (`data.mixing`), the score of
every cell l1-l2 (the instance's first part in l1, its second in l2) for the best configuration
and for the baseline, the gap between same-language and mixed instances, and the gap against the
number of intermediate tasks.

A matrix's **gap** is its diagonal mean minus its off-diagonal mean: how much better the model
does when both parts of an instance are in one language. Over a whole square matrix it equals the
mean over language pairs {a, b} of (a-a + b-b) / 2 - (a-b + b-a) / 2, so a language that is hard
in either part raises and lowers both sides alike and leaves the gap alone. Per language family F,
the report also compares the diagonal with the mixed cells *with* a language of F and with those
*without* one: which languages' mixes cost the most.

Intervals: a cell's score on n instances has the binomial variance p (1 - p) / n (for F1 metrics
an approximation); a gap is a difference of cell means, its 95% interval +-1.96 standard errors
with the cells taken as independent. A gap whose interval holds 0 is reported as "cannot tell".
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xlt_search.analysis import curves
from xlt_search.data.mixing import TAG, describe
from xlt_search.names import COMPLETED, mixed_metric

if TYPE_CHECKING:
    import pandas as pd

    from xlt_search.analysis.best import BestConfiguration
    from xlt_search.spec import SearchSpec

MATRIX_NAME = "mixed_matrix.csv"
GAPS_NAME = "mixed_gaps.csv"
CURVE_STEM = "mixed_gap_curve"
GAPS_COLUMNS = (
    "target",
    "configuration",
    "group",
    "cells",
    "diagonal",
    "mixed",
    "gap",
    "ci_low",
    "ci_high",
    "verdict",
)
Z95 = 1.96


def mixed_targets(spec: SearchSpec) -> dict[str, tuple[str, ...]]:
    """The spec's targets with mixed languages, and those languages."""
    return {t.task: t.mixed_languages for t in spec.targets if t.mixed_languages}


def matrix(row: Mapping[str, Any], target: str, languages: Sequence[str]) -> pd.DataFrame:
    """One trial's matrix (rows: the first part's language, columns: the second's); NaN where
    the trial logged no cell (it did not reach its final report)."""
    import pandas as pd

    return pd.DataFrame(
        [
            [float(row.get(mixed_metric(target, f"{a}-{b}"), math.nan)) for b in languages]
            for a in languages
        ],
        index=list(languages),
        columns=list(languages),
    )


def gaps(grid: pd.DataFrame, families: Mapping[str, str], examples: int) -> list[dict[str, Any]]:
    """The gap of a matrix over all its mixed cells, then with and without each family's
    languages, each with its interval (`examples`: the instances every cell holds)."""
    languages = list(grid.index)
    diagonal = [(a, a) for a in languages]
    mixed = [(a, b) for a in languages for b in languages if a != b]
    groups = [("all", mixed)]
    for family in sorted({families[code] for code in languages}):
        inside = [cell for cell in mixed if family in (families[cell[0]], families[cell[1]])]
        outside = [cell for cell in mixed if cell not in inside]
        if inside and outside:
            groups += [(f"with {family}", inside), (f"without {family}", outside)]
    return [_gap(grid, diagonal, cells, examples) | {"group": name} for name, cells in groups]


def _gap(
    grid: pd.DataFrame,
    diagonal: list[tuple[str, str]],
    cells: list[tuple[str, str]],
    examples: int,
) -> dict[str, Any]:
    def mean_and_variance(of: list[tuple[str, str]]) -> tuple[float, float]:
        values = [float(grid.loc[a, b]) for a, b in of]
        variance = sum(p * (1 - p) / max(examples, 1) for p in values) / len(values) ** 2
        return sum(values) / len(values), variance

    same, same_var = mean_and_variance(diagonal)
    other, other_var = mean_and_variance(cells)
    gap, error = same - other, math.sqrt(same_var + other_var)
    low, high = gap - Z95 * error, gap + Z95 * error
    verdict = "cannot tell" if math.isnan(gap) or low <= 0 <= high else "same language better"
    if high < 0:
        verdict = "mixed better"
    return {
        "cells": len(cells),
        "diagonal": same,
        "mixed": other,
        "gap": gap,
        "ci_low": low,
        "ci_high": high,
        "verdict": verdict,
    }


def write_mixed(
    spec: SearchSpec,
    trials: pd.DataFrame,
    best: BestConfiguration | None,
    tags: Mapping[str, str],
    out_dir: Path,
) -> tuple[list[Path], list[str]]:
    """Write the matrices (CSV, one heatmap per target), their gaps (CSV) and the gap curves into
    `out_dir`; returns the files and the summary's section (none when no target mixes)."""
    import pandas as pd

    targets = mixed_targets(spec)
    if not targets:
        return [], []
    counts = json.loads(tags.get(TAG) or "{}")
    families = {code: language.family for code, language in spec.known_languages.items()}
    rows = _configurations(trials, best)
    cells, gap_rows, files = [], [], []
    for target, languages in targets.items():
        examples = int(counts.get(target, {}).get("kept", 0))
        grids = {name: matrix(row, target, languages) for name, row in rows.items()}
        for name, grid in grids.items():
            cells += [
                {"target": target, "configuration": name, "first": a, "second": b, "score": v}
                for a, values in grid.iterrows()
                for b, v in values.items()
            ]
            if not grid.isna().to_numpy().any():
                gap_rows += [
                    {"target": target, "configuration": name} | gap
                    for gap in gaps(grid, families, examples)
                ]
        files.append(_heatmap(grids, out_dir / f"mixed_{target}.png", f"{spec.name}: {target}"))
    files.insert(0, out_dir / MATRIX_NAME)
    pd.DataFrame(cells, columns=["target", "configuration", "first", "second", "score"]).to_csv(
        files[0], index=False
    )
    table = pd.DataFrame(gap_rows, columns=list(GAPS_COLUMNS))
    files.insert(1, out_dir / GAPS_NAME)
    table.to_csv(files[1], index=False)
    gap_metrics = [mixed_metric(target, "gap") for target in targets]
    if all(metric in trials.columns for metric in gap_metrics):
        curve = pd.concat(
            [curves.scaling_curve(trials, spec.sizes, m, seed=spec.seed) for m in gap_metrics],
            ignore_index=True,
        )
        what = "gap: diagonal - off-diagonal mean"
        files += curves.write_curves(curve, trials, out_dir, spec.name, CURVE_STEM, what)
    return files, _markdown(counts, targets, table)


def _configurations(trials: pd.DataFrame, best: BestConfiguration | None) -> dict[str, Any]:
    """The trial rows whose matrices are drawn: the best configuration's best seed, the baseline."""
    rows: dict[str, Any] = {}
    if best is not None:
        rows["best"] = trials[trials["run_id"] == best.run_id].iloc[0].to_dict()
    baseline = trials[(trials["n_tasks"] == 0) & (trials["status"] == COMPLETED)]
    if len(baseline):
        rows["baseline"] = baseline.iloc[0].to_dict()
    return rows


def _heatmap(grids: Mapping[str, pd.DataFrame], path: Path, title: str) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    size = max((len(grid) for grid in grids.values()), default=2)
    figure = Figure(
        figsize=(1.6 + 4.2 * max(1, len(grids)), 1.8 + 0.55 * size), layout="constrained"
    )
    FigureCanvasAgg(figure)
    for index, (name, grid) in enumerate(grids.items()):
        axes = figure.add_subplot(1, len(grids), index + 1)
        image = axes.imshow(grid.to_numpy(), cmap="viridis", vmin=0.0, vmax=1.0)
        axes.set_xticks(range(len(grid.columns)), grid.columns)
        axes.set_yticks(range(len(grid.index)), grid.index)
        axes.set_xlabel("second part's language")
        axes.set_ylabel("first part's language")
        for (row, column), value in zip(
            ((r, c) for r in range(grid.shape[0]) for c in range(grid.shape[1])),
            grid.to_numpy().ravel(),
            strict=True,
        ):
            text = "-" if math.isnan(value) else f"{value:.2f}"
            axes.text(column, row, text, ha="center", va="center", fontsize=7, color="white")
        axes.set_title(name)
        figure.colorbar(image, ax=axes, shrink=0.8)
    if not grids:
        figure.text(0.5, 0.5, "no completed trial", ha="center")
    figure.suptitle(f"{title}: score with the first part in one language, the second in another")
    figure.savefig(path, dpi=110)
    return path


def _markdown(
    counts: Mapping[str, Any], targets: Mapping[str, Sequence[str]], table: pd.DataFrame
) -> list[str]:
    lines = [
        "",
        "## Mixed-language instances",
        "",
        "Each target's instances with their first part in one language and their second in "
        f"another: `{MATRIX_NAME}`, `mixed_<target>.png`, `{GAPS_NAME}`, `{CURVE_STEM}.png`. "
        "The gap is the diagonal mean minus the mean of the mixed cells (95% interval, binomial).",
        "",
    ]
    lines += [f"- {describe(t, counts[t])}" for t in targets if t in counts]
    lines += ["", "| target | configuration | cells | diagonal | mixed | gap [95%] | verdict |"]
    lines.append("|---|---|---|---|---|---|---|")
    for row in table.to_dict("records"):
        lines.append(
            f"| {row['target']} | {row['configuration']} | {row['group']} ({row['cells']}) | "
            f"{row['diagonal']:.4f} | {row['mixed']:.4f} | {row['gap']:+.4f} "
            f"[{row['ci_low']:+.4f}, {row['ci_high']:+.4f}] | {row['verdict']} |"
        )
    return lines

"""Whether a search's answer holds across its targets and its seeds.

Three tables, each with the reason it was not measured where the trials cannot tell:

- **rank agreement across targets**: for every pair of targets, Kendall's tau-b
  (`scipy.stats.kendalltau`) between the configurations' scores on the two (`score.<target>`, a
  configuration's mean over its completed seeds);
- **rank agreement across seeds**: for every pair of training seeds, tau between the
  configurations' overall `score` under each, and the mean over the pairs;
- **which tasks help every target**: each pool task's effect on each target
  (`contributions.task_contributions` on `score.<target>`) and a class from the effects' 95%
  intervals: `every` (above zero on every target), `some` (above on some, below on none), `mixed`,
  `hurts some`, `hurts every`, `none` (no interval excludes zero), `cannot tell`.

A configuration is a subset with its hyperparameters (`curves.configuration_keys`); agreement reads
completed trials only. Intervals are percentile intervals of a bootstrap over configurations: one
draw of the configurations serves every pair, so the mean over seed pairs has its own interval.
"""

from __future__ import annotations

import itertools
import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from xlt_search.analysis.contributions import task_contributions
from xlt_search.analysis.curves import configuration_keys, percentile_interval
from xlt_search.names import COMPLETED, SCORE

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

TARGET_AGREEMENT_NAME = "target_agreement.csv"
SEED_AGREEMENT_NAME = "seed_agreement.csv"
TASK_TARGETS_NAME = "task_targets.csv"
AGREEMENT_PNG = "rank_agreement.png"
BOOTSTRAP_SAMPLES = 1000
MIN_CONFIGURATIONS = 6  # below this a tau rests on fewer than 15 pairs of configurations
AGREEMENT_COLUMNS = ("a", "b", "configurations", "tau", "tau_low", "tau_high", "agreement")
TASK_COLUMNS = ("task", "target", "effect", "effect_low", "effect_high", "interval", "class")


@dataclass(frozen=True)
class Robustness:
    """The three tables, and for each the reason it was not measured (None: it was)."""

    targets: pd.DataFrame  # one row per pair of targets: AGREEMENT_COLUMNS (a, b: targets)
    seeds: pd.DataFrame  # one row per pair of seeds, then the mean over pairs (a: "mean")
    tasks: pd.DataFrame  # one row per task and target: TASK_COLUMNS
    targets_why_not: str | None
    seeds_why_not: str | None
    tasks_why_not: str | None


def measure(
    trials: pd.DataFrame,
    read: pd.DataFrame,
    pool: Sequence[str],
    with_baseline: bool = True,
    nothing_learned: bool = False,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> Robustness:
    """The three tables of a search: agreement from `trials` (final scores, completed trials),
    the tasks' effects per target from `read` (the trials as the contributions read them), the
    baseline among them only `with_baseline`. A search that learned nothing is not measured."""
    targets = sorted(c for c in trials.columns if isinstance(c, str) and c.startswith("score."))
    if nothing_learned:
        why = "nothing was learned (above), so there are no ranks to compare"
        empty = (_empty(AGREEMENT_COLUMNS), _empty(AGREEMENT_COLUMNS), _empty(TASK_COLUMNS))
        return Robustness(*empty, why, why, why)
    by_target, targets_why_not = target_agreement(trials, targets, samples, seed)
    by_seed, seeds_why_not = seed_agreement(trials, samples, seed)
    tasks, tasks_why_not = task_targets(read, pool, targets, with_baseline, samples, seed)
    return Robustness(by_target, by_seed, tasks, targets_why_not, seeds_why_not, tasks_why_not)


def target_agreement(
    trials: pd.DataFrame, targets: Sequence[str], samples: int = BOOTSTRAP_SAMPLES, seed: int = 0
) -> tuple[pd.DataFrame, str | None]:
    """Tau between every pair of `targets` (their `score.<target>` columns) over the completed
    configurations, and why it was not measured (None: it was)."""
    if len(targets) < 2:
        named = f" ({targets[0].removeprefix('score.')})" if targets else ""
        return _empty(AGREEMENT_COLUMNS), (
            f"the search has one target{named}; agreement across targets needs two or more"
        )
    done = _completed(trials)
    scores = done[list(targets)].astype(float).groupby(configuration_keys(done)).mean()
    scores.columns = [c.removeprefix("score.") for c in scores.columns]
    table = _pairwise(scores, samples, seed, with_mean=False)
    return table, _too_few(table)


def seed_agreement(
    trials: pd.DataFrame, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0
) -> tuple[pd.DataFrame, str | None]:
    """Tau of the overall score between every pair of training seeds over the configurations
    that completed with both, then their mean; and why it was not measured (None: it was)."""
    done = _completed(trials)
    seeds = sorted(set(done["seed"].dropna())) if "seed" in done else []
    if len(seeds) < 2:
        return _empty(AGREEMENT_COLUMNS), (
            "every configuration ran with one seed; agreement across seeds needs `seeds: 2` "
            "or more in the spec"
        )
    scores = done.pivot_table(
        index=configuration_keys(done), columns="seed", values=SCORE, aggfunc="mean"
    )
    scores.columns = [str(int(s)) if float(s).is_integer() else str(s) for s in scores.columns]
    table = _pairwise(scores[scores.notna().sum(axis=1) >= 2], samples, seed, with_mean=True)
    return table, _too_few(table)


def task_targets(
    read: pd.DataFrame,
    pool: Sequence[str],
    targets: Sequence[str],
    with_baseline: bool = True,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> tuple[pd.DataFrame, str | None]:
    """Each pool task's effect on each of `targets` with its 95% interval, and its class over
    the targets; and why the classes were not given (None: they were)."""
    import pandas as pd

    if len(targets) < 2:
        return _empty(TASK_COLUMNS), (
            "the search has one target, so which tasks help every target cannot be asked; "
            "its task contributions are above"
        )
    tables = []
    for target in targets:
        found = task_contributions(
            read, pool, metric=target, with_baseline=with_baseline, samples=samples, seed=seed
        )
        name = target.removeprefix("score.")
        if found.attrs["refused"]:
            why = f"no effect on {name} was estimated: {found.attrs['refused']}"
            return _empty(TASK_COLUMNS), why
        tables.append(found.assign(target=name))
    table = pd.concat(tables, ignore_index=True)
    classes = {
        task: classify(rows["effect_low"].tolist(), rows["effect_high"].tolist())
        for task, rows in table.groupby("task")
    }
    table["class"] = table["task"].map(classes)
    table["task"] = pd.Categorical(table["task"], categories=list(pool), ordered=True)
    table = table.sort_values(["task", "target"]).reset_index(drop=True)
    table["task"] = table["task"].astype(str)
    return table[list(TASK_COLUMNS)], None


def classify(lows: Sequence[float], highs: Sequence[float]) -> str:
    """A task's class over the targets from its effects' interval bounds, one pair per target."""
    if any(math.isnan(b) for b in (*lows, *highs)):
        return "cannot tell"
    helps = sum(low > 0 for low in lows)
    hurts = sum(high < 0 for high in highs)
    if helps == len(lows):
        return "every"
    if hurts == len(highs):
        return "hurts every"
    if helps and hurts:
        return "mixed"
    return "some" if helps else "hurts some" if hurts else "none"


def write(found: Robustness, out_dir: Path, title: str) -> tuple[Path, ...]:
    """Write the three CSVs and the tau matrices (`rank_agreement.png`) into `out_dir`."""
    out_dir = Path(out_dir)
    targets = found.targets.rename(columns={"a": "target_a", "b": "target_b"})
    seeds = found.seeds.rename(columns={"a": "seed_a", "b": "seed_b"})
    paths = (
        out_dir / TARGET_AGREEMENT_NAME,
        out_dir / SEED_AGREEMENT_NAME,
        out_dir / TASK_TARGETS_NAME,
    )
    for table, path in zip((targets, seeds, found.tasks), paths, strict=True):
        table.to_csv(path, index=False)
    return (*paths, _plot(found, out_dir / AGREEMENT_PNG, title))


def _completed(trials: pd.DataFrame) -> pd.DataFrame:
    return trials[(trials["status"] == COMPLETED) & trials[SCORE].notna()]


def _empty(columns: Sequence[str]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(columns=list(columns))


def _kendall(x: np.ndarray, y: np.ndarray) -> float:
    from scipy import stats

    return float(stats.kendalltau(x, y).statistic)


def _pairwise(scores: pd.DataFrame, samples: int, seed: int, with_mean: bool) -> pd.DataFrame:
    """Tau between every pair of `scores`' columns (one row per configuration, NaN where it has
    no score), each over the configurations with both, and with `with_mean` their mean; bounds
    from one bootstrap over the rows shared by every pair."""
    import numpy as np
    import pandas as pd

    values = scores.to_numpy(float)
    draws = np.random.default_rng(seed).integers(0, len(values), size=(samples, len(values)))
    pairs = list(itertools.combinations(range(values.shape[1]), 2))
    names = list(scores.columns)
    rows, taus, boot = [], [], []
    for i, j in pairs:
        both = ~np.isnan(values[:, i]) & ~np.isnan(values[:, j])
        row = {"a": names[i], "b": names[j], "configurations": int(both.sum())}
        if both.sum() < MIN_CONFIGURATIONS:
            rows.append({**row, "tau": math.nan, "tau_low": math.nan, "tau_high": math.nan})
            continue
        picked = [d[both[d]] for d in draws]  # each draw's configurations with both scores
        drawn = np.array([_kendall(values[d, i], values[d, j]) for d in picked])
        tau = _kendall(values[both, i], values[both, j])
        rows.append({**row, "tau": tau, **_bounds(drawn)})
        taus.append(tau)
        boot.append(drawn)
    if with_mean:
        row = {"a": "mean", "b": "", "configurations": len(values)}
        if taus:
            drawn = np.nanmean(np.array(boot), axis=0)
            rows.append({**row, "tau": float(np.mean(taus)), **_bounds(drawn)})
        else:
            rows.append({**row, "tau": math.nan, "tau_low": math.nan, "tau_high": math.nan})
    table = pd.DataFrame(rows, columns=list(AGREEMENT_COLUMNS[:-1]))
    table["agreement"] = [_verdict(row) for row in table.to_dict("records")]
    return table


def _bounds(drawn: np.ndarray) -> dict[str, float]:
    import numpy as np

    low, high = percentile_interval(drawn[~np.isnan(drawn)])  # a draw of ties has no tau
    return {"tau_low": float(low), "tau_high": float(high)}


def _verdict(row: dict) -> str:
    if math.isnan(row["tau_low"]):
        return f"not measured: {row['configurations']} configurations, {MIN_CONFIGURATIONS} needed"
    if row["tau_low"] > 0:
        return "agree"
    return "reversed" if row["tau_high"] < 0 else "none claimed"


def _too_few(table: pd.DataFrame) -> str | None:
    if table["tau"].notna().any():
        return None
    most = int(table["configurations"].max()) if len(table) else 0
    return (
        f"at most {most} configurations completed under both of a pair, and a tau needs "
        f"{MIN_CONFIGURATIONS}: run more subsets, or let the search finish"
    )


def _plot(found: Robustness, path: Path, title: str) -> Path:
    """The tau matrices, targets and seeds side by side; a panel says why where not measured."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10.0, 4.4), layout="constrained")
    FigureCanvasAgg(figure)
    panels = (
        (found.targets, found.targets_why_not, "targets"),
        (found.seeds, found.seeds_why_not, "seeds"),
    )
    for index, (table, why_not, kind) in enumerate(panels):
        axes = figure.add_subplot(1, 2, index + 1)
        axes.set_title(f"Kendall's tau across {kind}")
        if why_not:
            said = "not measured: " + textwrap.fill(why_not, 40)
            axes.text(0.5, 0.5, said, ha="center", va="center", transform=axes.transAxes)
            axes.set_axis_off()
            continue
        image = _draw_matrix(axes, table[table["a"] != "mean"], "seed " if kind == "seeds" else "")
    if not (found.targets_why_not and found.seeds_why_not):
        figure.colorbar(image, ax=figure.axes, label="tau (95% interval in the cells)")
    figure.suptitle(f"{title}: rank agreement of configurations")
    figure.savefig(path, dpi=110)
    return path


def _draw_matrix(axes: object, pairs: pd.DataFrame, prefix: str) -> object:
    import numpy as np

    names = list(dict.fromkeys([*pairs["a"], *pairs["b"]]))
    grid = np.full((len(names), len(names)), np.nan)
    np.fill_diagonal(grid, 1.0)
    for row in pairs.to_dict("records"):
        i, j = names.index(row["a"]), names.index(row["b"])
        grid[i, j] = grid[j, i] = row["tau"]
        text = (
            "-"
            if math.isnan(row["tau"])
            else f"{row['tau']:+.2f}\n[{row['tau_low']:+.2f}, {row['tau_high']:+.2f}]"
        )
        colour = "white" if abs(row["tau"]) >= 0.5 else "black"  # legible on a dark cell
        for r, c in ((i, j), (j, i)):
            axes.text(c, r, text, ha="center", va="center", fontsize=7, color=colour)
    image = axes.imshow(grid, cmap="RdBu", vmin=-1.0, vmax=1.0)
    labels = [f"{prefix}{name}" for name in names]
    axes.set_xticks(range(len(names)), labels, rotation=45, ha="right", fontsize="small")
    axes.set_yticks(range(len(names)), labels, fontsize="small")
    return image

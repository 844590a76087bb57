"""A search's report: scaling curves with intervals, seed variance, task contributions, the
task x target x language gains and the answer's robustness across targets and seeds, as CSV, PNG
and a Markdown summary in one folder.

Read from MLflow (`tracking.load_trials`); the caller logs the files on the search's parent run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from xlt_search import tracking
from xlt_search.analysis import (
    alignment,
    chance,
    controls,
    curves,
    grid,
    labels,
    mixed,
    robustness,
    summary,
)
from xlt_search.analysis import contributions as contrib
from xlt_search.analysis.best import BestConfiguration, best_configuration, parent_marks
from xlt_search.analysis.chance import LearningCheck
from xlt_search.analysis.robustness import Robustness
from xlt_search.analysis.summary import GAINS_NAME, GAINS_PNG, SEED_VARIANCE_NAME
from xlt_search.names import BUDGET_STEPS, SCORE

if TYPE_CHECKING:
    import pandas as pd

    from xlt_search.spec import SearchSpec

SUMMARY_NAME = "summary.md"
CONTRIBUTIONS_NAME = "contributions.csv"
CONTRIBUTIONS_PNG = "contributions.png"
# What the trials read at ASHA's rung feed (contributions, language gains, rank agreement): the
# score, each target's, each language's; each other metric would cost a request per trial.
AT_RUNG_METRICS = (SCORE, BUDGET_STEPS, f"{SCORE}.", "lang.")


@dataclass(frozen=True)
class Report:
    """What `write_report` wrote, and the tables behind it."""

    folder: Path
    files: tuple[Path, ...]
    trials: pd.DataFrame
    curves: pd.DataFrame
    contributions: pd.DataFrame
    gains: pd.DataFrame
    read_at: int | None  # the budget_steps contributions were read at; None: final scores
    learning: LearningCheck | None  # None: the search logged no chance levels
    best: BestConfiguration | None  # None: no trial completed
    robustness: Robustness  # agreement across targets and seeds, the tasks that help every target
    controls: pd.DataFrame  # each control against the baseline (`analysis.controls`)
    labels: pd.DataFrame  # accuracy per label (`analysis.labels`)

    def average_table(self) -> str:
        """The average score's scaling curve as aligned text, as a search prints it at its end."""
        return curves.format_table(self.curves[self.curves["curve"] == "score"])

    @property
    def unfinished(self) -> int:
        """The trials that never ended (interrupted, or still running): the report is partial."""
        return int(self.trials["status"].isin((tracking.RUNNING, tracking.INTERRUPTED)).sum())

    def conclusion(self) -> list[str]:
        """The lines a search ends with: whether it learned, its best configuration, and why
        the contributions were not estimated, if they were not."""
        lines = self.learning.lines() if self.learning is not None else []
        if self.unfinished:
            lines.insert(
                0, f"partial report: {self.unfinished} of {len(self.trials)} trials never ended"
            )
        if self.best is not None:
            lines.append(self.best.line())
        else:
            lines.append("best configuration: none (no trial completed)")
        lines += controls.lines(self.controls)
        lines += labels.one_class_lines(self.labels)
        refused = self.contributions.attrs.get("refused")
        if refused and not (self.learning is not None and self.learning.nothing_learned):
            lines.append(f"task contributions not estimated: {refused}")
        return lines


def write_report(
    spec: SearchSpec,
    tracking_uri: str | None,
    parent_run_id: str,
    out_dir: Path,
    progress: Callable[[str], None] = print,
) -> Report:
    """Load the search `parent_run_id` (run from `spec`) from MLflow and write its report into
    `out_dir`: scaling_curve.csv/.png, seed_variance.csv, contributions.csv/.png, gains.csv,
    gains_heatmap.png, target_agreement.csv, seed_agreement.csv, task_targets.csv,
    rank_agreement.png, controls.csv (each control against the baseline), labels.csv (accuracy
    per label), the mixed-language matrices when a target has mixed languages (`analysis.mixed`),
    alignment.csv/.png when trials measured alignment (`analysis.alignment`), grid.csv with a grid
    hyperparameter (`analysis.grid`), and summary.md.

    Curves use completed trials. Contributions and gains use the trials that count (completed
    or early-stopped), read at the last budget_steps all of them reached: the final scores when
    none was stopped early, else ASHA's first rung, so that trials cut early count as much as
    the others. They are not estimated when the search learned nothing (`chance`) or when the
    trials cannot determine them.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    trials = tracking.load_trials(spec.experiment, tracking_uri, parent_run_id)
    progress(f"report: {len(trials)} trials loaded from MLflow; drawing the scaling curves")
    tags = tracking.search_tags(tracking_uri, parent_run_id)
    levels = chance.from_tag(tags.get(chance.TAG))
    learning = chance.check_learning(trials, levels, _classes(spec)) if levels else None
    table = curves.scaling_curves(trials, spec.sizes, seed=spec.seed)
    files = list(curves.write_curves(table, trials, out_dir, title=spec.name))
    variance = curves.seed_variance(trials)
    files.append(out_dir / SEED_VARIANCE_NAME)
    variance.to_csv(files[-1], index=False)

    # The last budget_steps every counted trial but the baseline reached: the final scores
    # unless ASHA stopped some trials, whose rung then is where all are read.
    counted = contrib.counted_rows(trials, with_baseline=False)
    reached = counted["budget_steps"].dropna()
    read_at = int(reached.min()) if len(reached) and (reached > reached.min()).any() else None
    if read_at is not None:
        progress(f"report: reading every trial at budget_steps {read_at}, the last all reached")
        at_rung = tracking.load_trials(
            spec.experiment, tracking_uri, parent_run_id, read_at, AT_RUNG_METRICS
        )
    else:
        at_rung = trials
    final = read_at is None  # the baseline's score compares with the others' only at the end
    if learning is not None and learning.nothing_learned:
        contributions = contrib.refused_table(
            spec.pool, contrib.design(counted, spec.pool), "nothing was learned", len(counted)
        )
    else:
        progress("report: estimating task contributions (regression and Shapley, bootstrapped)")
        contributions = contrib.task_contributions(
            at_rung,
            spec.pool,
            with_baseline=final,
            seed=spec.seed,
            seed_std=curves.pooled_seed_std(variance),
        )
    planted = _planted(spec)
    if planted:
        contributions["planted"] = contributions["task"].map(planted)
    files.append(out_dir / CONTRIBUTIONS_NAME)
    contributions.to_csv(files[-1], index=False)
    files.append(_plot_contributions(contributions, out_dir / CONTRIBUTIONS_PNG, spec.name))
    families = {code: language.family for code, language in spec.known_languages.items()}
    if contributions.attrs["refused"]:
        import pandas as pd

        gains = pd.DataFrame(columns=list(contrib.GAINS_COLUMNS))
    else:
        gains = contrib.language_gains(at_rung, spec.pool, families, with_baseline=final)
    files.append(out_dir / GAINS_NAME)
    gains.to_csv(files[-1], index=False)
    files.append(_plot_gains(gains, contributions["task"].tolist(), out_dir / GAINS_PNG, spec.name))

    progress("report: rank agreement across targets and seeds (Kendall's tau, bootstrapped)")
    robust = robustness.measure(  # the candidates: a control is no configuration
        controls.candidates(trials),
        controls.candidates(at_rung),
        spec.pool,
        with_baseline=final,
        nothing_learned=learning is not None and learning.nothing_learned,
        seed=spec.seed,
    )
    files.extend(robustness.write(robust, out_dir, spec.name))

    found = best_configuration(trials)
    mixed_files, mixed_section = mixed.write_mixed(
        spec, controls.candidates(trials), found, tags, out_dir
    )
    align_files, align_section = alignment.write_alignment(
        controls.candidates(trials), families, out_dir, spec.seed
    )
    files += mixed_files + align_files
    scores = [m for m in curves.curve_metrics(trials) if not m.startswith("family.")]
    compared = controls.control_table(trials, scores)
    per_label = labels.label_table(trials, found)
    grids = grid.grid_table(spec, controls.candidates(trials))
    written = [(controls.CSV_NAME, compared), (labels.CSV_NAME, per_label)]
    for name, frame in written + ([(grid.CSV_NAME, grids)] if len(grids) else []):
        files.append(out_dir / name)
        frame.to_csv(files[-1], index=False)
    report = Report(
        out_dir,
        (),
        trials,
        table,
        contributions,
        gains,
        read_at,
        learning,
        found,
        robust,
        compared,
        per_label,
    )
    files.append(out_dir / SUMMARY_NAME)
    text = summary.markdown(spec, parent_run_id, report, variance)
    files[-1].write_text(
        "\n".join([text.rstrip("\n"), *mixed_section, *align_section, *grid.section(grids)]) + "\n"
    )
    progress(f"report: wrote {len(files)} files to {out_dir}")
    return dataclasses.replace(report, files=tuple(files))


def mark_parent_run(report: Report, tracking_uri: str | None, parent_run_id: str) -> None:
    """Put the report's answer on the parent run: the best subset and run as tags, its score as
    metrics, and the conclusion as the run's description, which MLflow's UI shows as it opens."""
    tags, metrics = parent_marks(report.best, "\n\n".join(report.conclusion()))
    tracking.mark_search(tracking_uri, parent_run_id, tags, metrics)


def _classes(spec: SearchSpec) -> dict[str, int]:
    """The labels or choices of each classification and multiple-choice target."""
    registry = spec.registry
    return {
        t.task: registry[t.task].num_labels
        for t in spec.targets
        if registry[t.task].kind in ("classification", "multiple_choice")
    }


def _planted(spec: SearchSpec) -> dict[str, str]:
    """The synthetic suite's planted relatedness of each pool task to the search's targets
    ('mixed' where the targets disagree); empty unless every target and task has one."""
    from xlt_search.synthetic import RELATEDNESS

    targets = [t.task for t in spec.targets]
    if not all(t in RELATEDNESS for t in targets):
        return {}
    if not all(task in RELATEDNESS[t] for t in targets for task in spec.pool):
        return {}
    kinds = {task: {RELATEDNESS[t][task] for t in targets} for task in spec.pool}
    return {task: next(iter(k)) if len(k) == 1 else "mixed" for task, k in kinds.items()}


def _plot_contributions(table: pd.DataFrame, path: Path, title: str) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    colours = {"helpful": "tab:green", "neutral": "tab:grey", "conflicting": "tab:red"}
    ordered = table.iloc[::-1]  # the best on top
    figure = Figure(figsize=(10.0, 0.45 * len(table) + 1.8), layout="constrained")
    FigureCanvasAgg(figure)
    for index, (column, label) in enumerate(
        (("effect", "effect of adding the task"), ("shapley", "Shapley value"))
    ):
        axes = figure.add_subplot(1, 2, index + 1)
        values = ordered[column].fillna(0.0)
        low = (values - ordered[f"{column}_low"]).fillna(0.0).clip(lower=0.0)
        high = (ordered[f"{column}_high"] - values).fillna(0.0).clip(lower=0.0)
        colour = (
            [colours.get(kind, "tab:blue") for kind in ordered["planted"]]
            if "planted" in ordered
            else "tab:blue"
        )
        axes.barh(ordered["task"], values, xerr=[low, high], color=colour, capsize=3)
        axes.axvline(0.0, color="black", linewidth=0.8)
        axes.set_xlabel(f"{label} on the score (95% interval)")
        axes.grid(axis="x", alpha=0.3)
        if index:
            axes.set_yticklabels([])
    if "planted" in table:
        from matplotlib.patches import Patch

        present = [kind for kind in colours if kind in set(table["planted"])]
        figure.legend(
            [Patch(color=colours[kind]) for kind in present],
            [f"planted: {kind}" for kind in present],
            loc="outside lower center",
            ncols=len(present),
        )
    figure.suptitle(f"{title}: task contributions")
    figure.savefig(path, dpi=110)
    return path


def _plot_gains(gains: pd.DataFrame, tasks: list[str], path: Path, title: str) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(
        figsize=(
            1.2 + 0.55 * max(4, gains[["target", "language"]].drop_duplicates().shape[0]),
            1.6 + 0.4 * len(tasks),
        ),
        layout="constrained",
    )
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if gains.empty:
        axes.text(0.5, 0.5, "too few trials for gains", ha="center", transform=axes.transAxes)
    else:
        cells = gains.pivot_table(index="task", columns=["target", "language"], values="gain")
        cells = cells.reindex(tasks)
        limit = float(abs(cells.to_numpy()).max()) or 1.0
        image = axes.imshow(cells.to_numpy(), cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
        axes.set_yticks(range(len(cells.index)), cells.index)
        axes.set_xticks(
            range(len(cells.columns)),
            [f"{target} {language}" for target, language in cells.columns],
            fontsize="small",
            rotation=60,
            ha="right",
        )
        if cells.size <= 400:
            for (row, column), value in zip(
                ((r, c) for r in range(cells.shape[0]) for c in range(cells.shape[1])),
                cells.to_numpy().ravel(),
                strict=True,
            ):
                axes.text(column, row, f"{value:+.2f}", ha="center", va="center", fontsize=7)
        figure.colorbar(image, ax=axes, label="gain on the language's score")
    axes.set_title(f"{title}: gain of adding each task, per target and language")
    figure.savefig(path, dpi=110)
    return path

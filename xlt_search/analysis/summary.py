"""A search's `summary.md`: what it learned, its best configuration, the scaling curve, seed
variance and task contributions, in the words a reader acts on (docs/reading.md)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from xlt_search.analysis import chance, controls, curves, labels, robustness
from xlt_search.names import COMPLETED, EARLY_STOPPED, ERRORED, INTERRUPTED, RUNNING

if TYPE_CHECKING:
    import pandas as pd

    from xlt_search.analysis.best import BestConfiguration
    from xlt_search.analysis.chance import LearningCheck
    from xlt_search.analysis.report import Report
    from xlt_search.analysis.robustness import Robustness
    from xlt_search.spec import SearchSpec

SEED_VARIANCE_NAME = "seed_variance.csv"
GAINS_NAME = "gains.csv"
GAINS_PNG = "gains_heatmap.png"


def _interval(value: float, low: float, high: float) -> str:
    if math.isnan(value):
        return "-"
    if math.isnan(low):
        return f"{value:+.4f}"
    return f"{value:+.4f} [{low:+.4f}, {high:+.4f}]"


def markdown(spec: SearchSpec, parent_run_id: str, report: Report, variance: pd.DataFrame) -> str:
    trials, table = report.trials, report.curves
    counts = trials["status"].value_counts()
    seed_std = curves.pooled_seed_std(variance)
    average = table[table["curve"] == "score"].reset_index(drop=True)
    larger = curves.beyond_seed_noise(average, seed_std)
    lines = [
        *_title(spec, report),
        "",
        f"MLflow experiment `{spec.experiment}`, parent run `{parent_run_id}`. "
        f"{len(trials)} trials: "
        + ", ".join(f"{counts.get(s, 0)} {s.replace('_', ' ')}" for s in _STATUSES)
        + (
            "; the no-intermediate baseline ran."
            if (trials["n_tasks"] == 0).any()
            else "; no baseline trial (gains are not shown)."
        ),
        "",
        *_learning_section(report.learning),
        *_best_section(report.best),
        *controls.section(report.controls),
        *labels.section(report.labels),
        "## Scaling curve (average zero-shot score)",
        "",
        "Completed trials only; mean with a 95% bootstrap interval (over configurations and "
        "seeds). Early-stopped trials are counted apart. Per target and per language family: "
        f"`{curves.CSV_NAME}` and `{curves.PNG_NAME}`.",
        "",
        "| tasks | trials | completed | early stopped | mean [95% interval] | best | gain over "
        "baseline | beyond seed noise |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, row in average.iterrows():
        size = "0 (baseline)" if row["n_tasks"] == 0 else str(row["n_tasks"])
        mean = (
            "-"
            if math.isnan(row["mean"])
            else f"{row['mean']:.4f}"
            + ("" if math.isnan(row["ci_low"]) else f" [{row['ci_low']:.4f}, {row['ci_high']:.4f}]")
        )
        best = "-" if math.isnan(row["best"]) else f"{row['best']:.4f}"
        gain = "-" if math.isnan(row["gain"]) or row["n_tasks"] == 0 else f"{row['gain']:+.4f}"
        noise = "-" if math.isnan(seed_std) or row["n_tasks"] == 0 else str(bool(larger[i])).lower()
        lines.append(
            f"| {size} | {row['trials']} | {row['completed']} | {row['early_stopped']} | "
            f"{mean} | {best} | {gain} | {noise} |"
        )
    lines += ["", "## Seed variance", ""]
    if math.isnan(seed_std):
        lines.append(
            "Each configuration ran with one seed, so seed variance is unknown: set `seeds: 3` "
            "in the spec to measure it and to see which differences are larger than it."
        )
    else:
        lines.append(
            f"Pooled over {len(variance)} configurations run with several seeds, the "
            f"seed-to-seed standard deviation of the score is {seed_std:.4f} (`{SEED_VARIANCE_NAME}`). "
            "A size's gain is *beyond seed noise* when it exceeds twice its standard error under "
            "that deviation."
        )
    lines += ["", "## Task contributions", "", *_contributions_section(report)]
    lines += [
        "",
        "## Gains per task, target and language",
        "",
        f"Each task's effect on every target language's score, in `{GAINS_NAME}` and "
        f"`{GAINS_PNG}` (the same regression, one language at a time).",
        "",
        *robustness_section(report.robustness),
        "",
    ]
    return "\n".join(lines)


def _title(spec: SearchSpec, report: Report) -> list[str]:
    """The first line says whether the report is final: a search with trials that never ended
    (interrupted, or still running) gets a partial one."""
    unfinished, trials = report.unfinished, report.trials
    if not unfinished:
        return [f"# {spec.name}: report"]
    return [
        f"# {spec.name}: PARTIAL report ({unfinished} of {len(trials)} trials unfinished)",
        "",
        f"The search stopped (or is still running) with {unfinished} trials that never ended: "
        f"this report reads only the trials that did. `xlt-search resume {spec.experiment}` "
        "finishes the search, and writes the final report.",
    ]


def _learning_section(learning: LearningCheck | None) -> list[str]:
    if learning is None:
        return [
            "The search logged no chance levels, so whether it learned its targets is unknown.",
            "",
        ]
    lines = [
        "## Did the search learn its targets?",
        "",
        "A trial learned a target when its English score is above the target's chance level "
        f"by more than {chance.Z} binomial standard errors on the evaluation set "
        "(docs/reading.md).",
        "",
        "| target | language | chance | examples | baseline | best trial | trials above chance |",
        "|---|---|---|---|---|---|---|",
    ]
    for t in learning.targets:
        baseline = "-" if math.isnan(t.baseline_score) else f"{t.baseline_score:.4f}"
        lines.append(
            f"| {t.target} | {t.language} | {t.chance.level:.4f} | {t.chance.examples} | "
            f"{baseline} | {t.best_score:.4f} | {t.learned} of {t.checked} |"
        )
    warning = learning.lines()
    if not warning:
        return [*lines, ""]
    return [*lines, "", f"**{warning[0]}**", *warning[1:], ""]


def _best_section(best: BestConfiguration | None) -> list[str]:
    lines = ["## Best configuration", ""]
    if best is None:
        return [*lines, "No trial completed, so there is no best configuration.", ""]
    interval = (
        f" [{best.low:.4f}, {best.high:.4f}] (95% t-interval over {best.seeds} seeds)"
        if not math.isnan(best.low)
        else " (one seed: no interval; set `seeds: 3` for one)"
    )
    hyper = ", ".join(f"`{k}={v}`" for k, v in best.hyperparameters.items()) or "defaults"
    return [
        *lines,
        f"`{best.subset}` ({best.n_tasks} tasks), score {best.score:.4f}{interval}; "
        f"hyperparameters {hyper}; MLflow run `{best.run_id}`"
        + (f" (seeds' runs: {', '.join(f'`{r}`' for r in best.run_ids)})" if best.seeds > 1 else "")
        + ". Take its models away with `xlt-search export`.",
        "",
    ]


def _contributions_section(report: Report) -> list[str]:
    contributions = report.contributions
    refused = contributions.attrs["refused"]
    if refused:
        if report.learning is not None and report.learning.nothing_learned:
            return ["Not estimated: nothing was learned (above), so the tasks are not ranked."]
        return [f"Not estimated: {refused}."]
    where = (
        f"at budget_steps {report.read_at}, the last every trial reached (ASHA stopped some "
        "earlier), so every trial counts alike"
        if report.read_at is not None
        else "on the trials' final scores"
    )
    planted = "planted" in contributions
    lines = [
        f"Estimated from {contributions.attrs['trials']} completed or early-stopped trials "
        f"{where}. *Effect*: the gain of adding the task (least squares on the `use.<task>` "
        "flags); *Shapley*: its Shapley value over the sampled subsets (KernelSHAP weights); "
        "95% bootstrap intervals where the trials can carry one. *Distinguishable*: the effect's "
        "interval excludes zero and the effect is larger than its error under seed noise times "
        "the normal quantile corrected for testing every task (docs/reading.md). "
        f"The slope in the number of tasks (an average task's effect) is "
        f"{contributions['effect'].mean():+.4f}.",
        "",
        "| rank | task | trials with it | effect [95%] | Shapley [95%] | distinguishable |"
        + (" planted |" if planted else ""),
        "|---|---|---|---|---|---|" + ("---|" if planted else ""),
    ]
    for _, row in contributions.iterrows():
        note = f" ({row['interval']}: no interval)" if row["interval"] else ""
        lines.append(
            f"| {row['rank']} | {row['task']} | {row['trials_with']} | "
            f"{_interval(row['effect'], row['effect_low'], row['effect_high'])}{note} | "
            f"{_interval(row['shapley'], row['shapley_low'], row['shapley_high'])} | "
            f"{row['distinguishable']} |" + (f" {row['planted']} |" if planted else "")
        )
    return lines


def robustness_section(found: Robustness) -> list[str]:
    """The section on agreement across targets and seeds and on the tasks that help every
    target; in words, not numbers, where the trials cannot tell."""
    return [
        "## Robustness across targets and seeds",
        "",
        "Kendall's tau-b between the configurations' scores (a configuration is a subset with "
        "its hyperparameters, its score the mean over its completed seeds): +1 ranks them alike, "
        "0 is no relation, -1 reverses them. 95% percentile intervals of a bootstrap over "
        f"configurations ({robustness.BOOTSTRAP_SAMPLES:,} draws); completed trials only "
        f"(docs/reading.md). Figure: `{robustness.AGREEMENT_PNG}`.",
        "",
        "### Rank agreement across targets",
        "",
        *_agreement_lines(found.targets, found.targets_why_not, "targets"),
        "",
        "### Rank agreement across seeds",
        "",
        *_agreement_lines(found.seeds, found.seeds_why_not, "seeds"),
        "",
        "### Which tasks help every target",
        "",
        *_task_lines(found.tasks, found.tasks_why_not),
    ]


def _agreement_lines(table: pd.DataFrame, why_not: str | None, kind: str) -> list[str]:
    if why_not:
        return [f"Not measured: {why_not}."]
    metric, name = (
        ("score.<target>", robustness.TARGET_AGREEMENT_NAME)
        if kind == "targets"
        else ("score", robustness.SEED_AGREEMENT_NAME)
    )
    lines = [
        f"Tau of `{metric}` between every pair of {kind} (`{name}`).",
        "",
        f"| {kind} | configurations | tau [95%] | agreement |",
        "|---|---|---|---|",
    ]
    for row in table.to_dict("records"):
        pair = "mean over pairs" if row["a"] == "mean" else f"{row['a']}, {row['b']}"
        tau = _interval(row["tau"], row["tau_low"], row["tau_high"])
        lines.append(f"| {pair} | {row['configurations']} | {tau} | {row['agreement']} |")
    pairs = table[table["a"] != "mean"]
    agree = int((pairs["agreement"] == "agree").sum())
    if agree == len(pairs):
        verdict = f"The configurations rank alike across {kind}: every interval is above 0."
    elif agree == 0:
        verdict = (
            f"No agreement can be claimed across {kind}: no interval is above 0, so a "
            "configuration's rank under one says nothing of its rank under another."
        )
    else:
        verdict = (
            f"Agreement can be claimed for {agree} of {len(pairs)} pairs of {kind} only "
            "(interval above 0); the other pairs' ranks may be unrelated."
        )
    return [*lines, "", verdict]


def _task_lines(table: pd.DataFrame, why_not: str | None) -> list[str]:
    if why_not:
        return [f"Not classified: {why_not}."]
    targets = list(dict.fromkeys(table["target"]))
    lines = [
        "Each task's effect on each target (the contributions' regression on `score.<target>`, "
        f"95% bootstrap interval; `{robustness.TASK_TARGETS_NAME}`). *every*: the interval is "
        "above 0 on every target; *some*: above 0 on some, below on none; *none*: no evidence "
        f"either way. Each interval is 95% on its own: with {len(targets)} targets, a task that "
        f"does nothing is called *some* up to {1 - 0.95 ** len(targets):.0%} of the time.",
        "",
        "| task | " + " | ".join(f"{t} effect [95%]" for t in targets) + " | helps |",
        "|---|" + "---|" * len(targets) + "---|",
    ]
    for task, rows in table.groupby("task", sort=False):
        cells = [
            _interval(r["effect"], r["effect_low"], r["effect_high"])
            for r in rows.to_dict("records")
        ]
        lines.append(f"| {task} | " + " | ".join(cells) + f" | {rows['class'].iloc[0]} |")
    tasks = table.drop_duplicates("task")
    said = [
        f"{words}: {', '.join(tasks.loc[tasks['class'] == kind, 'task'])}."
        for kind, words in _CLASS_WORDS.items()
        if (tasks["class"] == kind).any()
    ]
    return [*lines, "", " ".join(said)]


_CLASS_WORDS = {  # in the order the summary names them
    "every": "Help every target",
    "some": "Help some targets",
    "mixed": "Help some targets and hurt others",
    "hurts some": "Hurt some targets",
    "hurts every": "Hurt every target",
    "none": "No evidence either way",
    "cannot tell": "Cannot tell (no interval)",
}
_STATUSES = (COMPLETED, EARLY_STOPPED, ERRORED, INTERRUPTED, RUNNING)

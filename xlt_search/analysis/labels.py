"""Accuracy per label (`label.<target>.<lang>.<label>`) of the best configuration, the baseline and
the controls, and the targets where a model predicts one class.

A classification or multiple-choice trial reports, for each dev set, the accuracy on the rows of
each gold label. A model that answers one class whatever the input scores near 1 on that label
and near 0 on the others, while its overall accuracy (the share of that class) can look learned.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from xlt_search.analysis.controls import is_control
from xlt_search.names import COMPLETED, CONTROL_PARAM, LABEL_PREFIX

if TYPE_CHECKING:
    import pandas as pd

    from xlt_search.analysis.best import BestConfiguration

CSV_NAME = "labels.csv"
NEAR = 0.1  # one class: a label's accuracy within NEAR of 1 and another's within NEAR of 0
COLUMNS = ("model", "target", "language", "label", "accuracy", "seeds", "one_class_seeds")


def label_table(trials: pd.DataFrame, best: BestConfiguration | None) -> pd.DataFrame:
    """Per model (the best configuration, the baseline, each control), target, language and
    label: the accuracy on that label's rows (the mean over the model's completed seeds), and
    how many of those seeds predict one class on that target and language (`one_class_seeds`:
    one label's accuracy at least 1 - NEAR, another's at most NEAR; per seed, as seeds that
    favour different classes average to a model that seems balanced)."""
    import pandas as pd

    by_set: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for column in trials.columns:
        if isinstance(column, str) and column.startswith(LABEL_PREFIX):
            target, language, label = column.removeprefix(LABEL_PREFIX).split(".", 2)
            by_set.setdefault((target, language), []).append((label, column))
    done = trials[trials["status"] == COMPLETED]
    models = {}
    if best is not None:
        models[f"best ({best.subset})"] = done[done["run_id"].isin(best.run_ids)]
    models["baseline"] = done[~is_control(done) & (done["n_tasks"] == 0)]
    controls = done[is_control(done)]
    for control, runs in controls.groupby(CONTROL_PARAM, sort=True) if len(controls) else ():
        models[f"control {control}"] = runs
    rows = []
    for model, runs in models.items():
        for (target, language), named in by_set.items():
            values = runs[[column for _, column in named]].astype(float).dropna(how="all")
            if values.empty:
                continue
            one_class = (values.max(axis=1) >= 1 - NEAR) & (values.min(axis=1) <= NEAR)
            rows += [
                {
                    "model": model,
                    "target": target,
                    "language": language,
                    "label": label,
                    "accuracy": float(values[column].mean()),
                    "seeds": int(values[column].notna().sum()),
                    "one_class_seeds": int(one_class.sum()),
                }
                for label, column in named
            ]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def one_class_lines(table: pd.DataFrame) -> list[str]:
    """One line per model and target where a seed predicts one class, naming the languages."""
    flagged = table[table["one_class_seeds"] > 0]
    out = []
    for (model, target), rows in flagged.groupby(["model", "target"], sort=False):
        languages = ", ".join(dict.fromkeys(rows["language"]))
        out.append(
            f"{model} predicts one class on {target} ({languages}) in up to "
            f"{rows['one_class_seeds'].max()} of {rows['seeds'].max()} seeds: one label's "
            f"accuracy is at least {1 - NEAR:.1f} and another's at most {NEAR:.1f}"
        )
    return out


def section(table: pd.DataFrame) -> list[str]:
    """The summary's section on per-label accuracy (none when no target reports it)."""
    if table.empty:
        return []
    out = [
        "## Accuracy per label",
        "",
        "The accuracy on the dev rows of each gold label, for the best configuration, the "
        "baseline and the controls (the mean over completed seeds; every language in "
        f"`{CSV_NAME}`). A seed *predicts one class* when it answers one label whatever the "
        f"input: one label's accuracy at least {1 - NEAR:.1f}, another's at most {NEAR:.1f}.",
        "",
        *[f"**{line}**" for line in one_class_lines(table)],
        "",
        "| model | target | language | accuracy per label | seeds predicting one class |",
        "|---|---|---|---|---|",
    ]
    for (model, target, language), rows in table.groupby(
        ["model", "target", "language"], sort=False
    ):
        per_label = ", ".join(f"{r.label} {r.accuracy:.3f}" for r in rows.itertuples())
        flag = f"{rows['one_class_seeds'].iloc[0]} of {rows['seeds'].max()}"
        out.append(f"| {model} | {target} | {language} | {per_label} | {flag} |")
    return [*out, ""]

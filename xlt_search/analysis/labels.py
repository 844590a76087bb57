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
COLUMNS = ("model", "target", "language", "label", "accuracy", "seeds", "one_class")


def label_table(trials: pd.DataFrame, best: BestConfiguration | None) -> pd.DataFrame:
    """Per model (the best configuration, the baseline, each control: the mean over its completed
    seeds), target, language and label: the accuracy on that label's rows, and whether the
    model predicts one class on that target and language (`one_class`)."""
    import pandas as pd

    columns = [c for c in trials.columns if isinstance(c, str) and c.startswith(LABEL_PREFIX)]
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
        for column in columns if len(runs) else ():
            values = runs[column].astype(float).dropna()
            if values.empty:
                continue
            target, language, label = column.removeprefix(LABEL_PREFIX).split(".", 2)
            rows.append(
                {
                    "model": model,
                    "target": target,
                    "language": language,
                    "label": label,
                    "accuracy": float(values.mean()),
                    "seeds": len(values),
                }
            )
    table = pd.DataFrame(rows, columns=list(COLUMNS[:-1]))
    groups = table.groupby(["model", "target", "language"], sort=False)["accuracy"]
    one_class = (groups.transform("max") >= 1 - NEAR) & (groups.transform("min") <= NEAR)
    return table.assign(one_class=one_class.astype(bool))[list(COLUMNS)]


def one_class_lines(table: pd.DataFrame) -> list[str]:
    """One line per model and target where it predicts one class, naming its languages."""
    flagged = table[table["one_class"]]
    out = []
    for (model, target), rows in flagged.groupby(["model", "target"], sort=False):
        languages = ", ".join(dict.fromkeys(rows["language"]))
        out.append(
            f"{model} predicts one class on {target} ({languages}): one label's accuracy is "
            f"at least {1 - NEAR:.1f} and another's at most {NEAR:.1f}"
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
        f"`{CSV_NAME}`). *One class* marks a model that answers one label whatever the input: "
        f"one label's accuracy at least {1 - NEAR:.1f}, another's at most {NEAR:.1f}.",
        "",
        *[f"**{line}**" for line in one_class_lines(table)],
        "",
        "| model | target | language | accuracy per label | one class |",
        "|---|---|---|---|---|",
    ]
    for (model, target, language), rows in table.groupby(
        ["model", "target", "language"], sort=False
    ):
        per_label = ", ".join(f"{r.label} {r.accuracy:.3f}" for r in rows.itertuples())
        flag = "yes" if rows["one_class"].iloc[0] else "no"
        out.append(f"| {model} | {target} | {language} | {per_label} | {flag} |")
    return [*out, ""]

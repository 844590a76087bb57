"""Mixed-language evaluation instances: a target's parallel validation data with an instance's
two parts in two languages (Rajaee & Monz, EACL 2024).

An instance of cell l1-l2 takes its first part from l1's row and its second part from l2's row
of the same instance (`tasks.base.MIXED_PARTS`): a pair's text_a from l1 and text_b from l2; a
span question's context and answer spans from l1 and the question from l2; a multiple-choice
context from l1 and its choices from l2. The label is l1's (the aligned rows agree on it).

Rows are aligned across all of a target's mixed languages at once, so that every cell of the
matrix, the diagonal included, holds the same instances and the cells compare pair by pair:

- by the task's `id` column where its declaration maps one (`columns: {id: ...}`): an id that
  some language lacks, or holds more than once, drops the instance; each language's rows left
  without a partner are counted as `missing`;
- else by position (row i of every language is one instance), which needs every language's split
  to hold as many rows: otherwise the rows cannot be aligned, and preparation stops with one line
  naming the fix (map the id column, or leave the language out);
- an aligned instance whose label (or number of choices) differs between languages is dropped and
  counted as `label`; span QA has no label to compare.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from xlt_search.data.errors import DataError
from xlt_search.tasks.base import MIXED_PARTS, Task

FILE = "xlt_mixing.json"  # in each mixed cell's folder: the counts of the alignment it came from
TAG = "xlt.mixed"  # the parent run's tag: every mixed target's alignment counts, as JSON


@dataclass(frozen=True)
class Alignment:
    """Which row of each language holds each kept instance, and what was dropped."""

    by: str  # "id" or "position"
    rows: Mapping[str, tuple[int, ...]]  # language -> its row of every kept instance, in order
    examples: Mapping[str, int]  # language -> the rows of its split
    missing: Mapping[str, int]  # language -> its rows with no partner in some other language
    label: int  # aligned instances dropped because their labels differ between languages

    def counts(self) -> dict[str, Any]:
        """The alignment's counts as plain data (what `describe` reads and the search logs)."""
        kept = len(next(iter(self.rows.values())))
        return {
            "by": self.by,
            "kept": kept,
            "examples": dict(self.examples),
            "missing": dict(self.missing),
            "label": self.label,
        }


def align(task: Task, splits: Mapping[str, datasets.Dataset]) -> Alignment:
    """Align the rows of one split in several languages (the module's rules; languages in the
    order of `splits`, the first the reference of the labels)."""
    languages = list(splits)
    examples = {lang: len(split) for lang, split in splits.items()}
    if task.column("id") is not None:
        by = "id"
        ids = {lang: [str(value) for value in split["id"]] for lang, split in splits.items()}
        seen = {lang: Counter(values) for lang, values in ids.items()}
        common = [
            value
            for value in dict.fromkeys(ids[languages[0]])
            if all(seen[lang][value] == 1 for lang in languages)
        ]
        where = {lang: {value: row for row, value in enumerate(ids[lang])} for lang in languages}
        rows = {lang: [where[lang][value] for value in common] for lang in languages}
    else:
        by = "position"
        if len(set(examples.values())) > 1:
            sizes = ", ".join(f"{lang} {count}" for lang, count in examples.items())
            raise DataError(
                f"targets: {task.key}.mixed_languages: its validation rows cannot be aligned by "
                f"position, as the languages have different counts ({sizes}); map the column "
                f"that identifies a row across translations (tasks.{task.key}.columns.id in the "
                "spec), or leave the languages with other counts out of mixed_languages"
            )
        rows = {lang: list(range(examples[lang])) for lang in languages}
    missing = {lang: examples[lang] - len(rows[lang]) for lang in languages}
    keep = list(range(len(rows[languages[0]])))
    if task.kind in ("classification", "multiple_choice"):
        shape = {lang: _shapes(task, split) for lang, split in splits.items()}
        first = languages[0]
        keep = [
            k
            for k in keep
            if all(shape[lang][rows[lang][k]] == shape[first][rows[first][k]] for lang in languages)
        ]
    label = len(rows[languages[0]]) - len(keep)
    kept = {lang: tuple(rows[lang][k] for k in keep) for lang in languages}
    return Alignment(by, kept, examples, missing, label)


def _shapes(task: Task, split: datasets.Dataset) -> list[tuple[int, ...]]:
    """What must agree between a row and its translations: its label, and its number of choices."""
    labels = split["label"]
    if task.kind == "multiple_choice":
        return [
            (label, len(choices)) for label, choices in zip(labels, split["choices"], strict=True)
        ]
    return [(label,) for label in labels]


def mixed_cell(
    task: Task,
    splits: Mapping[str, datasets.Dataset],
    alignment: Alignment,
    first: str,
    second: str,
) -> datasets.Dataset:
    """The instances of cell `first`-`second`: `first`'s rows with the second part(s) of the
    instance (`MIXED_PARTS`) taken from `second`'s aligned rows."""
    cell = splits[first].select(alignment.rows[first])
    if first == second:
        return cell
    other = splits[second].select(alignment.rows[second])
    for name in MIXED_PARTS[task.kind]:
        cell = cell.remove_columns(name).add_column(name, other[name])
    return cell


def save(folder: Path, counts: Mapping[str, Any]) -> None:
    """Keep an alignment's counts in a mixed cell's folder."""
    (Path(folder) / FILE).write_text(json.dumps(counts, sort_keys=True))


def load(folder: Path) -> dict[str, Any]:
    """The alignment counts kept in a mixed cell's folder by `save`."""
    return json.loads((Path(folder) / FILE).read_text())


def describe(task: str, counts: Mapping[str, Any]) -> str:
    """One line: how many instances a target's mixed cells hold, and what was dropped, why."""
    dropped = [f"{counts['label']} with labels that differ between languages"]
    dropped += [f"{lang} {n} without a partner" for lang, n in counts["missing"].items() if n]
    languages = ", ".join(counts["examples"])
    return (
        f"{task}: {counts['kept']} instances aligned by {counts['by']} in {languages} "
        f"(of {max(counts['examples'].values())}); dropped: {'; '.join(dropped)}"
    )

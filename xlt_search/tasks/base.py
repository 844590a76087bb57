"""What a task is: a small declaration (data source, columns, kind, languages, metric), never code.

Adding a task is adding one `Task(...)` to a family file and registering it; the trainer never changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

TaskKind = Literal["classification", "multiple_choice", "tagging", "span"]
TASK_KINDS: tuple[str, ...] = ("classification", "multiple_choice", "tagging", "span")

# The canonical fields each kind reads; `Task.columns` maps them to the source's column names.
#   classification:  text_a, text_b (optional: pair tasks), label (int)
#   multiple_choice: context, choices (a list column), label (int: index of the right choice)
#   tagging:         tokens (list of words), tags (list of ints)
#   span:            context, question, answers ({"text": [...], "answer_start": [...]}, SQuAD's shape;
#                    empty lists mean no answer)
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "classification": ("text_a", "text_b", "label"),
    "multiple_choice": ("context", "choices", "label"),
    "tagging": ("tokens", "tags"),
    "span": ("context", "question", "answers"),
}
OPTIONAL_FIELDS: frozenset[str] = frozenset({"text_b"})


@dataclass(frozen=True)
class Language:
    """A language with the metadata that scores are aggregated by."""

    code: str
    name: str
    family: str
    script: str


@dataclass(frozen=True)
class DataSource:
    """Where a task's data lives, as arguments to `datasets.load_dataset`.

    `path` is a hub id (``"facebook/xnli"``) or a packaged builder (``"json"``, ``"parquet"``,
    ``"csv"``) for local files. `name` (a hub config) and the values of `data_files` may hold
    ``{lang}`` (the language being loaded) and ``{synthetic_root}`` (the synthetic suite's folder,
    filled in at load time). `splits` maps our split names (train, validation, test) to the source's.
    """

    path: str
    name: str | None = None
    data_files: Mapping[str, str] | None = None
    splits: Mapping[str, str] = field(
        default_factory=lambda: {"train": "train", "validation": "validation", "test": "test"}
    )
    revision: str | None = None


@dataclass(frozen=True)
class Task:
    """One task: an intermediate task, a target task, or both.

    `languages` are the languages the task has evaluation data in ("en" first when it has English).
    A target trains on the English training data of `train_tasks` in order (XCOPA: SIQA then COPA);
    empty means its own English train split.
    """

    key: str
    kind: TaskKind
    source: DataSource
    columns: Mapping[str, str]
    num_labels: int
    metric: str
    languages: tuple[str, ...] = ("en",)
    train_tasks: tuple[str, ...] = ()
    description: str = ""

    def column(self, canonical: str) -> str | None:
        """The source column for a canonical field, or None when the task lacks that field."""
        return self.columns.get(canonical)

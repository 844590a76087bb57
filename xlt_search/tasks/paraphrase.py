"""Paraphrase identification: QQP and PAWS (intermediate), PAWS-X (target, trained on PAWS)."""

from __future__ import annotations

from xlt_search.tasks.base import DataSource, FileLayout, Task

_PAWS_COLUMNS = {"text_a": "sentence1", "text_b": "sentence2", "label": "label"}

TASKS: tuple[Task, ...] = (
    Task(
        key="qqp",
        kind="classification",
        sources=(
            DataSource(
                "nyu-mll/glue", "qqp", splits={"train": "train", "validation": "validation"}
            ),
        ),
        columns={"text_a": "question1", "text_b": "question2", "label": "label"},
        num_labels=2,
        metric="accuracy",
        labels=("not_duplicate", "duplicate"),
        description="Quora Question Pairs",
    ),
    Task(
        key="paws",
        kind="classification",
        sources=(DataSource("google-research-datasets/paws", "labeled_final"),),
        columns=_PAWS_COLUMNS,
        num_labels=2,
        metric="accuracy",
        labels=("0", "1"),
        description="PAWS (Wiki, labeled_final): English paraphrase adversaries",
    ),
    Task(
        key="paws_x",
        kind="classification",
        sources=(DataSource("google-research-datasets/paws-x", "{lang}"),),
        columns=_PAWS_COLUMNS,
        num_labels=2,
        metric="accuracy",
        languages=("en", "de", "es", "fr", "ja", "ko", "zh"),
        # the hub's train split per language: English PAWS and its machine translations
        train_languages=("en", "de", "es", "fr", "ja", "ko", "zh"),
        train_tasks=("paws",),
        labels=("0", "1"),
        description="cross-lingual PAWS, 7 languages; trains on English PAWS",
        layout=FileLayout(
            "tsv",
            {"validation": "x-final/{lang}/dev_2k.tsv", "test": "x-final/{lang}/test_2k.tsv"},
            _PAWS_COLUMNS,
            home="github.com/google-research-datasets/paws (storage.googleapis.com/paws/pawsx)",
        ),
    ),
)

"""The controls' training data: a target's English training split made uninformative in one known
way, prepared once beside the real split (`prepare_data`), never by a trial.

`word_shuffle` shuffles the words of every text field within the field (a classification's texts,
a multiple-choice context and each of its choices; a tagging row's words, each keeping its tag),
so that a model trained on it sees the same words and labels with no word order. Labels stay.
The order of row `i` is drawn from ``(seed, i)``: the same shuffle every time the spec runs. A span
task is refused (`SHUFFLED_KINDS`): its answer's character offsets would no longer point at the
answer.
"""

from __future__ import annotations

from typing import Any

import datasets
import numpy as np

from xlt_search.names import SHUFFLED_KINDS, WORD_SHUFFLE
from xlt_search.tasks.base import Task


def controlled(task: Task, dataset: datasets.Dataset, control: str, seed: int) -> datasets.Dataset:
    """`dataset` (a split with the kind's canonical columns) as the control `control` trains on."""
    if control != WORD_SHUFFLE:
        raise ValueError(f"unknown control {control!r}; the controls: {WORD_SHUFFLE}")
    if task.kind not in SHUFFLED_KINDS:
        raise ValueError(f"{task.key}: a {task.kind} task's data cannot be word-shuffled")
    return dataset.map(
        _shuffle_row,
        with_indices=True,
        fn_kwargs={"kind": task.kind, "seed": seed},
        load_from_cache_file=False,
        keep_in_memory=True,
        desc=f"word-shuffling {task.key}",
    )


def shuffled_words(text: str, rng: np.random.Generator) -> str:
    """`text`'s whitespace-separated words in an order drawn from `rng`."""
    words = text.split()
    return " ".join(words[i] for i in rng.permutation(len(words)))


def _shuffle_row(row: dict[str, Any], index: int, kind: str, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng([seed, index])
    if kind == "tagging":  # each word keeps its tag
        order = rng.permutation(len(row["tokens"]))
        return {
            "tokens": [row["tokens"][i] for i in order],
            "tags": [row["tags"][i] for i in order],
        }
    if kind == "multiple_choice":
        return {
            "context": shuffled_words(row["context"], rng),
            "choices": [shuffled_words(choice, rng) for choice in row["choices"]],
        }
    texts = ("text_a", "text_b") if row.get("text_b") is not None else ("text_a",)
    return {name: shuffled_words(row[name], rng) for name in texts}

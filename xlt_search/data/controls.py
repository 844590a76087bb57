"""The training-data variants: a target's English training split remade in one known way, prepared
once beside the real split (`prepare_data`), never by a trial. A variant is named by its
`SplitRequest.control`: a control of a transfer score, or RS-DA's augmented copies.

`word_shuffle` (a control) shuffles the words of every text field within the field (a
classification's texts, a multiple-choice context and each of its choices; a tagging row's words,
each keeping its tag), so that a model trained on it sees the same words and labels with no word
order. Labels stay. The order of row `i` is drawn from ``(seed, i)``: the same shuffle every time
the spec runs.

``rs_da.<N>`` (robust training by randomized smoothing with data augmentation, Huang et al. 2021)
makes N copies of every row, the copies of row `i` one after the other. In each copy every word
(whitespace-separated, looked up as it is written) that has neighbours in the synonyms table is
replaced by a uniform draw from itself and its neighbours, as Robust-XLT's `perturb.py` does; the
other words stay. Copy `j` of row `i` is drawn from ``(seed, i, j)``. Labels and tags stay (a
word is replaced by one neighbour, so each tag keeps its word's place).

A span task is refused by both (`SHUFFLED_KINDS`): its answer's character offsets would no longer
point at the answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from xlt_search.errors import UserError
from xlt_search.names import RS_DA, SHUFFLED_KINDS, WORD_SHUFFLE
from xlt_search.tasks.base import Task

Synonyms = Mapping[str, Sequence[str]]
# A row's words -> its new words and, for each, the position of the word it came from.
Rewrite = Callable[[list[str]], tuple[list[str], list[int]]]


def augmented(copies: int) -> str:
    """The name of RS-DA's variant with `copies` copies of every row (`SplitRequest.control`)."""
    return f"{RS_DA}.{copies}"


def controlled(
    task: Task,
    dataset: datasets.Dataset,
    control: str,
    seed: int,
    synonyms: Synonyms | None = None,
) -> datasets.Dataset:
    """`dataset` (a split with the kind's canonical columns) as the variant `control` makes it
    (RS-DA's reads `synonyms`)."""
    if task.kind not in SHUFFLED_KINDS:
        raise ValueError(f"{task.key}: a {task.kind} task's data cannot be rewritten word by word")
    if control == WORD_SHUFFLE:
        return dataset.map(
            _shuffle_row,
            with_indices=True,
            fn_kwargs={"kind": task.kind, "seed": seed},
            load_from_cache_file=False,
            keep_in_memory=True,
            desc=f"word-shuffling {task.key}",
        )
    name, _, copies = control.partition(".")
    if name != RS_DA or not copies.isdigit() or int(copies) < 1 or synonyms is None:
        raise ValueError(f"unknown variant {control!r}; the variants: {WORD_SHUFFLE}, {RS_DA}.N")
    return dataset.map(
        _augment_rows,
        batched=True,
        batch_size=100,
        with_indices=True,
        fn_kwargs={"kind": task.kind, "seed": seed, "copies": int(copies), "synonyms": synonyms},
        load_from_cache_file=False,
        keep_in_memory=True,
        desc=f"augmenting {task.key} with {copies} copies",
    )


def load_synonyms(path: str | Path) -> dict[str, list[str]]:
    """A counter-fitted neighbours file (Robust-XLT's `counterfitted_neighbors.json`): one JSON
    object, word -> list of neighbour words."""
    try:
        table = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise UserError(
            f"data.synonyms: {path} cannot be read as JSON ({error}); give a file of one JSON "
            'object, word -> list of neighbours ({"movie": ["film", "cinema"]})'
        ) from None
    if not isinstance(table, dict) or not all(
        isinstance(v, list) and all(isinstance(w, str) for w in v) for v in table.values()
    ):
        raise UserError(
            f"data.synonyms: {path} is not one JSON object of word -> list of neighbour words "
            '({"movie": ["film", "cinema"]}, as Robust-XLT\'s counterfitted_neighbors.json)'
        )
    return table


def substituted(words: list[str], synonyms: Synonyms, rng: np.random.Generator) -> list[str]:
    """`words` with each word that has neighbours drawn uniformly from itself and them."""
    out = []
    for word in words:
        neighbours = synonyms.get(word) or ()
        pick = int(rng.integers(len(neighbours) + 1)) if neighbours else 0
        out.append(word if pick == 0 else neighbours[pick - 1])
    return out


def _shuffle_row(row: dict[str, Any], index: int, kind: str, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng([seed, index])

    def shuffle(words: list[str]) -> tuple[list[str], list[int]]:
        order = [int(i) for i in rng.permutation(len(words))]
        return [words[i] for i in order], order

    return _rewritten(row, kind, shuffle)


def _augment_rows(
    rows: dict[str, list[Any]],
    indices: list[int],
    kind: str,
    seed: int,
    copies: int,
    synonyms: Synonyms,
) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {name: [] for name in rows}
    for position, index in enumerate(indices):
        row = {name: values[position] for name, values in rows.items()}
        for copy in range(copies):
            swap = partial(_swap, synonyms=synonyms, rng=np.random.default_rng([seed, index, copy]))
            new = {**row, **_rewritten(row, kind, swap)}
            for name in out:
                out[name].append(new[name])
    return out


def _swap(
    words: list[str], synonyms: Synonyms, rng: np.random.Generator
) -> tuple[list[str], list[int]]:
    return substituted(words, synonyms, rng), list(range(len(words)))


def _rewritten(row: dict[str, Any], kind: str, rewrite: Rewrite) -> dict[str, Any]:
    """The text fields of `row` (a `kind` row) rewritten word by word; a tagging row's tags follow
    their words."""
    if kind == "tagging":
        tokens, source = rewrite(list(row["tokens"]))
        return {"tokens": tokens, "tags": [row["tags"][i] for i in source]}

    def text(value: str) -> str:
        return " ".join(rewrite(value.split())[0])

    if kind == "multiple_choice":
        return {
            "context": text(row["context"]),
            "choices": [text(choice) for choice in row["choices"]],
        }
    texts = ("text_a", "text_b") if row.get("text_b") is not None else ("text_a",)
    return {name: text(row[name]) for name in texts}

"""Tokenization per task kind: a split with canonical columns becomes the model's inputs and labels
(span QA read in overlapping windows of its context)."""

from __future__ import annotations

from functools import partial
from typing import Any

import datasets

from xlt_search.tasks.base import Task

# The kinds whose inputs are pairs of segments: they keep token_type_ids for a model reading them.
PAIR_KINDS = ("classification", "multiple_choice", "span")
SEGMENTS = "token_type_ids"


def tokenize(
    task: Task,
    dataset: datasets.Dataset,
    tokenizer: Any,
    max_seq_length: int,
    *,
    segments: bool = False,
) -> datasets.Dataset:
    """Tokenize a split with canonical columns into the model's inputs and labels for its kind.

    classification: ``input_ids``, ``labels``; multiple_choice: ``input_ids`` [choices][tokens],
    ``labels``; tagging: ``input_ids``, ``labels`` per token (first sub-token of a word; -100
    elsewhere); span: one row per window of the context (`span_windows`) with ``input_ids``,
    ``start_positions`` and ``end_positions`` (0 when the window holds no answer) and, for
    evaluation, the ``example`` it came from, each token's character offsets in the context (-1
    outside it), the ``context`` and the gold ``answers``; retrieval: ``input_ids`` (the query)
    and ``candidate_ids`` (its translation); parallel: the same two columns from ``source`` (the
    English sentence) and ``target`` (its translation), each side tokenized alone. With `segments`, the pairs (classification,
    multiple choice, span) also keep the tokenizer's ``token_type_ids``, shaped like ``input_ids``.
    """
    functions = {
        "classification": _tokenize_classification,
        "multiple_choice": _tokenize_multiple_choice,
        "tagging": _tokenize_tagging,
        "span": _tokenize_span,
        "retrieval": partial(_tokenize_translations, sides=("query", "candidate")),
        "parallel": partial(_tokenize_translations, sides=("source", "target")),
    }
    if task.kind in ("classification", "multiple_choice"):
        dataset = dataset.filter(lambda label: label >= 0, input_columns="label")
    return dataset.map(
        functions[task.kind],
        batched=True,
        with_indices=task.kind == "span",
        remove_columns=dataset.column_names,
        fn_kwargs={"tokenizer": tokenizer, "max_length": max_seq_length}
        | ({"segments": segments} if task.kind in PAIR_KINDS else {}),
        load_from_cache_file=False,
        keep_in_memory=True,
        desc=f"tokenizing {task.key}",
    )


def _tokenize_classification(batch: dict, tokenizer: Any, max_length: int, segments: bool) -> dict:
    pair = (batch["text_b"],) if "text_b" in batch else ()
    encoded = tokenizer(
        batch["text_a"],
        *pair,
        truncation=True,
        max_length=max_length,
        return_token_type_ids=segments,
    )
    out = {"input_ids": encoded["input_ids"], "labels": batch["label"]}
    return out | ({SEGMENTS: encoded[SEGMENTS]} if segments else {})


def _tokenize_multiple_choice(batch: dict, tokenizer: Any, max_length: int, segments: bool) -> dict:
    contexts, choices, counts = [], [], []
    for context, options in zip(batch["context"], batch["choices"], strict=True):
        contexts += [context] * len(options)
        choices += list(options)
        counts.append(len(options))
    encoded = tokenizer(
        contexts, choices, truncation=True, max_length=max_length, return_token_type_ids=segments
    )
    out = {"labels": batch["label"]}
    for column in ("input_ids", SEGMENTS) if segments else ("input_ids",):
        grouped, start = [], 0
        for count in counts:
            grouped.append(encoded[column][start : start + count])
            start += count
        out[column] = grouped
    return out


def _tokenize_tagging(batch: dict, tokenizer: Any, max_length: int) -> dict:
    encoded = tokenizer(
        batch["tokens"], is_split_into_words=True, truncation=True, max_length=max_length
    )
    labels = []
    for i, tags in enumerate(batch["tags"]):
        previous, row = None, []
        for word in encoded.word_ids(i):
            first = word is not None and word != previous
            row.append(tags[word] if first and tags[word] >= 0 else -100)  # -1: an untagged word
            previous = word
        labels.append(row)
    return {"input_ids": encoded["input_ids"], "labels": labels}


def _tokenize_translations(
    batch: dict, tokenizer: Any, max_length: int, sides: tuple[str, str]
) -> dict:
    """A sentence and its translation, each its own sequence (`input_ids`, `candidate_ids`)."""
    first, second = (
        tokenizer(batch[side], truncation=True, max_length=max_length)["input_ids"]
        for side in sides
    )
    return {"input_ids": first, "candidate_ids": second}


def span_windows(max_length: int) -> tuple[int, int]:
    """(question tokens kept, tokens shared by consecutive windows) for span QA at `max_length`.

    A question longer than a third of the sequence is cut, so every window keeps room for the
    context; a long context is read in windows that overlap by a sixth of the sequence, as
    SQuAD-style readers do (an answer cut by one window is whole in the next).
    """
    return max(1, max_length // 3), max(1, max_length // 6)


def _tokenize_span(
    batch: dict, indices: list[int], tokenizer: Any, max_length: int, segments: bool
) -> dict:
    question_tokens, stride = span_windows(max_length)
    questions = tokenizer(
        batch["question"],
        add_special_tokens=False,
        truncation=True,
        max_length=question_tokens,
        return_offsets_mapping=True,
    )["offset_mapping"]
    cut = [
        q[: spans[-1][1]] if spans else q
        for q, spans in zip(batch["question"], questions, strict=True)
    ]
    encoded = tokenizer(
        cut,
        batch["context"],
        truncation="only_second",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        return_token_type_ids=segments,
    )
    out: dict[str, list] = {
        "input_ids": encoded["input_ids"],
        **({SEGMENTS: encoded[SEGMENTS]} if segments else {}),
        "start_positions": [],
        "end_positions": [],
        "example": [],
        "offset_start": [],
        "offset_end": [],
        "context": [],
        "answers": [],
    }
    for i, source in enumerate(encoded["overflow_to_sample_mapping"]):
        answers = batch["answers"][source]
        in_context = [s == 1 for s in encoded.sequence_ids(i)]
        offsets = encoded["offset_mapping"][i]
        starts = [o[0] if c else -1 for o, c in zip(offsets, in_context, strict=True)]
        ends = [o[1] if c else -1 for o, c in zip(offsets, in_context, strict=True)]
        start_token = end_token = 0
        if answers["text"]:
            first = answers["answer_start"][0]
            last = first + len(answers["text"][0])
            covering_start = [t for t, s in enumerate(starts) if s != -1 and s <= first < ends[t]]
            covering_end = [t for t, e in enumerate(ends) if e != -1 and starts[t] < last <= e]
            if covering_start and covering_end:
                start_token, end_token = covering_start[0], covering_end[-1]
        out["start_positions"].append(start_token)
        out["end_positions"].append(end_token)
        out["example"].append(indices[source])
        out["offset_start"].append(starts)
        out["offset_end"].append(ends)
        out["context"].append(batch["context"][source])
        out["answers"].append(list(answers["text"]))
    return out

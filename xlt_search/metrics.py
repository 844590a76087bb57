"""Evaluation metrics, all on a 0-1 scale: accuracy (overall and per label), macro F1, entity F1
(NER), SQuAD's exact match and token F1, retrieval accuracy, before and after an orthogonal map
(alignment).

A task's declared `metric` names one of `METRICS_BY_KIND[task.kind]`.
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Sequence

import torch
import torch.nn.functional as F

METRICS_BY_KIND: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy", "f1"),
    "multiple_choice": ("accuracy",),
    "tagging": ("accuracy", "f1", "entity_f1"),
    "span": ("exact_match", "f1"),
    "retrieval": ("accuracy",),
    # A parallel task only trains (it is refused as a target): its metric is never computed.
    "parallel": ("none",),
}


def accuracy(predictions: Sequence[int], labels: Sequence[int]) -> float:
    """The share of predictions equal to their label."""
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
    if not labels:
        raise ValueError("accuracy of an empty evaluation set")
    return sum(int(p == y) for p, y in zip(predictions, labels, strict=True)) / len(labels)


def label_accuracy(
    predictions: Sequence[int], labels: Sequence[int], names: Sequence[str] = ()
) -> dict[str, float]:
    """The accuracy on the rows of each gold label (that label's recall), by the label's name
    (`names[label]`, else the label's index); labels no row has are left out."""
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
    hits: dict[int, list[int]] = collections.defaultdict(list)
    for predicted, gold in zip(predictions, labels, strict=True):
        hits[gold].append(int(predicted == gold))
    return {
        names[gold] if gold < len(names) else str(gold): sum(row) / len(row)
        for gold, row in sorted(hits.items())
    }


def macro_f1(predictions: Sequence[int], labels: Sequence[int]) -> float:
    """F1 of each class seen in the labels or the predictions, averaged with equal weight."""
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
    if not labels:
        raise ValueError("F1 of an empty evaluation set")
    scores = []
    for cls in sorted(set(labels) | set(predictions)):
        true_pos = sum(1 for p, y in zip(predictions, labels, strict=True) if p == y == cls)
        predicted = sum(1 for p in predictions if p == cls)
        actual = sum(1 for y in labels if y == cls)
        scores.append(2 * true_pos / (predicted + actual))
    return sum(scores) / len(scores)


def tagging_scores(
    predictions: Sequence[Sequence[int]],
    labels: Sequence[Sequence[int]],
    names: Sequence[str] = (),
    ignore_index: int = -100,
) -> dict[str, float]:
    """Token accuracy and macro F1 over the positions whose label is not `ignore_index`; with the
    tags' `names` in BIO form (``B-PER``, ``I-PER``, ``O``), also entity F1 (`entity_f1`)."""
    flat_predictions, flat_labels, sequences = [], [], []
    for predicted, gold in zip(predictions, labels, strict=True):
        kept = [(p, y) for p, y in zip(predicted, gold, strict=True) if y != ignore_index]
        flat_predictions += [p for p, _ in kept]
        flat_labels += [y for _, y in kept]
        sequences.append(kept)
    scores = {
        "accuracy": accuracy(flat_predictions, flat_labels),
        "f1": macro_f1(flat_predictions, flat_labels),
    }
    if names:
        scores["entity_f1"] = entity_f1(
            [[names[p] for p, _ in kept] for kept in sequences],
            [[names[y] for _, y in kept] for kept in sequences],
        )
    return scores


def entities(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """The (type, first, last) entities of a BIO tag sequence, as CoNLL's evaluation reads them:
    an I- tag that does not continue an entity of its type starts one."""
    found, current = set(), None
    for position, tag in enumerate([*tags, "O"]):
        prefix, _, kind = tag.partition("-")
        continues = prefix == "I" and current is not None and current[0] == kind
        if current is not None and not continues:
            found.add((current[0], current[1], position - 1))
            current = None
        if prefix in ("B", "I") and not continues:
            current = (kind, position)
    return found


def entity_f1(predictions: Sequence[Sequence[str]], labels: Sequence[Sequence[str]]) -> float:
    """Micro F1 of exactly matching entities (type and extent) over BIO-tagged sequences."""
    predicted = gold = correct = 0
    for predicted_tags, gold_tags in zip(predictions, labels, strict=True):
        mine, theirs = entities(predicted_tags), entities(gold_tags)
        predicted, gold, correct = (
            predicted + len(mine),
            gold + len(theirs),
            correct + len(mine & theirs),
        )
    if predicted == 0 or gold == 0 or correct == 0:
        return float(predicted == gold == 0)
    precision, recall = correct / predicted, correct / gold
    return 2 * precision * recall / (precision + recall)


def retrieval_accuracy(queries: torch.Tensor, candidates: torch.Tensor) -> float:
    """The share of queries ([n, dim] embeddings) whose nearest candidate by cosine similarity is
    their own (row i's translation is candidate i): Tatoeba's measure."""
    if len(queries) != len(candidates):
        raise ValueError(f"{len(queries)} queries for {len(candidates)} candidates")
    if not len(queries):
        raise ValueError("retrieval accuracy of an empty evaluation set")
    similarity = F.normalize(queries.float(), dim=-1) @ F.normalize(candidates.float(), dim=-1).T
    nearest = similarity.argmax(dim=1)
    return float((nearest == torch.arange(len(queries), device=nearest.device)).float().mean())


def procrustes(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The orthogonal map W ([dim, dim]) that takes `source` rows nearest `target`'s in least
    squares, argmin ||source W - target|| over W^T W = I: U V^T of source^T target = U S V^T
    (orthogonal Procrustes, Schonemann 1966)."""
    u, _, vh = torch.linalg.svd(source.double().T @ target.double())
    return (u @ vh).to(source.dtype)


def aligned_retrieval(
    queries: torch.Tensor, candidates: torch.Tensor, fit: int
) -> tuple[float, float]:
    """Retrieval accuracy of parallel sentence embeddings (query i translates candidate i) on the
    pairs after the first `fit`, before and after an orthogonal map fitted on those `fit` pairs.

    The map is fitted and applied to each side centred on its own mean over the fit pairs (a
    language's mean embedding is an offset no rotation removes), so "after" measures what a
    rotation and a shift make of the held-out pairs; "before" is `retrieval_accuracy` as it is.
    """
    if not 0 < fit < len(queries):
        raise ValueError(f"fit on {fit} of {len(queries)} pairs leaves none to score or fit")
    held_q, held_c = queries[fit:].float(), candidates[fit:].float()
    before = retrieval_accuracy(held_q, held_c)
    q_mean, c_mean = queries[:fit].float().mean(0), candidates[:fit].float().mean(0)
    rotation = procrustes(queries[:fit].float() - q_mean, candidates[:fit].float() - c_mean)
    return before, retrieval_accuracy((held_q - q_mean) @ rotation, held_c - c_mean)


def normalize_answer(text: str) -> str:
    """SQuAD's normalization: lower case, no punctuation, no articles, single spaces."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    """1.0 when the normalized prediction equals a normalized gold answer; no answers means ""."""
    golds = list(answers) or [""]
    return float(any(normalize_answer(prediction) == normalize_answer(g) for g in golds))


def token_f1(prediction: str, answers: Sequence[str]) -> float:
    """SQuAD's token-overlap F1 against the best-matching gold answer; no answers means ""."""
    return max(_f1_one(prediction, gold) for gold in (list(answers) or [""]))


def _f1_one(prediction: str, gold: str) -> float:
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not predicted or not expected:
        # SQuAD v2: an empty answer scores 1 against an empty gold, 0 against anything else.
        return float(predicted == expected)
    common = collections.Counter(predicted) & collections.Counter(expected)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(predicted), overlap / len(expected)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: Sequence[str], answers: Sequence[Sequence[str]]) -> dict[str, float]:
    """Mean exact match and token F1 over a span-extraction evaluation set."""
    if len(predictions) != len(answers):
        raise ValueError(f"{len(predictions)} predictions for {len(answers)} examples")
    if not answers:
        raise ValueError("SQuAD scores of an empty evaluation set")
    pairs = list(zip(predictions, answers, strict=True))
    return {
        "exact_match": sum(exact_match(p, a) for p, a in pairs) / len(pairs),
        "f1": sum(token_f1(p, a) for p, a in pairs) / len(pairs),
    }

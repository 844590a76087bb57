"""Evaluation metrics, all on a 0-1 scale: accuracy, macro F1, SQuAD's exact match and token F1.

A task's declared `metric` names one of `METRICS_BY_KIND[task.kind]`.
"""

from __future__ import annotations

import collections
import re
import string
from collections.abc import Sequence

METRICS_BY_KIND: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy", "f1"),
    "multiple_choice": ("accuracy",),
    "tagging": ("accuracy", "f1"),
    "span": ("exact_match", "f1"),
}


def accuracy(predictions: Sequence[int], labels: Sequence[int]) -> float:
    """The share of predictions equal to their label."""
    if len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions for {len(labels)} labels")
    if not labels:
        raise ValueError("accuracy of an empty evaluation set")
    return sum(int(p == y) for p, y in zip(predictions, labels, strict=True)) / len(labels)


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
    predictions: Sequence[Sequence[int]], labels: Sequence[Sequence[int]], ignore_index: int = -100
) -> dict[str, float]:
    """Token accuracy and macro F1 over the positions whose label is not `ignore_index`."""
    flat_predictions, flat_labels = [], []
    for predicted, gold in zip(predictions, labels, strict=True):
        for p, y in zip(predicted, gold, strict=True):
            if y != ignore_index:
                flat_predictions.append(p)
                flat_labels.append(y)
    return {
        "accuracy": accuracy(flat_predictions, flat_labels),
        "f1": macro_f1(flat_predictions, flat_labels),
    }


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

"""How a trial is scored: its dev sets, a model's metric on one, retrieval accuracy, and the
metrics of a report (the score over targets, per target, language and family)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from transformers import PreTrainedModel

from xlt_search.data import PreparedData, eval_batches
from xlt_search.metrics import (
    accuracy,
    label_accuracy,
    macro_f1,
    retrieval_accuracy,
    squad_scores,
    tagging_scores,
)
from xlt_search.names import LABEL_PREFIX, mixed_metric
from xlt_search.tasks.base import Task
from xlt_search.trial.config import Phase, TargetConfig, TrialConfig
from xlt_search.trial.model import MultiTaskModel, decode_spans, mean_pooled, pick_answers
from xlt_search.trial.training import FineTune, to_device

# What MLflow refuses in a metric's name, which a label's name may hold.
_UNSAFE = re.compile(r"[^\w.\- :/]")
EVAL_BATCH_MULTIPLIER = 4  # evaluation batches hold this many training batches' worth of examples

# (target task, language) -> that dev set's evaluation batches, on the trial's device.
EvalSets = Mapping[tuple[str, str], list[dict[str, Any]]]
# target task -> language -> metric name -> value.
Scores = Mapping[str, Mapping[str, Mapping[str, float]]]


def dev_sets(
    config: TrialConfig, data: PreparedData, device: torch.device
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Every target language's dev set as evaluation batches on `device` (see `EvalSets`)."""
    return {
        (target.task, lang): [
            to_device(batch, device)
            for batch in eval_batches(
                data.load(target.task, "validation", lang),
                data.task(target.task).kind,
                data.pad_token_id,
                EVAL_BATCH_MULTIPLIER * config.per_device_batch_size,
            )
        ]
        for target in config.targets
        for lang in target.languages
    }


@torch.inference_mode()
def evaluate(
    model: MultiTaskModel, head: str, task: Task, batches: Sequence[Mapping[str, Any]]
) -> dict[str, float]:
    """`task.metric` of head `head` over prepared evaluation batches (dropout off), by name; span
    tasks give both exact match and F1, as QA is reported; classification and multiple choice
    also the accuracy on each gold label's rows (`label.<label>`, `metrics.label_accuracy`)."""
    was_training = model.training
    model.eval()
    try:
        predictions: list[Any] = []
        golds: list[Any] = []
        gold_answers: dict[int, list[str]] = {}
        for batch in batches:
            _, logits = model(head, batch)
            if task.kind == "span":  # per window of a context; answers are picked per example
                predictions += decode_spans(*logits, batch)
                gold_answers.update(zip(batch["example"], batch["answers"], strict=True))
            else:  # per example, or per token for tagging
                predictions += logits.argmax(-1).tolist()
                golds += batch["labels"].tolist()
    finally:
        model.train(was_training)
    if task.kind == "span":
        answers = pick_answers(predictions, task.unanswerable)
        examples = sorted(gold_answers)
        return squad_scores([answers[e] for e in examples], [gold_answers[e] for e in examples])
    if task.kind == "tagging":
        return {task.metric: tagging_scores(predictions, golds, task.labels)[task.metric]}
    score = accuracy if task.metric == "accuracy" else macro_f1
    per_label = label_accuracy(predictions, golds, task.labels)
    return {
        task.metric: score(predictions, golds),
        **{f"{LABEL_PREFIX}{_UNSAFE.sub('_', name)}": v for name, v in per_label.items()},
    }


@torch.inference_mode()
def evaluate_retrieval(encoder: PreTrainedModel, batches: Sequence[Mapping[str, Any]]) -> float:
    """Retrieval accuracy of `encoder`'s mean-pooled embeddings: each query against every
    candidate of the evaluation set (dropout off)."""
    was_training = encoder.training
    encoder.eval()
    try:
        queries = torch.cat(
            [mean_pooled(encoder, b["input_ids"], b["attention_mask"]) for b in batches]
        )
        candidates = torch.cat(
            [mean_pooled(encoder, b["candidate_ids"], b["candidate_mask"]) for b in batches]
        )
    finally:
        encoder.train(was_training)
    return retrieval_accuracy(queries, candidates)


def retrieval_scores(
    encoder: PreTrainedModel, target: TargetConfig, eval_sets: EvalSets
) -> dict[str, dict[str, float]]:
    """A retrieval target's accuracy in each of its languages, on `encoder` as it is."""
    return {
        lang: {"accuracy": evaluate_retrieval(encoder, eval_sets[target.task, lang])}
        for lang in target.languages
    }


def mixed_scores(
    tune: FineTune, data: PreparedData, config: TrialConfig, device: torch.device
) -> dict[str, float]:
    """A fine-tune's metric on each mixed-language cell of its target (`data.mixing`), by metric
    name, and the matrix's diagonal mean (same-language instances), off-diagonal mean (the two
    parts in two languages) and their gap (diagonal minus off-diagonal); {} without mixing.

    The cells are read from the cache only here, at the trial's final report.
    """
    target, task = tune.target, data.task(tune.target.task)
    cells = {}
    for first, second in target.mixed_pairs:
        batches = [
            to_device(batch, device)
            for batch in eval_batches(
                data.load_mixed(target.task, first, second),
                task.kind,
                data.pad_token_id,
                EVAL_BATCH_MULTIPLIER * config.per_device_batch_size,
            )
        ]
        cells[first, second] = evaluate(tune.model, target.task, task, batches)[task.metric]
    if not cells:
        return {}
    diagonal = [value for (first, second), value in cells.items() if first == second]
    off = [value for (first, second), value in cells.items() if first != second]
    means = {"diagonal": sum(diagonal) / len(diagonal), "off_diagonal": sum(off) / len(off)}
    means["gap"] = means["diagonal"] - means["off_diagonal"]
    named = {f"{first}-{second}": value for (first, second), value in cells.items()}
    return {mixed_metric(target.task, name): value for name, value in (named | means).items()}


def report_metrics(
    scores: Scores,
    data: PreparedData,
    budget_steps: int,
    loss: float | None,
    phase: Phase,
    final: bool,
) -> dict[str, float]:
    """A report: the score (over targets, of the non-English mean), per target, language, family.

    `scores` maps target -> language -> metric -> value; the target's own metric makes its score
    (`lang.<target>.<lang>`), a label's accuracy is `label.<target>.<lang>.<label>`, any other
    is reported beside the score (`lang.<target>.<lang>.<metric>`).
    """
    metrics: dict[str, float] = {"budget_steps": budget_steps}
    per_family: dict[str, list[float]] = {}
    for target, by_lang in scores.items():
        primary = data.task(target).metric
        transfer = {lang: value[primary] for lang, value in by_lang.items() if lang != "en"}
        metrics[f"score.{target}"] = sum(transfer.values()) / len(transfer)
        for lang, values in by_lang.items():
            metrics[f"lang.{target}.{lang}"] = values[primary]
            for name, value in values.items():
                if name.startswith(LABEL_PREFIX):
                    label = name.removeprefix(LABEL_PREFIX)
                    metrics[f"{LABEL_PREFIX}{target}.{lang}.{label}"] = value
                elif name != primary:
                    metrics[f"lang.{target}.{lang}.{name}"] = value
        groups: dict[str, list[float]] = {}
        for lang, value in transfer.items():
            groups.setdefault(data.families[lang], []).append(value)
        for family, values in groups.items():
            per_family.setdefault(family, []).append(sum(values) / len(values))
    metrics["score"] = sum(metrics[f"score.{t}"] for t in scores) / len(scores)
    for family, values in sorted(per_family.items()):
        metrics[f"family.{family}"] = sum(values) / len(values)
    if loss is not None:  # None: no training step since the last report
        metrics["loss"] = loss
    metrics.update({"phase": phase.number, "final": float(final)})
    return metrics

"""The alignment diagnostic: how close the encoder the intermediate phase left puts English and
each target language, on parallel sentences (Phang et al.'s question on 3 vs 9 tasks; later work
finds alignment a poor predictor of transfer, so it is reported, never optimized).

The parallel data is a target's own: with `mixed_languages` that hold English, its validation rows
are aligned across those languages (`data.mixing`), and the diagonal cells en-en and l-l hold the
same instances, one translated into the other. Each instance is embedded as the encoder reads it
(mean-pooled last hidden states of the pair; of the context with the first choice for multiple
choice), and `metrics.aligned_retrieval` scores the second half of the pairs before and after an
orthogonal map fitted on the first half: `align.<lang>` after it, `align.<lang>.before` without.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from transformers import PreTrainedModel

from xlt_search.data import PreparedData, collate
from xlt_search.metrics import aligned_retrieval
from xlt_search.names import ALIGN
from xlt_search.trial.config import TrialConfig
from xlt_search.trial.model import mean_pooled
from xlt_search.trial.training import to_device

ALIGNED_KINDS = ("classification", "multiple_choice")  # a sentence (pair) per instance
MIN_PAIRS = 4  # two to fit the map on, two to score


def alignment_metrics(
    encoder: PreTrainedModel,
    config: TrialConfig,
    data: PreparedData,
    weights: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, float]:
    """`align.<lang>` and `align.<lang>.before` for every non-English language of the targets whose
    mixed languages hold English (the first such target serves a language); {} where none do.

    `weights`: measure a copy of `encoder` holding these weights instead (the encoder as the
    intermediate phase left it, while `encoder` itself has been fine-tuned since).
    """
    parallel = [
        target
        for target in config.targets
        if "en" in target.mixed_languages and data.task(target.task).kind in ALIGNED_KINDS
    ]
    if not parallel:
        return {}
    if weights is not None:
        encoder = copy.deepcopy(encoder)
        encoder.load_state_dict(weights)
    metrics: dict[str, float] = {}
    batch_size = 4 * config.per_device_batch_size
    for target in parallel:
        english = _embedded(encoder, data, target.task, "en", batch_size)
        if len(english) < MIN_PAIRS:
            continue
        for lang in target.mixed_languages:
            if lang == "en" or f"{ALIGN}.{lang}" in metrics:
                continue
            other = _embedded(encoder, data, target.task, lang, batch_size)
            before, after = aligned_retrieval(other, english, fit=len(english) // 2)
            metrics |= {f"{ALIGN}.{lang}": after, f"{ALIGN}.{lang}.before": before}
    return metrics


@torch.inference_mode()
def _embedded(
    encoder: PreTrainedModel, data: PreparedData, target: str, lang: str, batch_size: int
) -> torch.Tensor:
    """The mean-pooled embedding of every instance of the target's l-l cell, in row order."""
    kind = data.task(target).kind
    rows = data.load_mixed(target, lang, lang).with_format(None)
    was_training = encoder.training
    encoder.eval()
    try:
        chunks = []
        for start in range(0, len(rows), batch_size):
            batch: dict[str, Any] = to_device(
                collate(kind, rows[start : start + batch_size], data.pad_token_id), encoder.device
            )
            ids, mask = batch["input_ids"], batch["attention_mask"]
            if kind == "multiple_choice":  # the context with its first choice
                ids, mask = ids[:, 0], mask[:, 0]
            chunks.append(mean_pooled(encoder, ids, mask))
    finally:
        encoder.train(was_training)
    return torch.cat(chunks)

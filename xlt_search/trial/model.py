"""The model: one shared encoder (XLM-R, mBERT, mDeBERTa, the encoder of mT5, the tiny synthetic
one: see `encoders`), a head per task.

Heads by task kind: classification pools the sequence (dropout, linear); multiple choice scores each
(context, choice) pair by its pooled sequence; tagging is a linear layer per token; span extraction
predicts start and end logits per token. Pooling is the first token, or the mean over the real
tokens for an encoder whose tokenizer has no classification token. Retrieval has no head: sentences
are compared by their mean-pooled embeddings. Parallel data trains through a loss with no
parameters (`TranslationRanking`): InfoNCE over those same mean-pooled embeddings, the other
sentences of the batch as negatives.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel

from xlt_search.encoders import encoder_class, uses_segments

# Head output: (loss or None when the batch has no labels, logits).
HeadOutput = tuple[torch.Tensor | None, Any]


def load_encoder(model: str, device: str | torch.device = "cpu") -> PreTrainedModel:
    """The pretrained encoder (a hub id or a local directory written by `save_pretrained`), on `device`.

    The encoder alone: an encoder-decoder checkpoint (mT5) loads its encoder, the decoder's weights
    left unread (`encoders.encoder_class`). On CPU the plain ("eager") attention is used: for the
    short sequences CPU runs train on it was measured about 12% faster per step than PyTorch's fused
    SDPA kernel. Elsewhere the library's default is kept.
    """
    from transformers import AutoConfig

    device = torch.device(device)
    kwargs = {"attn_implementation": "eager"} if device.type == "cpu" else {}
    auto = encoder_class(AutoConfig.from_pretrained(model))
    return auto.from_pretrained(model, **kwargs).to(device)


def _dropout_probability(encoder: PreTrainedModel) -> float:
    config = encoder.config
    for name in ("hidden_dropout_prob", "dropout", "dropout_rate"):  # BERT, DistilBERT, T5
        if isinstance(getattr(config, name, None), (int, float)):
            return float(getattr(config, name))
    return 0.1


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """One vector per sequence: its first token ("first") or the mean over its real tokens."""
    if pooling == "first":
        return hidden[:, 0]
    if pooling == "mean":
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
    raise ValueError(f"unknown pooling '{pooling}'; use first or mean")


class ClassificationHead(nn.Module):
    """Pooled sequence -> dropout -> linear over the labels."""

    def __init__(
        self, hidden_size: int, num_labels: int, dropout: float, pooling: str = "first"
    ) -> None:
        super().__init__()
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, num_labels)

    def forward(self, hidden: torch.Tensor, batch: Mapping[str, Any]) -> HeadOutput:
        pooled = pool(hidden, batch["attention_mask"], self.pooling)
        logits = self.out(self.dropout(pooled))
        labels = batch.get("labels")
        return (F.cross_entropy(logits, labels) if labels is not None else None), logits


class MultipleChoiceHead(nn.Module):
    """One score per (context, choice) pair from its pooled sequence; softmax over the choices."""

    def __init__(self, hidden_size: int, dropout: float, pooling: str = "first") -> None:
        super().__init__()
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, 1)

    def forward(self, hidden: torch.Tensor, batch: Mapping[str, Any]) -> HeadOutput:
        num_examples, num_choices = batch["input_ids"].shape[:2]
        mask = batch["attention_mask"].view(-1, batch["attention_mask"].shape[-1])
        pooled = pool(hidden, mask, self.pooling)
        logits = self.out(self.dropout(pooled)).view(num_examples, num_choices)
        if "choice_mask" in batch:
            logits = logits.masked_fill(~batch["choice_mask"], torch.finfo(logits.dtype).min)
        labels = batch.get("labels")
        return (F.cross_entropy(logits, labels) if labels is not None else None), logits


class TaggingHead(nn.Module):
    """Dropout -> linear over the tags, per token; positions labelled -100 are not scored."""

    def __init__(self, hidden_size: int, num_labels: int, dropout: float) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_size, num_labels)

    def forward(self, hidden: torch.Tensor, batch: Mapping[str, Any]) -> HeadOutput:
        logits = self.out(self.dropout(hidden))
        labels = batch.get("labels")
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        return loss, logits


class SpanHead(nn.Module):
    """Start and end logits per token; padding can be neither. Position 0 means "no answer"."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.out = nn.Linear(hidden_size, 2)

    def forward(self, hidden: torch.Tensor, batch: Mapping[str, Any]) -> HeadOutput:
        start_logits, end_logits = self.out(hidden).unbind(-1)
        padding = batch["attention_mask"] == 0
        lowest = torch.finfo(start_logits.dtype).min
        start_logits = start_logits.masked_fill(padding, lowest)
        end_logits = end_logits.masked_fill(padding, lowest)
        loss = None
        if "start_positions" in batch:
            loss = (
                F.cross_entropy(start_logits, batch["start_positions"])
                + F.cross_entropy(end_logits, batch["end_positions"])
            ) / 2
        return loss, (start_logits, end_logits)


# InfoNCE's temperature on cosine similarities, as SimCSE and most in-batch contrastive encoders
# use it: low enough that the softmax singles out the right translation.
RANKING_TEMPERATURE = 0.05


class TranslationRanking(nn.Module):
    """Translation ranking over a batch of parallel pairs: each English sentence's translation must
    score above the batch's other translations, and each translation's English sentence above the
    other English sentences (InfoNCE, both directions averaged, in-batch negatives).

    The batch holds the English sentences then their translations (`data.collate` of a parallel
    split); the score of two sentences is the cosine of their mean-pooled embeddings over
    `RANKING_TEMPERATURE`. No parameters: the loss shapes the encoder alone. The logits are the
    [pairs, pairs] score matrix, English rows, translation columns.
    """

    def forward(self, hidden: torch.Tensor, batch: Mapping[str, Any]) -> HeadOutput:
        embedded = F.normalize(pool(hidden, batch["attention_mask"], "mean"), dim=-1)
        english, translations = embedded.chunk(2)
        logits = english @ translations.T / RANKING_TEMPERATURE
        truth = torch.arange(len(logits), device=logits.device)
        loss = (F.cross_entropy(logits, truth) + F.cross_entropy(logits.T, truth)) / 2
        return loss, logits


def make_head(
    kind: str, hidden_size: int, num_labels: int, dropout: float, pooling: str = "first"
) -> nn.Module:
    """A freshly initialized head for a task of `kind` (initialized from torch's global RNG);
    `pooling` is what classification and multiple choice heads pool (see `pool`). A parallel task's
    "head" is its loss, `TranslationRanking`, which always mean-pools."""
    if kind == "classification":
        return ClassificationHead(hidden_size, num_labels, dropout, pooling)
    if kind == "multiple_choice":
        return MultipleChoiceHead(hidden_size, dropout, pooling)
    if kind == "tagging":
        return TaggingHead(hidden_size, num_labels, dropout)
    if kind == "span":
        return SpanHead(hidden_size)
    if kind == "parallel":
        return TranslationRanking()
    raise ValueError(f"unknown task kind '{kind}'")


class MultiTaskModel(nn.Module):
    """A shared encoder with named heads; `model(head, batch)` runs the encoder and that head."""

    def __init__(
        self,
        encoder: PreTrainedModel,
        heads: Mapping[str, tuple[str, int]],
        autocast_dtype: torch.dtype | None = None,
        pooling: str = "first",
    ) -> None:
        """`heads` maps a head's name to (task kind, number of labels). With `autocast_dtype`
        (bf16) the encoder's forward pass runs under autocast; the weights, the heads, the
        logits and the loss stay in fp32. `pooling` is the encoder's (`encoders.pooling`).
        Batches' ``token_type_ids`` reach the encoder only when it reads segment ids."""
        super().__init__()
        self.encoder = encoder
        self.autocast_dtype = autocast_dtype
        self.segments = uses_segments(encoder)
        hidden_size, dropout = encoder.config.hidden_size, _dropout_probability(encoder)
        self.heads = nn.ModuleDict(
            {
                name: make_head(kind, hidden_size, num_labels, dropout, pooling)
                for name, (kind, num_labels) in heads.items()
            }
        )

    def forward(self, head: str, batch: Mapping[str, Any]) -> HeadOutput:
        input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
        autocast = (
            torch.autocast(input_ids.device.type, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None
            else contextlib.nullcontext()
        )
        # Multiple choice: every (context, choice) pair is one sequence for the encoder.
        inputs = {
            "input_ids": input_ids.view(-1, input_ids.shape[-1]),
            "attention_mask": attention_mask.view(-1, attention_mask.shape[-1]),
        }
        if self.segments and "token_type_ids" in batch:
            inputs["token_type_ids"] = batch["token_type_ids"].view(-1, input_ids.shape[-1])
        with autocast:
            hidden = self.encoder(**inputs).last_hidden_state
        return self.heads[head](hidden.float(), batch)


def decode_spans(
    start_logits: torch.Tensor,
    end_logits: torch.Tensor,
    batch: Mapping[str, Any],
    max_answer_tokens: int = 30,
) -> list[tuple[int, str, float, float]]:
    """Per window of a context: (its example, the best answer text, that span's score, the
    "no answer" score).

    The best span lies inside the context (start <= end, at most `max_answer_tokens`) with the
    highest start + end score; "no answer" scores position 0 as both start and end. A window with
    no context token has no span: "" with score -inf.
    """
    offset_start = torch.tensor(batch["offset_start"], device=start_logits.device)
    offset_end = torch.tensor(batch["offset_end"], device=start_logits.device)
    in_context = offset_start >= 0
    length = start_logits.shape[1]
    positions = torch.arange(length, device=start_logits.device)
    allowed = (positions[None, :] >= positions[:, None]) & (
        positions[None, :] - positions[:, None] < max_answer_tokens
    )
    scores = start_logits[:, :, None] + end_logits[:, None, :]
    allowed = allowed[None] & in_context[:, :, None] & in_context[:, None, :]
    scores = scores.masked_fill(~allowed, float("-inf"))
    best = scores.flatten(1).max(dim=1)
    null_scores = (start_logits[:, 0] + end_logits[:, 0]).tolist()
    values, indices = best.values.tolist(), best.indices.tolist()
    windows = []
    for i, context in enumerate(batch["context"]):
        text = ""
        if values[i] != float("-inf"):
            start, end = divmod(indices[i], length)
            text = context[int(offset_start[i, start]) : int(offset_end[i, end])]
        windows.append((batch["example"][i], text, values[i], null_scores[i]))
    return windows


def pick_answers(
    windows: Iterable[tuple[int, str, float, float]], unanswerable: bool
) -> dict[int, str]:
    """Each example's answer from its windows: the best-scoring span over them all; "" instead
    when the task has unanswerable questions and "no answer" (its lowest score over the windows,
    as SQuAD v2.0 readers take it) beats that span."""
    best: dict[int, tuple[str, float, float]] = {}
    for example, text, score, null in windows:
        kept_text, kept_score, kept_null = best.get(example, ("", float("-inf"), float("inf")))
        if score > kept_score:
            kept_text, kept_score = text, score
        best[example] = (kept_text, kept_score, min(kept_null, null))
    return {
        example: "" if unanswerable and null > score else text
        for example, (text, score, null) in best.items()
    }


def mean_pooled(
    encoder: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> torch.Tensor:
    """Sentence embeddings: the encoder's last hidden states averaged over the real tokens."""
    hidden = encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    return pool(hidden, attention_mask, "mean")

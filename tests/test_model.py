"""The encoder with one head per task kind: shapes, losses, padding invariance, span decoding."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import ToyWorld

from xlt_search.data import collate
from xlt_search.trial import (
    RANKING_TEMPERATURE,
    MultiTaskModel,
    TranslationRanking,
    decode_spans,
    load_encoder,
    pick_answers,
)

HEADS = {
    "cls": ("classification", 3),
    "mc": ("multiple_choice", 2),
    "tag": ("tagging", 4),
    "span": ("span", 2),
    "par": ("parallel", 0),
}


@pytest.fixture(scope="module")
def model(toy_world: ToyWorld) -> MultiTaskModel:
    torch.manual_seed(0)
    return MultiTaskModel(load_encoder(str(toy_world.encoder)), HEADS).eval()


def test_the_encoder_loads_from_its_saved_directory(toy_world: ToyWorld) -> None:
    encoder = load_encoder(str(toy_world.encoder))
    assert encoder.config.model_type == "xlm-roberta"
    assert encoder.config.hidden_size == 32


def test_every_head_gives_its_logits_and_a_loss(model: MultiTaskModel) -> None:
    ids = [[0, 5, 6, 2], [0, 7, 2]]
    cls = collate("classification", {"input_ids": ids, "labels": [0, 2]}, 1)
    loss, logits = model("cls", cls)
    assert logits.shape == (2, 3) and loss.ndim == 0

    mc = collate("multiple_choice", {"input_ids": [ids, ids[::-1]], "labels": [1, 0]}, 1)
    loss, logits = model("mc", mc)
    assert logits.shape == (2, 2) and loss.ndim == 0

    tags = collate(
        "tagging", {"input_ids": ids, "labels": [[-100, 1, 3, -100], [-100, 0, -100]]}, 1
    )
    loss, logits = model("tag", tags)
    assert logits.shape == (2, 4, 4) and loss.ndim == 0

    rows = {
        "input_ids": ids,
        "start_positions": [1, 0],
        "end_positions": [2, 0],
        "example": [0, 1],
        "offset_start": [[-1, 0, 3, -1], [-1, 0, -1]],
        "offset_end": [[-1, 2, 5, -1], [-1, 2, -1]],
        "context": ["ab cd", "ef"],
        "answers": [["ab cd"], []],
    }
    loss, (start, end) = model("span", collate("span", rows, 1))
    assert start.shape == end.shape == (2, 4) and loss.ndim == 0
    # padding can be neither start nor end
    assert start[1, 3] == torch.finfo(start.dtype).min


def _pairs(english: torch.Tensor, translations: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Planted hidden states: one token per sentence, its embedding the vector given."""
    hidden = torch.cat([english, translations])[:, None, :]
    return hidden, {"attention_mask": torch.ones(len(hidden), 1, dtype=torch.long)}


def test_translation_ranking_recovers_planted_pairs_and_finds_none_in_mismatched_ones() -> None:
    n, ranking = 4, TranslationRanking()
    basis = torch.eye(n, 8)  # orthogonal sentences; each translation embedded as its sentence
    loss, logits = ranking(*_pairs(basis, 3 * basis))  # the norm does not matter: cosines
    assert logits.argmax(1).tolist() == list(range(n))
    # each row: the right translation at cosine 1, the other n - 1 at cosine 0
    scale = 1 / RANKING_TEMPERATURE
    assert loss.item() == pytest.approx(math.log(1 + (n - 1) * math.exp(-scale)), abs=1e-6)
    # translations paired with the wrong sentence: the right one scores 0, a wrong one 1 / T
    mismatched, _ = ranking(*_pairs(basis, basis.roll(1, 0)))
    assert mismatched.item() == pytest.approx(math.log(math.exp(scale) + n - 1), rel=1e-6)
    # nothing to tell the pairs apart (every sentence the same): chance, log n
    same, _ = ranking(*_pairs(torch.ones(n, 8), torch.ones(n, 8)))
    assert same.item() == pytest.approx(math.log(n), rel=1e-6)


def test_a_parallel_batch_trains_the_encoder_through_the_model(model: MultiTaskModel) -> None:
    rows = {"input_ids": [[0, 5, 6, 2], [0, 7, 2]], "candidate_ids": [[0, 8, 2], [0, 9, 10, 2]]}
    batch = collate("parallel", rows, 1)
    assert batch["input_ids"].shape == (4, 4)
    model.train()
    try:
        model.zero_grad()
        loss, logits = model("par", batch)
        assert logits.shape == (2, 2) and loss.ndim == 0
        loss.backward()
        assert model.encoder.embeddings.word_embeddings.weight.grad[8].abs().sum() > 0
        assert list(model.heads["par"].parameters()) == []  # no head: the loss alone
    finally:
        model.zero_grad()
        model.eval()


def test_a_batch_without_labels_has_no_loss(model: MultiTaskModel) -> None:
    batch = collate("classification", {"input_ids": [[0, 5, 2]], "labels": [0]}, 1)
    del batch["labels"]
    loss, logits = model("cls", batch)
    assert loss is None and logits.shape == (1, 3)


def test_padding_does_not_change_a_sequence_s_prediction(model: MultiTaskModel) -> None:
    alone = collate("classification", {"input_ids": [[0, 5, 6, 2]], "labels": [0]}, 1)
    padded = collate(
        "classification",
        {"input_ids": [[0, 5, 6, 2], [0, 7, 8, 9, 10, 11, 2]], "labels": [0, 0]},
        1,
    )
    with torch.no_grad():
        _, one = model("cls", alone)
        _, two = model("cls", padded)
    assert torch.allclose(one[0], two[0], atol=1e-5)


def test_a_missing_choice_is_never_chosen(model: MultiTaskModel) -> None:
    rows = {"input_ids": [[[0, 5, 2], [0, 6, 2]], [[0, 7, 2]]], "labels": [0, 0]}
    with torch.no_grad():
        _, logits = model("mc", collate("multiple_choice", rows, 1))
    assert logits[1].argmax() == 0


def test_heads_and_encoder_get_gradients(model: MultiTaskModel) -> None:
    model.train()
    try:
        model.zero_grad()
        batch = collate("classification", {"input_ids": [[0, 5, 6, 2]], "labels": [1]}, 1)
        loss, _ = model("cls", batch)
        loss.backward()
        assert model.heads["cls"].out.weight.grad is not None
        assert model.encoder.embeddings.word_embeddings.weight.grad.abs().sum() > 0
        assert model.heads["span"].out.weight.grad is None  # untouched heads stay untouched
    finally:
        model.zero_grad()
        model.eval()


def test_decode_spans_takes_each_windows_best_span_and_its_no_answer_score() -> None:
    batch = {
        "example": [7, 8],
        "offset_start": [[-1, -1, 0, 3, 6], [-1, -1, 0, 3, 6]],
        "offset_end": [[-1, -1, 2, 5, 8], [-1, -1, 2, 5, 8]],
        "context": ["ab cd ef", "ab cd ef"],
    }
    start = torch.tensor([[0.0, 9.0, 1.0, 5.0, 0.0], [9.0, 0.0, 1.0, 2.0, 0.0]])
    end = torch.tensor([[0.0, 9.0, 4.0, 1.0, 3.0], [9.0, 0.0, 1.0, 0.0, 2.0]])
    # window 0: the question token (1) is outside the context; best start 3, end 4 -> "cd ef"
    # window 1: the best span is "cd ef" again (2 + 2); "no answer" scores 9 + 9
    assert decode_spans(start, end, batch) == [(7, "cd ef", 8.0, 0.0), (8, "cd ef", 4.0, 18.0)]
    # an end before the start never counts; a span longer than allowed neither
    one = {k: v[:1] for k, v in batch.items()}
    assert decode_spans(start[:1], end[:1], one, 1) == [(7, "cd", 6.0, 0.0)]


def test_pick_answers_takes_the_best_window_and_no_answer_only_where_allowed() -> None:
    windows = [
        (0, "first", 4.0, 1.0),
        (0, "second", 6.0, 7.0),  # the better span; this window's no-answer is not the lowest
        (1, "maybe", 2.0, 5.0),
        (1, "", float("-inf"), 3.0),  # a window with no context token
    ]
    assert pick_answers(windows, unanswerable=False) == {0: "second", 1: "maybe"}
    # example 0: no-answer's lowest score (1.0) loses to 6.0; example 1: 3.0 beats 2.0
    assert pick_answers(windows, unanswerable=True) == {0: "second", 1: ""}

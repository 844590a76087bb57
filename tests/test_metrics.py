"""Metrics against values worked out by hand (SQuAD's definitions for span extraction, CoNLL's for
entities)."""

from __future__ import annotations

import pytest
import torch

from xlt_search.metrics import (
    METRICS_BY_KIND,
    accuracy,
    aligned_retrieval,
    entities,
    entity_f1,
    exact_match,
    macro_f1,
    normalize_answer,
    procrustes,
    retrieval_accuracy,
    squad_scores,
    tagging_scores,
    token_f1,
)
from xlt_search.tasks.base import TASK_KINDS


def test_accuracy() -> None:
    assert accuracy([0, 1, 2, 1], [0, 1, 1, 1]) == 0.75
    with pytest.raises(ValueError):
        accuracy([0], [0, 1])
    with pytest.raises(ValueError):
        accuracy([], [])


def test_macro_f1_by_hand() -> None:
    # class 0: tp 1, predicted 2, actual 1 -> 2/3; class 1: tp 1, predicted 1, actual 2 -> 2/3;
    # class 2: tp 1, predicted 1, actual 1 -> 1.
    predictions = [0, 0, 1, 2]
    labels = [0, 1, 1, 2]
    assert macro_f1(predictions, labels) == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    assert macro_f1([1, 1], [1, 1]) == 1.0


def test_normalize_answer_follows_squad() -> None:
    assert normalize_answer("The  Cat, sat!") == "cat sat"
    assert normalize_answer("an apple a day") == "apple day"


def test_exact_match_takes_the_best_gold_answer() -> None:
    assert exact_match("the Eiffel tower", ["Eiffel Tower", "tower"]) == 1.0
    assert exact_match("Eiffel", ["Eiffel Tower"]) == 0.0
    assert exact_match("", []) == 1.0  # SQuAD v2: no answer, and none predicted
    assert exact_match("Paris", []) == 0.0


def test_token_f1_by_hand() -> None:
    # prediction "big red dog", gold "red dog barks": overlap 2, precision 2/3, recall 2/3 -> 2/3
    assert token_f1("big red dog", ["red dog barks"]) == pytest.approx(2 / 3)
    # the best of the gold answers counts
    assert token_f1("big red dog", ["red dog barks", "big red dog"]) == 1.0
    # repeated tokens are matched at most as often as they occur
    assert token_f1("dog dog", ["dog"]) == pytest.approx(2 * 0.5 * 1 / 1.5)
    assert token_f1("cat", ["dog"]) == 0.0
    assert token_f1("", []) == 1.0
    assert token_f1("", ["dog"]) == 0.0


def test_squad_scores_average_over_examples() -> None:
    scores = squad_scores(["red dog", "cat", ""], [["red dog"], ["dog"], []])
    assert scores["exact_match"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx(2 / 3)


def test_tagging_scores_skip_ignored_positions() -> None:
    predictions = [[9, 0, 1, 1], [9, 2, 9]]
    labels = [[-100, 0, 1, 2], [-100, 2, -100]]
    scores = tagging_scores(predictions, labels)
    # scored positions: (0,0) (1,1) (1,2) (2,2): 3 of 4 right
    assert scores["accuracy"] == 0.75
    # class 0: 1; class 1: tp 1, predicted 2, actual 1 -> 2/3; class 2: tp 1, predicted 1, actual 2
    assert scores["f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)


def test_every_kind_has_metrics() -> None:
    assert set(METRICS_BY_KIND) == set(TASK_KINDS)


def test_entities_follow_conll_reading_of_bio() -> None:
    tags = ["B-PER", "I-PER", "O", "I-LOC", "I-LOC", "B-ORG", "I-PER", "B-ORG", "B-ORG"]
    assert entities(tags) == {
        ("PER", 0, 1),
        ("LOC", 3, 4),  # an I- after O starts an entity
        ("ORG", 5, 5),
        ("PER", 6, 6),  # an I- of another type starts one too
        ("ORG", 7, 7),
        ("ORG", 8, 8),  # B- right after B- of the same type: two entities
    }


def test_entity_f1_counts_exact_matches_only() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    predicted = [["B-PER", "O", "O", "B-LOC"], ["B-ORG", "B-MISC"]]
    # gold: PER 0-1, LOC 3, ORG 0 (3); predicted: PER 0-0 (wrong extent), LOC 3, ORG 0, MISC 1 (4)
    # correct 2: precision 2/4, recall 2/3, F1 = 2 * (1/2 * 2/3) / (1/2 + 2/3) = 4/7
    assert entity_f1(predicted, gold) == pytest.approx(4 / 7)
    assert entity_f1([["O", "O"]], [["O", "O"]]) == 1.0  # nothing to find, nothing found
    assert entity_f1([["B-PER"]], [["O"]]) == 0.0


def test_tagging_scores_give_entity_f1_when_the_tags_have_names() -> None:
    names = ("O", "B-PER", "I-PER")
    # first sub-tokens only: positions labelled -100 are dropped before reading entities
    predictions = [[0, 1, 2, 2, 0], [0, 1]]
    labels = [[-100, 1, -100, 2, 0], [-100, 1]]
    scores = tagging_scores(predictions, labels, names)
    # kept: [B-PER, I-PER, O] vs gold [B-PER, I-PER, O]; [B-PER] vs [B-PER]
    assert scores["entity_f1"] == 1.0 and scores["accuracy"] == 1.0
    assert "entity_f1" not in tagging_scores(predictions, labels)


def test_retrieval_accuracy_is_the_share_of_queries_nearest_their_own_candidate() -> None:
    queries = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    # candidate 2 is nearest to query 0 too, so query 0 misses; cosine ignores the length
    candidates = torch.tensor([[1.0, 0.2], [0.0, 5.0], [1.0, 0.1]])
    assert retrieval_accuracy(queries, candidates) == pytest.approx(1 / 3)
    assert retrieval_accuracy(queries[1:2], candidates[1:2]) == 1.0


def test_squad_v2_no_answer_cases() -> None:
    # no gold answer: only the empty prediction scores
    assert exact_match("", []) == token_f1("", []) == 1.0
    assert exact_match("a cat", []) == token_f1("a cat", []) == 0.0
    # a gold answer: the empty prediction scores nothing; F1 takes the best of several golds
    assert token_f1("", ["the cat"]) == 0.0
    assert token_f1("black cat sat", ["a cat", "the black cat"]) == pytest.approx(0.8)


def random_rotation(dim: int, generator: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(dim, dim, generator=generator))
    return q * torch.sign(torch.diagonal(r))


def test_procrustes_recovers_a_known_rotation() -> None:
    generator = torch.Generator().manual_seed(0)
    source = torch.randn(50, 8, generator=generator)
    rotation = random_rotation(8, generator)
    found = procrustes(source, source @ rotation)
    assert torch.allclose(found, rotation, atol=1e-5)
    assert torch.allclose(found.T @ found, torch.eye(8), atol=1e-5)  # orthogonal


def test_embeddings_a_rotation_and_a_shift_apart_retrieve_every_pair_after_the_map() -> None:
    generator = torch.Generator().manual_seed(1)
    english = torch.randn(200, 16, generator=generator)
    other = english @ random_rotation(16, generator) + 3.0  # a rotation and a language's offset
    before, after = aligned_retrieval(other, english, fit=100)
    assert after == 1.0
    assert before < 0.5  # as they are, the two languages do not line up


def test_unrelated_embeddings_stay_at_chance_after_the_map() -> None:
    # The map is fitted on held-out pairs: it cannot learn pairs it is not shown.
    generator = torch.Generator().manual_seed(2)
    english, other = torch.randn(2, 200, 16, generator=generator)
    before, after = aligned_retrieval(other, english, fit=100)
    assert before <= 0.05 and after <= 0.05  # chance: 1 in 100


def test_aligned_retrieval_needs_pairs_to_fit_and_to_score() -> None:
    pairs = torch.randn(10, 4)
    for fit in (0, 10):
        with pytest.raises(ValueError, match="leaves none"):
            aligned_retrieval(pairs, pairs, fit=fit)

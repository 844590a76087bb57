"""Metrics against values worked out by hand (SQuAD's definitions for span extraction)."""

from __future__ import annotations

import pytest

from xlt_search.metrics import (
    METRICS_BY_KIND,
    accuracy,
    exact_match,
    macro_f1,
    normalize_answer,
    squad_scores,
    tagging_scores,
    token_f1,
)


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
    assert set(METRICS_BY_KIND) == {"classification", "multiple_choice", "tagging", "span"}

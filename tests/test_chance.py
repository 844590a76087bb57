"""Chance levels of every task kind, and the learning check against planted answers."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from xlt_search.analysis.chance import Chance, chance_level, check_learning, from_tag, to_tag
from xlt_search.tasks.base import DataSource, Task

SOURCE = (DataSource("json"),)


def task(kind: str, num_labels: int, metric: str = "accuracy", **fields) -> Task:
    return Task("t", kind, SOURCE, {}, num_labels, metric, **fields)


def test_classification_chance_is_the_majority_class_or_uniform_whichever_is_higher() -> None:
    skewed = {"labels": [0] * 70 + [1] * 20 + [2] * 10}
    assert chance_level(task("classification", 3), skewed) == Chance(0.70, 100)
    balanced = {"labels": [0, 1, 2] * 20}
    assert chance_level(task("classification", 3), balanced).level == pytest.approx(1 / 3)
    # macro F1: a constant majority predictor, or uniform guessing, whichever scores more
    f1 = chance_level(task("classification", 2, "f1"), {"labels": [0] * 50 + [1] * 50}).level
    assert f1 == pytest.approx(0.5)


def test_multiple_choice_chance_counts_each_example_choices() -> None:
    rows = {"labels": [0, 1, 0, 1], "input_ids": [[[1], [2]], [[1], [2]], [[1]] * 4, [[1]] * 4]}
    assert chance_level(task("multiple_choice", 2), rows).level == pytest.approx(0.5)
    rows = {"labels": [0, 1, 2, 3], "input_ids": [[[1]] * 4] * 4}
    assert chance_level(task("multiple_choice", 4), rows).level == pytest.approx(0.25)


def test_span_chance_is_the_share_of_unanswerable_questions_over_examples() -> None:
    # five examples, the first read in two windows; two have no answer
    rows = {"example": [0, 0, 1, 2, 3, 4], "answers": [["a"], ["a"], [], ["b"], [], ["c"]]}
    assert chance_level(task("span", 0, "f1"), rows) == Chance(0.4, 5)


def test_tagging_and_retrieval_chance() -> None:
    rows = {"labels": [[-100, 1, 1, 2, -100], [1, 0, -100]]}
    assert chance_level(task("tagging", 3), rows).level == pytest.approx(3 / 5)
    assert chance_level(task("tagging", 3, "entity_f1"), rows).level == 0.0
    assert chance_level(task("retrieval", 0), [{}] * 50) == Chance(0.02, 50)


def test_a_score_beats_chance_only_beyond_the_binomial_noise_of_the_evaluation_set() -> None:
    chance = Chance(1 / 3, 300)  # standard error 0.027
    assert not chance.beaten_by(0.36)
    assert chance.beaten_by(0.42)
    assert not Chance(1 / 3, 10).beaten_by(0.55)  # ten examples say little
    assert not chance.beaten_by(math.nan)


def test_the_chance_tag_round_trips() -> None:
    levels = {"syn_nli": {"en": Chance(0.34, 300), "xf1": Chance(0.3333, 300)}}
    assert from_tag(to_tag(levels)) == levels
    assert from_tag(None) == {}


def trials(english: list[float], loss: float = 0.5) -> pd.DataFrame:
    """A baseline and subsets, completed, with their English scores on syn_nli."""
    return pd.DataFrame(
        {
            "n_tasks": list(range(len(english))),
            "status": "completed",
            "lang.syn_nli.en": english,
            "loss": loss,
        }
    )


LEVELS = {"syn_nli": {"en": Chance(1 / 3, 300), "xc1": Chance(1 / 3, 300)}}


def test_a_search_at_chance_says_nothing_was_learned_and_names_a_stuck_loss() -> None:
    check = check_learning(
        trials([0.34, 0.35, 0.33, 0.36], loss=math.log(3)), LEVELS, {"syn_nli": 3}
    )
    assert check.nothing_learned
    first, cause, ranking = check.lines()
    assert first.startswith("nothing was learned: syn_nli en 0.3400 (the baseline) with chance")
    assert "0 of 4 trials above chance" in first
    assert "ln(classes) = 1.0986" in cause
    assert "not shown" in ranking


def test_a_search_that_learned_says_nothing_of_the_kind() -> None:
    check = check_learning(trials([0.62, 0.70, 0.81, 0.36]), LEVELS, {"syn_nli": 3})
    assert not check.nothing_learned and check.lines() == []
    assert check.targets[0].learned == 3


def test_a_baseline_at_chance_is_nothing_learned_even_if_a_subset_rises() -> None:
    check = check_learning(trials([0.34, 0.60, 0.62, 0.64]), LEVELS, {"syn_nli": 3})
    assert check.nothing_learned  # the reference of every gain learned nothing
    assert check.stuck_loss is None  # the loss left ln(3): no stuck-loss line
    assert len(check.lines()) == 2

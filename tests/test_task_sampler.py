"""The task samplers: one contract every strategy keeps, and each strategy's own formula."""

from __future__ import annotations

import collections

import pytest

from xlt_search.trial import TASK_SAMPLERS, TaskSampler, task_probabilities

SIZES = {"big": 100_000, "mid": 4_000, "small": 500}


@pytest.mark.parametrize("strategy", TASK_SAMPLERS)
class TestEverySampler:
    def test_probabilities_are_a_distribution_over_the_tasks(self, strategy: str) -> None:
        probabilities = task_probabilities(SIZES, strategy, cap=5000, temperature=2.0)
        assert list(probabilities) == sorted(SIZES)
        assert sum(probabilities.values()) == pytest.approx(1.0)
        assert all(p > 0 for p in probabilities.values())

    def test_same_seed_same_draws_other_seed_other_draws(self, strategy: str) -> None:
        def draws(seed: int) -> list[str]:
            sampler = TaskSampler(SIZES, strategy, seed=seed)
            return [sampler.sample() for _ in range(200)]

        assert draws(1) == draws(1)
        assert draws(1) != draws(2)

    def test_frequencies_follow_the_probabilities(self, strategy: str) -> None:
        sampler = TaskSampler(SIZES, strategy, seed=0)
        counts = collections.Counter(sampler.sample() for _ in range(20_000))
        for task, p in sampler.probabilities.items():
            assert counts[task] / 20_000 == pytest.approx(p, abs=0.015)

    def test_state_round_trip_continues_the_same_draws(self, strategy: str) -> None:
        sampler = TaskSampler(SIZES, strategy, seed=3)
        for _ in range(17):
            sampler.sample()
        state = sampler.state_dict()
        expected = [sampler.sample() for _ in range(50)]
        resumed = TaskSampler(SIZES, strategy, seed=999)
        resumed.load_state_dict(state)
        assert [resumed.sample() for _ in range(50)] == expected

    def test_a_single_task_is_always_drawn(self, strategy: str) -> None:
        sampler = TaskSampler({"only": 10}, strategy)
        assert {sampler.sample() for _ in range(20)} == {"only"}


def test_proportional_is_examples_proportional_with_a_cap() -> None:
    probabilities = task_probabilities(SIZES, "proportional", cap=5000)
    assert probabilities["big"] == pytest.approx(5000 / 9500)
    assert probabilities["mid"] == pytest.approx(4000 / 9500)
    assert probabilities["small"] == pytest.approx(500 / 9500)
    uncapped = task_probabilities(SIZES, "proportional", cap=None)
    assert uncapped["big"] == pytest.approx(100_000 / 104_500)


def test_temperature_flattens_towards_uniform() -> None:
    capped = {"big": 5000, "mid": 4000, "small": 500}
    t2 = task_probabilities(SIZES, "temperature", cap=5000, temperature=2.0)
    norm = sum(n**0.5 for n in capped.values())
    assert t2 == pytest.approx({task: n**0.5 / norm for task, n in capped.items()})
    t1 = task_probabilities(SIZES, "temperature", cap=5000, temperature=1.0)
    assert t1 == pytest.approx(task_probabilities(SIZES, "proportional", cap=5000))
    hot = task_probabilities(SIZES, "temperature", cap=5000, temperature=1000.0)
    assert max(hot.values()) - min(hot.values()) < 0.01


def test_uniform_ignores_sizes() -> None:
    assert task_probabilities(SIZES, "uniform") == pytest.approx({t: 1 / 3 for t in SIZES})


def test_bad_settings_fail_with_a_message() -> None:
    with pytest.raises(ValueError, match="unknown task sampler"):
        task_probabilities(SIZES, "propotional")
    with pytest.raises(ValueError, match="at least one task"):
        task_probabilities({})
    with pytest.raises(ValueError, match="no training examples for empty"):
        task_probabilities({"empty": 0, "full": 3})
    with pytest.raises(ValueError, match="temperature"):
        task_probabilities(SIZES, "temperature", temperature=0.0)
    sampler = TaskSampler(SIZES)
    with pytest.raises(ValueError, match="sampler state is for tasks"):
        sampler.load_state_dict(TaskSampler({"other": 1}).state_dict())

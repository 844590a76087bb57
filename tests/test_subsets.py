"""Subset samplers: one contract every sampler passes, then each sampler's own guarantees."""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from collections.abc import Callable

import pytest

from xlt_search import subsets
from xlt_search.errors import SpecError

POOL9 = tuple(f"task{i}" for i in range(9))

# Every sampler as (pool, sizes, count, seed) -> subsets; `seeded` says whether the seed can matter.
Sampler = Callable[..., list[tuple[str, ...]]]
SAMPLERS: dict[str, tuple[Sampler, bool]] = {
    "stratified": (
        lambda pool, sizes, count, seed: subsets.stratified(pool, sizes, count, seed),
        True,
    ),
    "random": (
        lambda pool, sizes, count, seed: subsets.random_subsets(pool, sizes, count, seed),
        True,
    ),
    "grid": (lambda pool, sizes, count, seed: subsets.grid(pool, sizes), False),
}
pytest_samplers = pytest.mark.parametrize("sampler_name", list(SAMPLERS))

REQUESTS = [  # (pool, sizes, count)
    (POOL9, range(1, 10), 2),
    (POOL9, (2, 5), 7),
    (("mnli", "qqp", "squad"), (1, 2, 3), 5),
    (("only",), (1,), 3),
    (tuple(f"t{i:02d}" for i in range(14)), (3, 7, 11), 6),
]


def one_line_spec_error(call: Callable[[], object]) -> str:
    with pytest.raises(SpecError) as error:
        call()
    message = str(error.value)
    assert message and "\n" not in message
    return message


def counts(design: list[tuple[str, ...]], pool: tuple[str, ...]) -> list[int]:
    used = Counter(task for subset in design for task in subset)
    return [used[task] for task in pool]


# The contract every sampler passes.


@pytest_samplers
@pytest.mark.parametrize("pool, sizes, count", REQUESTS)
def test_sorted_tuples_of_pool_keys_listed_by_size(sampler_name, pool, sizes, count) -> None:
    sample, _ = SAMPLERS[sampler_name]
    design = sample(pool, sizes, count, 0)
    assert design and isinstance(design, list)
    for subset in design:
        assert isinstance(subset, tuple) and subset == tuple(sorted(subset))
        assert set(subset) <= set(pool) and len(set(subset)) == len(subset)
    assert design == sorted(design, key=lambda s: (len(s), s))


@pytest_samplers
@pytest.mark.parametrize("pool, sizes, count", REQUESTS)
def test_no_duplicates_and_only_the_sizes_asked(sampler_name, pool, sizes, count) -> None:
    sample, _ = SAMPLERS[sampler_name]
    design = sample(pool, sizes, count, 1)
    assert len(set(design)) == len(design)
    assert {len(s) for s in design} <= set(sizes)


@pytest_samplers
@pytest.mark.parametrize("pool, sizes, count", REQUESTS)
def test_deterministic_in_the_seed(sampler_name, pool, sizes, count) -> None:
    sample, _ = SAMPLERS[sampler_name]
    assert sample(pool, sizes, count, 7) == sample(pool, sizes, count, 7)
    assert sample(list(reversed(pool)), sizes, count, 7) == sample(pool, sizes, count, 7)


@pytest_samplers
def test_different_seeds_differ_where_they_can(sampler_name) -> None:
    sample, seeded = SAMPLERS[sampler_name]
    designs = {tuple(sample(POOL9, (2, 4), 3, seed)) for seed in range(5)}
    assert len(designs) >= 4 if seeded else len(designs) == 1
    # With a single possible answer (the whole size), every seed gives it.
    assert len({tuple(sample(POOL9, (9,), 3, seed)) for seed in range(5)}) == 1


@pytest_samplers
@pytest.mark.parametrize(
    "pool, sizes, fragment",
    [
        ((), (1,), "pool of intermediate tasks is empty"),
        (POOL9, (0,), "size 0 is impossible with a pool of 9 tasks; use sizes from 1 to 9"),
        (POOL9, (10,), "size 10 is impossible"),
        (POOL9, (), "no subset sizes"),
        (POOL9, (1.5,), "size 1.5 is impossible"),
        (("mnli", "qqp", "mnli"), (1,), "pool lists mnli twice"),
        (("mnli", "mnli+qqp"), (1,), "'mnli+qqp' is not a usable key"),
    ],
)
def test_impossible_requests_are_one_line_spec_errors(sampler_name, pool, sizes, fragment) -> None:
    sample, _ = SAMPLERS[sampler_name]
    assert fragment in one_line_spec_error(lambda: sample(pool, sizes, 2, 0))


# stratified: the scaling-curve design.


def test_stratified_balances_task_counts_within_each_size_and_overall() -> None:
    for n in range(1, 7):
        pool = tuple(f"t{i}" for i in range(n))
        for per_size in range(1, math.comb(n, n // 2) + 2):
            design = subsets.stratified(pool, range(1, n + 1), per_size, seed=per_size)
            for k in range(1, n + 1):
                of_size = [s for s in design if len(s) == k]
                assert len(of_size) == min(per_size, math.comb(n, k))
                size_counts = counts(of_size, pool)
                assert max(size_counts) - min(size_counts) <= 1, (n, per_size, k)
            overall = counts(design, pool)
            assert max(overall) - min(overall) <= 1, (n, per_size)


def test_stratified_quickstart_design_uses_every_task_equally() -> None:
    design = subsets.stratified(POOL9, range(1, 10), 2, seed=0)
    assert Counter(len(s) for s in design) == {k: 2 for k in range(1, 9)} | {9: 1}
    assert set(counts(design, POOL9)) == {9}


def test_stratified_balances_a_large_pool_quickly() -> None:
    pool = tuple(f"t{i:02d}" for i in range(30))
    design = subsets.stratified(pool, (5, 15, 25), 40, seed=3)
    assert len(design) == 120
    for k in (5, 15, 25):
        size_counts = counts([s for s in design if len(s) == k], pool)
        assert max(size_counts) - min(size_counts) <= 1


def test_stratified_returns_every_subset_when_per_size_covers_them() -> None:
    design = subsets.stratified(POOL9, (2, 8), math.comb(9, 2), seed=5)
    assert design == subsets.grid(POOL9, (2, 8))
    assert subsets.stratified(POOL9, (9,), 4, seed=0) == [POOL9]


def test_stratified_rejects_a_non_positive_per_size() -> None:
    message = one_line_spec_error(lambda: subsets.stratified(POOL9, (1,), 0, 0))
    assert "per_size is 0" in message and "at least 1" in message


# random.


def test_random_draws_sizes_uniformly() -> None:
    pool = tuple(f"t{i:02d}" for i in range(12))
    design = subsets.random_subsets(pool, (3, 4, 5), 150, seed=2)
    per_size = Counter(len(s) for s in design)
    assert sum(per_size.values()) == 150
    assert all(30 <= per_size[k] <= 70 for k in (3, 4, 5)), per_size


def test_random_keeps_drawing_other_sizes_when_one_is_used_up() -> None:
    design = subsets.random_subsets(POOL9, (1, 9), 8, seed=0)
    assert Counter(len(s) for s in design) == {1: 7, 9: 1}


def test_random_asked_for_more_than_exist_returns_each_subset_once() -> None:
    assert subsets.random_subsets(POOL9, (1, 8), 100, seed=4) == subsets.grid(POOL9, (1, 8))


def test_random_rejects_a_non_positive_count() -> None:
    assert "num_samples is -1" in one_line_spec_error(
        lambda: subsets.random_subsets(POOL9, (1,), -1, 0)
    )


# grid.


def test_grid_is_every_subset_of_the_sizes() -> None:
    assert len(subsets.grid(POOL9, range(1, 10))) == 2**9 - 1
    expected = [c for k in (1, 3) for c in itertools.combinations(sorted(POOL9), k)]
    assert subsets.grid(POOL9, (3, 1, 3)) == expected


# Names in Tune and MLflow.


def test_subset_key_round_trips() -> None:
    assert subsets.subset_key(("squad", "mnli")) == "mnli+squad"
    assert subsets.subset_key(()) == ""
    assert subsets.parse_subset_key("") == ()
    for subset in subsets.grid(("a", "b_c", "d"), (1, 2, 3)):
        assert subsets.parse_subset_key(subsets.subset_key(subset)) == subset
    assert subsets.parse_subset_key("squad+mnli") == ("mnli", "squad")


@pytest.mark.parametrize("key", ["mnli++squad", "+mnli", "mnli+", "mnli+mnli"])
def test_malformed_subset_keys_are_spec_errors(key) -> None:
    assert "is malformed" in one_line_spec_error(lambda: subsets.parse_subset_key(key))


def test_subset_key_rejects_keys_it_could_not_parse_back() -> None:
    assert "without '+'" in one_line_spec_error(lambda: subsets.subset_key(["a+b"]))
    assert "twice" in one_line_spec_error(lambda: subsets.subset_key(["a", "a"]))


def test_use_flags_one_per_pool_task_in_pool_order() -> None:
    flags = subsets.use_flags(("squad",), ("qqp", "squad", "mnli"))
    assert flags == {"use.qqp": False, "use.squad": True, "use.mnli": False}
    assert list(flags) == ["use.qqp", "use.squad", "use.mnli"]
    message = one_line_spec_error(lambda: subsets.use_flags(("sqad",), ("qqp", "squad")))
    assert "'sqad' is not in the pool (did you mean 'squad'?)" in message


def test_subset_params_name_the_subset_its_size_and_its_flags() -> None:
    params = subsets.subset_params(("squad", "mnli"), ("qqp", "squad", "mnli"))
    assert params == {
        "tasks": "mnli+squad",
        "n_tasks": 2,
        "use.qqp": False,
        "use.squad": True,
        "use.mnli": True,
    }
    assert list(params) == ["tasks", "n_tasks", "use.qqp", "use.squad", "use.mnli"]
    baseline = subsets.subset_params((), ("qqp",))
    assert baseline == {"tasks": "", "n_tasks": 0, "use.qqp": False}
    assert subsets.flag_name("qqp") == "use.qqp"


# repair (optuna's booleans).


def flags_of(*chosen: str) -> dict[str, bool]:
    return {f"use.{task}": task in chosen for task in POOL9}


def test_repair_keeps_a_pick_of_an_allowed_size() -> None:
    chosen = subsets.repair(flags_of("task4", "task1"), POOL9, range(1, 10), random.Random(0))
    assert chosen == ("task1", "task4")


def test_repair_gives_an_empty_pick_one_task() -> None:
    picks = {subsets.repair(flags_of(), POOL9, range(1, 10), random.Random(s)) for s in range(30)}
    assert all(len(p) == 1 for p in picks) and len(picks) > 1
    assert subsets.repair({}, POOL9, (1, 2), random.Random(0)) in {(t,) for t in POOL9}


def test_repair_moves_to_the_nearest_allowed_size() -> None:
    rng = random.Random(3)
    big = flags_of(*POOL9[:7])
    dropped = subsets.repair(big, POOL9, (2, 5), rng)
    assert len(dropped) == 5 and set(dropped) <= set(POOL9[:7])
    grown = subsets.repair(flags_of("task0"), POOL9, (3, 8), rng)
    assert len(grown) == 3 and "task0" in grown
    assert len(subsets.repair(flags_of("task0", "task1", "task2"), POOL9, (2, 4), rng)) == 2


def test_repair_is_deterministic_in_its_rng() -> None:
    picks = [subsets.repair(flags_of(), POOL9, (4,), random.Random(9)) for _ in range(3)]
    assert picks[0] == picks[1] == picks[2]


def test_repair_rejects_flags_for_tasks_outside_the_pool() -> None:
    message = one_line_spec_error(
        lambda: subsets.repair({"use.task10": True}, POOL9, (1,), random.Random(0))
    )
    assert "'use.task10' names no pool task" in message

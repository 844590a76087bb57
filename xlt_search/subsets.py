"""Subsets of intermediate tasks: their names in Tune and MLflow, and the samplers that pick them.

A subset is a sorted tuple of registry keys. Its names are owned here: its key (`subset_key`, read
back by `parse_subset_key`), the `use.<task>` flag of each pool task (`flag_name`), and the params
Tune and MLflow carry for it (`subset_params`). Every sampler returns distinct subsets, each a sorted
tuple, listed by size and then by name, and is deterministic in its seed:

- `stratified`: the scaling-curve design; for every size k, `per_size` subsets (all of them when
  there are no more), each task used as evenly as possible within the size and across the design;
- `random_subsets`: sizes drawn uniformly, then a subset of that size among the unused ones;
- `grid`: every subset of the listed sizes;
- `repair`: turns optuna's per-task booleans into a subset of an allowed size.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping, Sequence

from xlt_search.errors import SpecError, did_you_mean

SEPARATOR = "+"
FLAG_PREFIX = "use."


def flag_name(task: str) -> str:
    """The name of a pool task's flag in Tune and MLflow: `use.<task>`."""
    return f"{FLAG_PREFIX}{task}"


def subset_key(tasks: Iterable[str]) -> str:
    """The subset's name in Tune and MLflow: its sorted keys joined by '+' ('' if empty)."""
    chosen = sorted(tasks)
    for task in chosen:
        if not task or SEPARATOR in task:
            raise SpecError(
                f"task key {task!r} cannot name a subset member; use a non-empty key without "
                f"'{SEPARATOR}'"
            )
    if len(set(chosen)) != len(chosen):
        raise SpecError(f"subset {chosen} lists a task twice; list each task once")
    return SEPARATOR.join(chosen)


def parse_subset_key(key: str) -> tuple[str, ...]:
    """The subset a `subset_key` names, as a sorted tuple ('' is the empty subset)."""
    if key == "":
        return ()
    tasks = key.split(SEPARATOR)
    if any(not task for task in tasks) or len(set(tasks)) != len(tasks):
        raise SpecError(
            f"subset key {key!r} is malformed; write distinct task keys joined by '{SEPARATOR}', "
            "e.g. 'mnli+squad'"
        )
    return tuple(sorted(tasks))


def use_flags(subset: Iterable[str], pool: Sequence[str]) -> dict[str, bool]:
    """One boolean per pool task, `use.<task>`, in pool order: does the subset train on it?"""
    chosen = set(subset)
    _check_members(chosen, pool)
    return {flag_name(task): task in chosen for task in pool}


def subset_params(subset: Iterable[str], pool: Sequence[str]) -> dict[str, str | int | bool]:
    """The subset's params in Tune and MLflow: `tasks` (its key), `n_tasks` (its size), then its
    `use_flags`, so that MLflow's UI filters on the size and on each task."""
    chosen = tuple(subset)
    return {"tasks": subset_key(chosen), "n_tasks": len(chosen), **use_flags(chosen, pool)}


def count(n_tasks: int, sizes: Iterable[int]) -> int:
    """How many subsets of a pool of `n_tasks` the sizes `sizes` hold."""
    return sum(math.comb(n_tasks, k) for k in sizes)


def grid(pool: Sequence[str], sizes: Iterable[int]) -> list[tuple[str, ...]]:
    """Every subset of the pool whose size is one of `sizes`."""
    names, sizes = _check_request(pool, sizes)
    return [tuple(names[i] for i in combo) for k in sizes for combo in _combinations(len(names), k)]


def stratified(
    pool: Sequence[str], sizes: Iterable[int], per_size: int, seed: int
) -> list[tuple[str, ...]]:
    """The scaling-curve design: for every size k, min(per_size, C(n, k)) distinct subsets.

    With m subsets of size k, every task appears floor(m * k / n) times among them or once more
    (so the counts differ by at most one), and the tasks that get the extra appearance are those
    used least so far, so the counts over the whole design differ by at most one too. Which subsets
    carry those counts is drawn at random from the seed.
    """
    names, sizes = _check_request(pool, sizes)
    _check_count("per_size", per_size)
    n, rng = len(names), random.Random(seed)
    used = [0] * n  # appearances of each task over the sizes done so far
    chosen: list[tuple[int, ...]] = []
    for k in sizes:
        m = min(per_size, math.comb(n, k))
        base, extra = divmod(m * k, n)
        # The least-used tasks so far take the extra appearances; ties are broken at random.
        order = sorted(range(n), key=lambda t: (used[t], rng.random()))
        target = [base] * n
        for task in order[:extra]:
            target[task] += 1
        family = _balanced_family(n, k, m, target, rng)
        for combo in family:
            for task in combo:
                used[task] += 1
        chosen.extend(family)
    return _named(chosen, names)


def random_subsets(
    pool: Sequence[str], sizes: Iterable[int], num_samples: int, seed: int
) -> list[tuple[str, ...]]:
    """`num_samples` distinct subsets: each draws its size uniformly, then a subset of that size.

    A size whose subsets are all taken is no longer drawn. There are never duplicates (a trial is
    deterministic, so a repeated subset would only repeat its result): when `num_samples` exceeds
    the number of subsets of the allowed sizes, every one of them is returned once.
    """
    names, sizes = _check_request(pool, sizes)
    _check_count("num_samples", num_samples)
    n, rng = len(names), random.Random(seed)
    taken: dict[int, set[int]] = {k: set() for k in sizes}  # ranks of the subsets drawn, per size
    chosen: list[tuple[int, ...]] = []
    for _ in range(num_samples):
        open_sizes = [k for k in sizes if len(taken[k]) < math.comb(n, k)]
        if not open_sizes:
            break
        k = rng.choice(open_sizes)
        total = math.comb(n, k)
        if len(taken[k]) < total // 2:
            rank = rng.randrange(total)
            while rank in taken[k]:
                rank = rng.randrange(total)
        else:  # mostly taken: draw among the rest directly rather than by rejection
            rank = rng.choice([r for r in range(total) if r not in taken[k]])
        taken[k].add(rank)
        chosen.append(_unrank(n, k, rank))
    return _named(chosen, names)


def repair(
    flags: Mapping[str, bool], pool: Sequence[str], sizes: Iterable[int], rng: random.Random
) -> tuple[str, ...]:
    """The subset optuna's `use.<task>` booleans pick, brought to the nearest allowed size.

    A pick of an allowed size is kept as it is. Otherwise tasks are added (from the unpicked ones)
    or dropped (from the picked ones) at random until it reaches the nearest allowed size, the
    smaller on a tie; so an empty pick gets one task when size 1 is allowed.
    """
    names, sizes = _check_request(pool, sizes)
    unknown = sorted(key for key in flags if key.removeprefix(FLAG_PREFIX) not in names)
    if unknown:
        raise SpecError(
            f"flag {unknown[0]!r} names no pool task"
            f"{did_you_mean(unknown[0], [flag_name(t) for t in names])}; "
            f"flags are {flag_name('<task>')} for the pool tasks {', '.join(names)}"
        )
    picked = [t for t in names if flags.get(flag_name(t), False)]
    target = min(sizes, key=lambda k: (abs(k - len(picked)), k))
    if target > len(picked):
        rest = [t for t in names if t not in picked]
        picked += rng.sample(rest, target - len(picked))
    elif target < len(picked):
        picked = rng.sample(picked, target)
    return tuple(sorted(picked))


def _check_request(pool: Sequence[str], sizes: Iterable[int]) -> tuple[list[str], list[int]]:
    """The pool as a sorted list of keys and the sizes as a sorted list, or a one-line SpecError."""
    names = list(pool)
    if not names:
        raise SpecError("the pool of intermediate tasks is empty; list at least one task")
    for task in names:
        if not isinstance(task, str) or not task or SEPARATOR in task:
            raise SpecError(
                f"pool task {task!r} is not a usable key; use registry keys without '{SEPARATOR}'"
            )
    if len(set(names)) != len(names):
        twice = sorted(t for t in set(names) if names.count(t) > 1)
        raise SpecError(f"pool lists {', '.join(twice)} twice; list each task once")
    wanted = list(sizes)
    if not wanted:
        raise SpecError(f"no subset sizes asked for; give sizes from 1 to {len(names)}")
    for k in wanted:
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(names):
            raise SpecError(
                f"subset size {k!r} is impossible with a pool of {len(names)} tasks; "
                f"use sizes from 1 to {len(names)}"
            )
    return sorted(names), sorted(set(wanted))


def _check_count(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecError(f"{name} is {value!r}; it must be a whole number of subsets, at least 1")


def _check_members(chosen: set[str], pool: Sequence[str]) -> None:
    outside = sorted(chosen - set(pool))
    if outside:
        raise SpecError(
            f"task '{outside[0]}' is not in the pool{did_you_mean(outside[0], pool)}; "
            f"the pool is {', '.join(pool)}"
        )


def _named(chosen: list[tuple[int, ...]], names: list[str]) -> list[tuple[str, ...]]:
    """Index tuples to key tuples; `names` is sorted, so increasing indices give sorted keys."""
    return sorted((tuple(names[i] for i in combo) for combo in chosen), key=lambda s: (len(s), s))


def _combinations(n: int, k: int) -> Iterable[tuple[int, ...]]:
    return (_unrank(n, k, rank) for rank in range(math.comb(n, k)))


def _unrank(n: int, k: int, rank: int) -> tuple[int, ...]:
    """The rank-th k-subset of range(n) in lexicographic order, without listing the others."""
    combo, start = [], 0
    for slots in range(k, 0, -1):
        for item in range(start, n):
            with_item = math.comb(n - item - 1, slots - 1)
            if rank < with_item:
                combo.append(item)
                start = item + 1
                break
            rank -= with_item
    return tuple(combo)


def _balanced_family(
    n: int, k: int, m: int, target: list[int], rng: random.Random
) -> list[tuple[int, ...]]:
    """m distinct k-subsets of range(n) in which task t appears exactly target[t] times.

    Start from m distinct subsets drawn uniformly, then move one appearance at a time from a task
    above its target (a) to one below it (b): replace some S holding a but not b by S - a + b. Such
    an S whose replacement is new always exists: the map S -> S - a + b is one-to-one, and more of
    the family's subsets hold a without b than b without a (a appears more often than b), so not
    every image can already be in the family. Each move brings both counts one closer to target.
    """
    family = [_unrank(n, k, rank) for rank in rng.sample(range(math.comb(n, k)), m)]
    members = set(family)
    count = [0] * n
    for combo in family:
        for task in combo:
            count[task] += 1
    while True:
        over = [t for t in range(n) if count[t] > target[t]]
        if not over:
            return family
        a = rng.choice(over)
        b = rng.choice([t for t in range(n) if count[t] < target[t]])
        moves = []
        for i, combo in enumerate(family):
            if a in combo and b not in combo:
                swapped = tuple(sorted((set(combo) - {a}) | {b}))
                if swapped not in members:
                    moves.append((i, swapped))
        i, swapped = rng.choice(moves)
        members.remove(family[i])
        members.add(swapped)
        family[i] = swapped
        count[a] -= 1
        count[b] += 1

"""Task contributions: the regression and Shapley estimators against games whose answer is known."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from xlt_search import subsets
from xlt_search.analysis import contributions

POOL = ("a", "b", "c", "d", "e")


def all_subsets(pool: tuple[str, ...], empty: bool = True) -> list[tuple[str, ...]]:
    return [
        combo
        for k in range(0 if empty else 1, len(pool) + 1)
        for combo in itertools.combinations(pool, k)
    ]


def trials_of(chosen: list[tuple[str, ...]], value, pool=POOL, **columns) -> pd.DataFrame:
    """A trials table as `tracking.load_trials` gives it: one completed trial per subset."""
    rows = []
    for subset in chosen:
        row = {**subsets.subset_params(subset, pool), "status": "completed", "score": value(subset)}
        for name, of in columns.items():
            row[name] = of(subset)
        rows.append(row)
    return pd.DataFrame(rows)


def test_an_additive_game_gives_back_each_tasks_worth_in_both_estimators() -> None:
    worth = {"a": 0.10, "b": 0.04, "c": 0.0, "d": -0.02, "e": -0.08}
    table = trials_of(all_subsets(POOL), lambda s: 0.5 + sum(worth[t] for t in s))
    found = contributions.task_contributions(table, POOL, samples=200).set_index("task")
    for task, value in worth.items():
        assert found.loc[task, "effect"] == pytest.approx(value, abs=1e-9)
        assert found.loc[task, "shapley"] == pytest.approx(value, abs=1e-6)
    assert list(found.index) == ["a", "b", "c", "d", "e"]  # ranked by Shapley value
    assert found["rank"].tolist() == [1, 2, 3, 4, 5]
    assert found.loc["a", "trials_with"] == 16  # of the 32 subsets of five tasks
    assert found.attrs["trials"] == 32  # the baseline, the empty subset, among them


def test_shapley_values_of_a_game_with_an_interaction_are_the_exact_ones() -> None:
    # v(S) = 1 when S holds both a and b: a and b share the value, c has none.
    pool = ("a", "b", "c")
    table = trials_of(all_subsets(pool), lambda s: float({"a", "b"} <= set(s)), pool=pool)
    found = contributions.task_contributions(table, pool, samples=50).set_index("task")
    assert found.loc["a", "shapley"] == pytest.approx(0.5, abs=1e-3)
    assert found.loc["b", "shapley"] == pytest.approx(0.5, abs=1e-3)
    assert found.loc["c", "shapley"] == pytest.approx(0.0, abs=1e-3)
    # least squares spreads it otherwise: over the 8 subsets a's effect is 0.5 as well, but
    # not because of the efficiency axiom (the fitted values miss v(S) where a and b meet)
    assert found.loc["a", "effect"] == pytest.approx(0.5, abs=1e-9)


def test_the_baseline_anchors_the_fit_only_when_asked() -> None:
    worth = {"a": 0.1, "b": 0.1, "c": 0.1, "d": 0.1, "e": 0.1}
    # a baseline far off the additive line (as a score read at an ASHA rung would be)
    table = trials_of(all_subsets(POOL), lambda s: 5.0 if not s else 0.5 + sum(worth[t] for t in s))
    with_it = contributions.task_contributions(table, POOL, samples=20).set_index("task")
    without = contributions.task_contributions(
        table, POOL, with_baseline=False, samples=20
    ).set_index("task")
    assert (with_it.attrs["trials"], without.attrs["trials"]) == (32, 31)
    assert without["effect"].to_numpy() == pytest.approx([0.1] * 5)
    assert without["shapley"].to_numpy() == pytest.approx([0.1] * 5, abs=1e-6)
    assert (with_it["effect"] < 0).all()  # pulled toward the outlier


def test_intervals_cover_the_truth_under_noise_and_errored_trials_are_left_out() -> None:
    # 20 searches, each every subset twice (two seeds) with noise: a 95% interval covers the
    # true worth in about 95% of the 200 intervals; a failed trial's garbage score never enters.
    worth = {"a": 0.06, "b": 0.03, "c": 0.0, "d": 0.0, "e": -0.06}
    covered = total = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        chosen = all_subsets(POOL, empty=False) * 2
        table = trials_of(chosen, lambda s: 0.5 + sum(worth[t] for t in s) + rng.normal(0, 0.01))  # noqa: B023
        table.loc[0, ["status", "score"]] = ["errored", 99.0]
        found = contributions.task_contributions(table, POOL, samples=200, seed=seed)
        found = found.set_index("task")
        for task, value in worth.items():
            for estimator in ("effect", "shapley"):
                low, high = (
                    found.loc[task, f"{estimator}_low"],
                    found.loc[task, f"{estimator}_high"],
                )
                covered, total = covered + int(low < value < high), total + 1
                assert high - low < 0.03  # 61 trials pin each task down to a few points
        assert found.index[0] == "a" and found.index[-1] == "e"
    assert covered / total >= 0.88, covered / total


def test_too_few_trials_give_no_estimate() -> None:
    table = trials_of([("a",)], lambda s: 0.5)
    found = contributions.task_contributions(table, POOL)
    assert found["effect"].isna().all() and found["shapley"].isna().all()
    assert math.isnan(found["effect_low"].iloc[0])


def test_shapley_weights_follow_the_kernel() -> None:
    flags = contributions.design(trials_of(all_subsets(POOL), lambda s: 0.0), POOL)
    weights = contributions.shapley_weights(flags)
    sizes = flags.sum(axis=1)
    # (M - 1) / (C(M, s) s (M - s)) for M = 5
    assert weights[sizes == 1][0] == pytest.approx(4 / (5 * 1 * 4))
    assert weights[sizes == 2][0] == pytest.approx(4 / (10 * 2 * 3))
    assert weights[sizes == 0][0] == weights[sizes == 5][0] > 1000 * weights[sizes == 1][0]


def test_language_gains_recover_a_per_language_effect() -> None:
    # task a helps the close language only, task e hurts every language
    def lang(code: str):
        return lambda s: 0.4 + (0.2 if "a" in s and code == "xc" else 0.0) - 0.1 * ("e" in s)

    table = trials_of(
        all_subsets(POOL),
        lambda s: 0.0,
        **{"lang.nli.xc": lang("xc"), "lang.nli.xf": lang("xf"), "lang.nli.en": lang("en")},
    )
    gains = contributions.language_gains(table, POOL, {"xc": "close", "xf": "far", "en": "english"})
    assert set(gains.columns) == {"task", "target", "language", "family", "gain"}
    assert len(gains) == len(POOL) * 3
    indexed = gains.set_index(["task", "language"])["gain"]
    assert indexed[("a", "xc")] == pytest.approx(0.2)
    assert indexed[("a", "xf")] == pytest.approx(0.0, abs=1e-9)
    assert indexed[("e", "en")] == pytest.approx(-0.1)
    assert set(gains.loc[gains["language"] == "xf", "family"]) == {"far"}


def noisy_trials(worth: dict[str, float], noise: float, seed: int, pool=POOL) -> pd.DataFrame:
    """Every non-empty subset of `pool` once, its score additive in `worth` plus Gaussian noise
    of standard deviation `noise` (the seed-to-seed noise of a search)."""
    rng = np.random.default_rng(seed)
    return trials_of(
        all_subsets(pool, empty=False),
        lambda s: 0.5 + sum(worth.get(t, 0.0) for t in s) + rng.normal(0.0, noise),
        pool=pool,
    )


def test_a_fit_with_fewer_trials_than_unknowns_is_refused_and_says_what_would_do() -> None:
    pool = tuple("abcdefghi")
    rng = np.random.default_rng(0)
    chosen = [tuple(sorted(rng.choice(pool, 3, replace=False))) for _ in range(6)]
    table = trials_of(chosen, lambda s: 0.34, pool=pool)
    found = contributions.task_contributions(table, pool, samples=20)
    assert "6 usable trials for 10 unknowns" in found.attrs["refused"]
    assert "at least 11" in found.attrs["refused"]
    assert found["effect"].isna().all() and (found["rank"] == 0).all()


def test_a_task_in_every_trial_cannot_be_told_from_the_intercept() -> None:
    chosen = [s for s in all_subsets(POOL, empty=False) if "a" in s]
    found = contributions.task_contributions(trials_of(chosen, lambda s: 0.5), POOL, samples=20)
    assert found.attrs["refused"].startswith("a is in every usable trial or in none")


def test_running_trials_never_enter_the_fit() -> None:
    # a stopped search: two trials still running with probe scores, none completed
    table = trials_of([("a",), ("b",)], lambda s: 0.34)
    table["status"] = "running"
    found = contributions.task_contributions(table, POOL, samples=20)
    assert found.attrs["trials"] == 0 and "0 usable trials" in found.attrs["refused"]


def test_intervals_are_withheld_where_the_data_cannot_carry_them() -> None:
    pool = ("a", "b", "c")
    # seven subsets and the baseline: four trials beyond the four unknowns, yet "a" is in only
    # two of the trials below
    chosen = [(), ("b",), ("c",), ("b", "c"), ("a",), ("a", "b"), ("b",), ("c",)]
    found = contributions.task_contributions(
        trials_of(chosen, lambda s: 0.5 + 0.1 * len(s), pool=pool), pool, samples=50
    ).set_index("task")
    assert math.isnan(found.loc["a", "effect_low"])
    assert found.loc["a", "interval"] == "2 trials with it, 6 without"
    assert found.loc["a", "distinguishable"] == "no interval"
    assert found.loc["b", "interval"] == "" and not math.isnan(found.loc["b", "effect_low"])


def test_planted_effects_are_distinguishable_and_a_null_task_is_not() -> None:
    worth = {"a": 0.10, "e": -0.08}  # b, c, d do nothing
    found = contributions.task_contributions(
        noisy_trials(worth, 0.01, seed=1), POOL, samples=300, seed_std=0.01
    ).set_index("task")
    assert found.loc["a", "distinguishable"] == "yes"
    assert found.loc["e", "distinguishable"] == "yes"
    assert found.loc[["b", "c", "d"], "distinguishable"].str.startswith("no").all()
    unknown = contributions.task_contributions(noisy_trials(worth, 0.01, seed=1), POOL, samples=50)
    assert unknown.set_index("task").loc["a", "distinguishable"] == "from zero; seed noise unknown"


def test_pure_noise_is_almost_never_called_distinguishable() -> None:
    # 20 searches of pure seed noise over 5 tasks: 100 null effects; with the correction for
    # testing every task at once, at most a few may pass by chance
    flagged = 0
    for seed in range(20):
        found = contributions.task_contributions(
            noisy_trials({}, 0.02, seed=seed), POOL, samples=200, seed=seed, seed_std=0.02
        )
        flagged += int((found["distinguishable"] == "yes").sum())
    assert flagged <= 3


def test_seeds_of_one_configuration_are_resampled_together() -> None:
    # Each configuration has its own hyperparameter, whose effect (sd 0.05) the flags do not
    # carry, and three seeds that differ by little (sd 0.005). Drawn as separate trials, the seeds
    # would look like three times the evidence, and null tasks would pass as effects.
    flagged = 0
    for seed in range(10):
        rng = np.random.default_rng(seed)
        chosen = all_subsets(POOL, empty=False)
        offsets = dict(zip(chosen, rng.normal(0.0, 0.05, len(chosen)), strict=True))
        table = trials_of(
            chosen * 3,
            lambda s: 0.5 + offsets[s] + rng.normal(0.0, 0.005),  # noqa: B023
            learning_rate=lambda s: 1e-5 * (1 + chosen.index(s)),  # noqa: B023
        )
        found = contributions.task_contributions(table, POOL, samples=200, seed=seed)
        low, high = found["effect_low"], found["effect_high"]
        flagged += int(((low > 0) | (high < 0)).sum())
    assert flagged <= 5  # of 50 null effects: a 95% interval misses about 2.5 of them

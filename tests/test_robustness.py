"""Robustness across targets and seeds: rank agreement (Kendall's tau) and the tasks that help
every target, against searches whose answer is planted, against pure noise, and against searches
that cannot tell (one target, one seed, too few configurations)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from xlt_search import subsets
from xlt_search.analysis import robustness
from xlt_search.analysis.summary import robustness_section

POOL = ("a", "b", "c", "d")
RATES = (1e-3, 3e-4)
SAMPLES = 200  # bootstrap draws: enough for a 95% interval in a unit test


def search(score_of, seeds=(0, 1), targets=("t1", "t2"), rng_seed=0, pool=POOL) -> pd.DataFrame:
    """A trials table as `tracking.load_trials` gives it: every subset of `pool` (the baseline
    among them) with each learning rate and each seed, completed. `score_of(subset, rate,
    target, rng)` is a trial's score on a target; `score` is their mean."""
    rng = np.random.default_rng(rng_seed)
    rows = []
    chosen = [c for k in range(len(pool) + 1) for c in itertools.combinations(pool, k)]
    for subset, rate, seed in itertools.product(chosen, RATES, seeds):
        row = {**subsets.subset_params(subset, pool), "status": "completed", "seed": seed}
        row["learning_rate"] = rate
        for target in targets:
            row[f"score.{target}"] = score_of(set(subset), rate, target, rng)
        row["score"] = float(np.mean([row[f"score.{t}"] for t in targets]))
        rows.append(row)
    return pd.DataFrame(rows)


def planted(subset: set[str], rate: float, target: str, rng: np.random.Generator) -> float:
    """a helps both targets, b helps t1 only, c and d do nothing; the larger learning rate helps
    both: configurations share most of their quality across targets and seeds."""
    quality = 0.5 + 0.10 * ("a" in subset) + 0.04 * (rate == RATES[0])
    quality += 0.10 * ("b" in subset) * (target == "t1")
    return quality + rng.normal(0.0, 0.01)


def noise(subset: set[str], rate: float, target: str, rng: np.random.Generator) -> float:
    return 0.5 + rng.normal(0.0, 0.01)


def measured(trials: pd.DataFrame) -> robustness.Robustness:
    return robustness.measure(trials, trials, POOL, samples=SAMPLES)


def test_a_quality_shared_across_targets_and_seeds_gives_a_high_tau_and_the_planted_classes() -> (
    None
):
    found = measured(search(planted))
    assert found.targets_why_not is None and found.seeds_why_not is None
    (pair,) = found.targets.to_dict("records")
    assert (pair["a"], pair["b"], pair["configurations"]) == ("t1", "t2", 32)
    assert pair["tau"] > 0.3 and pair["tau_low"] > 0 and pair["agreement"] == "agree"
    by_seed = found.seeds.set_index("a")
    assert by_seed.loc["0", "b"] == "1" and by_seed.loc["0", "configurations"] == 32
    for row in ("0", "mean"):
        assert by_seed.loc[row, "tau"] > 0.6 and by_seed.loc[row, "tau_low"] > 0.4
        assert (
            by_seed.loc[row, "tau_low"] <= by_seed.loc[row, "tau"] <= by_seed.loc[row, "tau_high"]
        )
    classes = found.tasks.drop_duplicates("task").set_index("task")["class"]
    assert classes.to_dict() == {"a": "every", "b": "some", "c": "none", "d": "none"}
    effects = found.tasks.set_index(["task", "target"])
    assert effects.loc[("b", "t1"), "effect"] == pytest.approx(0.10, abs=0.01)
    assert effects.loc[("b", "t2"), "effect_low"] < 0 < effects.loc[("b", "t2"), "effect_high"]
    text = "\n".join(robustness_section(found))
    assert "The configurations rank alike across targets: every interval is above 0." in text
    assert "The configurations rank alike across seeds" in text
    assert "Help every target: a. Help some targets: b. No evidence either way: c, d." in text


def test_pure_noise_gives_intervals_that_cover_zero_and_says_no_agreement_can_be_claimed() -> None:
    found = measured(search(noise, seeds=(0, 1, 2)))
    assert len(found.seeds) == 4  # three pairs of seeds and their mean
    for table in (found.targets, found.seeds):
        assert (table["tau_low"] < 0).all() and (table["tau_high"] > 0).all()
        assert set(table["agreement"]) == {"none claimed"}
    assert "every" not in set(found.tasks["class"])
    text = "\n".join(robustness_section(found))
    assert "No agreement can be claimed across targets" in text
    assert "No agreement can be claimed across seeds" in text


def test_on_noise_a_tau_interval_excludes_zero_about_one_time_in_twenty() -> None:
    excluded = 0
    for replicate in range(20):
        trials = search(noise, targets=("t1", "t2"), rng_seed=100 + replicate)
        table, _ = robustness.target_agreement(trials, ["score.t1", "score.t2"], SAMPLES)
        excluded += table["agreement"].iloc[0] != "none claimed"
    assert excluded <= 3


def test_one_target_and_one_seed_are_said_in_words_not_numbers() -> None:
    found = measured(search(planted, seeds=(0,), targets=("t1",)))
    assert found.targets.empty and found.seeds.empty and found.tasks.empty
    text = "\n".join(robustness_section(found))
    assert "Not measured: the search has one target (t1); agreement across targets needs" in text
    assert "Not measured: every configuration ran with one seed; agreement across seeds" in text
    assert "Not classified: the search has one target" in text
    assert "| tau" not in text and "effect [95%]" not in text


def test_too_few_configurations_with_both_seeds_are_not_measured() -> None:
    trials = search(planted, pool=("a",))  # 2 subsets x 2 rates: 4 configurations
    found = robustness.measure(trials, trials, ("a",), samples=SAMPLES)
    assert found.seeds["tau"].isna().all()
    assert found.seeds["agreement"].iloc[0] == "not measured: 4 configurations, 6 needed"
    text = "\n".join(robustness_section(found))
    assert text.count("Not measured: at most 4 configurations completed under both of a pair") == 2


def test_a_contributions_fit_that_is_refused_leaves_the_tasks_unclassified_and_says_why() -> None:
    trials = search(planted).head(8)  # the baseline and task a alone: b, c, d never trained
    text = "\n".join(robustness_section(measured(trials)))
    assert "Not classified: no effect on t1 was estimated: b, c, d are in every usable" in text


def test_only_completed_trials_count_and_configurations_average_their_seeds() -> None:
    trials = search(planted)
    trials.loc[trials["n_tasks"] == 1, "status"] = "early_stopped"
    table, _ = robustness.target_agreement(trials, ["score.t1", "score.t2"], SAMPLES)
    assert table["configurations"].iloc[0] == 32 - 4 * 2  # four subsets of one, two rates


def test_a_search_that_learned_nothing_is_not_measured() -> None:
    found = robustness.measure(search(planted), search(planted), POOL, nothing_learned=True)
    text = "\n".join(robustness_section(found))
    assert text.count("nothing was learned (above)") == 3


@pytest.mark.parametrize(
    ("lows", "highs", "expected"),
    [
        ([0.1, 0.2], [0.3, 0.4], "every"),
        ([0.1, -0.2], [0.3, 0.4], "some"),
        ([0.1, -0.4], [0.3, -0.2], "mixed"),
        ([-0.1, -0.4], [0.3, -0.2], "hurts some"),
        ([-0.3, -0.4], [-0.1, -0.2], "hurts every"),
        ([-0.1, -0.2], [0.3, 0.4], "none"),
        ([0.1, float("nan")], [0.3, float("nan")], "cannot tell"),
    ],
)
def test_the_class_follows_the_intervals(lows, highs, expected) -> None:
    assert robustness.classify(lows, highs) == expected


def test_the_tables_are_written_as_csv_beside_a_tau_matrix(tmp_path: Path) -> None:
    found = measured(search(planted))
    paths = robustness.write(found, tmp_path, "planted")
    assert [p.name for p in paths] == [
        "target_agreement.csv",
        "seed_agreement.csv",
        "task_targets.csv",
        "rank_agreement.png",
    ]
    targets = pd.read_csv(paths[0])
    assert list(targets.columns[:2]) == ["target_a", "target_b"]
    assert pd.read_csv(paths[1])["seed_a"].astype(str).tolist() == ["0", "mean"]
    assert len(pd.read_csv(paths[2])) == len(POOL) * 2
    assert paths[3].read_bytes()[:4] == b"\x89PNG"

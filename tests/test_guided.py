"""The guided sampler (`sampler: guided`): its contract, its known answers, its spec errors, and a
search through the CLI under ASHA whose proposals reach MLflow as params."""

from __future__ import annotations

import itertools
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
from processes import run_cli
from scipy.stats import spearmanr
from search_specs import search_spec, write_spec

from xlt_search.errors import SpecError
from xlt_search.guided import GuidedProposer
from xlt_search.spec import parse_spec
from xlt_search.tracking import load_trials

POOL = tuple(f"t{i}" for i in range(9))
SIZES = tuple(range(1, 10))
# A planted landscape in the score's units (accuracy): main effects in decreasing order, and one
# conflict, t0 with t1, that makes the best subset leave t1 out.
EFFECTS = dict(zip(POOL, [0.04, 0.03, 0.02, 0.01, 0.0, -0.01, -0.02, -0.03, -0.04], strict=True))
CONFLICT = -0.05
NOISE_SD = 0.005  # a trial's seed-to-seed noise
WITHIN = 0.005  # half a point of accuracy


def planted(subset: tuple[str, ...]) -> float:
    """The true score of `subset` in the planted landscape."""
    return 0.6 + sum(EFFECTS[t] for t in subset) + CONFLICT * ({"t0", "t1"} <= set(subset))


def shapley(task: str) -> float:
    """`task`'s Shapley value in the planted game over the whole pool, by its definition."""
    others = [t for t in POOL if t != task]
    n = len(POOL)
    return sum(
        math.factorial(k)
        * math.factorial(n - k - 1)
        / math.factorial(n)
        * (planted((*s, task)) - planted(s))
        for k in range(n)
        for s in itertools.combinations(others, k)
    )


def run(proposer: GuidedProposer, trials: int, score, rng: np.random.Generator) -> list[tuple]:
    """Propose, train (score plus noise), observe, `trials` times; the subsets in order."""
    chosen = []
    for _ in range(trials):
        subset, _prediction = proposer.propose()
        proposer.observe(subset, 1.0, score(subset) + rng.normal(0, NOISE_SD))
        chosen.append(subset)
    return chosen


# The contract.


def test_every_subset_of_the_allowed_sizes_once_then_none() -> None:
    proposer = GuidedProposer(("a", "b", "c", "d", "e"), (1, 3), seed=0)
    rng = np.random.default_rng(0)
    chosen = run(proposer, proposer.space_size, lambda s: len(s) / 10, rng)
    assert proposer.space_size == 5 + 10
    assert len(set(chosen)) == len(chosen) == 15
    assert {len(s) for s in chosen} == {1, 3}
    assert all(s == tuple(sorted(s)) for s in chosen)
    assert proposer.propose() is None


def test_the_design_spans_the_sizes_and_every_task() -> None:
    proposer = GuidedProposer(POOL, SIZES, seed=3)
    design = [proposer.propose()[0] for _ in range(len(POOL) + 1)]
    assert design == proposer.design
    assert {len(s) for s in design} == set(SIZES)  # interleaved: every size in the first ten
    assert set().union(*design) == set(POOL)


def test_deterministic_from_its_seed_and_its_observations() -> None:
    def proposals(seed: int) -> list[tuple]:
        return run(GuidedProposer(POOL, SIZES, seed), 25, planted, np.random.default_rng(1))

    assert proposals(5) == proposals(5)
    assert proposals(5) != proposals(6)


def test_its_state_survives_a_pickle_round_trip() -> None:
    proposer = GuidedProposer(POOL, SIZES, seed=2)
    rng = np.random.default_rng(2)
    run(proposer, 14, planted, rng)
    copy = pickle.loads(pickle.dumps(proposer))
    assert copy.propose() == proposer.propose()
    assert copy.effects() == proposer.effects()


def test_the_tune_searcher_saves_and_restores_its_proposals(tmp_path: Path) -> None:
    from ray import tune

    from xlt_search.search.guided import GuidedSearch

    def searcher() -> GuidedSearch:
        space = {"learning_rate": tune.loguniform(1e-4, 1e-2), "per_device_batch_size": 32}
        return GuidedSearch(POOL[:4], (1, 2, 3, 4), 7, 200, space)

    first = searcher()
    configs = [first.suggest(f"trial{i}") for i in range(6)]
    for i in range(3):
        first.on_trial_result(f"trial{i}", {"score": 0.5 + i / 10, "budget_steps": 100})
        first.on_trial_complete(f"trial{i}", {"score": 0.6 + i / 10, "budget_steps": 200})
    first.on_trial_complete("trial3", error=True)  # an errored trial is no observation
    assert len(first.proposer.observed) == 3
    path = tmp_path / "searcher.pkl"
    first.save(str(path))
    second = searcher()
    second.restore(str(path))
    assert second.suggest("trial6") == first.suggest("trial6")

    for config in configs:
        chosen = config["tasks"].split("+")
        assert config["n_tasks"] == len(chosen)
        assert all(config[f"use.{t}"] == (t in chosen) for t in POOL[:4])
        assert 1e-4 <= config["learning_rate"] <= 1e-2 and config["per_device_batch_size"] == 32
        assert config["seed"] == 7 and config["guided.sd"] > 0
    assert [c["guided.step"] for c in configs] == [1, 2, 3, 4, 5, 6]
    assert len({c["tasks"] for c in configs}) == 6


# Known answers.


def test_it_finds_the_planted_best_and_ranks_the_tasks_within_forty_trials() -> None:
    every = [s for k in SIZES for s in itertools.combinations(POOL, k)]
    best = max(planted(s) for s in every)
    near = {s for s in every if planted(s) >= best - WITHIN}
    assert len(near) == 2  # of 511: random search needs about 170 trials to meet one
    truth = {task: shapley(task) for task in POOL}  # the conflict costs t0 and t1 half each
    assert truth["t0"] == pytest.approx(0.015) and truth["t1"] == pytest.approx(0.005)
    found, rhos, wrong, additive = [], [], 0, []
    for seed in range(20):
        proposer = GuidedProposer(POOL, SIZES, seed)
        chosen = run(proposer, 40, planted, np.random.default_rng(seed))
        found.append(min(i + 1 for i, s in enumerate(chosen + [()]) if s in near or not s))
        effects = proposer.effects()
        rhos.append(spearmanr([e.mean for e in effects], [truth[e.task] for e in effects])[0])
        told = [e for e in effects if e.told_apart]
        wrong += not told or any(np.sign(e.mean) != np.sign(truth[e.task]) for e in told)
        additive.append(proposer.surrogate().weights["indicators"])
    assert wrong <= 1  # a 5% familywise error: about one replicate in twenty
    # the landscape is additive in the tasks: the surrogate reads it so, not as a mixture
    assert np.median(additive) > 0.95 and min(additive) > 0.5, additive
    assert np.median(found) <= 30 and sum(f <= 40 for f in found) >= 18, found
    assert np.median(rhos) >= 0.9 and min(rhos) >= 0.8, rhos


def test_it_reads_a_diluted_landscape_as_a_mixture_and_finds_its_best() -> None:
    # Each task's worth shared with the others trained beside it at a fixed budget (a weighted
    # mean over the subset's proportions), and t2 with t3 in synergy: the best is t2+t3 alone,
    # one subset of 511, which random search meets after about 256 trials.
    effects = dict(zip(POOL, np.linspace(0.06, -0.04, len(POOL)), strict=True))

    def diluted(subset: tuple[str, ...]) -> float:
        share = 1 / len(subset)
        return (
            0.55
            + share * sum(effects[t] for t in subset)
            + 0.2 * share**2 * ({"t2", "t3"} <= set(subset))
        )

    every = [s for k in SIZES for s in itertools.combinations(POOL, k)]
    ranked = sorted(every, key=diluted, reverse=True)
    assert ranked[0] == ("t2", "t3") and diluted(ranked[1]) < diluted(ranked[0]) - WITHIN
    found = []
    for seed in range(10):
        proposer = GuidedProposer(POOL, SIZES, seed)
        chosen = run(proposer, 40, diluted, np.random.default_rng(seed))
        found.append(chosen.index(("t2", "t3")) + 1 if ("t2", "t3") in chosen else None)
        assert proposer.surrogate().weights["mixture"] > 0.9, seed
    assert sum(f is not None for f in found) >= 9, found


def test_on_pure_noise_it_tells_no_task_apart() -> None:
    anything = 0
    for seed in range(10):
        proposer = GuidedProposer(POOL, SIZES, seed)
        run(proposer, 40, lambda s: 0.6, np.random.default_rng(100 + seed))
        anything += any(e.told_apart for e in proposer.effects())
    assert anything <= 1  # a 5% familywise error: about one replicate in twenty


def test_an_early_stopped_report_counts_at_its_share_of_the_budget() -> None:
    # Every other subset reports at half its budget, 0.1 below its whole budget's score: the
    # budget's slope takes the difference, and what t0 is worth is read from both kinds alike.
    proposer = GuidedProposer(POOL[:4], (1, 2, 3, 4), seed=0)
    half_budget = set(itertools.combinations(POOL[:4], 2)) | {tuple(POOL[:4])}
    rng = np.random.default_rng(0)
    for _ in range(proposer.space_size):
        subset, _ = proposer.propose()
        full = 0.5 + 0.05 * ("t0" in subset) + rng.normal(0, 0.001)
        cut = subset in half_budget
        proposer.observe(subset, 0.5 if cut else 1.0, full - (0.1 if cut else 0.0))
    whole, half = proposer.surrogate().predict([("t0", "t1"), ("t0", "t1")], [1.0, 0.5])
    assert whole.mean - half.mean == pytest.approx(0.1, abs=0.02)
    effects = {e.task: e.mean for e in proposer.effects()}
    assert effects["t0"] == pytest.approx(0.05, abs=0.015), effects
    assert all(abs(effects[t]) < 0.015 for t in POOL[1:4]), effects


# Spec errors.


@pytest.mark.parametrize(
    "change, start",
    [
        ({"subsets": {"sampler": "guided", "baseline": True}}, "subsets.baseline: the guided"),
        ({"seeds": 2}, "seeds: the guided sampler picks each configuration once"),
        (
            {"hyperparameters": {"learning_rate": {"grid": [1.0e-3, 1.0e-4]}}},
            "hyperparameters.learning_rate: the guided sampler picks",
        ),
        (
            {"subsets": {"sampler": "guided", "sizes": [1], "num_samples": 10}},
            "subsets.num_samples: 10 trials, but the sizes allowed hold 9 subsets",
        ),
    ],
)
def test_what_the_guided_sampler_cannot_do_is_refused(change: dict, start: str) -> None:
    raw = search_spec("guided")
    raw["subsets"] = {"sampler": "guided", "num_samples": 12}
    raw.update(change)
    with pytest.raises(SpecError) as error:
        parse_spec(raw)
    assert str(error.value).startswith(start), str(error.value)


# A search.


@pytest.mark.e2e
def test_a_guided_search_under_asha_logs_its_predictions(tmp_path: Path) -> None:
    raw = search_spec(
        "guided",
        tmp_path,
        pool_size=4,
        subsets={"sampler": "guided", "num_samples": 7},
        hyperparameters={"learning_rate": {"loguniform": [3.0e-4, 3.0e-3]}},
        max_concurrent_trials=2,
    )
    raw["budget"].update(scheduler="asha", grace_period_steps=20, reduction_factor=2)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli(
        "run", str(write_spec(tmp_path, raw)), cwd=tmp_path, env={"MLFLOW_TRACKING_URI": uri}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    trials = load_trials("guided", uri)
    assert len(trials) == trials["tasks"].nunique() == 7
    assert sorted(trials["guided.step"].astype(int)) == list(range(1, 8))
    assert (trials["guided.sd"].astype(float) > 0).all()
    assert set(trials["status"]) <= {"completed", "early_stopped"}
    assert "completed" in set(trials["status"])

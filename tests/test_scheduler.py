"""ASHA that promotes within each subset size: every size keeps survivors, the baseline runs on."""

from __future__ import annotations

from types import SimpleNamespace

from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from xlt_search.search.scheduler import SizeStratifiedASHA


def trial(trial_id: str, n_tasks: int) -> SimpleNamespace:
    return SimpleNamespace(trial_id=trial_id, config={"n_tasks": n_tasks})


def run_rung(scheduler: ASHAScheduler, trials: list, scores: dict[str, float]) -> dict[str, str]:
    """Every trial reports once at the rung (budget_steps 100), in the order given."""
    scheduler.set_search_properties("score", "max")
    for t in trials:
        scheduler.on_trial_add(None, t)
    return {
        t.trial_id: scheduler.on_trial_result(
            None, t, {"budget_steps": 100, "score": scores[t.trial_id]}
        )
        for t in trials
    }


# Large subsets probe better: ASHA across sizes stops every small one after the first.
TRIALS = [
    trial("big1", 3),
    trial("big2", 3),
    trial("big3", 3),
    trial("small1", 1),
    trial("small2", 1),
    trial("small3", 1),
    trial("base", 0),
]
SCORES = {
    "big1": 0.8,
    "big2": 0.7,
    "big3": 0.9,
    "small1": 0.5,
    "small2": 0.6,
    "small3": 0.4,
    "base": 0.1,
}


def settings() -> dict:
    return {"time_attr": "budget_steps", "max_t": 300, "grace_period": 100, "reduction_factor": 3}


def test_tunes_asha_empties_the_small_sizes_but_ours_keeps_each_sizes_best() -> None:
    plain = run_rung(ASHAScheduler(**settings()), TRIALS, SCORES)
    assert all(plain[f"small{i}"] == TrialScheduler.STOP for i in (1, 2, 3))

    ours = run_rung(SizeStratifiedASHA(**settings()), TRIALS, SCORES)
    survivors = {t for t, action in ours.items() if action == TrialScheduler.CONTINUE}
    # each size's first trial at the rung continues, and so does any that beats its size so far
    assert survivors == {"big1", "big3", "small1", "small2", "base"}


def test_the_first_survivors_per_size_always_pass_a_rung() -> None:
    scores = {**SCORES, "small2": 0.3, "big2": 0.1}  # the second of each size now scores worst
    one = run_rung(SizeStratifiedASHA(**settings()), TRIALS, scores)
    assert one["small2"] == one["big2"] == TrialScheduler.STOP
    two = run_rung(SizeStratifiedASHA(survivors_per_size=2, **settings()), TRIALS, scores)
    survivors = {t for t, action in two.items() if action == TrialScheduler.CONTINUE}
    assert survivors == {"big1", "big2", "big3", "small1", "small2", "base"}


def test_the_baseline_is_never_stopped() -> None:
    scores = {**SCORES, "base": -1.0}
    ours = run_rung(
        SizeStratifiedASHA(**settings()), [*TRIALS, trial("base2", 0)], {**scores, "base2": -2.0}
    )
    assert ours["base"] == ours["base2"] == TrialScheduler.CONTINUE

"""The search's status line: trials by state, budget_steps done and still to go, the ETA, the best."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from processes import run_cli

from xlt_search.names import COMPLETED, EARLY_STOPPED, ERRORED, RUNNING
from xlt_search.search import make_plan
from xlt_search.search.progress import (
    PENDING,
    SearchProgress,
    TrialProgress,
    format_duration,
)
from xlt_search.spec import load_spec

QUICKSTART = Path(__file__).resolve().parents[1] / "search_spaces" / "quickstart.yaml"
# Five trials of 1,200 budget_steps each (the baseline's 800: it has no intermediate phase).
PLANNED = 4 * 1200 + 800


def test_the_plans_budget_counts_the_baselines_shorter_budget() -> None:
    plan = make_plan(load_spec(QUICKSTART))  # 25 subsets and the baseline
    assert plan.num_trials == 26
    assert plan.budget_steps == 25 * 1200 + 800


def test_before_any_report_the_line_counts_trials_and_says_eta_unknown() -> None:
    progress = SearchProgress(num_trials=5, planned_steps=PLANNED, started_s=100.0)
    line = progress.status_line({"a": TrialProgress(RUNNING, 0, 1200)}, now_s=107.0)
    assert line == (
        "status: 1 running, 4 pending, 0 done, 0 stopped, 0 errored | elapsed 7s | "
        "0 of at most 5600 budget_steps, ETA unknown | best completed: none yet"
    )


def test_the_eta_is_what_could_still_run_at_the_measured_rate() -> None:
    progress = SearchProgress(num_trials=5, planned_steps=PLANNED, started_s=0.0)
    trials = {
        "done": TrialProgress(COMPLETED, 1200, 1200, score=0.61, size=2, subset="a+b"),
        "cut": TrialProgress(EARLY_STOPPED, 400, 1200, score=0.70, size=1, subset="c"),
        "base": TrialProgress(COMPLETED, 800, 800, score=0.75, size=0, subset=""),
        "run": TrialProgress(RUNNING, 600, 1200, score=0.55, size=1, subset="a"),
    }
    line = progress.status_line(trials, now_s=150.0)
    # done: 1200 + 400 + 800 + 600 = 3000 in 150 s = 20/s; to go: the running trial's 600 and
    # one trial Tune has not made yet (5600 planned - 4400 known = 1200): 1800 steps, 90 s
    assert line == (
        "status: 1 running, 1 pending, 2 done, 1 stopped, 0 errored | elapsed 2m30s | "
        "3000 of at most 4800 budget_steps, 20.0/s, ETA at most 1m30s | "
        "best completed 0.6100 k=2 a+b"
    )  # the cut trial's higher score and the baseline's are not the best completed subset


def test_a_resumed_search_rates_only_the_steps_of_this_run() -> None:
    progress = SearchProgress(num_trials=3, planned_steps=3600, started_s=0.0)
    progress.first_seen("old", 1000)  # restored with the budget_steps it had
    progress.first_seen("old", 0)  # seen again later: the first sighting counts
    trials = {
        "old": TrialProgress(RUNNING, 1100, 1200),
        "new": TrialProgress(PENDING, 100, 1200),
        "failed": TrialProgress(ERRORED, 300, 1200),
    }
    line = progress.status_line(trials, now_s=50.0)
    # this run: 100 + 100 + 300 = 500 steps in 50 s; to go 100 + 1100 (the errored trial: none)
    assert "1 running, 1 pending, 0 done, 0 stopped, 1 errored" in line
    assert "1500 of at most 2700 budget_steps, 10.0/s, ETA at most 2m00s" in line


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0s"), (59.4, "59s"), (60, "1m00s"), (185, "3m05s"), (3600, "1h00m"), (7655, "2h07m")],
)
def test_durations_read_at_a_glance(seconds: float, shown: str) -> None:
    assert format_duration(seconds) == shown


def test_every_status_line_has_one_shape() -> None:
    """The shape the e2e tests and a user's `grep ^status:` rely on."""
    progress = SearchProgress(num_trials=3, planned_steps=3600, started_s=0.0)
    shape = re.compile(
        r"^status: \d+ running, \d+ pending, \d+ done, \d+ stopped, \d+ errored \| "
        r"elapsed \S+ \| \d+ of at most \d+ budget_steps, "
        r"(ETA unknown|[\d.]+/s, ETA at most \S+) \| best completed(: none yet| [\d.]+ k=\d+ \S+)$"
    )
    for trials in (
        {},
        {"a": TrialProgress(RUNNING, 200, 1200)},
        {"a": TrialProgress(COMPLETED, 1200, 1200, score=0.5, size=3, subset="x+y+z")},
    ):
        assert shape.match(progress.status_line(trials, now_s=12.0))


def test_a_status_period_of_zero_is_refused(tmp_path: Path) -> None:
    result = run_cli("run", str(QUICKSTART), "--status-every-s", "0", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "xlt-search: error: --status-every-s 0: give a period above 0 seconds"
    )
    assert not list(tmp_path.iterdir())  # refused before the plan: nothing written

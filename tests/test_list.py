"""`xlt-search list` and `--version` through the real CLI, on a real SQLite store whose searches
were logged by the project's own SearchLogger (no Ray)."""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from processes import run_cli
from search_specs import E2E_SPEC, search_spec, write_spec

from xlt_search import tracking
from xlt_search.spec import load_spec, parse_spec
from xlt_search.tracking import SearchLogger

QUICKSTART = Path(__file__).resolve().parents[1] / "search_spaces" / "quickstart.yaml"


@dataclass(frozen=True)
class Store:
    folder: Path
    uri: str


def trial(logger: SearchLogger, trial_id: str, tasks: str, score: float | None) -> None:
    logger.trial_started(trial_id, f"k-{tasks}", {"tasks": tasks, "n_tasks": tasks.count("+") + 1})
    if score is not None:
        logger.trial_result(trial_id, {"score": score, "budget_steps": 1200}, step=1200)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """Three searches: a finished quickstart (four trials ended), an interrupted one (its one
    trial left open), and an e2e search still running."""
    folder = tmp_path_factory.mktemp("list")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)  # MLflow puts artifacts under the working directory
        finished = SearchLogger(uri)
        finished.start("quickstart", "quickstart-1", QUICKSTART.read_text(), tags={})
        for trial_id, tasks, score in (
            ("t1", "syn_kind+syn_stance", 0.61),
            ("t2", "syn_kind", 0.55),
            ("t3", "syn_stance", 0.40),
            ("t4", "syn_sentiment", None),
        ):
            trial(finished, trial_id, tasks, score)
        finished.trial_ended("t1", "completed")
        finished.trial_ended("t2", "completed")
        finished.trial_ended("t3", "early_stopped")
        finished.trial_ended("t4", "errored", error="TrialDiverged: loss is nan")
        finished.finish()
        interrupted = SearchLogger(uri)
        interrupted.start("quickstart", "quickstart-2", QUICKSTART.read_text(), tags={})
        trial(interrupted, "t1", "syn_kind", 0.9)  # reported, never ended: not a completed best
        interrupted.finish("KILLED")
        running = SearchLogger(uri)
        running.start("e2e", "e2e-1", E2E_SPEC.read_text(), tags={})
        assert running.flush() == 0
    return Store(folder, uri)


def listing(store: Store, *args: str, cwd: Path) -> list[list[str]]:
    result = run_cli("list", *args, "--tracking-uri", store.uri, cwd=cwd)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no progress bar of the specs read back
    return [line.split() for line in result.stdout.splitlines()]


def test_list_shows_each_search_newest_first_with_state_trials_and_best(
    store: Store, tmp_path: Path
) -> None:
    header, *rows = listing(store, cwd=tmp_path)
    assert header == ["search", "experiment", "state", "started", "trials", "ended", "best"] + [
        "(completed)"
    ]
    assert [row[:3] for row in rows] == [
        ["e2e-1", "e2e", "running"],
        ["quickstart-2", "quickstart", "interrupted"],
        ["quickstart-1", "quickstart", "finished"],
    ]
    # columns after the start's date and time: trials ended of those planned, then the best
    assert rows[0][5:] == ["0/10", "-"]  # e2e.yaml: one subset of each size 1-9, the baseline
    assert rows[1][5:] == ["0/26", "-"]  # the quickstart's 26 trials
    assert " ".join(rows[2][5:]) == (
        "4/26 (2 completed, 1 early_stopped, 1 errored) 0.6100 syn_kind+syn_stance"
    )


def test_list_of_one_experiment(store: Store, tmp_path: Path) -> None:
    _, *rows = listing(store, "quickstart", cwd=tmp_path)
    assert [row[0] for row in rows] == ["quickstart-2", "quickstart-1"]
    summaries = tracking.list_searches(store.uri, "e2e")
    assert [(s.run_name, s.state, s.trials_logged) for s in summaries] == [("e2e-1", "running", 0)]


def test_an_unknown_experiment_or_store_is_one_line_and_makes_no_store(
    store: Store, tmp_path: Path
) -> None:
    unknown = run_cli("list", "quikstart", "--tracking-uri", store.uri, cwd=tmp_path)
    assert unknown.returncode == 2
    assert unknown.stderr.splitlines() == [
        f"xlt-search: error: no MLflow experiment 'quikstart' at {store.uri} (did you mean "
        "'quickstart'?); the experiments there: e2e, quickstart, Default (pass --tracking-uri "
        "or set $MLFLOW_TRACKING_URI to the search's store)"
    ]
    for args in (["list"], ["list", "quickstart"], ["report", "quickstart"]):
        nowhere = run_cli(*args, cwd=tmp_path, env={"MLFLOW_TRACKING_URI": ""})
        assert nowhere.returncode == 2, nowhere.stderr
        (line,) = nowhere.stderr.splitlines()
        assert f"no MLflow store at {tmp_path / 'mlflow.db'} (no such file)" in line
        assert list(tmp_path.iterdir()) == [], "a store was made"


def test_version_is_the_packages() -> None:
    result = run_cli("--version")
    assert result.returncode == 0
    assert result.stdout == f"xlt-search {importlib.metadata.version('xlt-search')}\n"


@pytest.mark.e2e  # a search runs: Ray starts
def test_a_search_that_extends_a_spec_with_overrides_logs_the_spec_that_ran(
    tmp_path: Path,
) -> None:
    write_spec(tmp_path, search_spec("tiny", tmp_path, pool_size=1))  # tiny.yaml: one trial
    child = tmp_path / "child.yaml"
    child.write_text("extends: tiny.yaml\nname: tiny-child\nmlflow: {experiment: tiny-child}\n")
    overrides = ["budget.target_steps=40", "max_concurrent_trials=1"]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli(
        "run",
        str(child),
        *(option for value in overrides for option in ("--set", value)),
        cwd=tmp_path,
        env={"MLFLOW_TRACKING_URI": uri},
        timeout_s=900,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    (search,) = tracking.list_searches(uri, "tiny-child")
    assert (search.state, search.trials_ended["completed"]) == ("finished", 1)
    ran = parse_spec(yaml.safe_load(search.spec_text))
    assert ran == load_spec(child, overrides) and ran.budget.target_steps == 40
    listed = run_cli("list", "--tracking-uri", uri, cwd=tmp_path)
    (row,) = listed.stdout.splitlines()[1:]
    assert row.split()[:3] == [search.run_name, "tiny-child", "finished"]
    assert "1/1 (1 completed)" in row

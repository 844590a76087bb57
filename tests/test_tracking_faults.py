"""The tracking side of a search under faults, with the real thing: a full disk (a small tmpfs,
mounted for the test), searches starting at once on one new SQLite store (real processes), and
commands that read a store that is not there."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import fill
from processes import run_cli

from xlt_search import tracking
from xlt_search.tracking import SearchLogger
from xlt_search.tracking.journal import Journal


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.chdir(tmp_path)  # MLflow puts artifacts under the working directory
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def started_logger(store: str, results: Path) -> SearchLogger:
    """A logger journaling into `results`, its search and the two trials t1, t2 started."""
    logger = SearchLogger(store, journal_dir=results)
    logger.start("exp", "search", "name: demo\n", tags={})
    for trial_id in ("t1", "t2"):
        logger.trial_started(trial_id, trial_id, {"tasks": "syn_a"})
    return logger


def log_reports(logger: SearchLogger, steps: range) -> list[tuple[str, int]]:
    """Two trials' reports at `steps`, each call timed: none may wait on the disk or MLflow."""
    logged = []
    for step in steps:
        for trial_id in ("t1", "t2"):
            started = time.perf_counter()
            logger.trial_result(trial_id, {"score": step / 1e4, "budget_steps": step}, step)
            assert time.perf_counter() - started < 0.1
            logged.append((trial_id, step))
    return logged


def journaled_reports(path: Path) -> list[tuple[str, int]]:
    """The reports a journal holds, in order, after checking that every line of it is whole."""
    import json

    text = path.read_text()
    assert text.endswith("\n")
    lines = [json.loads(line) for line in text.splitlines()]  # each whole: nothing torn
    return [(op["trial_id"], op["step"]) for op in lines[1:] if op["op"] == "trial_result"]


def metric_steps(uri: str, logger: SearchLogger, trial_id: str) -> list[int]:
    from mlflow import MlflowClient

    history = MlflowClient(uri).get_metric_history(logger.run_ids[trial_id], "score")
    return sorted(m.step for m in history)


def test_a_full_disk_under_the_journal_loses_and_tears_nothing(
    small_disk: Path, store: str, capsys: pytest.CaptureFixture[str]
) -> None:
    results = small_disk / "results"
    logger = started_logger(store, results)
    logged = log_reports(logger, range(10, 30, 10))
    assert logger.flush(timeout_s=30) == 0
    journal = logger.journal
    assert journal is not None

    capsys.readouterr()

    filler = fill(small_disk)
    logged += log_reports(logger, range(30, 1030, 10))  # 200 reports, some 20 KB of journal
    assert logger.flush(timeout_s=30) == 0  # MLflow, on another disk, has taken them all
    (said,) = capsys.readouterr().err.splitlines()  # once, not once per operation or per try
    assert said.startswith(
        f"xlt-search: warning: cannot write the MLflow journal in {results} (No space left on "
        "device"
    )
    assert said.endswith(
        "what the search logs waits in memory, and still goes to MLflow, until there is room"
    )
    on_disk = journaled_reports(journal)
    assert on_disk == logged[: len(on_disk)] and len(on_disk) < len(logged)

    filler.unlink()
    deadline = time.monotonic() + 30
    while journaled_reports(journal) != logged or Journal(journal).delivered() != 2 + len(logged):
        assert time.monotonic() < deadline, "the journal did not catch up once there was room"
        time.sleep(0.1)
    assert capsys.readouterr().err == f"xlt-search: the MLflow journal {journal} is written again\n"
    logger.trial_ended("t1", "completed")
    assert logger.finish() == 0
    assert tracking.sync(results) == 0  # the journal says MLflow has every operation
    for trial_id in ("t1", "t2"):
        assert metric_steps(store, logger, trial_id) == list(range(10, 1030, 10))


def test_a_full_disk_under_the_sqlite_store_holds_delivery_until_there_is_room(
    small_disk: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    # The quickstart's layout: ./mlflow.db and the search's results on one disk.
    monkeypatch.chdir(small_disk)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{small_disk / 'mlflow.db'}"
    results = small_disk / "results"
    logger = started_logger(uri, results)
    assert logger.flush(timeout_s=30) == 0
    capfd.readouterr()

    filler = fill(small_disk)
    log_reports(logger, range(10, 410, 10))
    assert logger.flush(timeout_s=3) > 0  # neither MLflow nor the journal can take them now
    filler.unlink()
    assert logger.finish(timeout_s=60) == 0
    said = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    store_lines = [line for line in said if "MLflow at" in line]
    assert store_lines == [
        f"xlt-search: warning: MLflow at {uri} cannot write (database or disk is full); what "
        f"the search logs waits (journaled in {results}) and goes to MLflow when it is back",
        f"xlt-search: MLflow at {uri} is back; delivering what waited",
    ], said
    assert not [line for line in said if "Traceback" in line or "ERROR" in line], said
    for trial_id in ("t1", "t2"):
        assert metric_steps(uri, logger, trial_id) == list(range(10, 410, 10))
    assert tracking.sync(results) == 0


# Searches that start at once on one new SQLite store.

START = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import mlflow  # imported before the start line: the processes race on the store alone
    from xlt_search.tracking import SearchLogger

    uri, go, name = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    print("ready", flush=True)
    while not go.exists():
        time.sleep(0.01)
    logger = SearchLogger(uri)
    logger.start("exp", name, "", tags={})
    logger.trial_started("t1", "t1", {"tasks": "syn_a"})
    logger.trial_result("t1", {"score": 0.5}, 10)
    assert logger.finish() == 0
    print(logger.parent_run_id, flush=True)
    """
)


def test_searches_starting_at_once_on_a_new_sqlite_store_all_run(
    store: str, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    starts = [
        subprocess.Popen(
            [sys.executable, "-c", START, store, str(go), f"search-{number}"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for number in range(3)
    ]
    for process in starts:
        assert process.stdout is not None and process.stdout.readline() == "ready\n"
    assert not (tmp_path / "mlflow.db").exists()
    go.write_text("")
    parents = []
    for process in starts:
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0, err[-3000:]
        parents.append(out.split()[-1])
    from mlflow import MlflowClient

    client = MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name("exp").experiment_id])
    names = {run.info.run_id: run.info.run_name for run in runs if run.info.run_id in parents}
    assert sorted(names.values()) == ["search-0", "search-1", "search-2"]
    assert len(runs) == 6  # three parents, one trial each


@pytest.mark.parametrize("command", ["report", "resume"])
def test_reading_a_store_that_is_not_there_refuses_and_makes_none(
    tmp_path: Path, command: str
) -> None:
    result = run_cli(command, "quickstart", cwd=tmp_path, env={"MLFLOW_TRACKING_URI": ""})
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"xlt-search: error: no MLflow store at {tmp_path / 'mlflow.db'} (no such file); pass "
        "--tracking-uri or set $MLFLOW_TRACKING_URI to the store the search logged to"
    )
    assert "Traceback" not in result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == []


def test_a_store_in_a_folder_that_is_not_there_is_one_line(tmp_path: Path) -> None:
    from xlt_search.errors import UserError

    database = tmp_path / "no-such-folder" / "mlflow.db"
    with pytest.raises(UserError) as error:
        SearchLogger(f"sqlite:///{database}").start("exp", "search", "", tags={})
    assert str(error.value) == (
        f"MLflow store {database}: cannot make it (No such file or directory); point the "
        "tracking URI at a file in a writable folder that exists"
    )
    assert not database.parent.exists()


def test_delivery_goes_on_when_the_journal_is_deleted_under_it(
    store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    results = tmp_path / "results"
    logger = started_logger(store, results)
    log_reports(logger, range(10, 30, 10))
    assert logger.flush(timeout_s=30) == 0
    capsys.readouterr()
    shutil.rmtree(results)  # the results folder deleted while the search runs
    log_reports(logger, range(30, 60, 10))
    assert logger.finish(timeout_s=30) == 0
    (said,) = capsys.readouterr().err.splitlines()
    assert said.startswith(
        f"xlt-search: warning: cannot write the MLflow journal in {results} (No such file or "
        "directory)"
    )
    for trial_id in ("t1", "t2"):
        assert metric_steps(store, logger, trial_id) == [10, 20, 30, 40, 50]

"""An MLflow server that goes away during a search: nothing blocks, nothing is lost, nothing is
logged twice. A real `mlflow server` on loopback, stopped and started again on the same port and
store; the journal's replay (`xlt-search sync`) in a real subprocess."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from processes import MlflowServer, run_cli

from xlt_search import tracking
from xlt_search.errors import UserError
from xlt_search.tracking import SearchLogger

METRICS = ("score", "loss", "budget_steps")


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MlflowServer]:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    # A logger of an http store turns MLflow's own retries off in its process, unless they are
    # set: undone after the test (monkeypatch restores what it first saw, no such variable).
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES")
    served = MlflowServer(tmp_path)
    served.start()
    yield served
    if served.process is not None:
        served.stop()


def trial_params(tasks: str) -> dict[str, object]:
    return {"tasks": tasks, "n_tasks": tasks.count("+") + 1, "learning_rate": 0.001}


def report(logger: SearchLogger, trial_id: str, step: int) -> tuple[str, int, float]:
    """Logs one report of `trial_id` at `step`; returns its score, as MLflow should keep it."""
    score = step / 1000 + int(trial_id[1:]) / 10
    logger.trial_result(trial_id, {"score": score, "loss": 1 / step, "budget_steps": step}, step)
    return trial_id, step, score


def check_logged_once(uri: str, parent_run_id: str, reports: list[tuple[str, int, float]]) -> None:
    """Each trial has one child run, and each metric the steps it was reported at, once each."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    parent = client.get_run(parent_run_id)
    assert parent.info.status == "FINISHED"
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_run_id}'"
    )
    by_trial = {run.data.tags["xlt.trial_id"]: run for run in children}
    trials = sorted({trial_id for trial_id, _, _ in reports})
    assert len(children) == len(by_trial) and sorted(by_trial) == trials
    for trial_id, run in by_trial.items():
        expected = sorted((step, score) for t, step, score in reports if t == trial_id)
        history = client.get_metric_history(run.info.run_id, "score")
        assert sorted((m.step, m.value) for m in history) == expected
        for key in METRICS[1:]:
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            assert sorted(steps) == [step for step, _ in expected]
        assert run.data.params["learning_rate"] == "0.001"


@pytest.mark.e2e
@pytest.mark.parametrize(
    "mlflow_retries",
    [None, "2"],
    ids=["mlflow's-own-retries-off", "mlflow-retrying-twice-itself"],
)
def test_a_server_that_goes_away_and_returns_loses_and_repeats_nothing(
    server: MlflowServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    mlflow_retries: str | None,
) -> None:
    # By default the logger has MLflow's client not retry a refused connection itself (7 times,
    # about 4 minutes, by default), so that nothing waits on MLflow's backoff once the server is
    # back; set by the user, MLflow's retries come first, and the logger's own after them.
    if mlflow_retries is not None:
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", mlflow_retries)
    results = tmp_path / "results"
    logger = SearchLogger(server.uri, journal_dir=results)
    parent_run_id = logger.start("exp", "search", "name: demo\n", tags={})
    reports = []
    for trial_id in ("t1", "t2"):
        logger.trial_started(trial_id, trial_id, trial_params("syn_a"))
        reports.append(report(logger, trial_id, 100))
    assert logger.flush(timeout_s=30) == 0

    server.stop()
    reports.append(report(logger, "t1", 200))
    assert logger.flush(timeout_s=1) == 1  # the delivering thread is stuck on the dead server
    took = []
    for step in (300, 400):
        for trial_id in ("t1", "t2", "t3"):
            started = time.perf_counter()
            if step == 300 and trial_id == "t3":
                logger.trial_started("t3", "t3", trial_params("syn_b+syn_c"))
            reports.append(report(logger, trial_id, step))
            took.append(time.perf_counter() - started)
    started = time.perf_counter()
    logger.trial_ended("t2", "errored", error="worker died")
    logger.trial_started("t2", "t2", trial_params("syn_a"))  # Tune retries it
    reports.append(report(logger, "t2", 500))
    logger.trial_ended("t1", "completed")
    took.append(time.perf_counter() - started)
    assert max(took) < 0.1, took  # a Tune callback never waits on the network

    server.start()  # returns once the server answers /health, seconds after it was stopped
    back = time.perf_counter()
    assert logger.flush(timeout_s=120) == 0
    delivered_s = time.perf_counter() - back
    with capsys.disabled():
        print(f"\n13 operations queued while MLflow was away, delivered {delivered_s:.2f} s after")
    assert delivered_s < (5.0 if mlflow_retries is None else 15.0), delivered_s
    assert logger.finish(timeout_s=30) == 0
    check_logged_once(server.uri, parent_run_id, reports)
    assert sorted(logger.run_ids) == ["t1", "t2", "t3"]
    from mlflow import MlflowClient

    runs = {t: MlflowClient(server.uri).get_run(r) for t, r in logger.run_ids.items()}
    assert {t: run.data.tags["status"] for t, run in runs.items()} == {
        "t1": "completed",
        "t2": "interrupted",  # its retry was still running when the search finished
        "t3": "interrupted",
    }
    assert "error" not in runs["t2"].data.tags  # the retry cleared it
    assert tracking.sync(results) == 0  # the journal records that MLflow has it all
    said = [line for line in capsys.readouterr().err.splitlines() if "xlt-search" in line]
    assert said == [
        f"xlt-search: warning: MLflow at {server.uri} is unreachable; what the search logs waits "
        f"(journaled in {results}) and goes to MLflow when it is back",
        f"xlt-search: MLflow at {server.uri} is back; delivering what waited",
    ]


DRIVER = textwrap.dedent(
    """
    import json, sys
    from xlt_search.tracking import SearchLogger

    uri, results = sys.argv[1], sys.argv[2]
    logger = SearchLogger(uri, journal_dir=results)
    logger.start("exp", "search", "name: demo\\n", tags={})
    logger.trial_started("t1", "t1", {"tasks": "syn_a", "n_tasks": 1, "learning_rate": 0.001})
    logger.trial_result("t1", {"score": 0.1, "loss": 0.01, "budget_steps": 100}, 100)
    logger.flush(timeout_s=30)
    print("stop the server", flush=True)
    sys.stdin.readline()
    logger.trial_result("t1", {"score": 0.2, "loss": 0.005, "budget_steps": 200}, 200)
    logger.trial_started("t2", "t2", {"tasks": "syn_b", "n_tasks": 1, "learning_rate": 0.001})
    logger.trial_result("t2", {"score": 1.1, "loss": 0.01, "budget_steps": 100}, 100)
    logger.trial_ended("t1", "completed")
    print(json.dumps({"parent": logger.parent_run_id, "waiting": logger.finish(timeout_s=3)}))
    """
)


@pytest.mark.e2e
def test_a_server_gone_until_the_end_leaves_a_journal_that_sync_delivers_once(
    server: MlflowServer, tmp_path: Path
) -> None:
    import json

    results = tmp_path / "results"
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, server.uri, str(results)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert driver.stdout is not None and driver.stdin is not None
    assert driver.stdout.readline() == "stop the server\n"
    server.stop()
    started = time.perf_counter()
    out, err = driver.communicate("go\n", timeout=120)
    assert driver.returncode == 0, err[-3000:]
    assert time.perf_counter() - started < 30  # finish gave up after its 3 s, and did not raise
    ended = json.loads(out.splitlines()[-1])
    assert ended["waiting"] == 5  # 2 reports, a trial start and end, and the parent's close
    (warning,) = [line for line in err.splitlines() if "have not reached MLflow" in line]
    assert warning.startswith("xlt-search: warning: 5 logging operations")
    assert f"`xlt-search sync {results}`" in warning

    def sync() -> subprocess.CompletedProcess:
        return run_cli("sync", str(results))

    unreachable = sync()
    assert unreachable.returncode == 2 and unreachable.stdout == ""
    assert unreachable.stderr.count("\n") == 1
    assert f"MLflow tracking server {server.uri} is unreachable" in unreachable.stderr

    server.start()
    delivered = sync()
    assert delivered.returncode == 0, delivered.stderr[-3000:]
    # (MLflow itself prints a "View run" link for each run it closes on a server.)
    last_line = delivered.stdout.splitlines()[-1]
    assert last_line == f"delivered 5 logging operations from {results} to MLflow"
    reports = [("t1", 100, 0.1), ("t1", 200, 0.2), ("t2", 100, 1.1)]
    check_logged_once(server.uri, ended["parent"], reports)
    again = sync()
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.startswith("nothing to deliver")
    check_logged_once(server.uri, ended["parent"], reports)


# Replaying what MLflow already has: the operation a driver sent before it died, unrecorded.


@pytest.fixture
def sqlite_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.chdir(tmp_path)  # MLflow puts artifacts under the working directory
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def log_and_forget_delivery(uri: str, results: Path) -> tuple[SearchLogger, list]:
    """A small search, all delivered; then its journal's delivered count is wiped, as if the
    driver had died before recording any of it."""
    logger = SearchLogger(uri, journal_dir=results)
    logger.start("exp", "search", "", tags={})
    reports = []
    for trial_id in ("t1", "t2"):
        logger.trial_started(trial_id, trial_id, trial_params("syn_a"))
        reports += [report(logger, trial_id, step) for step in (100, 200)]
    logger.trial_ended("t1", "completed")
    (results / "curve.csv").write_text("n_tasks\n1\n")
    logger.log_artifact(results / "curve.csv")
    assert logger.finish() == 0
    assert logger.journal is not None
    logger.journal.with_suffix(".delivered").unlink()
    return logger, reports


def test_sync_applies_a_journal_again_without_logging_anything_twice(
    sqlite_uri: str, tmp_path: Path
) -> None:
    results = tmp_path / "results"
    logger, reports = log_and_forget_delivery(sqlite_uri, results)
    # All nine again: two trial starts, four reports, a trial's end, the artifact, the close.
    assert tracking.sync(results) == 9
    assert tracking.sync(results) == 0
    check_logged_once(sqlite_uri, logger.parent_run_id, reports)
    from mlflow import MlflowClient

    names = {a.path for a in MlflowClient(sqlite_uri).list_artifacts(logger.parent_run_id)}
    assert names == {"curve.csv", "spec.yaml"}


def test_resume_delivers_what_the_search_journaled_first(sqlite_uri: str, tmp_path: Path) -> None:
    results = tmp_path / "results"
    first, reports = log_and_forget_delivery(sqlite_uri, results)
    again = SearchLogger(sqlite_uri, journal_dir=results)
    again.resume(first.parent_run_id)
    assert again.run_ids == first.run_ids
    assert again.journal == results / "mlflow-journal-1.jsonl"
    assert tracking.sync(results) == 0  # the first journal is delivered; the second is empty
    again.trial_started("t3", "t3", trial_params("syn_b"))
    reports.append(report(again, "t3", 100))
    assert again.finish() == 0
    check_logged_once(sqlite_uri, first.parent_run_id, reports)


def test_sync_names_a_folder_without_a_journal(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="holds no MLflow journal .*<storage_path>/<run name>"):
        tracking.sync(tmp_path)


def test_sync_delivers_every_whole_operation_of_a_torn_journal(
    sqlite_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    logger, reports = log_and_forget_delivery(sqlite_uri, results)
    assert logger.journal is not None
    header, *operations = logger.journal.read_text().splitlines(keepends=True)
    # What an older writer left on a full disk: the start of an operation that was never queued,
    # then the next operation on the same line; and a last line a crash cut short.
    torn = '{"op": "trial_result", "trial_id": "t2", "metrics": {"sco'
    damaged = [header, *operations[:3], torn + operations[3], *operations[4:], operations[0][:20]]
    logger.journal.write_text("".join(damaged))
    capsys.readouterr()
    assert tracking.sync(results) == 9  # every whole operation, the one after the torn piece too
    assert capsys.readouterr().err == (
        f"xlt-search: warning: MLflow journal {logger.journal} holds the torn start of 1 "
        "operation never queued (a write cut short by a full disk): left out; every whole "
        "operation is delivered\n"
    )
    check_logged_once(sqlite_uri, logger.parent_run_id, reports)


def test_a_journal_whose_header_is_damaged_is_one_line(sqlite_uri: str, tmp_path: Path) -> None:
    results = tmp_path / "results"
    logger, _ = log_and_forget_delivery(sqlite_uri, results)
    assert logger.journal is not None
    text = logger.journal.read_text()
    logger.journal.write_text(text[:10] + text[text.index("\n") :])
    with pytest.raises(UserError, match="has a damaged header \\(its first line\\); restore it"):
        tracking.sync(results)

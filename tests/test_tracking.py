"""MLflow logging against a real local store (sqlite in tmp_path), and the tracking URI checks."""

from __future__ import annotations

import http.server
import math
import pickle
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from processes import serving

from xlt_search import subsets, tracking
from xlt_search.errors import UserError
from xlt_search.tracking import STATE_TAG, SearchLogger, load_trials

POOL = ("syn_a", "syn_b", "syn_c")


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with MLflow's tables made once (that takes seconds); each test gets a copy."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def uri(empty_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    shutil.copy(empty_store, tmp_path / "mlflow.db")
    monkeypatch.chdir(tmp_path)  # MLflow puts artifacts under the working directory
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def client(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def start_trial(logger: SearchLogger, trial_id: str, chosen: tuple[str, ...]) -> None:
    params = {
        "tasks": subsets.subset_key(chosen),
        "n_tasks": len(chosen),
        **subsets.use_flags(chosen, POOL),
        "learning_rate": 0.001,
        "task_sampler": "uniform",
    }
    logger.trial_started(trial_id, f"k{len(chosen)}-{params['tasks']}", params)


def log_search(uri: str, experiment: str = "exp", name: str = "search") -> SearchLogger:
    """A small search: one completed, one early-stopped and one errored trial."""
    logger = SearchLogger(uri)
    logger.start(experiment, name, "name: demo\n", tags={"xlt.sampler": "stratified"})
    start_trial(logger, "t1", ("syn_a", "syn_b"))
    start_trial(logger, "t2", ("syn_c",))
    start_trial(logger, "t3", ("syn_a",))
    for step, score in ((100, 0.4), (200, 0.5), (300, 0.6)):
        final = 1.0 if step == 300 else 0.0
        logger.trial_result("t1", {"score": score, "budget_steps": step, "final": final}, step=step)
    logger.trial_result("t2", {"score": 0.3, "budget_steps": 100, "lang.nli.xf1": 0.2}, step=100)
    logger.trial_result("t3", {"score": math.nan, "loss": math.inf, "budget_steps": 100}, step=100)
    logger.trial_ended("t1", "completed")
    logger.trial_ended("t2", "early_stopped")
    logger.trial_ended("t3", "errored", error="TrialDiverged: loss is nan at step 57")
    logger.finish()
    return logger


# Tracking URIs.


def test_unreachable_server_fails_fast_with_one_line_naming_uri_and_fix() -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.perf_counter()
    with pytest.raises(UserError) as error:
        tracking.check_tracking_uri(f"http://127.0.0.1:{port}")
    assert time.perf_counter() - started < 3
    message = str(error.value)
    assert "\n" not in message
    assert f"http://127.0.0.1:{port} is unreachable" in message
    assert "mlflow server" in message and f"--port {port}" in message
    assert "mlflow.tracking_uri" in message


@pytest.fixture
def http_server() -> Iterator[str]:
    """A loopback server: /health gives 200, /gateway/health 502 (a proxy with nothing behind)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            codes = {"/health": 200, "/gateway/health": 502}
            self.send_response(codes.get(self.path, 404))
            self.end_headers()
            self.wfile.write(b"OK")

        def log_message(self, *args) -> None:
            pass

    with serving(Handler) as url:
        yield url


def test_a_server_that_answers_passes(http_server: str) -> None:
    tracking.check_tracking_uri(http_server)
    tracking.check_tracking_uri(http_server + "/some/prefix/")  # 404 is still an answer


def test_a_gateway_with_no_server_behind_it_is_unreachable(http_server: str) -> None:
    with pytest.raises(UserError, match="/gateway is unreachable \\(HTTP 502 from a proxy"):
        tracking.check_tracking_uri(http_server + "/gateway")


@pytest.mark.parametrize("uri", ["file:///tmp/mlruns", "./mlruns", "/abs/mlruns"])
def test_the_file_store_is_refused(uri: str) -> None:
    with pytest.raises(UserError) as error:
        tracking.check_tracking_uri(uri)
    assert "deprecated" in str(error.value) and "sqlite:///mlflow.db" in str(error.value)


def test_local_stores_pass_and_the_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracking.check_tracking_uri(None)
    tracking.check_tracking_uri("sqlite:///mlflow.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "file:///tmp/mlruns")
    with pytest.raises(UserError, match="file:///tmp/mlruns"):
        tracking.check_tracking_uri(None)


def test_resolve_makes_sqlite_paths_absolute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.resolve_tracking_uri(None) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert tracking.resolve_tracking_uri("sqlite:///a/b.db") == f"sqlite:///{tmp_path / 'a/b.db'}"
    assert tracking.resolve_tracking_uri("sqlite:////x/b.db") == "sqlite:////x/b.db"
    assert tracking.resolve_tracking_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///env.db")
    assert tracking.resolve_tracking_uri(None) == f"sqlite:///{tmp_path / 'env.db'}"


# The search's runs.


def test_parent_run_holds_the_spec_and_the_tags(uri: str, tmp_path: Path) -> None:
    logger = log_search(uri)
    parent = client(uri).get_run(logger.parent_run_id)
    assert parent.info.run_name == "search" and parent.info.status == "FINISHED"
    assert parent.data.tags["xlt.sampler"] == "stratified"
    assert "mlflow.parentRunId" not in parent.data.tags
    spec = client(uri).download_artifacts(logger.parent_run_id, "spec.yaml", str(tmp_path))
    assert Path(spec).read_text() == "name: demo\n"
    csv = tmp_path / "scaling_curve.csv"
    csv.write_text("n_tasks\n1\n")
    logger.log_artifact(csv)
    assert logger.flush() == 0  # logging calls only queue: this waits for MLflow to have it
    names = {a.path for a in client(uri).list_artifacts(logger.parent_run_id)}
    assert names == {"spec.yaml", "scaling_curve.csv"}


def test_child_runs_carry_params_status_and_stepped_metrics(uri: str) -> None:
    logger = log_search(uri)
    mlflow_client = client(uri)
    runs = {tid: mlflow_client.get_run(rid) for tid, rid in logger.run_ids.items()}
    assert set(runs) == {"t1", "t2", "t3"}
    for trial_id, run in runs.items():
        assert run.data.tags["mlflow.parentRunId"] == logger.parent_run_id
        assert run.data.tags["xlt.trial_id"] == trial_id
    completed = runs["t1"]
    assert completed.info.run_name == "k2-syn_a+syn_b"
    assert completed.data.params == {
        "tasks": "syn_a+syn_b",
        "n_tasks": "2",
        "use.syn_a": "True",
        "use.syn_b": "True",
        "use.syn_c": "False",
        "learning_rate": "0.001",
        "task_sampler": "uniform",
    }
    history = mlflow_client.get_metric_history(completed.info.run_id, "score")
    assert [(m.step, m.value) for m in history] == [(100, 0.4), (200, 0.5), (300, 0.6)]
    statuses = {tid: (r.data.tags["status"], r.info.status) for tid, r in runs.items()}
    assert statuses == {
        "t1": ("completed", "FINISHED"),
        "t2": ("early_stopped", "FINISHED"),
        "t3": ("errored", "FAILED"),
    }
    errored = runs["t3"]
    assert errored.data.tags["error"] == "TrialDiverged: loss is nan at step 57"
    assert errored.data.metrics == {"budget_steps": 100.0}  # NaN score and inf loss skipped


def test_load_trials_gives_one_typed_row_per_trial(uri: str) -> None:
    log_search(uri)
    trials = load_trials("exp", uri)
    assert list(trials.columns[: len(tracking.TRIAL_COLUMNS)]) == list(tracking.TRIAL_COLUMNS)
    assert list(trials["tasks"]) == ["syn_a", "syn_c", "syn_a+syn_b"]
    assert list(trials["n_tasks"]) == [1, 1, 2]
    assert list(trials["status"]) == ["errored", "early_stopped", "completed"]
    assert trials["score"].tolist()[1:] == [0.3, 0.6] and math.isnan(trials["score"][0])
    assert list(trials["budget_steps"]) == [100, 100, 300]
    assert (trials["start_time"] > 0).all()  # each run's start, in ms
    assert trials["error"][0].startswith("TrialDiverged")
    assert trials["use.syn_b"].tolist() == [False, False, True]
    assert trials["learning_rate"].tolist() == [0.001] * 3
    assert trials["task_sampler"].tolist() == ["uniform"] * 3
    assert trials["lang.nli.xf1"][1] == 0.2 and trials["lang.nli.xf1"].isna().sum() == 2


def test_load_trials_at_a_step_reads_every_trial_as_it_was_there(uri: str) -> None:
    log_search(uri)
    at_200 = load_trials("exp", uri, at_step=200).set_index("trial_id")
    # the completed trial went past 200 (its history is read); the others stopped at 100
    assert at_200.loc["t1", ["score", "budget_steps", "final"]].tolist() == [0.5, 200, 0.0]
    assert at_200.loc["t2", ["score", "budget_steps", "lang.nli.xf1"]].tolist() == [0.3, 100, 0.2]
    assert at_200.loc["t3", "budget_steps"] == 100 and math.isnan(at_200.loc["t3", "score"])
    at_50 = load_trials("exp", uri, at_step=50)
    assert at_50["budget_steps"].isna().all() and at_50["score"].isna().all()  # none reported


def test_load_trials_at_a_step_reads_only_the_metrics_it_is_given(uri: str) -> None:
    log_search(uri)
    at_200 = load_trials("exp", uri, at_step=200, keys=("score", "budget_steps", "lang."))
    assert "final" not in at_200.columns  # every trial logged it: it was not read
    at_200 = at_200.set_index("trial_id")
    assert at_200.loc["t1", ["score", "budget_steps"]].tolist() == [0.5, 200]
    assert at_200.loc["t2", ["score", "lang.nli.xf1"]].tolist() == [0.3, 0.2]


def test_load_trials_takes_the_newest_search_or_the_one_named(uri: str) -> None:
    first = log_search(uri, name="first")
    time.sleep(0.01)  # start times are in milliseconds
    second = SearchLogger(uri)
    second.start("exp", "second", "name: demo\n", tags={})
    start_trial(second, "only", ("syn_b",))
    second.finish()
    assert load_trials("exp", uri)["tasks"].tolist() == ["syn_b"]
    assert len(load_trials("exp", uri, first.parent_run_id)) == 3


def test_an_empty_search_loads_as_an_empty_table(uri: str) -> None:
    logger = SearchLogger(uri)
    logger.start("exp", "empty", "", tags={})
    trials = load_trials("exp", uri)
    assert trials.empty and list(trials.columns) == list(tracking.TRIAL_COLUMNS)


def test_load_trials_errors_name_the_problem(uri: str) -> None:
    log_search(uri, experiment="quickstart")
    with pytest.raises(
        UserError, match="no MLflow experiment 'quikstart'.*did you mean 'quickstart'"
    ):
        load_trials("quikstart", uri)
    with pytest.raises(UserError, match="no MLflow run 0123abc"):
        load_trials("quickstart", uri, "0123abc")
    other = SearchLogger(uri)
    other_id = other.start("other", "s", "", tags={})
    with pytest.raises(UserError, match=f"run {other_id} is not in experiment 'quickstart'"):
        load_trials("quickstart", uri, other_id)
    client(uri).create_experiment("bare")
    with pytest.raises(UserError, match="'bare' .* holds no search"):
        load_trials("bare", uri)


def test_a_deleted_experiment_is_refused(uri: str) -> None:
    mlflow_client = client(uri)
    mlflow_client.delete_experiment(mlflow_client.create_experiment("gone"))
    with pytest.raises(UserError, match="'gone' .* is deleted; restore it"):
        SearchLogger(uri).start("gone", "s", "", tags={})


# Retries, resumes, interruptions.


def test_a_retried_trial_gets_its_run_back(uri: str) -> None:
    logger = SearchLogger(uri)
    logger.start("exp", "s", "", tags={})
    start_trial(logger, "t1", ("syn_a",))
    logger.trial_result("t1", {"score": 0.1}, step=10)
    logger.trial_ended("t1", "errored", error="worker died")
    logger.flush()
    run_id = logger.run_ids["t1"]
    start_trial(logger, "t1", ("syn_a",))
    logger.flush()
    assert logger.run_ids == {"t1": run_id}
    run = client(uri).get_run(run_id)
    assert run.info.status == "RUNNING" and run.data.tags["status"] == "running"
    assert run.data.params["tasks"] == "syn_a" and len(load_trials("exp", uri)) == 1
    logger.trial_result("t1", {"score": 0.2}, step=20)
    logger.trial_ended("t1", "completed")
    logger.flush()
    assert [m.step for m in client(uri).get_metric_history(run_id, "score")] == [10, 20]
    assert "error" not in client(uri).get_run(run_id).data.tags


def test_resume_recovers_the_trials_runs_from_mlflow(uri: str) -> None:
    first = SearchLogger(uri)
    first.start("exp", "s", "", tags={})
    start_trial(first, "t1", ("syn_a",))
    start_trial(first, "t2", ("syn_b",))
    first.finish("KILLED")
    assert client(uri).get_run(first.parent_run_id).data.tags[STATE_TAG] == "interrupted"

    again = SearchLogger(uri)
    again.resume(first.parent_run_id)
    assert client(uri).get_run(first.parent_run_id).data.tags[STATE_TAG] == "running"
    assert again.run_ids == first.run_ids and again.parent_run_id == first.parent_run_id
    start_trial(again, "t2", ("syn_b",))
    again.trial_ended("t2", "completed")
    start_trial(again, "t3", ("syn_c",))
    again.finish()
    trials = load_trials("exp", uri)
    assert sorted(trials["trial_id"]) == ["t1", "t2", "t3"]
    assert again.run_ids == {**first.run_ids, "t3": again.run_ids["t3"]}
    assert dict(zip(trials["trial_id"], trials["status"], strict=True)) == {
        "t1": "interrupted",
        "t2": "completed",
        "t3": "interrupted",
    }
    parent = client(uri).get_run(first.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags[STATE_TAG] == "finished"


def test_finish_closes_trials_left_open(uri: str) -> None:
    logger = SearchLogger(uri)
    logger.start("exp", "s", "", tags={})
    start_trial(logger, "t1", ("syn_a",))
    assert logger.finish("KILLED") == 0
    run = client(uri).get_run(logger.run_ids["t1"])
    assert run.info.status == "KILLED" and run.data.tags["status"] == "interrupted"
    assert client(uri).get_run(logger.parent_run_id).info.status == "KILLED"


def test_the_logger_pickles_and_logs_on(uri: str) -> None:
    logger = SearchLogger(uri)
    logger.start("exp", "s", "", tags={})
    start_trial(logger, "t1", ("syn_a",))
    assert logger.flush() == 0  # a copy knows the runs MLflow had when it was pickled
    restored = pickle.loads(pickle.dumps(logger))
    assert restored.run_ids == logger.run_ids and set(restored.run_ids) == {"t1"}
    restored.trial_result("t1", {"score": 0.5}, step=5)
    restored.trial_ended("t1", "completed")
    assert restored.flush() == 0
    assert load_trials("exp", uri)["score"].tolist() == [0.5]


def test_misuse_is_caught(uri: str) -> None:
    logger = SearchLogger(uri)
    with pytest.raises(RuntimeError, match="call SearchLogger.start"):
        start_trial(logger, "t1", ("syn_a",))
    logger.start("exp", "s", "", tags={})
    with pytest.raises(RuntimeError, match="already logs"):
        logger.start("exp", "s", "", tags={})
    with pytest.raises(KeyError, match="trial 'nope' has no run"):
        logger.trial_result("nope", {"score": 1.0}, step=1)
    start_trial(logger, "t1", ("syn_a",))
    with pytest.raises(ValueError, match="'done' is not one of completed, early_stopped, errored"):
        logger.trial_ended("t1", "done")  # type: ignore[arg-type]

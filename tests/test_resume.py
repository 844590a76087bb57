"""A search whose driver is stopped mid-way, then `xlt-search resume`: it ends as if never stopped.

Real processes: the CLI's driver (with its local Ray instance) is killed with SIGKILL, as when the
head machine dies, or stopped with SIGINT (Ctrl-C) or SIGTERM, which it turns into a clean stop
(exit 130, the parent run KILLED, no report); `xlt-search resume` continues from Tune's experiment
folder and MLflow's runs. Each stop comes at a state the test holds the search in (`Hold`), never
at a moment it hopes to catch.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import mlflow
import pytest
from processes import Hold, kill_group, run_cli, start_cli, wait_for
from search_specs import SMALL_BUDGET, search_spec, write_spec

from xlt_search.tracking import INTERRUPTED, ROLE_TAG, STATE_TAG, load_trials

STOPPED = "xlt-search: interrupted; continue with: xlt-search resume resume"


def _spec(work: Path, **changes: object) -> Path:
    # a fixed learning rate: the searches train alike
    raw = search_spec(
        "resume", work, pool_size=4, hyperparameters={"learning_rate": 1.0e-3}, **changes
    )
    return write_spec(work, raw)


def _env(work: Path) -> dict[str, str]:
    return {"MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}"}


def _xlt(work: Path, *args: str) -> subprocess.CompletedProcess:
    return run_cli(*args, cwd=work, env=_env(work), timeout_s=900)


def _start(work: Path, spec: Path, env: dict[str, str]) -> subprocess.Popen:
    """`xlt-search run SPEC`, its output in work/stdout and work/stderr."""
    return start_cli(
        "run",
        str(spec),
        cwd=work,
        stdout=work / "stdout",
        stderr=work / "stderr",
        env={**_env(work), **env},
    )


def _outcome(work: Path) -> dict[str, tuple[str, int, float]]:
    """Each trial's subset -> (status, final budget_steps, score)."""
    trials = load_trials("resume", _env(work)["MLFLOW_TRACKING_URI"])
    return {
        row["tasks"]: (row["status"], int(row["budget_steps"]), round(float(row["score"]), 6))
        for _, row in trials.iterrows()
    }


def _statuses(work: Path) -> dict[str, str]:
    """Each trial's `status` tag in MLflow, by Tune trial id (none before the first is logged)."""
    try:
        trials = load_trials("resume", _env(work)["MLFLOW_TRACKING_URI"])
    except Exception:  # the store, the experiment or its first run is not there yet
        return {}
    return dict(zip(trials["trial_id"], trials["status"], strict=True))


def _held_after_the_first(work: Path, hold: Hold, first: str) -> bool:
    """The first trial has completed (in MLflow), and the two trials that ran next are held."""
    statuses = _statuses(work)
    return statuses.get(first) == "completed" and len(hold.held()) == len(statuses) == 3


def _stopped_after_the_first(
    work: Path, spec: Path, stop: Callable[[subprocess.Popen], None]
) -> tuple[Hold, subprocess.Popen]:
    """Run `spec` and `stop` its driver once one trial has finished and two others are held
    mid-way (checkpointed); the hold and the driver, ended."""
    hold = Hold(work / "hold", budget_steps=40)
    driver = _start(work, spec, hold.env)
    try:
        wait_for(lambda: len(hold.held()) == 2, "two trials held at budget_steps 40", driver)
        first = hold.held()[0]
        hold.release(first)
        wait_for(
            lambda: _held_after_the_first(work, hold, first),
            "the first trial completed in MLflow and a third one held",
            driver,
        )
        stop(driver)
    finally:
        kill_group(driver)
    return hold, driver


def _sigkill(driver: subprocess.Popen) -> None:
    """As when the head machine dies."""
    os.killpg(driver.pid, signal.SIGKILL)


def _ctrl_c(driver: subprocess.Popen) -> None:
    """A terminal sends SIGINT to its foreground group, where Ray's own processes block it (they
    start with SIGINT masked); the driver alone acts on it."""
    os.kill(driver.pid, signal.SIGINT)
    driver.wait(timeout=300)


def _parent(work: Path) -> mlflow.entities.Run:
    client = mlflow.MlflowClient(_env(work)["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("resume")
    (parent,) = client.search_runs([experiment.experiment_id], f"tags.`{ROLE_TAG}` = 'search'")
    return parent


def _check_stopped(work: Path, driver: subprocess.Popen) -> None:
    """The driver stopped cleanly: exit 130, the line, the parent run KILLED, no report."""
    stderr = (work / "stderr").read_text()
    assert driver.returncode == 130, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == STOPPED
    assert "Traceback" not in stderr
    parent = _parent(work)
    assert parent.info.status == "KILLED"
    assert parent.data.tags[STATE_TAG] == INTERRUPTED
    assert not list((work / "runs").glob("*/report/summary.md"))


def _check_once_each(work: Path, trials: int) -> None:
    """One child run per trial, and no step logged twice in any."""
    after = load_trials("resume", _env(work)["MLFLOW_TRACKING_URI"])
    assert len(after) == after["trial_id"].nunique() == trials
    client = mlflow.MlflowClient(_env(work)["MLFLOW_TRACKING_URI"])
    for run_id in after["run_id"]:
        steps = [m.step for m in client.get_metric_history(run_id, "score")]
        assert len(steps) == len(set(steps)), run_id


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, int, float]]:
    """The outcome of the search never stopped."""
    work = tmp_path_factory.mktemp("uninterrupted")
    result = _xlt(work, "run", str(_spec(work)))
    assert result.returncode == 0, result.stderr[-3000:]
    return _outcome(work)


@pytest.mark.e2e
def test_a_killed_driver_resumes_to_the_uninterrupted_result(
    tmp_path: Path, reference: dict[str, tuple[str, int, float]]
) -> None:
    _stopped_after_the_first(tmp_path, _spec(tmp_path), _sigkill)
    before = load_trials("resume", _env(tmp_path)["MLFLOW_TRACKING_URI"])
    unfinished = set(before.loc[before["status"] == "running", "tasks"])
    assert unfinished

    resumed = _xlt(tmp_path, "resume", "resume")
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]

    # the same trials, each with one child run, ending at the same step with the same score
    assert _outcome(tmp_path) == reference
    _check_once_each(tmp_path, len(reference))
    after = load_trials("resume", _env(tmp_path)["MLFLOW_TRACKING_URI"])
    # the runs the first driver had opened are the ones the resumed search logged into
    assert set(before["run_id"]) <= set(after["run_id"])
    # the trials stopped mid-way continued from a checkpoint, not from scratch
    continued = after[after["tasks"].isin(unfinished)]
    assert (continued["restored_from"] > 0).any()


@pytest.mark.e2e
def test_ctrl_c_stops_the_search_cleanly_and_resume_ends_it_as_if_never_stopped(
    tmp_path: Path, reference: dict[str, tuple[str, int, float]]
) -> None:
    hold, driver = _stopped_after_the_first(tmp_path, _spec(tmp_path), _ctrl_c)
    _check_stopped(tmp_path, driver)
    stopped = load_trials("resume", _env(tmp_path)["MLFLOW_TRACKING_URI"])
    held = stopped[stopped["trial_id"].isin(hold.held()[1:])]
    assert set(held["status"]) == {INTERRUPTED} and set(held["budget_steps"]) == {40}
    assert set(stopped["status"]) == {"completed", INTERRUPTED} and len(stopped) == 3

    resumed = _xlt(tmp_path, "resume", "resume")
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    # its status lines count the trial finished before the stop, and name every trial's size
    statuses = [line for line in resumed.stdout.splitlines() if line.startswith("status:")]
    assert ", 1 done, 0 stopped, 0 errored | " in statuses[0]
    assert statuses[-1].startswith("status: 0 running, 0 pending, 4 done, ")
    assert "k=(" not in resumed.stdout  # not Tune's placeholder for a restored trial's n_tasks
    assert _outcome(tmp_path) == reference
    _check_once_each(tmp_path, len(reference))
    after = load_trials("resume", _env(tmp_path)["MLFLOW_TRACKING_URI"])
    assert set(stopped["run_id"]) <= set(after["run_id"])
    assert set(after.loc[after["trial_id"].isin(hold.held()[1:]), "restored_from"]) == {40}
    parent = _parent(tmp_path)
    assert parent.info.status == "FINISHED" and parent.data.tags[STATE_TAG] == "finished"
    assert list((tmp_path / "runs").glob("*/report/summary.md"))


@pytest.mark.e2e
def test_a_killed_guided_search_resumes_with_its_searchers_state(tmp_path: Path) -> None:
    # A searcher that lost its state would propose its design again from the start: the first
    # subsets again, as duplicates of trials already run.
    spec = _spec(tmp_path, subsets={"sampler": "guided", "num_samples": 6})
    _stopped_after_the_first(tmp_path, spec, _sigkill)
    before = load_trials("resume", _env(tmp_path)["MLFLOW_TRACKING_URI"])

    resumed = _xlt(tmp_path, "resume", "resume")
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    _check_once_each(tmp_path, 6)
    after = load_trials("resume", _env(tmp_path)["MLFLOW_TRACKING_URI"])
    assert after["tasks"].nunique() == 6
    assert sorted(after["guided.step"].astype(int)) == list(range(1, 7))
    assert set(before["tasks"]) <= set(after["tasks"])
    assert set(after["status"]) == {"completed"}


@pytest.mark.e2e
def test_sigterm_stops_the_search_as_ctrl_c_does(tmp_path: Path) -> None:
    hold = Hold(tmp_path / "hold", budget_steps=20)
    driver = _start(tmp_path, _spec(tmp_path), hold.env)
    try:
        wait_for(lambda: len(hold.held()) == 2, "two trials held at budget_steps 20", driver)
        os.kill(driver.pid, signal.SIGTERM)  # Tune catches only SIGINT; the driver takes both
        driver.wait(timeout=300)
    finally:
        kill_group(driver)
    _check_stopped(tmp_path, driver)
    stopped = load_trials("resume", _env(tmp_path)["MLFLOW_TRACKING_URI"])
    assert set(stopped["status"]) == {INTERRUPTED} and set(stopped["budget_steps"]) == {20}
    # each held trial keeps its checkpoint for `xlt-search resume`
    assert len(list((tmp_path / "runs").glob("*/*/checkpoint_*"))) == 2


def test_ctrl_c_while_the_data_is_prepared_says_to_start_again(tmp_path: Path) -> None:
    # a cache of its own: the driver tokenizes every split while the interrupt comes
    spec = _spec(tmp_path, data={"max_seq_length": 32, "cache_dir": str(tmp_path / "cache")})
    driver = _start(tmp_path, spec, {"PYTHONUNBUFFERED": "1"})
    try:
        wait_for(
            lambda: "preparing data" in (tmp_path / "stdout").read_text(),
            "the data being prepared",
            driver,
        )
        os.kill(driver.pid, signal.SIGINT)
        driver.wait(timeout=300)
    finally:
        kill_group(driver)
    stderr = (tmp_path / "stderr").read_text()
    assert driver.returncode == 130, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == (
        "xlt-search: interrupted before the search began (nothing to resume; the data prepared "
        f"so far is kept); start it again with: xlt-search run {spec}"
    )
    assert "Traceback" not in stderr
    # the parent run is made only once the data is ready and Ray has started: there is none
    assert not (tmp_path / "mlflow.db").exists()


def test_resume_refuses_a_missing_experiment_or_a_damaged_checkpoint(tmp_path: Path) -> None:
    from xlt_search.errors import UserError
    from xlt_search.search import check_experiment

    with pytest.raises(UserError, match="holds no Tune experiment"):
        check_experiment(str(tmp_path / "gone"))
    experiment = tmp_path / "search"
    checkpoint = experiment / "_train_0001" / "checkpoint_000003"
    checkpoint.mkdir(parents=True)
    (experiment / "tuner.pkl").write_bytes(b"")
    import torch

    torch.save({"weights": torch.arange(10_000.0)}, checkpoint / "trial_state.pt")
    check_experiment(str(experiment))  # a whole checkpoint passes
    data = bytearray((checkpoint / "trial_state.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the tensor data
    (checkpoint / "trial_state.pt").write_bytes(bytes(data))
    with pytest.raises(UserError, match="delete that checkpoint folder") as error:
        check_experiment(str(experiment))
    assert "\n" not in str(error.value)
    assert (checkpoint / "trial_state.pt").exists()  # nothing is deleted for the user
    # a state file cut short (a write the crash interrupted)
    (checkpoint / "trial_state.pt").write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(UserError, match="not a checkpoint archive"):
        check_experiment(str(experiment))


@pytest.mark.e2e
def test_resume_through_the_cli_refuses_damage_in_one_line_and_keeps_everything(
    tmp_path: Path,
) -> None:
    spec = _spec(
        tmp_path,
        subsets={"sampler": "stratified", "sizes": [1, 2], "per_size": 1, "baseline": False},
        budget={**SMALL_BUDGET, "intermediate_steps": 20, "target_steps": 20},
    )
    assert _xlt(tmp_path, "run", str(spec)).returncode == 0
    runs = load_trials("resume", _env(tmp_path)["MLFLOW_TRACKING_URI"])
    (experiment,) = (tmp_path / "runs").iterdir()
    state = sorted(experiment.glob("*/checkpoint_*/trial_state.pt"))[0]
    damaged = bytearray(state.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    state.write_bytes(bytes(damaged))

    result = _xlt(tmp_path, "resume", "resume")
    assert result.returncode == 2
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith("xlt-search: error: ") and "delete that checkpoint folder" in line
    assert "Traceback" not in result.stderr and state.read_bytes() == bytes(damaged)

    experiment.rename(tmp_path / "moved")
    result = _xlt(tmp_path, "resume", "resume")
    assert result.returncode == 2
    assert "holds no Tune experiment" in result.stderr.strip().splitlines()[-1]
    after = load_trials("resume", _env(tmp_path)["MLFLOW_TRACKING_URI"])
    assert after[["run_id", "status", "score"]].equals(runs[["run_id", "status", "score"]])

"""A search whose driver is killed mid-way, then `xlt-search resume`: it ends as if never stopped.

Real processes: the CLI's driver (with its local Ray instance) is killed with SIGKILL, as when the
head machine dies; `xlt-search resume` continues from Tune's experiment folder and MLflow's runs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from processes import small_spec

from xlt_search.tracking import load_trials

pytestmark = pytest.mark.e2e


def _spec(work: Path) -> Path:
    # a fixed learning rate: the two searches train alike
    return small_spec(work, "resume", 4, hyperparameters={"learning_rate": 1.0e-3})


def _env(work: Path) -> dict[str, str]:
    return {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
        "RAY_ADDRESS": "",
    }


def _xlt(work: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "xlt_search", *args],
        cwd=work,
        env=_env(work),
        capture_output=True,
        text=True,
        timeout=900,
    )


def _outcome(work: Path) -> dict[str, tuple[str, int, float]]:
    """Each trial's subset -> (status, final budget_steps, score)."""
    trials = load_trials("resume", _env(work)["MLFLOW_TRACKING_URI"])
    return {
        row["tasks"]: (row["status"], int(row["budget_steps"]), round(float(row["score"]), 6))
        for _, row in trials.iterrows()
    }


def test_a_killed_driver_resumes_to_the_uninterrupted_result(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    reference = tmp_path_factory.mktemp("uninterrupted")
    result = _xlt(reference, "run", str(_spec(reference)))
    assert result.returncode == 0, result.stderr[-3000:]

    work = tmp_path_factory.mktemp("interrupted")
    driver = subprocess.Popen(
        [sys.executable, "-m", "xlt_search", "run", str(_spec(work))],
        cwd=work,
        env=_env(work),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the driver and the Ray it started
    )
    # kill it once one trial has finished and another has reported but not finished
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        time.sleep(1.0)
        if not (work / "mlflow.db").exists():
            continue
        try:
            trials = load_trials("resume", _env(work)["MLFLOW_TRACKING_URI"])
        except Exception:  # the experiment or its first run is not there yet
            continue
        if (
            "status" in trials
            and (trials["status"] == "completed").any()
            and ((trials["status"] == "running") & (trials["budget_steps"] > 0)).any()
        ):
            break
    else:
        pytest.fail("the search never reached a point to interrupt")
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait(timeout=60)
    before = load_trials("resume", _env(work)["MLFLOW_TRACKING_URI"])
    unfinished = set(before.loc[before["status"] == "running", "tasks"])
    assert unfinished

    resumed = _xlt(work, "resume", "resume")
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-3000:]

    # the same trials, each with one child run, ending at the same step with the same score
    assert _outcome(work) == _outcome(reference)
    after = load_trials("resume", _env(work)["MLFLOW_TRACKING_URI"])
    assert len(after) == after["trial_id"].nunique() == len(_outcome(reference))
    # the runs the first driver had opened are the ones the resumed search logged into
    assert set(before["run_id"]) <= set(after["run_id"])
    # the trials stopped mid-way continued from a checkpoint, not from scratch
    continued = after[after["tasks"].isin(unfinished)]
    assert (continued["restored_from"] > 0).any()
    # no step was logged twice in any run
    import mlflow

    client = mlflow.MlflowClient(_env(work)["MLFLOW_TRACKING_URI"])
    for run_id in after["run_id"]:
        steps = [m.step for m in client.get_metric_history(run_id, "score")]
        assert len(steps) == len(set(steps)), run_id


def test_resume_refuses_a_missing_experiment_or_a_damaged_checkpoint(tmp_path: Path) -> None:
    from xlt_search.errors import UserError
    from xlt_search.search import _check_experiment

    with pytest.raises(UserError, match="holds no Tune experiment"):
        _check_experiment(str(tmp_path / "gone"))
    experiment = tmp_path / "search"
    checkpoint = experiment / "_train_0001" / "checkpoint_000003"
    checkpoint.mkdir(parents=True)
    (experiment / "tuner.pkl").write_bytes(b"")
    import torch

    torch.save({"weights": torch.arange(10_000.0)}, checkpoint / "trial_state.pt")
    _check_experiment(str(experiment))  # a whole checkpoint passes
    data = bytearray((checkpoint / "trial_state.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the tensor data
    (checkpoint / "trial_state.pt").write_bytes(bytes(data))
    with pytest.raises(UserError, match="delete that checkpoint folder") as error:
        _check_experiment(str(experiment))
    assert "\n" not in str(error.value)
    assert (checkpoint / "trial_state.pt").exists()  # nothing is deleted for the user
    # a state file cut short (a write the crash interrupted)
    (checkpoint / "trial_state.pt").write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(UserError, match="not a checkpoint archive"):
        _check_experiment(str(experiment))


def test_resume_through_the_cli_refuses_damage_in_one_line_and_keeps_everything(
    tmp_path: Path,
) -> None:
    spec = _spec(tmp_path)
    raw = yaml.safe_load(spec.read_text())
    raw["subsets"] = {"sampler": "stratified", "sizes": [1, 2], "per_size": 1, "baseline": False}
    raw["budget"].update(intermediate_steps=20, target_steps=20)
    spec.write_text(yaml.safe_dump(raw))
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

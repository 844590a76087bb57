"""One real search through the CLI: real Ray, a real MLflow store, the synthetic suite, the curve."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xlt_search.tracking import load_trials

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "tests" / "specs" / "e2e.yaml"

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def search(tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("e2e")
    uri = f"sqlite:///{work / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "RAY_ADDRESS": ""}
    result = subprocess.run(
        [sys.executable, "-m", "xlt_search", "run", str(SPEC)],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return {"work": work, "uri": uri, "stdout": result.stdout, "env": env}


def test_every_size_is_trained_and_logged_as_a_child_run(search: dict) -> None:
    from xlt_search.search import make_plan
    from xlt_search.spec import load_spec

    plan = make_plan(load_spec(SPEC))
    trials = load_trials("e2e", search["uri"])
    assert len(trials) == plan.num_trials
    assert sorted(trials["n_tasks"].astype(int).unique()) == list(range(1, 10))
    assert set(trials["status"]) <= {"completed", "early_stopped", "errored"}
    assert (trials["status"] == "errored").sum() == 0


def test_asha_stops_some_trials_early(search: dict) -> None:
    trials = load_trials("e2e", search["uri"])
    statuses = trials["status"].value_counts()
    assert statuses.get("early_stopped", 0) >= 1 and statuses.get("completed", 0) >= 1


def test_child_runs_carry_params_and_stepped_metrics(search: dict) -> None:
    import mlflow

    client = mlflow.MlflowClient(search["uri"])
    experiment = client.get_experiment_by_name("e2e")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    child = next(r for r in children if r.data.tags["status"] == "completed")
    params = child.data.params
    chosen = params["tasks"].split("+")
    assert int(params["n_tasks"]) == len(chosen)
    flags = {key[len("use.") :]: value for key, value in params.items() if key.startswith("use.")}
    assert len(flags) == 9 and {t for t, v in flags.items() if v == "True"} == set(chosen)
    history = client.get_metric_history(child.info.run_id, "score")
    steps = [m.step for m in history]
    assert steps == sorted(steps) and steps[-1] == int(child.data.metrics["budget_steps"])
    assert any(key.startswith("lang.") for key in child.data.metrics)
    artifacts = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert {"spec.yaml", "scaling_curve.csv", "scaling_curve.png"} <= artifacts


def test_curves_command_rebuilds_the_table_from_mlflow(search: dict) -> None:
    out = search["work"] / "curves"
    result = subprocess.run(
        [sys.executable, "-m", "xlt_search", "curves", "e2e", "--out", str(out)],
        cwd=search["work"],
        env=search["env"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader((out / "scaling_curve.csv").open()))
    assert [int(r["n_tasks"]) for r in rows] == list(range(1, 10))
    assert sum(int(r["trials"]) for r in rows) == len(load_trials("e2e", search["uri"]))
    assert (out / "scaling_curve.png").stat().st_size > 0


def run_small_search(
    tmp_path: Path, name: str, **changes
) -> tuple[str, subprocess.CompletedProcess]:
    """Run a tiny variant of the e2e spec through the CLI, into its own MLflow store."""
    import yaml

    raw = yaml.safe_load(SPEC.read_text())
    raw.update(
        name=name,
        budget={
            "intermediate_steps": 20,
            "target_steps": 10,
            "report_every_steps": 10,
            "probe_steps": 5,
        },
        mlflow={"experiment": name},
        storage_path=str(tmp_path / "runs"),
        **changes,
    )
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(yaml.safe_dump(raw))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = subprocess.run(
        [sys.executable, "-m", "xlt_search", "run", str(spec)],
        cwd=tmp_path,
        env={**os.environ, "MLFLOW_TRACKING_URI": uri, "RAY_ADDRESS": ""},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return uri, result


def test_a_diverging_trial_fails_alone_with_its_reason(tmp_path: Path) -> None:
    pool = yaml_pool()[:2]
    uri, _ = run_small_search(
        tmp_path,
        "diverge",
        pool=pool,
        subsets={"sampler": "grid", "sizes": [1, 2]},
        hyperparameters={"learning_rate": {"choice": [1.0e30]}},
        max_failures=0,
    )
    trials = load_trials("diverge", uri)
    assert len(trials) == 3  # every trial ran though each one diverged
    assert set(trials["status"]) == {"errored"}
    assert trials["error"].str.contains("loss became nan").all()


def test_optuna_picks_subsets_through_tpe(tmp_path: Path) -> None:
    uri, _ = run_small_search(tmp_path, "optuna", subsets={"sampler": "optuna", "num_samples": 3})
    trials = load_trials("optuna", uri)
    assert len(trials) == 3
    for _, trial in trials.iterrows():
        chosen = set(trial["tasks"].split("+"))
        assert trial["n_tasks"] == len(chosen) >= 1
        assert {t for t in yaml_pool() if trial[f"use.{t}"]} == chosen


def yaml_pool() -> list[str]:
    import yaml

    return yaml.safe_load(SPEC.read_text())["pool"]

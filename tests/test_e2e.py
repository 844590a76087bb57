"""Real searches through the CLI: real Ray, a real MLflow store, the synthetic suite, the report."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import FinishedSearch
from processes import run_cli
from search_specs import E2E_SPEC, search_spec, write_spec

from xlt_search.tracking import load_trials

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "search_spaces" / "quickstart.yaml"


@pytest.fixture(scope="module")
def search(quickstart_search: FinishedSearch) -> dict:
    return {
        "work": quickstart_search.work,
        "uri": quickstart_search.uri,
        "stdout": quickstart_search.stdout,
    }


@pytest.mark.e2e
def test_every_size_is_trained_and_logged_as_a_child_run(search: dict) -> None:
    from xlt_search.search import make_plan
    from xlt_search.spec import load_spec

    plan = make_plan(load_spec(QUICKSTART))
    trials = load_trials("quickstart", search["uri"])
    assert len(trials) == plan.num_trials
    assert sorted(trials["n_tasks"].astype(int).unique()) == list(range(0, 10))
    assert set(trials["status"]) <= {"completed", "early_stopped", "errored"}
    assert (trials["status"] == "errored").sum() == 0


@pytest.mark.e2e
def test_asha_stops_some_trials_early_but_never_the_baseline(search: dict) -> None:
    trials = load_trials("quickstart", search["uri"])
    statuses = trials.loc[trials["n_tasks"] > 0, "status"].value_counts()
    assert statuses.get("early_stopped", 0) >= 1 and statuses.get("completed", 0) >= 1
    (baseline,) = trials[trials["n_tasks"] == 0].to_dict("records")
    assert baseline["tasks"] == "" and baseline["run_name"] == "k0-baseline"
    assert baseline["status"] == "completed"
    assert baseline["budget_steps"] == 400 * 2  # no intermediate phase; both targets' steps


@pytest.mark.e2e
def test_every_size_of_the_curve_ends_with_completed_trials(search: dict) -> None:
    trials = load_trials("quickstart", search["uri"])
    done = trials[trials["status"] == "completed"].groupby("n_tasks").size()
    assert all(done.get(k, 0) >= 1 for k in range(0, 10)), done.to_dict()
    # ASHA promotes within each size: its first two trials at the rung always go on
    assert all(done.get(k, 0) >= 2 for k in range(1, 9)), done.to_dict()


@pytest.mark.e2e
def test_the_best_configuration_is_printed_and_on_the_parent_run(search: dict) -> None:
    import mlflow

    from xlt_search.analysis.best import best_configuration

    best = best_configuration(load_trials("quickstart", search["uri"]))
    assert best.line() in search["stdout"]
    client = mlflow.MlflowClient(search["uri"])
    (parent,) = client.search_runs(
        [client.get_experiment_by_name("quickstart").experiment_id], "tags.`xlt.role` = 'search'"
    )
    assert parent.data.tags["xlt.best"] == best.subset
    assert parent.data.tags["xlt.best_run_id"] == best.run_id
    assert parent.data.metrics["best.score"] == best.score
    assert best.line() in parent.data.tags["mlflow.note.content"]
    assert "nothing was learned" not in search["stdout"]  # the quickstart learns its targets


@pytest.mark.e2e
def test_child_runs_carry_params_and_stepped_metrics(search: dict) -> None:
    import mlflow

    client = mlflow.MlflowClient(search["uri"])
    experiment = client.get_experiment_by_name("quickstart")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    child = next(
        r
        for r in children
        if r.data.tags["status"] == "completed" and r.data.params["n_tasks"] != "0"
    )
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


@pytest.mark.e2e
def test_report_command_rebuilds_the_report_from_mlflow(search: dict) -> None:
    import mlflow

    out = search["work"] / "again"
    result = run_cli(
        "report",
        "quickstart",
        "--out",
        str(out),
        cwd=search["work"],
        env={"MLFLOW_TRACKING_URI": search["uri"]},
    )
    assert result.returncode == 0, result.stderr
    trials = load_trials("quickstart", search["uri"])
    rows = list(csv.DictReader((out / "scaling_curve.csv").open()))
    average = [r for r in rows if r["curve"] == "score"]
    assert [int(r["n_tasks"]) for r in average] == list(range(0, 10))
    assert sum(int(r["trials"]) for r in average) == len(trials)
    assert {r["curve"] for r in rows} == {
        "score",
        "score.syn_nli",
        "score.syn_copa",
        "family.synthetic-close",
        "family.synthetic-far",
    }
    names = {path.name for path in out.iterdir()}
    assert names == {
        "scaling_curve.csv",
        "scaling_curve.png",
        "seed_variance.csv",
        "contributions.csv",
        "contributions.png",
        "gains.csv",
        "gains_heatmap.png",
        "controls.csv",
        "labels.csv",
        "target_agreement.csv",
        "seed_agreement.csv",
        "task_targets.csv",
        "rank_agreement.png",
        "summary.md",
    }
    contributions = list(csv.DictReader((out / "contributions.csv").open()))
    assert sorted(r["task"] for r in contributions) == sorted(yaml_pool())
    summary = (out / "summary.md").read_text()
    assert summary.startswith("# quickstart: report") and "## Task contributions" in summary
    # the search wrote the same report at its end, and logged it on the parent run
    client = mlflow.MlflowClient(search["uri"])
    artifacts = {a.path for a in client.list_artifacts(trials.attrs["parent_run_id"])}
    assert names | {"spec.yaml", "coverage.json"} == artifacts  # and the tokenizer coverage


def run_small_search(
    tmp_path: Path, name: str, **changes
) -> tuple[str, subprocess.CompletedProcess]:
    """Run a tiny variant of the e2e spec through the CLI, into its own MLflow store."""
    budget = {
        "intermediate_steps": 20,
        "target_steps": 10,
        "report_every_steps": 10,
        "probe_steps": 5,
    }
    spec = write_spec(tmp_path, search_spec(name, tmp_path, budget=budget, **changes))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_cli("run", str(spec), cwd=tmp_path, env={"MLFLOW_TRACKING_URI": uri})
    assert result.returncode == 0, result.stderr[-3000:]
    return uri, result


@pytest.mark.e2e
def test_a_diverging_trial_fails_alone_with_its_reason(tmp_path: Path) -> None:
    pool = yaml_pool()[:2]
    uri, _ = run_small_search(
        tmp_path,
        "diverge",
        pool=pool,
        subsets={"sampler": "grid", "sizes": [1, 2]},
        hyperparameters={"learning_rate": {"choice": [1.0e30]}},
        max_failures=1,
    )
    trials = load_trials("diverge", uri)
    assert len(trials) == 4  # every trial ran though each one diverged, the baseline too
    assert set(trials["status"]) == {"errored"}
    assert trials["error"].str.contains("loss became nan").all()
    # Tune retried each trial once; the retry raised the divergence again instead of training
    assert trials["error"].str.contains("raised again without training").all()


def test_running_out_of_gpu_memory_is_recorded_and_raised_again(tmp_path: Path) -> None:
    """The same path for torch's CUDA out-of-memory error, which no CPU machine provokes: a real
    instance of it, recorded in a real (local) pyarrow filesystem and raised again from there."""
    import pyarrow.fs
    import torch

    from xlt_search.search.trainable import raise_recorded_failure, record_failure

    filesystem, trial_path = pyarrow.fs.LocalFileSystem(), str(tmp_path / "trial")
    raise_recorded_failure(filesystem, trial_path)  # nothing recorded: returns
    error = torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    record_failure(filesystem, trial_path, error)
    with pytest.raises(
        torch.cuda.OutOfMemoryError, match="Tried to allocate 2.00 GiB.*raised again"
    ):
        raise_recorded_failure(filesystem, trial_path)


@pytest.mark.e2e
def test_optuna_picks_subsets_through_tpe(tmp_path: Path) -> None:
    uri, _ = run_small_search(tmp_path, "optuna", subsets={"sampler": "optuna", "num_samples": 3})
    trials = load_trials("optuna", uri)
    assert len(trials) == 3
    for _, trial in trials.iterrows():
        chosen = set(trial["tasks"].split("+"))
        assert trial["n_tasks"] == len(chosen) >= 1
        assert {t for t in yaml_pool() if trial[f"use.{t}"]} == chosen


@pytest.mark.e2e
def test_sampled_hyperparameters_are_drawn_again_from_the_seed(tmp_path: Path) -> None:
    drawn = []
    for run in ("first", "second"):
        (tmp_path / run).mkdir()
        uri, _ = run_small_search(
            tmp_path / run,
            "sampled",
            pool=yaml_pool()[:3],
            subsets={"sampler": "grid", "sizes": [1]},
            hyperparameters={"learning_rate": {"loguniform": [1.0e-4, 1.0e-2]}},
        )
        trials = load_trials("sampled", uri)
        drawn.append(dict(zip(trials["tasks"], trials["learning_rate"], strict=True)))
    assert len(drawn[0]) == 4 and len(set(drawn[0].values())) == 4  # three subsets, the baseline
    assert drawn[0] == drawn[1]


def yaml_pool() -> list[str]:
    return yaml.safe_load(E2E_SPEC.read_text())["pool"]

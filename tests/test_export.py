"""A trial's models taken away: written from its last checkpoint, loaded back, scored as logged.

The toy trial checks the folders against the trial's own reports; the end-to-end tests run a small
search and `xlt-search export` through the CLI, with a real Ray instance and a real MLflow store.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import ToyWorld
from processes import run_cli
from search_specs import search_spec, write_spec
from test_pipeline import TOY_POOL, TOY_TARGETS, Recorder, run, toy_config
from transformers import AutoModel, AutoTokenizer

from xlt_search.analysis.best import best_trial
from xlt_search.data import PreparedData, eval_batches, prepare_data
from xlt_search.errors import UserError
from xlt_search.export import EXPORT_FILE, HEAD_INFO_FILE, load_target_model, write_models
from xlt_search.spec import SearchSpec
from xlt_search.tasks.base import Task
from xlt_search.tracking import load_trials
from xlt_search.trial import (
    EVAL_BATCH_MULTIPLIER,
    PROGRESS_FILE,
    STATE_FILE,
    TargetConfig,
    evaluate,
    required_splits,
)


def scores_of(
    folder: Path,
    targets: tuple[TargetConfig, ...],
    batch_size: int,
    data: PreparedData,
    registry: dict[str, Task],
) -> dict[str, float]:
    """`lang.<target>.<lang>` of each exported target model, scored by the pipeline's evaluate
    on the batches a trial of `batch_size` evaluates on."""
    scores = {}
    for target in targets:
        model, task = load_target_model(folder / target.task), registry[target.task]
        for lang in target.languages:
            batches = eval_batches(
                data.load(target.task, "validation", lang),
                task.kind,
                data.pad_token_id,
                EVAL_BATCH_MULTIPLIER * batch_size,
            )
            metric = evaluate(model, target.task, task, batches)[task.metric]
            scores[f"lang.{target.task}.{lang}"] = metric
    return scores


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    ours, theirs = a.state_dict(), b.state_dict()
    return ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)


@pytest.fixture(scope="module")
def toy_trial(
    toy_world: ToyWorld, tmp_path_factory: pytest.TempPathFactory
) -> tuple[PreparedData, Recorder]:
    data = prepare_data(
        required_splits(TOY_POOL, TOY_TARGETS, registry=toy_world.tasks),
        str(toy_world.encoder),
        max_seq_length=32,
        max_train_examples=None,
        cache_dir=tmp_path_factory.mktemp("prepared"),
        seed=0,
        registry=toy_world.tasks,
        languages=toy_world.languages,
    )
    return data, run(toy_config(toy_world), data, folder=tmp_path_factory.mktemp("checkpoints"))


def test_a_finished_trial_writes_models_that_score_as_it_reported(
    toy_world: ToyWorld, toy_trial: tuple[PreparedData, Recorder], tmp_path: Path
) -> None:
    data, trial = toy_trial
    config = write_models(trial.folder / "4", tmp_path, toy_world.tasks)  # the last report's
    assert config == toy_config(toy_world)
    final = trial.reports[-1]
    scores = scores_of(
        tmp_path, config.targets, config.per_device_batch_size, data, toy_world.tasks
    )
    assert scores == pytest.approx({key: final[key] for key in scores}, abs=1e-6)
    assert len(scores) == len(TOY_TARGETS) * 3
    # the encoder as the intermediate phase left it: report 1 ends that phase
    encoder = AutoModel.from_pretrained(tmp_path / "encoder")
    left = torch.load(trial.folder / "1" / STATE_FILE, weights_only=True)["model"]
    assert all(torch.equal(v, left[f"encoder.{k}"]) for k, v in encoder.state_dict().items())
    assert not same_weights(encoder, AutoModel.from_pretrained(toy_world.encoder))
    info = json.loads((tmp_path / "toy_nli" / HEAD_INFO_FILE).read_text())
    assert info == {
        "task": "toy_nli",
        "kind": "classification",
        "num_labels": 3,
        "pooling": "first",
    }


def test_only_a_whole_checkpoint_of_a_finished_trial_is_exported(
    toy_world: ToyWorld, toy_trial: tuple[PreparedData, Recorder], tmp_path: Path
) -> None:
    _, trial = toy_trial
    out = tmp_path / "out"
    with pytest.raises(UserError, match="is not the end of its trial"):
        write_models(trial.folder / "3", out, toy_world.tasks)
    older = tmp_path / "older"
    older.mkdir()
    state = torch.load(trial.folder / "4" / STATE_FILE, weights_only=True)
    del state["intermediate_encoder"]
    torch.save(state, older / STATE_FILE)
    (older / PROGRESS_FILE).write_text((trial.folder / "4" / PROGRESS_FILE).read_text())
    with pytest.raises(UserError, match="before checkpoints kept the intermediate encoder"):
        write_models(older, out, toy_world.tasks)
    damaged = tmp_path / "damaged"
    shutil.copytree(trial.folder / "4", damaged)
    data = bytearray((damaged / STATE_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (damaged / STATE_FILE).write_bytes(bytes(data))
    with pytest.raises(UserError, match="is damaged .*; it cannot be exported"):
        write_models(damaged, out, toy_world.tasks)
    assert not out.exists()


# End to end.

EXPERIMENT = "export"


def _uri(work: Path) -> str:
    return f"sqlite:///{work / 'mlflow.db'}"


@pytest.fixture(scope="module")
def search(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished search of two trials (the baseline and one task), FIFO, 20 steps a phase;
    returns its working folder."""
    work = tmp_path_factory.mktemp("export")
    raw = search_spec(
        EXPERIMENT,
        work,
        pool_size=1,
        hyperparameters={"learning_rate": 1.0e-3},
        subsets={"sampler": "stratified", "sizes": [1], "per_size": 1, "baseline": True},
        budget={
            "intermediate_steps": 20,
            "target_steps": 20,
            "report_every_steps": 20,
            "probe_steps": 5,
            "scheduler": "fifo",
        },
    )
    spec = write_spec(work, raw)
    result = run_cli("run", str(spec), cwd=work, env={"MLFLOW_TRACKING_URI": _uri(work)})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return work


@pytest.fixture(scope="module")
def prepared(search: Path) -> tuple[SearchSpec, PreparedData]:
    """The search's spec and its own prepared splits (from the cache the search wrote)."""
    from xlt_search.search import prepare_search_data
    from xlt_search.spec import load_spec

    spec = load_spec(search / f"{EXPERIMENT}.yaml")
    return spec, prepare_search_data(spec)[1]


def _export(work: Path, out: Path, *args: str, experiment: str = EXPERIMENT) -> tuple[int, str]:
    """`xlt-search export`; its exit status and stderr."""
    result = run_cli("export", experiment, str(out), "--tracking-uri", _uri(work), *args, cwd=work)
    return result.returncode, result.stderr


def check_export(out: Path, trial: pd.Series, prepared: tuple[SearchSpec, PreparedData]) -> dict:
    """The folders under `out` are `trial`'s: its target models score its logged final scores;
    its encoder is the pretrained one for the baseline, a trained one otherwise. Returns
    export.json."""
    from xlt_search.search import target_configs

    spec, data = prepared
    summary = json.loads((out / EXPORT_FILE).read_text())
    assert summary["trial_run_id"] == trial["run_id"] and summary["score"] == trial["score"]
    assert summary["tasks"] == [t for t in trial["tasks"].split("+") if t]
    assert summary["hyperparameters"]["learning_rate"] == 1.0e-3

    targets = target_configs(spec)
    batch_size = summary["hyperparameters"]["per_device_batch_size"]
    scores = scores_of(out, targets, batch_size, data, spec.registry)
    assert scores == pytest.approx({key: trial[key] for key in scores}, abs=1e-6)
    assert len(scores) == sum(len(t.languages) for t in targets) == 10

    encoder = AutoModel.from_pretrained(out / "encoder")
    pretrained = AutoModel.from_pretrained(summary["model"])
    assert same_weights(encoder, pretrained) == (trial["n_tasks"] == 0)
    for target in targets:
        assert not same_weights(AutoModel.from_pretrained(out / target.task), encoder)
        assert AutoTokenizer.from_pretrained(out / target.task)("w1 w2")["input_ids"]
    return summary


@pytest.mark.e2e
def test_the_best_trial_exports_and_scores_as_it_logged(
    search: Path, prepared: tuple[SearchSpec, PreparedData]
) -> None:
    out = search / "best"
    result = run_cli(
        "export", EXPERIMENT, str(out), cwd=search, env={"MLFLOW_TRACKING_URI": _uri(search)}
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    trials = load_trials(EXPERIMENT, _uri(search))
    summary = check_export(out, best_trial(trials), prepared)
    assert summary["chosen"] == "best"
    assert summary["parent_run_id"] == trials.attrs["parent_run_id"]
    assert "exported trial" in result.stdout and "Writing" not in result.stderr


@pytest.mark.e2e
def test_another_trial_exports_by_its_run_id(
    search: Path, prepared: tuple[SearchSpec, PreparedData]
) -> None:
    # the one that is not the best: the baseline or the trained subset, whichever lost
    trials = load_trials(EXPERIMENT, _uri(search))
    (other,) = [
        row for _, row in trials.iterrows() if row["run_id"] != best_trial(trials)["run_id"]
    ]
    out = search / "other"
    status, err = _export(search, out, "--trial-run-id", other["run_id"])
    assert status == 0, err
    assert check_export(out, other, prepared)["chosen"] == "given"


@pytest.mark.e2e
def test_export_refuses_in_one_line_and_writes_nothing(search: Path) -> None:
    from mlflow import MlflowClient

    out = search / "refused"

    def refused(*args: str, experiment: str = EXPERIMENT) -> str:
        status, err = _export(search, out, *args, experiment=experiment)
        line = err.strip().splitlines()[-1]  # MLflow's download bar may come first
        assert status == 2 and line.startswith("xlt-search: error: "), err
        assert "Traceback" not in err and not out.exists()
        return line

    line = refused(experiment="exprot")
    assert "no MLflow experiment 'exprot'" in line and "did you mean 'export'" in line
    trials = load_trials(EXPERIMENT, _uri(search))
    parent = trials.attrs["parent_run_id"]
    assert "is not a trial of search" in refused("--trial-run-id", parent)

    client = MlflowClient(_uri(search))
    first, second = trials["run_id"]
    try:
        client.set_tag(first, "status", "early_stopped")
        assert "is early_stopped, not completed" in refused("--trial-run-id", first)
        client.set_tag(second, "status", "errored")
        assert "has no completed trial (1 early_stopped, 1 errored)" in refused()
    finally:
        for run_id in (first, second):
            client.set_tag(run_id, "status", "completed")

    (experiment,) = (search / "runs").iterdir()
    moved = search / "moved"
    experiment.rename(moved)
    try:
        assert f"is not at {experiment}, where its MLflow run says it is" in refused()
    finally:
        moved.rename(experiment)
    trial_id = best_trial(trials)["trial_id"]
    (trial_folder,) = experiment.glob(f"*_{trial_id}_*")
    checkpoints = sorted(trial_folder.glob("checkpoint_*"))
    for checkpoint in checkpoints:
        checkpoint.rename(checkpoint.with_name(f"gone-{checkpoint.name}"))
    try:
        assert f"trial {trial_id}'s checkpoint is gone" in refused()
    finally:
        for checkpoint in checkpoints:
            checkpoint.with_name(f"gone-{checkpoint.name}").rename(checkpoint)

    out.mkdir()
    (out / "notes.txt").write_text("mine")
    status, err = _export(search, out)
    assert status == 2 and f"{out} already exists and is not empty" in err.strip().splitlines()[-1]
    assert [p.name for p in out.iterdir()] == ["notes.txt"]

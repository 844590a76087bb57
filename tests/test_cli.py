"""The real CLI on bad input: one line on stderr, exit status 2, no traceback, nothing written."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from processes import CLI, run_cli
from search_specs import search_spec, write_spec

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = ROOT / "search_spaces" / "quickstart.yaml"


def quickstart_with(tmp_path: Path, change) -> Path:
    """The quickstart, storing under tmp_path/runs, with `change` made to it, written there."""
    raw = search_spec("quickstart", tmp_path, base=QUICKSTART)
    change(raw)
    return write_spec(tmp_path, raw)


def set_key(raw: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        raw = raw.setdefault(key, {})
    raw[last] = value


def rename(raw: dict, old: str, new: str) -> None:
    raw[new] = raw.pop(old)


BAD_SPECS = {
    "typo": (lambda raw: rename(raw, "targets", "target"), "unknown key 'target'"),
    "unknown task": (lambda raw: raw["pool"].append("mnli_typo"), "unknown task 'mnli_typo'"),
    "empty pool": (lambda raw: set_key(raw, "pool", []), "pool: the pool"),
    "size too large": (
        lambda raw: set_key(raw, "subsets.sizes", [1, 12]),
        "size 12 is impossible",
    ),
    "bad value": (lambda raw: set_key(raw, "budget.reduction_factor", 1), "reduction_factor"),
    "wrong type": (
        lambda raw: set_key(raw, "budget.target_steps", "many"),
        "budget.target_steps: expected int, got 'many'",
    ),
    "typo in a value": (
        lambda raw: set_key(raw, "subsets.sampler", "stratifed"),
        "did you mean 'stratified'",
    ),
    "file store": (
        lambda raw: set_key(raw, "mlflow.tracking_uri", "file:///tmp/mlruns"),
        "file store, which MLflow has deprecated",
    ),
}


@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_bad_spec_is_one_line_and_exit_2(tmp_path: Path, case: str) -> None:
    change, expected = BAD_SPECS[case]
    result = run_cli("run", str(quickstart_with(tmp_path, change)), "--dry-run", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xlt-search: error: ")
    assert expected in lines[0]
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    spec = quickstart_with(tmp_path, BAD_SPECS["typo"][0])
    result = run_cli("--debug", "run", str(spec), "--dry-run", cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_dry_run_prints_the_plan(tmp_path: Path) -> None:
    result = run_cli("run", str(QUICKSTART), "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for word in ("trials", "per size", "k=1:", "k=9:", "budget_steps", "rungs", "cpu"):
        assert word in result.stdout
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.e2e  # the check needs the Ray cluster's resources: Ray starts
def test_gpu_fraction_without_a_gpu_fails_before_anything_is_written(tmp_path: Path) -> None:
    spec = quickstart_with(tmp_path, lambda raw: set_key(raw, "resources.gpu", 0.25))
    db = tmp_path / "keep.db"
    result = run_cli("run", str(spec), cwd=tmp_path, env={"MLFLOW_TRACKING_URI": f"sqlite:///{db}"})
    assert result.returncode == 2, result.stderr
    assert "resources.gpu: 0.25 asks for a GPU" in result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_unreachable_tracking_server_fails_fast(tmp_path: Path) -> None:
    spec = quickstart_with(
        tmp_path, lambda raw: set_key(raw, "mlflow.tracking_uri", "http://127.0.0.1:9")
    )
    result = run_cli("run", str(spec), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "127.0.0.1:9" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_tasks_lists_the_registry(tmp_path: Path) -> None:
    from xlt_search.tasks import REGISTRY

    result = run_cli("tasks", cwd=tmp_path)
    assert result.returncode == 0
    for key in REGISTRY:
        assert key in result.stdout
    # every task's row names its kind, source and metric
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines() if line}
    for key, task in REGISTRY.items():
        assert rows[key][1:4] == [task.kind, task.metric, task.origin or "(your"], key
    assert "en,ar,bg,de,el,es,fr,hi,ru,sw,th,tr,ur,vi,zh" in " ".join(rows["xnli"])


def test_output_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    # `xlt-search tasks | head`: the reader has gone before the command writes (closed first)
    reader, writer = os.pipe()
    os.close(reader)
    with os.fdopen(writer, "wb") as pipe:
        done = subprocess.run(
            [*CLI, "tasks"], cwd=tmp_path, stdout=pipe, stderr=subprocess.PIPE, timeout=120
        )
    assert done.returncode == 141, done.stderr.decode()
    assert done.stderr.decode() == ""


def test_tasks_shows_one_declaration_and_a_specs_own_tasks(tmp_path: Path) -> None:
    result = run_cli("tasks", "xcopa", cwd=tmp_path)
    assert result.returncode == 0
    assert "trains on   social_iqa then copa" in result.stdout
    assert "cambridgeltl/xcopa, config {lang}" in result.stdout
    assert (
        "authors     github.com/cambridgeltl/xcopa, jsonl: validation=data/{lang}/val."
        in result.stdout
    )
    my_sst = {
        "kind": "classification",
        "metric": "accuracy",
        "num_labels": 2,
        "columns": {"text_a": "sentence", "label": "label"},
        "sources": [{"path": "csv", "data_files": {"train": "sst/train.csv"}}],
    }
    spec = quickstart_with(tmp_path, lambda raw: raw.update(tasks={"my_sst": my_sst}))
    listed = run_cli("tasks", "--spec", str(spec), cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "my_sst" in listed.stdout
    unknown = run_cli("tasks", "xnil", cwd=tmp_path)
    assert unknown.returncode == 2 and "did you mean 'xnli'" in unknown.stderr


def test_malformed_yaml_is_one_line_with_its_place(tmp_path: Path) -> None:
    spec = tmp_path / "broken.yaml"
    spec.write_text("name: x\nbudget: {intermediate_steps: 3\n")
    result = run_cli("run", str(spec), "--dry-run", cwd=tmp_path)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "broken.yaml: malformed YAML at line 3" in line


@pytest.mark.e2e  # the check needs the Ray cluster's resources: Ray starts
def test_more_cpus_than_the_cluster_has_fails_before_anything_is_written(tmp_path: Path) -> None:
    spec = quickstart_with(tmp_path, lambda raw: set_key(raw, "resources.cpu", 64))
    db = tmp_path / "keep.db"
    result = run_cli("run", str(spec), cwd=tmp_path, env={"MLFLOW_TRACKING_URI": f"sqlite:///{db}"})
    assert result.returncode == 2, result.stderr
    assert (
        "resources.cpu: 64 per trial, but the cluster has" in result.stderr.strip().splitlines()[-1]
    )
    assert not (tmp_path / "runs").exists() and not db.exists()


def test_a_storage_path_that_cannot_be_a_folder_fails_before_anything_is_written(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("an existing file where the results would go")
    spec = quickstart_with(tmp_path, lambda raw: raw.update(storage_path=str(blocker / "runs")))
    db = tmp_path / "keep.db"
    result = run_cli("run", str(spec), cwd=tmp_path, env={"MLFLOW_TRACKING_URI": f"sqlite:///{db}"})
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip().splitlines()[-1]  # Ray's own notice about its auth comes first
    assert f"storage_path: {blocker / 'runs'} cannot hold the search's results" in line
    assert "Traceback" not in result.stderr
    assert blocker.read_text().startswith("an existing file") and not db.exists()


def test_report_on_an_experiment_mlflow_lacks_is_one_line(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    db = tmp_path / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").create_experiment("quickstart")
    result = run_cli(
        "report", "quickstrat", cwd=tmp_path, env={"MLFLOW_TRACKING_URI": f"sqlite:///{db}"}
    )
    assert result.returncode == 2, result.stderr
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(
        "xlt-search: error: no MLflow experiment 'quickstrat' at "
        f"sqlite:///{db} (did you mean 'quickstart'?)"
    )
    assert "Traceback" not in result.stderr and not list(tmp_path.glob("report-*"))
    unreachable = run_cli(
        "report", "quickstart", "--tracking-uri", "http://127.0.0.1:9", cwd=tmp_path
    )
    assert unreachable.returncode == 2
    assert "MLflow tracking server http://127.0.0.1:9 is unreachable" in unreachable.stderr

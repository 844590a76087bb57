"""A search on a real two-node Ray cluster, submitted with `ray job submit`, logging to a real
MLflow server: all of it on 127.0.0.1 (Ray's token authentication left on).

The second node is killed mid-search (its raylet): the trials it ran continue from their
checkpoints on the head node, and MLflow keeps one child run per trial.

The jobs name their spec by absolute path rather than uploading a `--working-dir`: both nodes of a
one-machine cluster share one /tmp/ray, and the second node's runtime-env cleanup was seen to
delete the job's unpacked working directory under the running driver (3 jobs in 4 failed that way
with two nodes, none in 4 with one). On a real cluster each node has its own disk.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from processes import Hold, MlflowServer, free_port
from search_specs import search_spec, write_spec

from xlt_search.tracking import load_trials

RAY = str(Path(sys.executable).with_name("ray"))

pytestmark = pytest.mark.e2e


def wait_for(check, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}")


@dataclass
class Cluster:
    gcs: str
    dashboard: str
    worker_node_manager_port: int
    mlflow_uri: str
    env: dict[str, str]


def _ray(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([RAY, *args], env=env, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    work = tmp_path_factory.mktemp("cluster")
    # The CLI sends Ray's auth token only with RAY_AUTH_MODE=token (the token stays on).
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_AUTH_MODE="token", HF_HUB_OFFLINE="1")
    port, dashboard_port, worker_port = free_port(), free_port(), free_port()
    head = _ray(
        "start",
        "--head",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard_port}",
        "--num-cpus=1",
        "--disable-usage-stats",
        env=env,
    )
    assert head.returncode == 0, head.stderr[-3000:]
    mlflow = MlflowServer(work, env)
    try:
        mlflow.start()
        worker = _ray(
            "start",
            f"--address=127.0.0.1:{port}",
            "--node-ip-address=127.0.0.1",
            f"--node-manager-port={worker_port}",
            "--num-cpus=1",
            "--disable-usage-stats",
            env=env,
        )
        assert worker.returncode == 0, worker.stderr[-3000:]
        yield Cluster(
            gcs=f"127.0.0.1:{port}",
            dashboard=f"http://127.0.0.1:{dashboard_port}",
            worker_node_manager_port=worker_port,
            mlflow_uri=mlflow.uri,
            env=env,
        )
    finally:
        if mlflow.process is not None:
            mlflow.stop()
        _ray("stop", "--force", env=env)


def _job_spec(work: Path, name: str, cluster: Cluster, tracking_uri: str | None = None) -> Path:
    """The spec of a job on `cluster`, logging to its MLflow server unless `tracking_uri` says
    otherwise; its storage path under `work` (one machine: every node sees it)."""
    raw = search_spec(
        name,
        work,
        pool_size=4,
        max_concurrent_trials=2,
        max_failures=3,
        mlflow={"experiment": name, "tracking_uri": tracking_uri or cluster.mlflow_uri},
        data={"max_seq_length": 32, "cache_dir": str(work / "cache")},
    )
    return write_spec(work, raw)


def _submit(
    work: Path, spec: Path, cluster: Cluster, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """`xlt-search run SPEC` as a Ray job; `env` goes to its driver and its trials (the job's
    runtime environment)."""
    runtime_env = ["--runtime-env-json", json.dumps({"env_vars": env})] if env else []
    return subprocess.Popen(
        [
            RAY,
            "job",
            "submit",
            f"--address={cluster.dashboard}",
            *runtime_env,
            "--",
            sys.executable,
            "-m",
            "xlt_search",
            "run",
            str(spec),
        ],
        cwd=work,
        env=cluster.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _trial_nodes(cluster: Cluster) -> set[str]:
    """The nodes Tune's trial actors ran on, from Ray's state API."""
    listed = _ray(
        "list", "actors", f"--address={cluster.dashboard}", "--format=json", "--limit=1000",
        "--detail", env=cluster.env,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr[-2000:]
    actors = json.loads(listed.stdout)
    return {a["node_id"] for a in actors if "ImplicitFunc" in a.get("class_name", "")}


def test_a_job_submitted_search_uses_both_nodes_and_logs_one_run_per_trial(
    cluster: Cluster, tmp_path: Path
) -> None:
    job = _submit(tmp_path, _job_spec(tmp_path, "cluster", cluster), cluster)
    output, _ = job.communicate(timeout=900)
    assert job.returncode == 0, output[-4000:]
    trials = load_trials("cluster", cluster.mlflow_uri)
    assert len(trials) == 4 and trials["trial_id"].nunique() == 4
    assert set(trials["status"]) == {"completed"}
    assert len(_trial_nodes(cluster)) == 2


def test_a_local_mlflow_store_on_a_cluster_is_refused_in_one_line(
    cluster: Cluster, tmp_path: Path
) -> None:
    spec = _job_spec(tmp_path, "local-store", cluster, f"sqlite:///{tmp_path / 'mlflow.db'}")
    job = _submit(tmp_path, spec, cluster)
    output, _ = job.communicate(timeout=300)
    assert job.returncode != 0
    assert "xlt-search: error: mlflow.tracking_uri: sqlite:///" in output
    assert "is a store on this machine, but the Ray cluster has 2 nodes" in output
    assert "Traceback" not in output
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlflow.db").exists()


def _raylet_pid(node_manager_port: int) -> int:
    out = subprocess.run(["ps", "-ww", "-eo", "pid,args"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if "raylet" in line and f"--node_manager_port={node_manager_port}" in line:
            return int(line.split()[0])
    raise AssertionError(f"no raylet with node manager port {node_manager_port}")


def test_trials_on_a_killed_node_continue_from_their_checkpoints(
    cluster: Cluster, tmp_path: Path
) -> None:
    # one trial on each node (one CPU each), both held once they have checkpointed budget_steps 40
    hold = Hold(tmp_path / "hold", budget_steps=40)
    job = _submit(tmp_path, _job_spec(tmp_path, "node-loss", cluster), cluster, hold.env)
    wait_for(lambda: len(hold.held()) == 2, 600, "two trials held at budget_steps 40")
    os.kill(_raylet_pid(cluster.worker_node_manager_port), signal.SIGKILL)
    hold.release()
    output, _ = job.communicate(timeout=900)
    assert job.returncode == 0, output[-4000:]

    trials = load_trials("node-loss", cluster.mlflow_uri)
    assert len(trials) == 4 and trials["trial_id"].nunique() == 4  # no duplicated child run
    assert set(trials["status"]) == {"completed"}
    assert (trials["budget_steps"] == 60 + 60 * 2).all()
    # the trial that lost its node went on from a checkpoint, not from budget_steps 0
    assert (trials["restored_from"] > 0).any()

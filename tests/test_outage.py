"""A search whose MLflow server is stopped for part of it, then started again: every metric
arrives, once, and the search never notices. Real processes on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from processes import MlflowServer, small_spec

from xlt_search.tracking import load_trials

pytestmark = pytest.mark.e2e


def test_metrics_logged_while_the_server_is_down_arrive_when_it_is_back(tmp_path: Path) -> None:
    server = MlflowServer(tmp_path)
    spec = small_spec(
        tmp_path, "outage", 3, mlflow={"experiment": "outage", "tracking_uri": server.uri}
    )
    server.start()
    search = subprocess.Popen(
        [sys.executable, "-m", "xlt_search", "run", str(spec)],
        cwd=tmp_path,
        env={**os.environ, "RAY_ADDRESS": ""},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:  # until a trial has reported
            time.sleep(1.0)
            try:
                trials = load_trials("outage", server.uri)
            except Exception:
                continue
            if len(trials) and (trials["budget_steps"] > 0).any():
                break
        server.stop()
        time.sleep(25)  # trials go on reporting into the queue meanwhile
        assert search.poll() is None  # the outage fell in the middle of the search
        server.start()
        output, _ = search.communicate(timeout=900)
    finally:
        if search.poll() is None:
            search.kill()
    try:
        assert search.returncode == 0, output[-4000:]
        import mlflow

        client = mlflow.MlflowClient(server.uri)
        trials = load_trials("outage", server.uri)
        assert len(trials) == 3 and set(trials["status"]) == {"completed"}
        every_report = list(range(20, 60 + 2 * 60 + 1, 20))
        for run_id in trials["run_id"]:
            steps = sorted(m.step for m in client.get_metric_history(run_id, "score"))
            assert steps == every_report, run_id  # each report once, none missing
    finally:
        server.stop()

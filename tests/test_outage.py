"""A search whose MLflow server is stopped for part of it, then started again: every metric
arrives, once, and the search never notices. Real processes on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import pytest
from processes import Hold, MlflowServer, kill_group, start_cli, wait_for
from search_specs import search_spec, write_spec

from xlt_search.tracking import load_trials

pytestmark = pytest.mark.e2e


def test_metrics_logged_while_the_server_is_down_arrive_when_it_is_back(tmp_path: Path) -> None:
    server = MlflowServer(tmp_path)
    raw = search_spec(
        "outage", tmp_path, pool_size=3, mlflow={"experiment": "outage", "tracking_uri": server.uri}
    )
    spec = write_spec(tmp_path, raw)
    server.start()
    hold = Hold(tmp_path / "hold", budget_steps=20)
    output = tmp_path / "output"
    search = start_cli("run", str(spec), cwd=tmp_path, stdout=output, env=hold.env)
    try:
        wait_for(lambda: len(hold.held()) == 2, "two trials held at their first report", search)
        server.stop()
        for trial_id in hold.held():
            hold.release(trial_id)
        # The two report into the queue while the server is down; the third trial starts once
        # one of them has ended, and holds: the outage falls in the middle of the search.
        wait_for(lambda: len(hold.held()) == 3, "the third trial held", search)
        server.start()
        hold.release()
        search.wait(timeout=900)
        assert search.returncode == 0, output.read_text()[-4000:]
        import mlflow

        client = mlflow.MlflowClient(server.uri)
        trials = load_trials("outage", server.uri)
        assert len(trials) == 3 and set(trials["status"]) == {"completed"}
        every_report = list(range(20, 60 + 2 * 60 + 1, 20))
        for run_id in trials["run_id"]:
            steps = sorted(m.step for m in client.get_metric_history(run_id, "score"))
            assert steps == every_report, run_id  # each report once, none missing
    finally:
        kill_group(search)
        if server.process is not None:
            server.stop()

"""Real processes for the tests: an `mlflow server` on a loopback port, small search specs, and
the hold point that stops a running search at a state a test chose.

Every server binds 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from xlt_search.search import HOLD_ENV

ROOT = Path(__file__).resolve().parents[1]
E2E_SPEC = ROOT / "tests" / "specs" / "e2e.yaml"
MLFLOW = Path(sys.executable).with_name("mlflow")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MlflowServer:
    """`mlflow server` over a sqlite store in `folder`, on a loopback port that stays its own, so
    it can be stopped and started again where its clients expect it."""

    def __init__(self, folder: Path, env: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.env = env if env is not None else dict(os.environ)
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        command = [
            MLFLOW,
            "server",
            "--backend-store-uri",
            f"sqlite:///{self.folder / 'mlflow.db'}",
        ]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        # No job runner: it starts a dozen worker processes these tests have no use for.
        env = {**self.env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        log = (self.folder / "server.log").open("a")
        self.process = subprocess.Popen(
            command, cwd=self.folder, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.process.poll() is None, (self.folder / "server.log").read_text()[-2000:]
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"mlflow server on port {self.port} did not answer within 120 s")

    def stop(self) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(timeout=60)
        self.process = None


def small_spec(work: Path, name: str, pool_size: int, **changes: Any) -> Path:
    """The e2e spec cut to the first `pool_size` pool tasks, one subset of each size and no
    baseline (these specs test the machinery, not the answer), FIFO and short phases (60 + 60 x 2
    budget_steps a trial, a report every 20), logging to experiment `name` and storing under
    `work/runs`; `changes` replace top-level keys. Returns its path."""
    raw = yaml.safe_load(E2E_SPEC.read_text())
    raw.update(
        name=name,
        pool=raw["pool"][:pool_size],
        subsets={
            "sampler": "stratified",
            "sizes": list(range(1, pool_size + 1)),
            "per_size": 1,
            "baseline": False,
        },
        budget={
            "intermediate_steps": 60,
            "target_steps": 60,
            "report_every_steps": 20,
            "probe_steps": 5,
            "scheduler": "fifo",
        },
        mlflow={"experiment": name},
        storage_path=str(work / "runs"),
    )
    raw.update(changes)
    path = work / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


class Hold:
    """The trials' hold point (`xlt_search.search.interrupts.hold_point`) in `folder`: each trial that
    reports `budget_steps` waits there until the test releases it. `env` goes into the search's
    environment."""

    def __init__(self, folder: Path, budget_steps: int) -> None:
        folder.mkdir(parents=True)
        self.folder, self.budget_steps = folder, budget_steps
        self.env = {HOLD_ENV: f"{folder}:{budget_steps}"}

    def held(self) -> list[str]:
        """The trials that have reached the hold point (released or not), in Tune's order."""
        names = (path.name for path in self.folder.iterdir())
        return sorted(name for name in names if "." not in name and name != "release")

    def release(self, trial_id: str | None = None) -> None:
        """Let `trial_id` go on, or every trial, now and later, when None."""
        (self.folder / (f"{trial_id}.release" if trial_id else "release")).write_text("")


def wait_for(
    check: Callable[[], bool], what: str, process: subprocess.Popen, timeout_s: float = 600
) -> None:
    """Wait until `check()` holds; fail, saying what was awaited, if `process` (the search) ends
    first or `timeout_s` passes. The deadline is for a search that hangs, never a moment."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if process.poll() is not None:
            raise AssertionError(f"the search ended (exit {process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {timeout_s:g} s: is the search stuck?")
        time.sleep(0.5)


def kill_group(process: subprocess.Popen) -> None:
    """Kill what is left of a process started with start_new_session=True, and its group (the
    Ray instance a driver started)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)

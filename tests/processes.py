"""Real processes for the tests: the CLI (run to its end, or started and left running), an
`mlflow server` on a loopback port, and the hold point that stops a running search at a state a
test chose.

Every server binds 127.0.0.1 only.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from xlt_search.search import HOLD_ENV

MLFLOW = Path(sys.executable).with_name("mlflow")


CLI = (sys.executable, "-m", "xlt_search")  # the command, in this test run's interpreter


def _cli_env(env: Mapping[str, str] | None) -> dict[str, str]:
    # No RAY_ADDRESS: a search starts a Ray instance of its own, never one the environment names.
    return {**os.environ, "RAY_ADDRESS": "", **(env or {})}


def run_python(
    *argv: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 600,
) -> subprocess.CompletedProcess[str]:
    """`python ARGV` in `cwd` (`["-m", module, ...]` or `[script, ...]`), run to its end in a new
    process, its output captured as text; `env` is its whole environment. The process is forked
    from a warm interpreter that has imported torch and MLflow once (tests/warm_python.py)."""
    server = _warm_interpreter()
    with tempfile.TemporaryDirectory(prefix="xlt-cmd-") as folder:
        out, err = Path(folder, "stdout"), Path(folder, "stderr")
        request = {
            "argv": list(argv),
            "cwd": str(cwd or Path.cwd()),
            "env": dict(env or os.environ),
        }
        server.stdin.write(json.dumps({**request, "stdout": str(out), "stderr": str(err)}) + "\n")
        server.stdin.flush()
        pid = json.loads(server.stdout.readline())["pid"]
        timed_out = threading.Event()
        killer = threading.Timer(timeout_s, lambda: (timed_out.set(), os.kill(pid, signal.SIGKILL)))
        killer.start()
        try:
            status = json.loads(server.stdout.readline())["status"]
        finally:
            killer.cancel()
        command = [sys.executable, *argv]
        if timed_out.is_set():
            raise subprocess.TimeoutExpired(command, timeout_s, out.read_text(), err.read_text())
        result = subprocess.CompletedProcess(command, status, out.read_text(), err.read_text())
    return result


@functools.cache
def _warm_interpreter() -> subprocess.Popen[str]:
    server = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("warm_python.py"))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    atexit.register(server.stdin.close)  # its loop ends, and it with it
    return server


def run_cli(
    *args: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 600,
) -> subprocess.CompletedProcess[str]:
    """`xlt-search ARGS` in `cwd`, run to its end, its output captured as text; `env` goes over
    this process's environment."""
    return run_python(*CLI[1:], *args, cwd=cwd, env=_cli_env(env), timeout_s=timeout_s)


def start_cli(
    *args: str,
    cwd: Path,
    stdout: Path,
    stderr: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """`xlt-search ARGS` in `cwd`, started and left running, writing to the file `stdout` and to
    `stderr` (None: into `stdout` too); `env` goes over this process's environment. It runs in a
    process group of its own, the driver and the Ray it starts, which `kill_group` ends."""
    with contextlib.ExitStack() as files:  # the child keeps its own copies of the files
        out = files.enter_context(stdout.open("w"))
        err = files.enter_context(stderr.open("w")) if stderr is not None else subprocess.STDOUT
        return subprocess.Popen(
            [*CLI, *args],
            cwd=cwd,
            env=_cli_env(env),
            stdout=out,
            stderr=err,
            start_new_session=True,
        )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serving(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[str]:
    """An HTTP server on a free loopback port answering with `handler`, in a thread; its URL."""
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


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

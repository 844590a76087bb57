"""Stopping a search's command on a signal, and the tests' hold point, in this process.

The real searches stopped by SIGINT and SIGTERM are in tests/test_resume.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from xlt_search.errors import SearchInterrupted
from xlt_search.search import HOLD_ENV, hold_point, stop_on_signals
from xlt_search.search.interrupts import held


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_ends_a_search_command_with_how_to_continue_it(signum: int) -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(SearchInterrupted) as stopped:
        with stop_on_signals("my search", "--run-id", "abc"):
            os.kill(os.getpid(), signum)
            time.sleep(30)  # the handler raises here, in the main thread
    assert str(stopped.value) == (
        "interrupted; continue with: xlt-search resume 'my search' --run-id abc"
    )
    assert stopped.value.experiment == "my search"
    assert {s: signal.getsignal(s) for s in before} == before  # put back


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + 30
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


def test_the_hold_point_holds_a_trial_until_it_is_released(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hold_point("t1", 40)  # no XLT_SEARCH_HOLD: nothing held
    monkeypatch.setenv(HOLD_ENV, f"{tmp_path}:40")
    hold_point("t1", 20)  # another budget_steps
    assert not (tmp_path / "t1").exists()

    held = threading.Thread(target=hold_point, args=("t1", 40))
    held.start()
    _wait_for(tmp_path / "t1")
    assert held.is_alive()
    (tmp_path / "t1.release").write_text("")
    held.join(timeout=30)
    assert not held.is_alive()
    hold_point("t1", 40)  # released once: it passes again at once (a retry, a resume)

    (tmp_path / "release").write_text("")
    hold_point("t2", 40)  # `release` lets every trial go
    assert (tmp_path / "t2").exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_while_ray_starts_is_acted_on_once_it_has_started(signum: int) -> None:
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    finished = False
    with pytest.raises(SearchInterrupted):
        with stop_on_signals("my search"):
            with held():
                os.kill(os.getpid(), signum)
                time.sleep(0.5)  # without `held`, the handler would raise here
                finished = True
    assert finished
    assert {s: signal.getsignal(s) for s in before} == before


# Ray's Cython module runs code through PyRun_String while it is imported: a KeyboardInterrupt
# raised in such code marks the interpreter to kill itself by SIGINT at exit, even once caught.
_DRIVER = """
import ctypes, sys
from xlt_search.search import stop_on_signals
from xlt_search.search.interrupts import held
run = ctypes.pythonapi.PyRun_String
run.restype = ctypes.py_object
run.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.py_object, ctypes.py_object]
try:
    with stop_on_signals("my search"), {hold}:
        code = b"import os, signal, time; os.kill(os.getpid(), signal.SIGINT); time.sleep(0.5)"
        run(code, 257, {{}}, {{}})  # 257: Py_file_input
except Exception as error:
    print(error, file=sys.stderr)
    raise SystemExit(130)
"""


@pytest.mark.parametrize("hold", ["held()", "contextlib.nullcontext()"])
def test_the_exit_status_stays_130_when_the_signal_comes_during_code_run_by_c(
    tmp_path: Path, hold: str
) -> None:
    (tmp_path / "driver").mkdir()
    (tmp_path / "driver" / "__main__.py").write_text(
        "import contextlib\n" + _DRIVER.format(hold=hold)
    )
    done = subprocess.run(
        [sys.executable, "-m", "driver"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert "interrupted" in done.stderr
    # the known answer both ways: held, the driver exits 130; unheld, Python's exit by SIGINT
    assert done.returncode == (130 if hold == "held()" else -signal.SIGINT), done.stderr

"""Stopping a search's command on a signal, and the tests' hold point, in this process.

The real searches stopped by SIGINT and SIGTERM are in tests/test_resume.py.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from xlt_search.errors import SearchInterrupted
from xlt_search.search import HOLD_ENV, hold_point, stop_on_signals


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

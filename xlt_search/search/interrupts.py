"""Stopping a search so that `xlt-search resume` can continue it: SIGINT (Ctrl-C) and SIGTERM, and
a hold point that lets the tests stop a search at a state of their choosing.

Tune catches SIGINT during `fit` on its own (ray/tune/tune.py, `_setup_signal_catching`): it stops
the trials, keeps their checkpoints, saves its state one last time and returns as if the search
had ended. It does not catch SIGTERM, and a caller cannot tell its stopped search from a finished
one. So Tune's SIGINT handler is turned off (`TUNE_DISABLE_SIGINT_HANDLER`) and one handler of ours
takes both signals: it records the signal and passes it on to Tune as SIGUSR1, which Tune handles
as it does SIGINT, and `fit` raises KeyboardInterrupt once Tune has returned. Outside Tune's loop,
or at a second signal, the handler raises KeyboardInterrupt at once, as Python does for Ctrl-C.

Ray starts its own processes (raylet, workers) with SIGINT blocked, so a Ctrl-C that reaches the
terminal's whole foreground group stops the driver alone, which then stops the trials.

While Ray is imported and started, both signals are held (`held`) and acted on once it has
started: Ray's Cython module runs code of its own through `PyRun_String` when imported, and a
KeyboardInterrupt raised inside that code is either swallowed (the Ctrl-C is lost and the search
runs on) or, even when caught later, marks the interpreter to kill itself with SIGINT at exit, so
the driver's exit status 130 becomes a death by signal. Starting Ray also installs a SIGTERM
handler of its own in the driver (at C level, unseen by `signal.getsignal`) that prints a stack and
aborts; `held` puts the search's handler back.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from xlt_search.errors import SearchInterrupted

EXIT_INTERRUPTED = 130  # 128 + SIGINT: what a shell reports for a command stopped by Ctrl-C
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
HOLD_ENV = "XLT_SEARCH_HOLD"  # the tests' hold point: see `hold_point`


class _Handler:
    """The handler of SIGINT and SIGTERM while a search runs (see the module's docstring)."""

    def __init__(self) -> None:
        self.received = False

    def __call__(self, signum: int, frame: Any) -> None:
        tune_listens = callable(signal.getsignal(signal.SIGUSR1))  # Tune's, during `fit` only
        if self.received or not tune_listens:
            raise KeyboardInterrupt
        self.received = True
        signal.raise_signal(signal.SIGUSR1)


@contextlib.contextmanager
def _handling() -> Iterator[_Handler | None]:
    """Our handler on SIGINT and SIGTERM for the block (None outside the main thread, where Python
    runs no signal handler); one already installed stays, with what it has received."""
    current = signal.getsignal(signal.SIGINT)
    if isinstance(current, _Handler) or threading.current_thread() is not threading.main_thread():
        yield current if isinstance(current, _Handler) else None
        return
    handler = _Handler()
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    for signum in STOP_SIGNALS:
        signal.signal(signum, handler)
    try:
        yield handler
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


class SearchStopped(KeyboardInterrupt):
    """A stop after the search began (its parent run exists): `xlt-search resume` continues it."""


@contextlib.contextmanager
def stop_on_signals(
    experiment: str, *resume_options: str, restart: str | None = None
) -> Iterator[None]:
    """Run a search's command: SIGINT or SIGTERM stops the search, which then ends with
    SearchInterrupted (the CLI prints it and exits 130): how to resume it, or, with `restart`
    and a stop before the search began, how to start it again."""
    try:
        with _handling():
            yield
    except SearchStopped:
        raise SearchInterrupted(experiment, *resume_options) from None
    except KeyboardInterrupt:
        raise SearchInterrupted(experiment, *resume_options, restart=restart) from None


@contextlib.contextmanager
def held() -> Iterator[None]:
    """SIGINT and SIGTERM held for the block (Ray's import and start), then acted on: the first
    that came is raised again once the handlers from before the block are back in place."""
    previous = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    held_now = [signum for signum, old in previous.items() if old is not None]
    if threading.current_thread() is not threading.main_thread():
        held_now = []  # only the main thread sets handlers, and Python runs them there alone
    came: list[int] = []
    for signum in held_now:
        signal.signal(signum, lambda signum, frame: came.append(signum))
    try:
        yield
    finally:
        for signum in held_now:
            signal.signal(signum, previous[signum])
        if came:
            signal.raise_signal(came[0])


def fit(tuner: Any) -> Any:
    """`tuner.fit()`, raising KeyboardInterrupt when SIGINT or SIGTERM stopped it (the trials keep
    their checkpoints and Tune its state); its ResultGrid otherwise."""
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # ours takes SIGINT, and tells Tune
    with _handling() as handler:
        tune_usr1 = signal.getsignal(signal.SIGUSR1)
        try:
            grid = tuner.fit()
        finally:
            signal.signal(signal.SIGUSR1, tune_usr1)  # Tune leaves its handler installed
        if handler is not None and handler.received:
            raise KeyboardInterrupt
    return grid


def hold_point(trial_id: str, budget_steps: int) -> None:
    """A testing hook, called by each trial after every report: with `XLT_SEARCH_HOLD` set to
    `<folder>:<budget_steps>`, a trial that has just reported (and checkpointed) that budget_steps
    writes `<folder>/<trial_id>` and waits until `<folder>/<trial_id>.release` or
    `<folder>/release` exists. A test stops a search at a state it chose this way, rather than at a
    moment it hopes to catch. A trial released once passes that point again at once (a retry, a
    resume). Ray's workers on a local instance inherit the driver's environment; on a cluster, pass
    the variable in the job's runtime environment."""
    hold = os.environ.get(HOLD_ENV)
    if not hold:
        return
    folder, _, step = hold.rpartition(":")
    if budget_steps != int(step):
        return
    held = Path(folder) / trial_id
    held.write_text(f"{budget_steps}\n")
    while not (
        held.with_name(f"{trial_id}.release").exists() or (held.parent / "release").exists()
    ):
        time.sleep(0.1)

"""The delivery of one logger's operations: journaled first, queued, and applied to MLflow in order
by one background thread that outlives every error.

While the store does not take an operation (a server away, a SQLite store locked or on a full
disk), the thread tries it again every RETRY_MAX_WAIT_S at most, so what waited reaches MLflow
within about that long of its return; MLflow's client is told not to wait between retries of its
own (`MLFLOW_HTTP_REQUEST_MAX_RETRIES=0`, unless set), which could hold one request for minutes
after the server is back. While the journal's file system refuses a write (a full disk), the
operations wait in memory, in order, and still go to MLflow; the journal catches up once there is
room. Each trouble is said once on stderr, and once when it has passed.
"""

from __future__ import annotations

import collections
import logging
import os
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any

from xlt_search.tracking.journal import Journal
from xlt_search.tracking.runs import Runs
from xlt_search.tracking.uri import masked

RETRY_MAX_WAIT_S = 1.0  # the longest pause between two tries at a store that does not take one
_THREAD_NAME = "xlt-search-mlflow"


class Delivery:
    """The queue of one logger, its journal in `journal_dir` (None: no journal), and the thread
    that delivers the queue to `tracking_uri`, filling `run_ids` (trial id -> run id) as runs are
    made. `open` names the search (the journal's header); `put` adds an operation."""

    def __init__(
        self, tracking_uri: str, journal_dir: Path | None, run_ids: dict[str, str]
    ) -> None:
        if tracking_uri.startswith(("http://", "https://")):
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        self.tracking_uri, self.journal_dir, self.run_ids = tracking_uri, journal_dir, run_ids
        self.header: dict[str, Any] | None = None
        self.journal: Journal | None = None
        self._lock = threading.Condition()  # guards the counts, the backlog and the journal
        self._queue: queue.SimpleQueue[tuple[int, dict[str, Any]]] = queue.SimpleQueue()
        self._queued = self._handled = 0
        self._backlog: collections.deque[dict[str, Any]] = collections.deque()  # not journaled yet
        self._unmarked: int | None = None  # a delivered count the journal does not record yet
        self._troubles: set[str] = set()  # what stops delivery or the journal now, said once
        self._saying = threading.Lock()  # the caller's thread and the delivering one both say
        self._runs: Runs | None = None
        self._thread: threading.Thread | None = None

    def open(self, experiment_id: str | None, parent_run_id: str | None) -> None:
        """Name the search whose operations follow: the journal's header, its password masked."""
        self.header = {
            "tracking_uri": masked(self.tracking_uri),
            "experiment_id": experiment_id,
            "parent_run_id": parent_run_id,
        }
        with self._lock:
            self._write_journal()

    def put(self, operation: dict[str, Any]) -> None:
        """Journal the operation (or keep it for the journal, if its disk is full), then queue it
        for the delivering thread (started at the first). Never raises for the file system."""
        with self._lock:
            if self.journal_dir is not None:
                self._backlog.append(operation)
                self._write_journal()
            self._queue.put((self._queued, operation))
            self._queued += 1
            if self._thread is None:
                _quiet_store_errors()
                self._thread = threading.Thread(target=self._run, name=_THREAD_NAME, daemon=True)
                self._thread.start()

    def flush(self, timeout_s: float) -> int:
        """Wait, at most `timeout_s` seconds, until MLflow has taken every operation put so far;
        returns how many are still waiting (0: none)."""
        with self._lock:
            self._write_journal()
            self._lock.wait_for(lambda: self._handled == self._queued, timeout=timeout_s)
            return self._queued - self._handled

    def where_waiting(self) -> str:
        """Where the operations not delivered wait, and how to deliver them."""
        with self._lock:
            self._write_journal()
            if self.journal is not None and not self._backlog:
                return (
                    f"they wait in {self.journal.path}: deliver them with "
                    f"`xlt-search sync {self.journal.path.parent}` once it is back"
                )
        if self.journal_dir is not None:
            return (
                f"the journal in {self.journal_dir} cannot be written: those not in it are "
                "lost when this process ends"
            )
        return "this logger has no journal folder: they are lost when this process ends"

    def _run(self) -> None:
        """The delivering thread: each operation in order, tried again until the store takes it
        (or refuses it for good), and the journal caught up as soon as its disk has room."""
        while True:
            with self._lock:
                behind = bool(self._backlog) or self._unmarked is not None
            try:
                index, operation = self._queue.get(timeout=RETRY_MAX_WAIT_S if behind else None)
            except queue.Empty:
                with self._lock:
                    self._write_journal()
                continue
            pause_s = RETRY_MAX_WAIT_S / 16
            while not self._deliver(index, operation):
                time.sleep(pause_s)
                pause_s = min(RETRY_MAX_WAIT_S, 2 * pause_s)
                with self._lock:
                    self._write_journal()
            with self._lock:
                self._handled += 1
                self._lock.notify_all()

    def _deliver(self, index: int, operation: dict[str, Any]) -> bool:
        """Apply operation `index` once; whether it is done with (taken, or refused for good)."""
        uri = masked(self.tracking_uri)
        try:
            reason = self._apply(index, operation)
        except Exception as error:  # the thread's own trouble: said once, tried again
            text = masked(str(error), self.tracking_uri).strip().splitlines()
            self._trouble(
                "thread",
                f"xlt-search: warning: delivering to MLflow at {uri} failed "
                f"({type(error).__name__}: {text[0][:300] if text else ''}); trying again",
            )
            return False
        if reason is not None:
            where = f" (journaled in {self.journal_dir})" if self.journal_dir else ""
            self._trouble(
                "store",
                f"xlt-search: warning: MLflow at {uri} {reason}; what the search logs "
                f"waits{where} and goes to MLflow when it is back",
            )
            return False
        self._troubles.discard("thread")
        self._passed("store", f"xlt-search: MLflow at {uri} is back; delivering what waited")
        return True

    def _apply(self, index: int, operation: dict[str, Any]) -> str | None:
        if self._runs is None:
            header = self.header or {}
            self._runs = Runs(
                self.tracking_uri, header["experiment_id"], header["parent_run_id"], self.run_ids
            )
        journal = self.journal
        if journal is None or not journal.path.exists():  # none yet (a full disk), or deleted
            reason = self._runs.apply(operation)
        else:
            with journal.locked():
                if journal.delivered() > index:
                    return None  # `xlt-search sync` delivered it meanwhile
                reason = self._runs.apply(operation)
        if reason is None:
            with self._lock:
                self._unmarked = index + 1
                self._write_journal()
        return reason

    def _write_journal(self) -> None:
        """Append what waits for the journal, oldest first, and the delivered count (the caller
        holds the lock); a file system that refuses keeps both for the next try."""
        if self.journal_dir is None or self.header is None:
            return
        try:
            if self.journal is None:
                self.journal = Journal.create(self.journal_dir, self.header)
            while self._backlog:
                self.journal.append(self._backlog[0])
                self._backlog.popleft()
            if self._unmarked is not None:
                self.journal.mark_delivered(self._unmarked)
                self._unmarked = None
        except OSError as error:
            self._trouble(
                "journal",
                f"xlt-search: warning: cannot write the MLflow journal in {self.journal_dir} "
                f"({error.strerror or error}); what the search logs waits in memory, and still "
                "goes to MLflow, until there is room",
            )
            return
        self._passed(
            "journal", f"xlt-search: the MLflow journal {self.journal.path} is written again"
        )

    def _trouble(self, kind: str, line: str) -> None:
        with self._saying:
            if kind not in self._troubles:
                self._troubles.add(kind)
                _say(line)

    def _passed(self, kind: str, line: str) -> None:
        with self._saying:
            if kind in self._troubles:
                self._troubles.discard(kind)
                _say(line)


def _say(line: str) -> None:
    # One write for the line and its end: print() writes them apart, and another thread's line
    # could land between the two.
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _not_from_delivery(record: logging.LogRecord) -> bool:
    return record.threadName != _THREAD_NAME


def _quiet_store_errors() -> None:
    """MLflow logs a traceback for every SQLite error; the delivering thread says its own trouble
    once, and tries again, so its records are left out."""
    store_logger = logging.getLogger("mlflow.store.db.utils")
    if _not_from_delivery not in store_logger.filters:
        store_logger.addFilter(_not_from_delivery)

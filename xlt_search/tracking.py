"""MLflow: one parent run per search, one child run per trial, and loading a search back as a table.

Everything goes through `mlflow.MlflowClient` (no fluent API, no global active run), so logging from
the driver's Tune callback never touches a run another piece of code has open. The callback's calls
only queue their operations: a background thread delivers them, waits out a server that went away,
and leaves what it could not deliver in a journal that `sync` (`xlt-search sync`) replays. MLflow is
imported inside the functions that need it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import queue
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlparse

from xlt_search.errors import UserError, did_you_mean

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities import Run

TrialStatus = Literal["completed", "early_stopped", "errored"]

# The `status` tag of a child run, and the MLflow run status each one ends with.
RUN_STATUS: dict[str, str] = {
    "completed": "FINISHED",
    "early_stopped": "FINISHED",  # ASHA's cut is an ordinary end; the status tag tells it apart
    "errored": "FAILED",
}
RUNNING = "running"  # the `status` tag of a trial that has not ended (and a search's state)
INTERRUPTED = "interrupted"  # the `status` tag of a trial still open when its search ended

ROLE_TAG = "xlt.role"  # "search" on the parent run
STATE_TAG = "xlt.state"  # on the parent run: running, then SEARCH_STATE's value for its end
# The parent run's MLflow status when its search ends -> its state tag. KILLED: a search stopped
# by SIGINT or SIGTERM, which `xlt-search resume` continues.
SEARCH_STATE: dict[str, str] = {"FINISHED": "finished", "FAILED": "failed", "KILLED": INTERRUPTED}
TRIAL_ID_TAG = (
    "xlt.trial_id"  # Tune's trial id on each child run: how a resumed search finds its runs
)
PARENT_TAG = "mlflow.parentRunId"
EXPERIMENT_PATH_TAG = "xlt.experiment_path"  # on the parent run: Tune's folder, for resume
MAX_TAG_CHARS = 5000  # below MLflow's limit on tag values


def resolve_tracking_uri(uri: str | None) -> str:
    """The tracking URI to use: `uri`, else $MLFLOW_TRACKING_URI, else MLflow's default.

    A relative sqlite path is made absolute, so the store stays put if the working directory
    changes.
    """
    if not uri:
        import mlflow

        uri = mlflow.get_tracking_uri()  # honours $MLFLOW_TRACKING_URI; default sqlite:///mlflow.db
    prefix = "sqlite:///"
    if uri.startswith(prefix):
        path, _, query = uri[len(prefix) :].partition("?")
        if path and path != ":memory:" and not Path(path).is_absolute():
            uri = f"{prefix}{Path(path).resolve()}" + (f"?{query}" if query else "")
    return uri


def check_tracking_scheme(uri: str | None) -> None:
    """Refuse, with a one-line UserError, the deprecated `file:` store or a bare path (MLflow reads
    one as a file store), or a scheme MLflow has no store for; None (MLflow's local default)
    passes. No network: specs check this."""
    scheme = urlparse(uri or "").scheme
    if uri and scheme in ("", "file"):
        raise UserError(
            f"tracking URI '{uri}' is a file store, which MLflow has deprecated; "
            "use sqlite:///mlflow.db or an http:// tracking server"
        )
    if not uri or scheme.split("+")[0] in _TRACKING_SCHEMES:
        return
    from mlflow.tracking._tracking_service.utils import _tracking_store_registry

    if scheme not in _tracking_store_registry._registry:  # a plugin may add schemes
        raise UserError(
            f"tracking URI '{uri}': MLflow has no tracking store for '{scheme}://'; set "
            "mlflow.tracking_uri (or $MLFLOW_TRACKING_URI) to sqlite:///mlflow.db, an http:// "
            "tracking server or a database (postgresql://...)"
        )


# The schemes MLflow itself serves (SQLAlchemy's dialect+driver forms among them).
_TRACKING_SCHEMES = frozenset({"http", "https", "sqlite", "postgresql", "mysql", "mssql"})


def check_tracking_uri(uri: str | None, timeout_s: float = 3.0) -> None:
    """Fail fast, with a one-line UserError, on a tracking URI a search could not log to.

    `uri` None means $MLFLOW_TRACKING_URI, else MLflow's local default (nothing to check). The
    deprecated `file:` store (or a bare path, which MLflow reads as one) is refused; an http(s)
    server must answer within `timeout_s` seconds.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    check_tracking_scheme(uri)
    parsed = urlparse(uri or "")
    if parsed.scheme not in ("http", "https"):
        return
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout_s):
            return
    except urllib.error.HTTPError as error:
        if error.code not in (502, 504):
            return  # it answered: a server is there, even if it has no /health page
        reason = f"HTTP {error.code} from a proxy or gateway in front of it"
    except (urllib.error.URLError, OSError) as error:
        reason = str(getattr(error, "reason", error))
    host = parsed.hostname or "127.0.0.1"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    raise UserError(
        f"MLflow tracking server {uri} is unreachable ({reason}); start one with "
        f"`mlflow server --backend-store-uri sqlite:///mlflow.db --host {host} --port {port}` "
        "or set mlflow.tracking_uri (or $MLFLOW_TRACKING_URI) to a running server, "
        "or leave both unset to log to sqlite:///mlflow.db"
    )


FLUSH_TIMEOUT_S = 60.0  # how long `finish` waits, by default, for MLflow to take what was logged
RETRY_MAX_WAIT_S = 30.0  # the longest pause between two tries at a server that does not answer
JOURNAL_PATTERN = "mlflow-journal-*.jsonl"  # a logger's journal, in the folder it was given


class SearchLogger:
    """Logs one search to MLflow: a parent run, and a child run per trial, from the driver.

    `start` and `resume` reach MLflow at once, so a store that cannot be reached fails there,
    before any trial. Every later call only queues its operation and returns; one background
    thread delivers the queue in order, so no Tune callback waits on the network. While the server
    does not answer, the thread tries again with backoff and the operations wait. With a
    `journal_dir` (the search's results folder), each operation is also appended to a journal
    there before it is queued, and what MLflow has taken is recorded beside it: whatever a dead
    driver or a server that never came back left undelivered, `sync` (`xlt-search sync`) delivers.

    Params are logged once (MLflow params are immutable), metrics at `step=budget_steps`. Each
    child run carries Tune's trial id as a tag, so `resume` and `sync` find a search's runs again.
    The logger pickles without its queue: a copy knows the runs MLflow had when it was pickled
    (`flush` first), and delivers what is logged through it, journaled apart, with a client and a
    thread of its own.
    """

    _PICKLED = ("tracking_uri", "journal_dir", "_experiment_id", "_parent_run_id")

    def __init__(
        self, tracking_uri: str | None = None, journal_dir: Path | str | None = None
    ) -> None:
        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        self.journal_dir = Path(journal_dir).resolve() if journal_dir is not None else None
        self._experiment_id: str | None = None
        self._parent_run_id: str | None = None
        self._run_ids: dict[str, str] = {}  # filled by the delivering thread as runs are made
        self._trials: set[str] = set()  # trials started through this logger, delivered or not
        self._make_runtime()

    def _make_runtime(self) -> None:
        self._client: MlflowClient | None = None
        self._queue: queue.SimpleQueue[tuple[int, dict[str, Any]]] = queue.SimpleQueue()
        self._progress = threading.Condition()  # guards the two counts and the journal's order
        self._queued = self._handled = 0
        self._journal: _Journal | None = None
        self._thread: threading.Thread | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {
            **{name: self.__dict__[name] for name in self._PICKLED},
            "_run_ids": dict(self._run_ids),
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._trials = set()
        self._make_runtime()

    @property
    def client(self) -> MlflowClient:
        """The MLflow client for `tracking_uri` (the calling thread's; the queue has its own)."""
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    @property
    def parent_run_id(self) -> str | None:
        """The search's parent run (None before `start` or `resume`)."""
        return self._parent_run_id

    @property
    def run_ids(self) -> dict[str, str]:
        """Tune trial id -> MLflow run id of every trial whose run MLflow has (a copy); `flush`
        first for those just started."""
        return dict(self._run_ids)

    @property
    def journal(self) -> Path | None:
        """The journal this logger appends to (None without a `journal_dir`, or before the first
        operation of an unpickled copy)."""
        return self._journal.path if self._journal is not None else None

    def start(self, experiment: str, run_name: str, spec_text: str, tags: Mapping[str, str]) -> str:
        """Open the search's parent run (creating the experiment if needed); returns its run id.

        The spec is logged as the artifact `spec.yaml`.
        """
        if self._parent_run_id is not None:
            raise RuntimeError(f"this logger already logs the search {self._parent_run_id}")
        self._experiment_id = _experiment_id(self.client, experiment, self.tracking_uri)
        run = self.client.create_run(
            self._experiment_id,
            run_name=run_name,
            tags={**{k: str(v) for k, v in tags.items()}, ROLE_TAG: "search", STATE_TAG: RUNNING},
        )
        self._parent_run_id = run.info.run_id
        self.client.log_text(self._parent_run_id, spec_text, "spec.yaml")
        self._open_journal()
        return self._parent_run_id

    def resume(self, parent_run_id: str) -> None:
        """Log into an existing search again: deliver what its journals in `journal_dir` still
        hold, reopen its parent run and recover its trials' runs."""
        if self._parent_run_id is not None:
            raise RuntimeError(f"this logger already logs the search {self._parent_run_id}")
        parent = _get_run(self.client, parent_run_id, self.tracking_uri)
        for path in _journal_paths(self.journal_dir) if self.journal_dir else []:
            journal = _Journal(path)
            if journal.read()[0].get("parent_run_id") == parent_run_id:
                _replay(journal, self.tracking_uri)
        self._experiment_id = parent.info.experiment_id
        self._parent_run_id = parent_run_id
        self._run_ids.update(_trial_runs(self.client, self._experiment_id, parent_run_id))
        self.client.update_run(parent_run_id, status="RUNNING")
        self.client.set_tag(parent_run_id, STATE_TAG, RUNNING)
        self._open_journal()

    def trial_started(self, trial_id: str, run_name: str, params: Mapping[str, Any]) -> None:
        """Open the trial's child run and log its params.

        A trial that already has a run (a retry, or a resumed search) gets it back, reopened, and
        the params it has are not logged again.
        """
        self._require_parent()
        self._trials.add(trial_id)
        params = {key: str(value) for key, value in params.items()}
        self._enqueue(
            {"op": "trial_started", "trial_id": trial_id, "run_name": run_name, "params": params}
        )

    def trial_result(self, trial_id: str, metrics: Mapping[str, float], step: int) -> None:
        """Log a report's metrics at `step` (the trial's budget_steps); skips NaN and inf."""
        self._require_trial(trial_id)
        finite = {key: float(v) for key, v in metrics.items() if math.isfinite(float(v))}
        if finite:
            self._enqueue(
                {
                    "op": "trial_result",
                    "trial_id": trial_id,
                    "metrics": finite,
                    "step": int(step),
                    "timestamp_ms": int(time.time() * 1000),
                }
            )

    def trial_ended(self, trial_id: str, status: TrialStatus, error: str | None = None) -> None:
        """Close the trial's run: `status` tag, MLflow run status, and the error's text if any."""
        if status not in RUN_STATUS:
            raise ValueError(f"trial status '{status}' is not one of {', '.join(RUN_STATUS)}")
        self._require_trial(trial_id)
        error = error[:MAX_TAG_CHARS] if error else None
        self._enqueue({"op": "trial_ended", "trial_id": trial_id, "status": status, "error": error})

    def log_artifact(self, path: Path | str) -> None:
        """Attach a file (the scaling curve's CSV or PNG) to the parent run; it must stay there
        until delivered."""
        self._require_parent()
        self._enqueue({"op": "log_artifact", "path": str(Path(path).resolve())})

    def flush(self, timeout_s: float = FLUSH_TIMEOUT_S) -> int:
        """Wait, at most `timeout_s` seconds, until MLflow has taken everything logged so far;
        returns how many operations are still waiting (0: none)."""
        with self._progress:
            self._progress.wait_for(lambda: self._handled == self._queued, timeout=timeout_s)
            return self._queued - self._handled

    def finish(
        self,
        status: Literal["FINISHED", "FAILED", "KILLED"] = "FINISHED",
        timeout_s: float = FLUSH_TIMEOUT_S,
    ) -> int:
        """Close the parent run with `status` and its state tag (SEARCH_STATE; trials still open
        are closed as `interrupted`), then wait, at most `timeout_s` seconds, for MLflow to take
        everything logged.

        Returns how many operations are still waiting. When some are (the server is down), it
        prints one line saying where they wait and how to deliver them, and does not raise.
        """
        self._require_parent()
        self._enqueue({"op": "finish", "status": status})
        waiting = self.flush(timeout_s)
        if waiting:
            where = (
                f"they wait in {self._journal.path}: deliver them with "
                f"`xlt-search sync {self._journal.path.parent}` once it is back"
                if self._journal is not None
                else "this logger has no journal folder: they are lost when this process ends"
            )
            print(
                f"xlt-search: warning: {waiting} logging operations have not reached MLflow at "
                f"{self.tracking_uri} within {timeout_s:g} s (is the server down?); {where}",
                file=sys.stderr,
            )
        return waiting

    def _open_journal(self) -> None:
        if self.journal_dir is not None:
            header = {
                "tracking_uri": self.tracking_uri,
                "experiment_id": self._experiment_id,
                "parent_run_id": self._parent_run_id,
            }
            self._journal = _Journal.create(self.journal_dir, header)

    def _enqueue(self, operation: dict[str, Any]) -> None:
        """Journal the operation, then queue it for the delivering thread (started at the first)."""
        with self._progress:
            if self._journal is None and self.journal_dir is not None:
                self._open_journal()  # an unpickled copy: a journal of its own
            if self._journal is not None:
                self._journal.append(operation)
            self._queue.put((self._queued, operation))
            self._queued += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._deliver_queue, name="xlt-search-mlflow", daemon=True
                )
                self._thread.start()

    def _deliver_queue(self) -> None:
        """The delivering thread: each operation in order, tried again while MLflow does not
        answer. A daemon: a process that ends leaves what is undelivered to its journal."""
        runs = _Runs(self.tracking_uri, self._experiment_id, self._parent_run_id, self._run_ids)
        while True:
            index, operation = self._queue.get()
            for attempt in itertools.count():
                if self._deliver(runs, index, operation) is None:
                    break
                if attempt == 0:
                    where = f" (journaled in {self._journal.path})" if self._journal else ""
                    print(
                        f"xlt-search: warning: MLflow at {self.tracking_uri} is unreachable; "
                        f"what the search logs waits{where} and goes to MLflow when it is back",
                        file=sys.stderr,
                    )
                time.sleep(min(RETRY_MAX_WAIT_S, 0.5 * 2**attempt))
            if attempt > 0:
                print(
                    f"xlt-search: MLflow at {self.tracking_uri} is back; delivering what waited",
                    file=sys.stderr,
                )
            with self._progress:
                self._handled += 1
                self._progress.notify_all()

    def _deliver(self, runs: _Runs, index: int, operation: dict[str, Any]) -> Exception | None:
        """Apply operation `index` once; None when it is done with, else the unreachable
        server's error."""
        journal = self._journal
        if journal is None:
            return runs.apply(operation)
        with journal.locked():
            if journal.delivered() > index:
                return None  # `xlt-search sync` delivered it meanwhile
            error = runs.apply(operation)
            if error is None:
                journal.mark_delivered(index + 1)
            return error

    def _require_parent(self) -> str:
        if self._parent_run_id is None:
            raise RuntimeError("call SearchLogger.start (or resume) before logging trials")
        return self._parent_run_id

    def _require_trial(self, trial_id: str) -> None:
        self._require_parent()
        if trial_id not in self._trials and trial_id not in self._run_ids:
            raise KeyError(f"trial '{trial_id}' has no run; call trial_started first")


def sync(journal_dir: Path | str, tracking_uri: str | None = None) -> int:
    """Deliver to MLflow what the journals in `journal_dir` still hold; returns how many
    operations were delivered (0: nothing was left).

    `journal_dir` is the folder a `SearchLogger` journaled into (a search's results folder,
    `<storage_path>/<run name>`). Each journal goes to the tracking URI it names, or to
    `tracking_uri`, from where its delivered count stops. Every operation is safe to apply twice
    (a trial's run is looked up by its trial id before one is made, params already there are not
    logged again, and a metric goes with its report's timestamp, which MLflow keeps once), so the
    one a dead driver may have sent without hearing back is sent again harmlessly, and running
    sync twice logs nothing twice. A server that cannot be reached is a one-line UserError; what
    is left stays in the journal for the next sync.
    """
    folder = Path(journal_dir)
    paths = _journal_paths(folder)
    if not paths:
        raise UserError(
            f"{folder} holds no MLflow journal ({JOURNAL_PATTERN}); give the folder of a "
            "search's results, <storage_path>/<run name>"
        )
    return sum(_replay(_Journal(path), tracking_uri) for path in paths)


def _replay(journal: _Journal, tracking_uri: str | None) -> int:
    """Deliver what `journal` still holds; returns how many operations MLflow took."""
    header, operations = journal.read()
    if journal.delivered() >= len(operations):
        return 0
    uri = resolve_tracking_uri(tracking_uri or header["tracking_uri"])
    check_tracking_uri(uri)
    runs = _Runs(uri, header["experiment_id"], header["parent_run_id"], {})
    _get_run(runs.client, runs.parent_run_id, uri)  # the wrong store: one line, nothing skipped
    runs.run_ids.update(_trial_runs(runs.client, runs.experiment_id, runs.parent_run_id))
    done = 0
    with journal.locked(wait_s=10.0):
        for index in range(journal.delivered(), len(operations)):
            if runs.apply(operations[index]) is not None:
                raise UserError(
                    f"MLflow at {uri} stopped answering after {done} of the operations in "
                    f"{journal.path}; the other {len(operations) - index} wait there: run "
                    f"`xlt-search sync {journal.path.parent}` again once it is back"
                )
            journal.mark_delivered(index + 1)
            done += 1
    return done - runs.refused


class _Runs:
    """A search's runs in one MLflow store, and the logged operations applied to them.

    Each operation is safe to apply again after an attempt whose answer was lost: the delivering
    thread and `sync` both rely on that.
    """

    def __init__(
        self,
        uri: str,
        experiment_id: str | None,
        parent_run_id: str | None,
        run_ids: dict[str, str],
    ) -> None:
        from mlflow import MlflowClient

        self.uri, self.client = uri, MlflowClient(tracking_uri=uri)
        self.experiment_id, self.parent_run_id = experiment_id, parent_run_id
        self.run_ids: dict[str, str] = run_ids  # trial id -> run id, as runs are found or made
        self.refused = 0

    def apply(self, operation: dict[str, Any]) -> Exception | None:
        """Apply `operation`; returns the error if MLflow could not be reached (apply it again
        later). One MLflow refuses (a param changed, a file gone) is reported in a line and
        skipped: trying it again would not help."""
        name, fields = operation["op"], {k: v for k, v in operation.items() if k != "op"}
        try:
            getattr(self, f"_{name}")(**fields)
        except Exception as error:
            if _unreachable(error):
                return error
            self.refused += 1
            what = f"{name} {fields.get('trial_id') or fields.get('path') or ''}".rstrip()
            reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
            print(
                f"xlt-search: warning: MLflow at {self.uri} refused {what} "
                f"({type(error).__name__}: {reason}); skipped",
                file=sys.stderr,
            )
        return None

    def _trial_started(self, trial_id: str, run_name: str, params: dict[str, str]) -> None:
        from mlflow.entities import Param
        from mlflow.utils.validation import MAX_PARAMS_TAGS_PER_BATCH

        run_id = self._run_id(trial_id)
        logged: Mapping[str, str] = {}
        if run_id is None:
            run = self.client.create_run(
                self.experiment_id,
                run_name=run_name,
                tags={PARENT_TAG: self.parent_run_id, TRIAL_ID_TAG: trial_id, "status": RUNNING},
            )
            run_id = self.run_ids[trial_id] = run.info.run_id
        else:  # a retry, a resumed search, or this very operation applied before
            self.client.update_run(run_id, status="RUNNING")
            self.client.set_tag(run_id, "status", RUNNING)
            run = self.client.get_run(run_id)
            if "error" in run.data.tags:
                self.client.delete_tag(run_id, "error")  # the failure this retry recovers from
            logged = run.data.params
        entries = [Param(key, value) for key, value in params.items() if key not in logged]
        for start in range(0, len(entries), MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(run_id, params=entries[start : start + MAX_PARAMS_TAGS_PER_BATCH])

    def _trial_result(
        self, trial_id: str, metrics: dict[str, float], step: int, timestamp_ms: int
    ) -> None:
        from mlflow.entities import Metric
        from mlflow.utils.validation import MAX_METRICS_PER_BATCH

        run_id = self._require_run(trial_id)
        entries = [Metric(key, value, timestamp_ms, step) for key, value in metrics.items()]
        for start in range(0, len(entries), MAX_METRICS_PER_BATCH):
            self.client.log_batch(run_id, metrics=entries[start : start + MAX_METRICS_PER_BATCH])

    def _trial_ended(self, trial_id: str, status: TrialStatus, error: str | None) -> None:
        run_id = self._require_run(trial_id)
        self.client.set_tag(run_id, "status", status)
        if error:
            self.client.set_tag(run_id, "error", error)
        self.client.set_terminated(run_id, status=RUN_STATUS[status])

    def _log_artifact(self, path: str) -> None:
        self.client.log_artifact(self.parent_run_id, path)

    def _finish(self, status: str) -> None:
        still_open = "attributes.status = 'RUNNING'"
        for run in _child_runs(self.client, self.experiment_id, self.parent_run_id, still_open):
            self.client.set_tag(run.info.run_id, "status", INTERRUPTED)
            self.client.set_terminated(run.info.run_id, status="KILLED")
        self.client.set_tag(self.parent_run_id, STATE_TAG, SEARCH_STATE[status])
        self.client.set_terminated(self.parent_run_id, status=status)

    def _run_id(self, trial_id: str) -> str | None:
        """The trial's run: known, or found by its trial id (made by an earlier attempt, by
        `sync`, or by the logger this one was pickled from)."""
        if trial_id not in self.run_ids:
            found = _trial_runs(self.client, self.experiment_id, self.parent_run_id, trial_id)
            self.run_ids.update(found)
        return self.run_ids.get(trial_id)

    def _require_run(self, trial_id: str) -> str:
        run_id = self._run_id(trial_id)
        if run_id is None:
            raise KeyError(f"trial '{trial_id}' has no run in MLflow")
        return run_id


def _unreachable(error: BaseException) -> bool:
    """Whether `error` means the tracking server could not be reached, or answered 5xx until
    MLflow's own retries ran out: worth trying again later.

    MLflow 3 raises an MlflowException (error code INTERNAL_ERROR) whose `__context__` is requests'
    ConnectionError (connection refused), Timeout or RetryError (too many 5xx answers).
    """
    import requests

    retryable = (
        requests.exceptions.ConnectionError,
        requests.exceptions.Timeout,
        requests.exceptions.RetryError,
        ConnectionError,
        TimeoutError,
    )
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, retryable):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


class _Journal:
    """One logger's journal: a JSON header line (the store, experiment and parent run), then one
    JSON line per operation, appended before the operation is queued. Beside it,
    `<name>.delivered` holds how many operations MLflow has taken (replaced atomically after
    each); an flock on the journal keeps two processes (a search's driver and `xlt-search sync`)
    from delivering it at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.marker = path.with_suffix(".delivered")

    @classmethod
    def create(cls, folder: Path, header: Mapping[str, Any]) -> _Journal:
        """A new journal in `folder`, numbered after those already there."""
        folder.mkdir(parents=True, exist_ok=True)
        number = len(_journal_paths(folder))
        while True:
            path = folder / JOURNAL_PATTERN.replace("*", str(number))
            try:
                with path.open("x", encoding="utf-8") as file:
                    file.write(json.dumps(header) + "\n")
                return cls(path)
            except FileExistsError:
                number += 1  # another logger took this number first

    def append(self, operation: Mapping[str, Any]) -> None:
        # Written through to the OS at once: a driver that dies loses nothing it logged.
        with self.path.open("a", encoding="utf-8") as file:
            file.write(json.dumps(operation, allow_nan=False) + "\n")

    def read(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The header and the operations; a last line cut short (a driver killed while writing
        it) is left out, as its operation was never queued."""
        *lines, _cut_short = self.path.read_text(encoding="utf-8").split("\n")
        records = []
        for number, line in enumerate(lines, 1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise UserError(
                    f"MLflow journal {self.path} is damaged at line {number} ({error}); "
                    "mend or delete that line, then sync again"
                ) from None
        return (records[0] if records else {}), records[1:]

    def delivered(self) -> int:
        try:
            return int(self.marker.read_text())
        except FileNotFoundError:
            return 0

    def mark_delivered(self, count: int) -> None:
        partial = self.marker.with_name(self.marker.name + ".partial")
        partial.write_text(str(count))
        os.replace(partial, self.marker)

    @contextlib.contextmanager
    def locked(self, wait_s: float | None = None) -> Iterator[None]:
        """Hold the journal's delivery lock, waiting for it at most `wait_s` seconds (None: as
        long as it takes); a UserError if another process keeps it longer."""
        import fcntl

        with self.path.open("rb") as file:
            if wait_s is None:
                fcntl.flock(file, fcntl.LOCK_EX)
            else:
                deadline = time.monotonic() + wait_s
                while True:
                    try:
                        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() > deadline:
                            raise UserError(
                                f"another process is delivering {self.path} (is its search "
                                "still running?); sync again once it has ended"
                            ) from None
                        time.sleep(0.1)
            try:
                yield
            finally:
                fcntl.flock(file, fcntl.LOCK_UN)


def _journal_paths(folder: Path) -> list[Path]:
    """The journals in `folder`, in the order their loggers made them."""
    prefix, suffix = JOURNAL_PATTERN.split("*")
    numbered = []
    for path in folder.glob(JOURNAL_PATTERN):
        number = path.name[len(prefix) : -len(suffix)]
        if number.isdigit():
            numbered.append((int(number), path))
    return [path for _, path in sorted(numbered)]


def _trial_runs(
    client: MlflowClient, experiment_id: str, parent_run_id: str, trial_id: str | None = None
) -> dict[str, str]:
    """Trial id -> run id of the parent's child runs (of that one trial, if given)."""
    condition = f"tags.`{TRIAL_ID_TAG}` = '{trial_id}'" if trial_id is not None else ""
    runs = _child_runs(client, experiment_id, parent_run_id, condition)
    return {
        run.data.tags[TRIAL_ID_TAG]: run.info.run_id
        for run in runs
        if run.data.tags.get(TRIAL_ID_TAG)
    }


# The first columns of `load_trials`, in this order; metrics and other params follow.
TRIAL_COLUMNS = (
    "run_id",
    "trial_id",
    "run_name",
    "tasks",
    "n_tasks",
    "status",
    "error",
    "score",
    "budget_steps",
    "start_time",  # the run's start, ms since the epoch: ties between trials go to the first
)


def load_trials(
    experiment: str,
    tracking_uri: str | None = None,
    parent_run_id: str | None = None,
    at_step: int | None = None,
) -> pd.DataFrame:
    """The trials of a search, one row per child run, from MLflow.

    The search is `parent_run_id`, or else the newest search run of `experiment`. Columns: those
    of TRIAL_COLUMNS (`score` and `budget_steps` are the last values reported, or with `at_step`
    the last reported at a budget_steps of at most `at_step`, every metric alike), then every
    other metric, then every other param (`use.<task>` as booleans, numbers as numbers). Rows are
    sorted by `n_tasks`, then `tasks`.
    """
    import pandas as pd

    uri = resolve_tracking_uri(tracking_uri)
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    parent = _find_parent(client, experiment, uri, parent_run_id)
    parent_run_id, experiment_id = parent.info.run_id, parent.info.experiment_id
    rows = [
        _trial_row(run, None if at_step is None else _metrics_at(client, run, at_step))
        for run in _child_runs(client, experiment_id, parent_run_id)
    ]
    table = pd.DataFrame(rows)
    for column in TRIAL_COLUMNS:
        if column not in table:
            table[column] = pd.Series(
                dtype=float if column in ("score", "budget_steps") else object
            )
    metrics = sorted({key for row in rows for key in row["_metrics"]} - set(TRIAL_COLUMNS))
    params = sorted({key for row in rows for key in row["_params"]} - set(TRIAL_COLUMNS))
    table = table[[*TRIAL_COLUMNS, *metrics, *params]]
    for column in params:
        table[column] = _typed(table[column])
    table["n_tasks"] = table["n_tasks"].astype(int)
    table = table.sort_values(["n_tasks", "tasks"], kind="stable").reset_index(drop=True)
    table.attrs["parent_run_id"] = parent_run_id
    return table


@dataclass(frozen=True)
class FoundSearch:
    """What `xlt-search resume` needs of a search, from its parent run."""

    run_id: str
    tracking_uri: str
    spec_text: str
    experiment_path: str  # Tune's folder of the search (a path or a URI)


def find_search(
    experiment: str, tracking_uri: str | None = None, parent_run_id: str | None = None
) -> FoundSearch:
    """The search `parent_run_id`, or else the newest search of `experiment`: its spec (the
    parent run's `spec.yaml`) and where Tune keeps it."""
    import tempfile

    from mlflow import MlflowClient

    uri = resolve_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri=uri)
    parent = _find_parent(client, experiment, uri, parent_run_id)
    path = parent.data.tags.get(EXPERIMENT_PATH_TAG)
    if not path:
        raise UserError(
            f"search run {parent.info.run_id} does not say where its Tune experiment is "
            f"(no {EXPERIMENT_PATH_TAG} tag); it cannot be resumed"
        )
    with tempfile.TemporaryDirectory() as folder:
        spec = client.download_artifacts(parent.info.run_id, "spec.yaml", folder)
        spec_text = Path(spec).read_text()
    return FoundSearch(parent.info.run_id, uri, spec_text, path)


def _find_parent(client: MlflowClient, experiment: str, uri: str, parent_run_id: str | None) -> Run:
    """The parent run `parent_run_id` of `experiment`, or its newest search run."""
    found = client.get_experiment_by_name(experiment)
    if found is None or found.lifecycle_stage != "active":
        names = [e.name for e in client.search_experiments()]
        raise UserError(
            f"no MLflow experiment '{experiment}' at {uri}{did_you_mean(experiment, names)}; "
            f"the experiments there: {', '.join(names) or 'none'} "
            "(pass --tracking-uri or set $MLFLOW_TRACKING_URI to the search's store)"
        )
    if parent_run_id is None:
        parents = client.search_runs(
            [found.experiment_id],
            filter_string=f"tags.`{ROLE_TAG}` = 'search'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if not parents:
            raise UserError(
                f"MLflow experiment '{experiment}' at {uri} holds no search; "
                "run `xlt-search run SPEC` with this experiment first"
            )
        return parents[0]
    parent = _get_run(client, parent_run_id, uri)
    if parent.info.experiment_id != found.experiment_id:
        raise UserError(
            f"run {parent_run_id} is not in experiment '{experiment}'; "
            "pass that run's experiment, or leave out the run id to take the newest search"
        )
    return parent


def log_search_artifacts(
    tracking_uri: str | None, parent_run_id: str, paths: Iterable[Path]
) -> None:
    """Attach files (a curve drawn on demand) to a finished search's parent run."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=resolve_tracking_uri(tracking_uri))
    for path in paths:
        client.log_artifact(parent_run_id, str(path))


def search_tags(tracking_uri: str | None, parent_run_id: str) -> dict[str, str]:
    """The tags of a search's parent run."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=resolve_tracking_uri(tracking_uri))
    return dict(client.get_run(parent_run_id).data.tags)


def mark_search(
    tracking_uri: str | None,
    parent_run_id: str,
    tags: Mapping[str, str],
    metrics: Mapping[str, float],
) -> None:
    """Set tags and metrics (at step 0) on a search's parent run, as its report concludes."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=resolve_tracking_uri(tracking_uri))
    for key, value in tags.items():
        client.set_tag(parent_run_id, key, value[:MAX_TAG_CHARS])
    for key, value in metrics.items():
        client.log_metric(parent_run_id, key, float(value), step=0)


def _metrics_at(client: MlflowClient, run: Run, step: int) -> dict[str, float]:
    """Each of the run's metrics as last reported at a step of at most `step` (left out if none
    was)."""
    found = {}
    for key in run.data.metrics:
        history = [m for m in client.get_metric_history(run.info.run_id, key) if m.step <= step]
        if history:
            found[key] = max(history, key=lambda m: (m.step, m.timestamp)).value
    return found


def _trial_row(run: Run, metrics: dict[str, float] | None = None) -> dict[str, Any]:
    """One row of `load_trials`; `metrics` replaces the run's last values when given."""
    from xlt_search.subsets import parse_subset_key

    params, tags = run.data.params, run.data.tags
    metrics = run.data.metrics if metrics is None else metrics
    tasks = params.get("tasks", "")
    return {
        "run_id": run.info.run_id,
        "trial_id": tags.get(TRIAL_ID_TAG),
        "run_name": run.info.run_name,
        "tasks": tasks,
        "n_tasks": int(params.get("n_tasks", len(parse_subset_key(tasks)))),
        "status": tags.get("status", RUNNING),
        "error": tags.get("error"),
        **metrics,
        **{key: value for key, value in params.items() if key not in ("tasks", "n_tasks")},
        "score": metrics.get("score", math.nan),
        "budget_steps": metrics.get("budget_steps", math.nan),
        "start_time": run.info.start_time,
        "_metrics": metrics,
        "_params": params,
    }


def _typed(column: pd.Series) -> pd.Series:
    """A param column as booleans or numbers when every value is one (MLflow stores strings)."""
    import pandas as pd

    present = column.dropna()
    if len(present) and present.isin(["True", "False"]).all():
        return column.map({"True": True, "False": False})
    numbers = pd.to_numeric(present, errors="coerce")
    if len(present) and numbers.notna().all():
        return pd.to_numeric(column)
    return column


def _experiment_id(client: MlflowClient, name: str, uri: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is None:
        return client.create_experiment(name)
    if found.lifecycle_stage != "active":
        raise UserError(
            f"MLflow experiment '{name}' at {uri} is deleted; restore it "
            f"(`mlflow experiments restore --experiment-id {found.experiment_id}`) "
            "or set mlflow.experiment to another name"
        )
    return found.experiment_id


def _get_run(client: MlflowClient, run_id: str, uri: str) -> Run:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException:
        raise UserError(
            f"no MLflow run {run_id} at {uri}; check the run id, or leave it out to take the "
            "newest search"
        ) from None


def _child_runs(
    client: MlflowClient, experiment_id: str, parent_run_id: str, condition: str = ""
) -> Iterator[Run]:
    """The parent's child runs (those meeting `condition`, if given), page by page.

    MLflow returns at most 1000 runs a call.
    """
    query = f"tags.`{PARENT_TAG}` = '{parent_run_id}'" + (f" and {condition}" if condition else "")
    token = None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string=query,
            order_by=["attributes.start_time ASC"],
            page_token=token,
        )
        yield from page
        token = page.token
        if not token:
            return

"""The logger of one search: its calls queue operations, which one background thread delivers to
MLflow in order (`delivery`), waiting out a server that went away.

Everything goes through `mlflow.MlflowClient` (no fluent API, no global active run), so logging from
the driver's Tune callback never touches a run another piece of code has open. MLflow is imported
inside the functions that need it.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from xlt_search.errors import UserError
from xlt_search.names import (
    MAX_TAG_CHARS,
    ROLE_TAG,
    RUN_STATUS,
    RUNNING,
    SEARCH_ROLE,
    SPEC_ARTIFACT,
    STATE_TAG,
    TrialStatus,
)
from xlt_search.tracking.delivery import Delivery
from xlt_search.tracking.journal import Journal, journal_paths, replay
from xlt_search.tracking.queries import get_run, trial_runs
from xlt_search.tracking.store import mlflow_client
from xlt_search.tracking.uri import masked, resolve_tracking_uri

if TYPE_CHECKING:
    from mlflow import MlflowClient

FLUSH_TIMEOUT_S = 60.0  # how long `finish` waits, by default, for MLflow to take what was logged


class SearchLogger:
    """Logs one search to MLflow: a parent run, and a child run per trial, from the driver.

    `start` and `resume` reach MLflow at once, so a store that cannot be reached fails there,
    before any trial. Every later call only queues its operation and returns; one background
    thread delivers the queue in order, so no Tune callback waits on the network. While the server
    does not answer, the thread tries again every second or so and the operations wait. With a
    `journal_dir` (the search's results folder), each operation is also appended to a journal
    there before it is queued (or kept in memory until the journal's disk has room), and what
    MLflow has taken is recorded beside it: whatever a dead driver or a server that never came
    back left undelivered, `sync` (`xlt-search sync`) delivers. No call raises for a full disk.

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
        self._delivery = Delivery(self.tracking_uri, self.journal_dir, self._run_ids)

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
            self._client = mlflow_client(self.tracking_uri)
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
        """The journal this logger appends to (None without a `journal_dir`, before the first
        operation of an unpickled copy, or while its disk has no room for it)."""
        journal = self._delivery.journal
        return journal.path if journal is not None else None

    def start(self, experiment: str, run_name: str, spec_text: str, tags: Mapping[str, str]) -> str:
        """Open the search's parent run (creating the experiment if needed); returns its run id.

        The spec is logged as the artifact `spec.yaml`, the password of the tracking URI in it
        masked.
        """
        if self._parent_run_id is not None:
            raise RuntimeError(f"this logger already logs the search {self._parent_run_id}")
        self._experiment_id = _experiment_id(self.client, experiment, self.tracking_uri)
        run = self.client.create_run(
            self._experiment_id,
            run_name=run_name,
            tags={
                **{k: str(v) for k, v in tags.items()},
                ROLE_TAG: SEARCH_ROLE,
                STATE_TAG: RUNNING,
            },
        )
        self._parent_run_id = run.info.run_id
        spec_text = masked(spec_text, self.tracking_uri)
        self.client.log_text(self._parent_run_id, spec_text, SPEC_ARTIFACT)
        self._open_journal()
        return self._parent_run_id

    def resume(self, parent_run_id: str) -> None:
        """Log into an existing search again: deliver what its journals in `journal_dir` still
        hold, reopen its parent run and recover its trials' runs."""
        if self._parent_run_id is not None:
            raise RuntimeError(f"this logger already logs the search {self._parent_run_id}")
        parent = get_run(self.client, parent_run_id, self.tracking_uri)
        for path in journal_paths(self.journal_dir) if self.journal_dir else []:
            journal = Journal(path)
            if journal.read().header.get("parent_run_id") == parent_run_id:
                replay(journal, self.tracking_uri)
        self._experiment_id = parent.info.experiment_id
        self._parent_run_id = parent_run_id
        self._run_ids.update(trial_runs(self.client, self._experiment_id, parent_run_id))
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
        return self._delivery.flush(timeout_s)

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
            print(
                f"xlt-search: warning: {waiting} logging operations have not reached MLflow at "
                f"{masked(self.tracking_uri)} within {timeout_s:g} s (is the server down?); "
                f"{self._delivery.where_waiting()}",
                file=sys.stderr,
            )
        return waiting

    def _open_journal(self) -> None:
        self._delivery.open(self._experiment_id, self._parent_run_id)

    def _enqueue(self, operation: dict[str, Any]) -> None:
        """Hand the operation to the delivery: journaled, then queued."""
        if self._delivery.header is None:
            self._open_journal()  # an unpickled copy: a journal of its own
        self._delivery.put(operation)

    def _require_parent(self) -> str:
        if self._parent_run_id is None:
            raise RuntimeError("call SearchLogger.start (or resume) before logging trials")
        return self._parent_run_id

    def _require_trial(self, trial_id: str) -> None:
        self._require_parent()
        if trial_id not in self._trials and trial_id not in self._run_ids:
            raise KeyError(f"trial '{trial_id}' has no run; call trial_started first")


def _experiment_id(client: MlflowClient, name: str, uri: str) -> str:
    """The id of experiment `name`, made if it is new; a one-line UserError if it is deleted."""
    found = client.get_experiment_by_name(name)
    if found is None:
        return client.create_experiment(name)
    if found.lifecycle_stage != "active":
        raise UserError(
            f"MLflow experiment '{name}' at {masked(uri)} is deleted; restore it "
            f"(`mlflow experiments restore --experiment-id {found.experiment_id}`) "
            "or set mlflow.experiment to another name"
        )
    return found.experiment_id

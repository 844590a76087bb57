"""Applying one logged operation to a search's runs in an MLflow store.

Both the logger's delivering thread and `sync` apply operations here, and both may apply one again
after an attempt whose answer was lost, so every operation is safe to apply twice.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from typing import Any

from xlt_search.names import (
    ERROR_TAG,
    INTERRUPTED,
    PARENT_TAG,
    RUN_STATUS,
    RUNNING,
    SEARCH_STATE,
    STATE_TAG,
    STATUS_TAG,
    TRIAL_ID_TAG,
    TrialStatus,
)
from xlt_search.tracking.queries import child_runs, trial_runs
from xlt_search.tracking.store import mlflow_client
from xlt_search.tracking.uri import masked, retry_reason


class Runs:
    """A search's runs in one MLflow store, and the logged operations applied to them: `apply`
    finds each operation's method in OPERATIONS, below."""

    def __init__(
        self,
        uri: str,
        experiment_id: str | None,
        parent_run_id: str | None,
        run_ids: dict[str, str],
        must_exist: bool = False,
    ) -> None:
        self.uri, self.client = uri, mlflow_client(uri, must_exist)
        self.experiment_id, self.parent_run_id = experiment_id, parent_run_id
        self.run_ids: dict[str, str] = run_ids  # trial id -> run id, as runs are found or made
        self.refused = 0  # operations MLflow refused, each skipped with a warning

    def apply(self, operation: dict[str, Any]) -> str | None:
        """Apply `operation`; returns why not when it is worth applying again later (MLflow is
        unreachable, its SQLite store locked or its disk full: `retry_reason`). One MLflow
        refuses (a param changed, a file gone) is reported in a line and skipped: trying it
        again would not help."""
        name, fields = operation["op"], {k: v for k, v in operation.items() if k != "op"}
        try:
            OPERATIONS[name](self, **fields)
        except Exception as error:
            reason = retry_reason(error)
            if reason is not None:
                return reason
            self.refused += 1
            what = f"{name} {fields.get('trial_id') or fields.get('path') or ''}".rstrip()
            text = masked(str(error), self.uri).strip()
            reason = text.splitlines()[0][:300] if text else ""
            print(
                f"xlt-search: warning: MLflow at {masked(self.uri)} refused {what} "
                f"({type(error).__name__}: {reason}); skipped",
                file=sys.stderr,
            )
        return None

    def trial_started(self, trial_id: str, run_name: str, params: dict[str, str]) -> None:
        """Open the trial's run (made, or found and reopened) and log the params it lacks."""
        from mlflow.entities import Param
        from mlflow.utils.validation import MAX_PARAMS_TAGS_PER_BATCH

        run_id = self._run_id(trial_id)
        logged: Mapping[str, str] = {}
        if run_id is None:
            run = self.client.create_run(
                self.experiment_id,
                run_name=run_name,
                tags={PARENT_TAG: self.parent_run_id, TRIAL_ID_TAG: trial_id, STATUS_TAG: RUNNING},
            )
            run_id = self.run_ids[trial_id] = run.info.run_id
        else:  # a retry, a resumed search, or this very operation applied before
            self.client.update_run(run_id, status="RUNNING")
            self.client.set_tag(run_id, STATUS_TAG, RUNNING)
            run = self.client.get_run(run_id)
            if ERROR_TAG in run.data.tags:
                self.client.delete_tag(run_id, ERROR_TAG)  # the failure this retry recovers from
            logged = run.data.params
        entries = [Param(key, value) for key, value in params.items() if key not in logged]
        for start in range(0, len(entries), MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(run_id, params=entries[start : start + MAX_PARAMS_TAGS_PER_BATCH])

    def trial_result(
        self, trial_id: str, metrics: dict[str, float], step: int, timestamp_ms: int
    ) -> None:
        """Log one report's metrics on the trial's run, at `step` and the report's timestamp."""
        from mlflow.entities import Metric
        from mlflow.utils.validation import MAX_METRICS_PER_BATCH

        run_id = self._require_run(trial_id)
        entries = [Metric(key, value, timestamp_ms, step) for key, value in metrics.items()]
        for start in range(0, len(entries), MAX_METRICS_PER_BATCH):
            self.client.log_batch(run_id, metrics=entries[start : start + MAX_METRICS_PER_BATCH])

    def trial_ended(self, trial_id: str, status: TrialStatus, error: str | None) -> None:
        """Close the trial's run: its status tag, its error if any, and its MLflow status."""
        run_id = self._require_run(trial_id)
        self.client.set_tag(run_id, STATUS_TAG, status)
        if error:
            self.client.set_tag(run_id, ERROR_TAG, error)
        self.client.set_terminated(run_id, status=RUN_STATUS[status])

    def log_artifact(self, path: str) -> None:
        """Attach the file at `path` to the parent run."""
        self.client.log_artifact(self.parent_run_id, path)

    def finish(self, status: str) -> None:
        """Close the child runs still open as interrupted, then the parent run with `status`
        and its state tag."""
        still_open = "attributes.status = 'RUNNING'"
        for run in child_runs(self.client, self.experiment_id, self.parent_run_id, still_open):
            self.client.set_tag(run.info.run_id, STATUS_TAG, INTERRUPTED)
            self.client.set_terminated(run.info.run_id, status="KILLED")
        self.client.set_tag(self.parent_run_id, STATE_TAG, SEARCH_STATE[status])
        self.client.set_terminated(self.parent_run_id, status=status)

    def _run_id(self, trial_id: str) -> str | None:
        """The trial's run: known, or found by its trial id (made by an earlier attempt, by
        `sync`, or by the logger this one was pickled from)."""
        if trial_id not in self.run_ids:
            found = trial_runs(self.client, self.experiment_id, self.parent_run_id, trial_id)
            self.run_ids.update(found)
        return self.run_ids.get(trial_id)

    def _require_run(self, trial_id: str) -> str:
        run_id = self._run_id(trial_id)
        if run_id is None:
            raise KeyError(f"trial '{trial_id}' has no run in MLflow")
        return run_id


# Each operation a logger queues and journals (its "op") -> the method that applies it.
OPERATIONS: dict[str, Callable[..., None]] = {
    "trial_started": Runs.trial_started,
    "trial_result": Runs.trial_result,
    "trial_ended": Runs.trial_ended,
    "log_artifact": Runs.log_artifact,
    "finish": Runs.finish,
}

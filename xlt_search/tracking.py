"""MLflow: one parent run per search, one child run per trial, and loading a search back as a table.

Everything goes through `mlflow.MlflowClient` (no fluent API, no global active run), so logging from
the driver's Tune callback never touches a run another piece of code has open. MLflow is imported
inside the functions that need it.
"""

from __future__ import annotations

import math
import os
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
    "early_stopped": "KILLED",
    "errored": "FAILED",
}
RUNNING = "running"  # the `status` tag of a trial that has not ended
INTERRUPTED = "interrupted"  # the `status` tag of a trial still open when its search finished

ROLE_TAG = "xlt.role"  # "search" on the parent run
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
    one as a file store); None (MLflow's local default) passes. No network: specs check this."""
    if uri and urlparse(uri).scheme in ("", "file"):
        raise UserError(
            f"tracking URI '{uri}' is a file store, which MLflow has deprecated; "
            "use sqlite:///mlflow.db or an http:// tracking server"
        )


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


class SearchLogger:
    """Logs one search to MLflow: a parent run, and a child run per trial, from the driver.

    Params are logged once (MLflow params are immutable), metrics at `step=budget_steps`. Each
    child run carries Tune's trial id as a tag, so `resume` finds a search's runs again after a
    restart. The logger pickles (Tune stores its callbacks with the experiment); the client is made
    anew after unpickling.
    """

    def __init__(self, tracking_uri: str | None = None) -> None:
        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        self._client: MlflowClient | None = None
        self._experiment_id: str | None = None
        self._parent_run_id: str | None = None
        self._run_ids: dict[str, str] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_client": None}

    @property
    def client(self) -> MlflowClient:
        """The MLflow client for `tracking_uri`."""
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
        """Tune trial id -> MLflow run id of every trial logged so far (a copy)."""
        return dict(self._run_ids)

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
            tags={**{k: str(v) for k, v in tags.items()}, ROLE_TAG: "search"},
        )
        self._parent_run_id = run.info.run_id
        self.client.log_text(self._parent_run_id, spec_text, "spec.yaml")
        return self._parent_run_id

    def resume(self, parent_run_id: str) -> None:
        """Log into an existing search again: reopen its parent run and recover its trials' runs."""
        if self._parent_run_id is not None:
            raise RuntimeError(f"this logger already logs the search {self._parent_run_id}")
        parent = _get_run(self.client, parent_run_id, self.tracking_uri)
        self._experiment_id = parent.info.experiment_id
        self._parent_run_id = parent_run_id
        for run in _child_runs(self.client, self._experiment_id, parent_run_id):
            trial_id = run.data.tags.get(TRIAL_ID_TAG)
            if trial_id:
                self._run_ids[trial_id] = run.info.run_id
        self.client.update_run(parent_run_id, status="RUNNING")

    def trial_started(self, trial_id: str, run_name: str, params: Mapping[str, Any]) -> str:
        """Open the trial's child run and log its params; returns the run id.

        A trial that already has a run (a retry, or a resumed search) gets it back, reopened, and
        its params are not logged again.
        """
        parent = self._require_parent()
        run_id = self._run_ids.get(trial_id)
        if run_id is not None:
            self.client.update_run(run_id, status="RUNNING")
            self.client.set_tag(run_id, "status", RUNNING)
            if "error" in self.client.get_run(run_id).data.tags:
                self.client.delete_tag(run_id, "error")  # the failure this retry recovers from
            return run_id
        run = self.client.create_run(
            self._experiment_id,
            run_name=run_name,
            tags={PARENT_TAG: parent, TRIAL_ID_TAG: trial_id, "status": RUNNING},
        )
        run_id = self._run_ids[trial_id] = run.info.run_id
        from mlflow.entities import Param
        from mlflow.utils.validation import MAX_PARAMS_TAGS_PER_BATCH

        entries = [Param(key, str(value)) for key, value in params.items()]
        for start in range(0, len(entries), MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(run_id, params=entries[start : start + MAX_PARAMS_TAGS_PER_BATCH])
        return run_id

    def trial_result(self, trial_id: str, metrics: Mapping[str, float], step: int) -> None:
        """Log a report's metrics at `step` (the trial's budget_steps); skips NaN and inf."""
        from mlflow.entities import Metric
        from mlflow.utils.validation import MAX_METRICS_PER_BATCH

        run_id = self._require_trial(trial_id)
        now_ms = int(time.time() * 1000)
        entries = [
            Metric(key, float(value), now_ms, int(step))
            for key, value in metrics.items()
            if math.isfinite(float(value))
        ]
        for start in range(0, len(entries), MAX_METRICS_PER_BATCH):
            self.client.log_batch(run_id, metrics=entries[start : start + MAX_METRICS_PER_BATCH])

    def trial_ended(self, trial_id: str, status: TrialStatus, error: str | None = None) -> None:
        """Close the trial's run: `status` tag, MLflow run status, and the error's text if any."""
        if status not in RUN_STATUS:
            raise ValueError(f"trial status '{status}' is not one of {', '.join(RUN_STATUS)}")
        run_id = self._require_trial(trial_id)
        self.client.set_tag(run_id, "status", status)
        if error:
            self.client.set_tag(run_id, "error", error[:MAX_TAG_CHARS])
        self.client.set_terminated(run_id, status=RUN_STATUS[status])

    def finish(self, status: Literal["FINISHED", "FAILED", "KILLED"] = "FINISHED") -> None:
        """Close the parent run with `status`; trials still open are closed as `interrupted`."""
        parent = self._require_parent()
        still_open = "attributes.status = 'RUNNING'"
        for run in _child_runs(self.client, self._experiment_id, parent, still_open):
            self.client.set_tag(run.info.run_id, "status", INTERRUPTED)
            self.client.set_terminated(run.info.run_id, status="KILLED")
        self.client.set_terminated(parent, status=status)

    def log_artifact(self, path: Path | str) -> None:
        """Attach a file (the scaling curve's CSV or PNG) to the parent run."""
        self.client.log_artifact(self._require_parent(), str(path))

    def _require_parent(self) -> str:
        if self._parent_run_id is None:
            raise RuntimeError("call SearchLogger.start (or resume) before logging trials")
        return self._parent_run_id

    def _require_trial(self, trial_id: str) -> str:
        self._require_parent()
        if trial_id not in self._run_ids:
            raise KeyError(f"trial '{trial_id}' has no run; call trial_started first")
        return self._run_ids[trial_id]


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
)


def load_trials(
    experiment: str, tracking_uri: str | None = None, parent_run_id: str | None = None
) -> pd.DataFrame:
    """The trials of a search, one row per child run, from MLflow.

    The search is `parent_run_id`, or else the newest search run of `experiment`. Columns: those
    of TRIAL_COLUMNS (`score` and `budget_steps` are the last values reported), then every other
    metric, then every other param (`use.<task>` as booleans, numbers as numbers). Rows are sorted
    by `n_tasks`, then `tasks`.
    """
    import pandas as pd

    uri = resolve_tracking_uri(tracking_uri)
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    parent = _find_parent(client, experiment, uri, parent_run_id)
    parent_run_id, experiment_id = parent.info.run_id, parent.info.experiment_id
    rows = [_trial_row(run) for run in _child_runs(client, experiment_id, parent_run_id)]
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


def _trial_row(run: Run) -> dict[str, Any]:
    from xlt_search.subsets import parse_subset_key

    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
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

"""A search read back from MLflow: its trials as a table, what `resume` needs of it, the searches
of a store in brief (`xlt-search list`), and its parent run's tags, to which the report adds its
own conclusions and files.

Reading never makes a store: a SQLite file that is not there is refused in one line (MLflow would
make an empty store of it)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xlt_search.errors import UserError, did_you_mean
from xlt_search.names import (
    BUDGET_STEPS,
    COMPLETED,
    CONTROL_PARAM,
    ERROR_TAG,
    EXPERIMENT_PATH_TAG,
    MAX_TAG_CHARS,
    ROLE_TAG,
    RUN_STATUS,
    RUNNING,
    SCORE,
    SEARCH_ROLE,
    SPEC_ARTIFACT,
    STATE_TAG,
    STATUS_TAG,
    TRIAL_ID_TAG,
)
from xlt_search.tracking.queries import child_runs, get_run
from xlt_search.tracking.store import mlflow_client
from xlt_search.tracking.uri import masked, resolve_tracking_uri

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities import Experiment, Run

HISTORY_REQUESTS_AT_ONCE = 8  # metric histories `load_trials` reads at once (at_step)

# The first columns of `load_trials`, in this order; metrics and other params follow.
TRIAL_COLUMNS = (
    "run_id",
    "trial_id",
    "run_name",
    "tasks",
    "n_tasks",
    "status",
    "error",
    SCORE,
    BUDGET_STEPS,
    "start_time",  # the run's start, ms since the epoch: ties between trials go to the first
)


def load_trials(
    experiment: str,
    tracking_uri: str | None = None,
    parent_run_id: str | None = None,
    at_step: int | None = None,
    keys: tuple[str, ...] | None = None,
) -> pd.DataFrame:
    """The trials of a search, one row per child run, from MLflow.

    The search is `parent_run_id`, or else the newest search run of `experiment`. Columns: those
    of TRIAL_COLUMNS (`score` and `budget_steps` are the last values reported, or with `at_step`
    the last reported at a budget_steps of at most `at_step`, every metric alike), then every
    other metric, then every other param (`use.<task>` as booleans, numbers as numbers). Rows are
    sorted by `n_tasks`, then `tasks`. With `at_step`, `keys` (names, or prefixes that end in
    ".") names the only metrics read: each costs a request per run that went past the step.
    """
    import pandas as pd

    uri = resolve_tracking_uri(tracking_uri)
    client = mlflow_client(uri, must_exist=True)
    parent = _find_parent(client, experiment, uri, parent_run_id)
    parent_run_id, experiment_id = parent.info.run_id, parent.info.experiment_id
    runs = list(child_runs(client, experiment_id, parent_run_id))
    if at_step is None:
        rows = [_trial_row(run) for run in runs]
    else:  # a request per metric of each run that went past it: several at once
        with ThreadPoolExecutor(HISTORY_REQUESTS_AT_ONCE) as pool:
            at = pool.map(lambda run: _metrics_at(client, run, at_step, keys), runs)
            rows = [_trial_row(run, metrics) for run, metrics in zip(runs, at, strict=True)]
    table = pd.DataFrame(rows)
    for column in TRIAL_COLUMNS:
        if column not in table:
            table[column] = pd.Series(dtype=float if column in (SCORE, BUDGET_STEPS) else object)
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
    uri = resolve_tracking_uri(tracking_uri)
    client = mlflow_client(uri, must_exist=True)
    parent = _find_parent(client, experiment, uri, parent_run_id)
    path = parent.data.tags.get(EXPERIMENT_PATH_TAG)
    if not path:
        raise UserError(
            f"search run {parent.info.run_id} does not say where its Tune experiment is "
            f"(no {EXPERIMENT_PATH_TAG} tag); it cannot be resumed"
        )
    spec_text = _spec_text(client, parent.info.run_id)
    if not spec_text:
        raise UserError(
            f"search run {parent.info.run_id} has no {SPEC_ARTIFACT}: the spec it ran is unknown"
        )
    return FoundSearch(parent.info.run_id, uri, spec_text, path)


@dataclass(frozen=True)
class SearchSummary:
    """A search in brief, as `xlt-search list` shows it: its parent run and its trials' runs."""

    experiment: str
    run_id: str
    run_name: str
    state: str  # the parent run's state tag: running, finished, failed or interrupted
    start_time_ms: int
    trials_logged: int  # trial runs, ended or not
    trials_ended: dict[str, int]  # per ending status (completed, early_stopped, errored)
    best_score: float | None  # the best completed trial's score (None: no trial completed)
    best_tasks: str | None  # its subset's key ('' for the baseline)
    spec_text: str  # the spec the search ran ('' if its run has none)


def list_searches(
    tracking_uri: str | None = None, experiment: str | None = None
) -> list[SearchSummary]:
    """The searches of the store (of `experiment` only, if given), the newest first."""
    uri = resolve_tracking_uri(tracking_uri)
    client = mlflow_client(uri, must_exist=True)
    if experiment is not None:
        experiments = {_active_experiment(client, experiment, uri).experiment_id: experiment}
    else:
        experiments = {e.experiment_id: e.name for e in client.search_experiments()}
    return [
        _summary(client, experiments[parent.info.experiment_id], parent)
        for parent in _search_runs(client, list(experiments))
    ]


def _search_runs(client: MlflowClient, experiment_ids: list[str]) -> Iterator[Run]:
    """The parent runs of searches in these experiments, the newest first, page by page."""
    token = None
    while experiment_ids:
        page = client.search_runs(
            experiment_ids,
            filter_string=f"tags.`{ROLE_TAG}` = '{SEARCH_ROLE}'",
            order_by=["attributes.start_time DESC"],
            page_token=token,
        )
        yield from page
        token = page.token
        if not token:
            return


def _summary(client: MlflowClient, experiment: str, parent: Run) -> SearchSummary:
    trials = list(child_runs(client, parent.info.experiment_id, parent.info.run_id))
    statuses = [run.data.tags.get(STATUS_TAG) for run in trials]
    completed = [
        run
        for run, status in zip(trials, statuses, strict=True)
        if status == COMPLETED
        and math.isfinite(run.data.metrics.get(SCORE, math.nan))
        and not run.data.params.get(CONTROL_PARAM)  # a control is a reference, not a candidate
    ]
    best = max(completed, key=lambda run: run.data.metrics[SCORE], default=None)
    return SearchSummary(
        experiment=experiment,
        run_id=parent.info.run_id,
        run_name=parent.info.run_name,
        state=parent.data.tags.get(STATE_TAG, RUNNING),
        start_time_ms=parent.info.start_time,
        trials_logged=len(trials),
        trials_ended={status: statuses.count(status) for status in RUN_STATUS},
        best_score=best.data.metrics[SCORE] if best else None,
        best_tasks=best.data.params.get("tasks", "") if best else None,
        spec_text=_spec_text(client, parent.info.run_id),
    )


def _spec_text(client: MlflowClient, run_id: str) -> str:
    """The spec logged on a search's parent run ('' if it has none)."""
    import tempfile

    if not any(f.path == SPEC_ARTIFACT for f in client.list_artifacts(run_id)):
        return ""
    with tempfile.TemporaryDirectory() as folder:
        return Path(client.download_artifacts(run_id, SPEC_ARTIFACT, folder)).read_text()


def _active_experiment(client: MlflowClient, experiment: str, uri: str) -> Experiment:
    """The MLflow experiment named `experiment`; one line naming the ones there if it has none."""
    found = client.get_experiment_by_name(experiment)
    if found is None or found.lifecycle_stage != "active":
        names = [e.name for e in client.search_experiments()]
        raise UserError(
            f"no MLflow experiment '{experiment}' at {masked(uri)}"
            f"{did_you_mean(experiment, names)}; "
            f"the experiments there: {', '.join(names) or 'none'} "
            "(pass --tracking-uri or set $MLFLOW_TRACKING_URI to the search's store)"
        )
    return found


def _find_parent(client: MlflowClient, experiment: str, uri: str, parent_run_id: str | None) -> Run:
    """The parent run `parent_run_id` of `experiment`, or its newest search run."""
    found = _active_experiment(client, experiment, uri)
    if parent_run_id is None:
        parents = client.search_runs(
            [found.experiment_id],
            filter_string=f"tags.`{ROLE_TAG}` = '{SEARCH_ROLE}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if not parents:
            raise UserError(
                f"MLflow experiment '{experiment}' at {masked(uri)} holds no search; "
                "run `xlt-search run SPEC` with this experiment first"
            )
        return parents[0]
    parent = get_run(client, parent_run_id, uri)
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
    client = mlflow_client(resolve_tracking_uri(tracking_uri), must_exist=True)
    for path in paths:
        client.log_artifact(parent_run_id, str(path))


def search_tags(tracking_uri: str | None, parent_run_id: str) -> dict[str, str]:
    """The tags of a search's parent run."""
    client = mlflow_client(resolve_tracking_uri(tracking_uri), must_exist=True)
    return dict(client.get_run(parent_run_id).data.tags)


def mark_search(
    tracking_uri: str | None,
    parent_run_id: str,
    tags: Mapping[str, str],
    metrics: Mapping[str, float],
) -> None:
    """Set tags and metrics (at step 0) on a search's parent run, as its report concludes."""
    client = mlflow_client(resolve_tracking_uri(tracking_uri), must_exist=True)
    for key, value in tags.items():
        client.set_tag(parent_run_id, key, value[:MAX_TAG_CHARS])
    for key, value in metrics.items():
        client.log_metric(parent_run_id, key, float(value), step=0)


def _metrics_at(
    client: MlflowClient, run: Run, step: int, keys: tuple[str, ...] | None
) -> dict[str, float]:
    """Each of the run's metrics (those `keys` names, or all) as last reported at a step of at
    most `step` (left out if none was)."""
    prefixes = tuple(k for k in keys or () if k.endswith("."))
    wanted = [k for k in run.data.metrics if keys is None or k in keys or k.startswith(prefixes)]
    # Every report logs budget_steps at its own step: a run that never reported past `step`
    # has its last values there, and needs no history (a request per metric).
    if run.data.metrics.get(BUDGET_STEPS, math.inf) <= step:
        return {key: run.data.metrics[key] for key in wanted}
    found = {}
    for key in wanted:
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
        "status": tags.get(STATUS_TAG, RUNNING),
        "error": tags.get(ERROR_TAG),
        **metrics,
        **{key: value for key, value in params.items() if key not in ("tasks", "n_tasks")},
        SCORE: metrics.get(SCORE, math.nan),
        BUDGET_STEPS: metrics.get(BUDGET_STEPS, math.nan),
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

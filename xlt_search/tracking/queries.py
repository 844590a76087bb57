"""Finding a search's runs in an MLflow store: a run by its id, the parent's child runs, and each
trial's run by its Tune trial id."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from xlt_search.errors import UserError
from xlt_search.names import PARENT_TAG, TRIAL_ID_TAG
from xlt_search.tracking.uri import masked

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run


def get_run(client: MlflowClient, run_id: str, uri: str) -> Run:
    """The run `run_id` of the store at `uri`; a one-line UserError if the store has none."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException:
        raise UserError(
            f"no MLflow run {run_id} at {masked(uri)}; check the run id, or leave it out to take "
            "the newest search"
        ) from None


def child_runs(
    client: MlflowClient, experiment_id: str, parent_run_id: str, condition: str = ""
) -> Iterator[Run]:
    """The parent's child runs (those meeting `condition`, if given), oldest first, page by page.

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


def trial_runs(
    client: MlflowClient, experiment_id: str, parent_run_id: str, trial_id: str | None = None
) -> dict[str, str]:
    """Trial id -> run id of the parent's child runs (of that one trial, if given)."""
    condition = f"tags.`{TRIAL_ID_TAG}` = '{trial_id}'" if trial_id is not None else ""
    runs = child_runs(client, experiment_id, parent_run_id, condition)
    return {
        run.data.tags[TRIAL_ID_TAG]: run.info.run_id
        for run in runs
        if run.data.tags.get(TRIAL_ID_TAG)
    }

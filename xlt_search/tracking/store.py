"""The MLflow client of a store: a new SQLite store made under a lock, a missing one refused where
a search is read back rather than logged."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from xlt_search.errors import UserError

if TYPE_CHECKING:
    from mlflow import MlflowClient


def mlflow_client(uri: str, must_exist: bool = False) -> MlflowClient:
    """An MLflow client of the store at `uri` (a resolved tracking URI).

    MLflow makes a new SQLite store's tables, or migrates them, when its first client opens it;
    two processes doing that at once break each other's migration. Here it happens under an flock
    on `<file>.lock` beside the database, so two searches starting at once on a new store both
    run. With `must_exist` (reading a search: report, resume, export, sync), a SQLite file that
    is not there is a one-line UserError, and nothing is made.
    """
    from mlflow import MlflowClient

    if urlsplit(uri).password:
        # MLflow prints a "View run ... at: URI" line for each run it closes on a server, the
        # password in it.
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    database = sqlite_path(uri)
    if database is None:
        return MlflowClient(tracking_uri=uri)
    if must_exist and not database.is_file():
        raise UserError(
            f"no MLflow store at {database} (no such file); pass --tracking-uri or set "
            "$MLFLOW_TRACKING_URI to the store the search logged to"
        )
    with _locked(database):
        return MlflowClient(tracking_uri=uri)


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///` tracking URI (None for any other store, or one in
    memory)."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix):
        return None
    path = uri[len(prefix) :].partition("?")[0]
    return Path(path) if path and path != ":memory:" else None


@contextlib.contextmanager
def _locked(database: Path) -> Iterator[None]:
    import fcntl

    lock = database.with_name(database.name + ".lock")
    try:
        file = lock.open("a")
    except OSError as error:
        raise UserError(
            f"MLflow store {database}: cannot make it ({error.strerror}); point the tracking "
            "URI at a file in a writable folder that exists"
        ) from None
    with file:
        fcntl.flock(file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(file, fcntl.LOCK_UN)

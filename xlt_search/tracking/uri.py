"""The tracking URI: which one a search logs to, whether MLflow can serve it, and whether its server
answers (before the search, and for each error while it runs)."""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from xlt_search.errors import UserError

# The schemes MLflow itself serves (SQLAlchemy's dialect+driver forms among them).
_TRACKING_SCHEMES = frozenset({"http", "https", "sqlite", "postgresql", "mysql", "mssql"})


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


def unreachable(error: BaseException) -> bool:
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

"""The tracking URI: which one a search logs to, whether MLflow can serve it, whether its server
answers and takes the credentials (before the search), which errors are worth trying again (while
it runs), and the one mask that hides its password from every line printed or stored."""

from __future__ import annotations

import base64
import errno
import os
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from xlt_search.errors import UserError

# The schemes MLflow itself serves (SQLAlchemy's dialect+driver forms among them).
_TRACKING_SCHEMES = frozenset({"http", "https", "sqlite", "postgresql", "mysql", "mssql"})
MASK = "***"  # what printed lines, journals and logged specs hold in place of a password


def masked(text: str, uri: str | None = None) -> str:
    """`text` with the password of `uri`'s user info replaced by MASK; `uri` None: `text` is the
    URI. `http://user:pass@host:5000` becomes `http://user:***@host:5000`, and a spec naming that
    URI names the masked one. Everything that prints or stores a tracking URI goes through here."""
    password = _raw_password(text if uri is None else uri)
    if not password or password == MASK:
        return text
    return text.replace(f":{password}@", f":{MASK}@")


def resolve_tracking_uri(uri: str | None) -> str:
    """The tracking URI to use: `uri`, else $MLFLOW_TRACKING_URI, else MLflow's default.

    A relative sqlite path is made absolute, so the store stays put if the working directory
    changes. A URI whose password is masked (read back from a journal or a logged spec) gets the
    real one back: $MLFLOW_TRACKING_URI when it names the same place, else
    $MLFLOW_TRACKING_PASSWORD; a one-line UserError when neither is set.
    """
    if not uri:
        import mlflow

        uri = mlflow.get_tracking_uri()  # honours $MLFLOW_TRACKING_URI; default sqlite:///mlflow.db
    uri = _unmasked(uri)
    prefix = "sqlite:///"
    if uri.startswith(prefix):
        path, _, query = uri[len(prefix) :].partition("?")
        if path and path != ":memory:" and not Path(path).is_absolute():
            uri = f"{prefix}{Path(path).resolve()}" + (f"?{query}" if query else "")
    return uri


def _raw_password(uri: str) -> str | None:
    """The password of the URI's user info, as written (percent-encoded); None if it has none."""
    userinfo, at, _ = urlsplit(uri).netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    return password if at and colon else None


def _unmasked(uri: str) -> str:
    if _raw_password(uri) != MASK:
        return uri
    from_environment = os.environ.get("MLFLOW_TRACKING_URI")
    if from_environment and masked(from_environment) == uri:
        return from_environment
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if password:
        return uri.replace(f":{MASK}@", f":{quote(password, safe='')}@", 1)
    raise UserError(
        f"tracking URI {uri} has its password masked (journals and logged specs keep it so); "
        "pass the whole URI with --tracking-uri or $MLFLOW_TRACKING_URI, or set "
        "$MLFLOW_TRACKING_PASSWORD"
    )


def check_tracking_scheme(uri: str | None) -> None:
    """Refuse, with a one-line UserError, the deprecated `file:` store or a bare path (MLflow reads
    one as a file store), or a scheme MLflow has no store for; None (MLflow's local default)
    passes. No network: specs check this."""
    scheme = urlsplit(uri or "").scheme
    if uri and scheme in ("", "file"):
        raise UserError(
            f"tracking URI '{masked(uri)}' is a file store, which MLflow has deprecated; "
            "use sqlite:///mlflow.db or an http:// tracking server"
        )
    if not uri or scheme.split("+")[0] in _TRACKING_SCHEMES:
        return
    from mlflow.tracking._tracking_service.utils import _tracking_store_registry

    if scheme not in _tracking_store_registry._registry:  # a plugin may add schemes
        raise UserError(
            f"tracking URI '{masked(uri)}': MLflow has no tracking store for '{scheme}://'; set "
            "mlflow.tracking_uri (or $MLFLOW_TRACKING_URI) to sqlite:///mlflow.db, an http:// "
            "tracking server or a database (postgresql://...)"
        )


def check_tracking_uri(uri: str | None, timeout_s: float = 3.0) -> None:
    """Fail fast, with a one-line UserError, on a tracking URI a search could not log to.

    `uri` None means $MLFLOW_TRACKING_URI, else MLflow's local default (nothing to check). The
    deprecated `file:` store (or a bare path, which MLflow reads as one) is refused; an http(s)
    server must answer within `timeout_s` seconds, and take the credentials when there are some
    (the URI's user info, else $MLFLOW_TRACKING_USERNAME and $MLFLOW_TRACKING_PASSWORD).
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    check_tracking_scheme(uri)
    if not uri or urlsplit(uri).scheme not in ("http", "https"):
        return
    uri = _unmasked(uri)
    parts = urlsplit(uri)
    base = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2])).rstrip("/")
    status = _status(f"{base}/health", {}, timeout_s)
    if status in (502, 504):
        status = f"HTTP {status} from a proxy or gateway in front of it"
    if isinstance(status, int):  # it answered: a server is there, even if it has no such page
        credentials = _credentials(uri)
        probe = f"{base}/api/2.0/mlflow/experiments/search?max_results=1"
        if credentials and _status(probe, {"Authorization": credentials}, timeout_s) in (401, 403):
            raise UserError(
                f"MLflow tracking server {masked(uri)} refuses the credentials (HTTP 401 or "
                "403); check the user and password in the URI, or $MLFLOW_TRACKING_USERNAME "
                "and $MLFLOW_TRACKING_PASSWORD"
            )
        return
    host = parts.hostname or "127.0.0.1"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    raise UserError(
        f"MLflow tracking server {masked(uri)} is unreachable ({status}); start one with "
        f"`mlflow server --backend-store-uri sqlite:///mlflow.db --host {host} --port {port}` "
        "or set mlflow.tracking_uri (or $MLFLOW_TRACKING_URI) to a running server, "
        "or leave both unset to log to sqlite:///mlflow.db"
    )


def _status(url: str, headers: dict[str, str], timeout_s: float) -> int | str:
    """The HTTP status a server answered `url` with, or why none answered."""
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, headers=headers), timeout=timeout_s
        ):
            return 200
    except urllib.error.HTTPError as error:
        return error.code
    except (urllib.error.URLError, OSError) as error:
        return str(getattr(error, "reason", error))


def _credentials(uri: str) -> str | None:
    """The Basic authorization MLflow's client sends to `uri`: its user info, else
    $MLFLOW_TRACKING_USERNAME and $MLFLOW_TRACKING_PASSWORD; None without both parts."""
    parts = urlsplit(uri)
    if parts.password is not None:
        user, password = unquote(parts.username or ""), unquote(parts.password)
    else:
        user = os.environ.get("MLFLOW_TRACKING_USERNAME", "")
        password = os.environ.get("MLFLOW_TRACKING_PASSWORD", "")
    if not (user and password):
        return None
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def retry_reason(error: BaseException) -> str | None:
    """Why applying an operation is worth trying again later, said as it follows `MLflow at URI`
    (`is unreachable`, ...); None when it is not (MLflow refused the operation itself).

    MLflow 3 raises an MlflowException whose `__context__` is requests' ConnectionError
    (connection refused), Timeout or RetryError (5xx answers until its own retries ran out), or,
    for a SQLite store, sqlite3's OperationalError (locked by another search, a full disk).
    """
    import sqlite3

    import requests

    unreachable = (
        requests.exceptions.ConnectionError,
        requests.exceptions.Timeout,
        requests.exceptions.RetryError,
        ConnectionError,
        TimeoutError,
    )
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, unreachable):
            return "is unreachable"
        if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
            return f"cannot write ({cause.strerror})"
        if isinstance(cause, sqlite3.OperationalError):
            message = str(cause)
            if any(word in message for word in ("locked", "full", "unable to open", "I/O")):
                return f"cannot write ({message})"
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None

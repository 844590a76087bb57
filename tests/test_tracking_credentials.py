"""A tracking URI with credentials: it works (its user info, or MLflow's own
$MLFLOW_TRACKING_USERNAME / $MLFLOW_TRACKING_PASSWORD), and its password is masked in every line
printed and everything stored (the journal, the logged spec, MLflow's params and tags).

MLflow's own basic-auth server (`mlflow server --app-name basic-auth`) needs Flask-WTF, which is
not installed here; the server that checks the credentials is a loopback proxy in front of a real
`mlflow server`, that answers 401 to a request without the right Basic authorization and records
what it was sent."""

from __future__ import annotations

import base64
import http.client
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from processes import MlflowServer, run_cli, serving
from search_specs import search_spec, write_spec

from xlt_search import tracking
from xlt_search.errors import UserError
from xlt_search.tracking import SearchLogger

USER, PASSWORD = "ada", "s3cr:t@pw"  # a password that needs percent-encoding in a URI
IN_URI = "s3cr%3At%40pw"
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


def with_userinfo(uri: str, password: str = IN_URI) -> str:
    return uri.replace("http://", f"http://{USER}:{password}@")


@pytest.mark.parametrize(
    ("text", "uri", "shown"),
    [
        ("http://ada:pw@host:5000", None, "http://ada:***@host:5000"),
        (f"https://ada:{IN_URI}@host/prefix", None, "https://ada:***@host/prefix"),
        ("postgresql://ada:pw@db:5432/mlflow", None, "postgresql://ada:***@db:5432/mlflow"),
        ("http://ada@host:5000", None, "http://ada@host:5000"),  # no password: nothing to hide
        ("sqlite:////data/mlflow.db", None, "sqlite:////data/mlflow.db"),
        ("http://ada:***@host", None, "http://ada:***@host"),
        (
            "mlflow:\n  tracking_uri: 'http://ada:pw@host:5000'\n",
            "http://ada:pw@host:5000",
            "mlflow:\n  tracking_uri: 'http://ada:***@host:5000'\n",
        ),
    ],
)
def test_the_mask_hides_the_password_alone(text: str, uri: str | None, shown: str) -> None:
    assert tracking.masked(text, uri) == shown


def test_a_masked_uri_gets_its_password_from_the_environment_or_says_how(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = with_userinfo("http://127.0.0.1:5000")
    shown = tracking.masked(real)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", real)
    assert tracking.resolve_tracking_uri(shown) == real
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:6000")  # another server
    with pytest.raises(UserError) as error:
        tracking.resolve_tracking_uri(shown)
    assert str(error.value) == (
        "tracking URI http://ada:***@127.0.0.1:5000 has its password masked (journals and "
        "logged specs keep it so); pass the whole URI with --tracking-uri or "
        "$MLFLOW_TRACKING_URI, or set $MLFLOW_TRACKING_PASSWORD"
    )
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    assert tracking.resolve_tracking_uri(shown) == real


@pytest.fixture
def locked_server() -> Iterator[str]:
    """A loopback server whose /health answers anyone and whose API answers only BASIC."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            allowed = self.path == "/health" or self.headers.get("Authorization") == BASIC
            self.send_response(200 if allowed else 401)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    with serving(Handler) as url:
        yield url


def test_the_check_before_a_search_sends_the_credentials(
    locked_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    tracking.check_tracking_uri(with_userinfo(locked_server))
    tracking.check_tracking_uri(locked_server)  # no credentials: the server answered, that is all
    wrong = with_userinfo(locked_server, "nope")
    with pytest.raises(UserError) as error:
        tracking.check_tracking_uri(wrong)
    assert str(error.value).startswith(
        f"MLflow tracking server {tracking.masked(wrong)} refuses the credentials (HTTP 401 or "
        "403); check the user and password"
    )
    assert "nope" not in str(error.value)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", USER)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    tracking.check_tracking_uri(locked_server)


def test_printed_lines_show_the_uri_masked(tmp_path: Path) -> None:
    from processes import free_port

    port = free_port()  # nobody listens there
    uri = f"http://{USER}:{IN_URI}@127.0.0.1:{port}"
    spec = write_spec(tmp_path, search_spec("creds", tmp_path, mlflow={"tracking_uri": uri}))
    plan = run_cli("run", str(spec), "--dry-run", cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr
    assert f"mlflow      experiment 'creds' at http://{USER}:***@127.0.0.1:{port}" in plan.stdout
    prepare = run_cli("prepare", str(spec), cwd=tmp_path)
    assert prepare.returncode == 2
    assert prepare.stderr.splitlines()[-1].startswith(
        f"xlt-search: error: MLflow tracking server http://{USER}:***@127.0.0.1:{port} is "
        "unreachable ("
    )
    assert f"--host 127.0.0.1 --port {port}`" in prepare.stderr  # not the user info as a host
    for output in (plan.stdout + plan.stderr, prepare.stdout + prepare.stderr):
        assert IN_URI not in output and PASSWORD not in output


class AuthProxy:
    """A loopback HTTP proxy to `upstream` that refuses (401) every request but /health without
    BASIC, and keeps the Authorization header of each other request it was sent."""

    def __init__(self, upstream: str) -> None:
        self.upstream, self.seen = upstream.removeprefix("http://"), []
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path != "/health":
                    proxy.seen.append(self.headers.get("Authorization"))
                if self.path != "/health" and self.headers.get("Authorization") != BASIC:
                    self.send_response(401)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                upstream = http.client.HTTPConnection(proxy.upstream, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                upstream.request(self.command, self.path, body, headers)
                answer = upstream.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in ("transfer-encoding", "content-length", "connection"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                upstream.close()

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = forward

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.uri = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AuthProxy]:
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"):
        monkeypatch.setenv(name, "")  # what a logger sets in its process is undone after the test
        monkeypatch.delenv(name)
    server = MlflowServer(tmp_path)
    server.start()
    front = AuthProxy(server.uri)
    yield front
    front.close()
    server.stop()


def everything_stored(uri: str, parent_run_id: str, folder: Path) -> str:
    """The parent's and the children's params and tags, and the logged spec, as one text."""
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    parent = client.get_run(parent_run_id)
    children = client.search_runs(
        [parent.info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_run_id}'"
    )
    spec = Path(client.download_artifacts(parent_run_id, "spec.yaml", str(folder))).read_text()
    runs = [{**run.data.params, **run.data.tags} for run in (parent, *children)]
    return json.dumps(runs) + spec


@pytest.mark.e2e
def test_credentials_reach_the_server_and_stay_out_of_every_line_and_store(
    proxy: AuthProxy, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    uri = with_userinfo(proxy.uri)
    shown = tracking.masked(uri)
    results = tmp_path / "results"
    spec_text = f"name: creds\nmlflow:\n  tracking_uri: '{uri}'\n"
    tracking.check_tracking_uri(uri)
    logger = SearchLogger(uri, journal_dir=results)
    parent_run_id = logger.start("creds", "search", spec_text, tags={})
    logger.trial_started("t1", "k1-syn_a", {"tasks": "syn_a", "n_tasks": 1})
    logger.trial_result("t1", {"score": 0.5, "budget_steps": 10}, 10)
    logger.trial_ended("t1", "completed")
    assert logger.finish() == 0
    assert proxy.seen and set(proxy.seen) == {BASIC}  # every request carried the password
    stored = everything_stored(uri, parent_run_id, tmp_path)
    assert f"tracking_uri: '{shown}'" in stored
    journal = logger.journal
    assert journal is not None
    assert json.loads(journal.read_text().splitlines()[0])["tracking_uri"] == shown
    printed = capfd.readouterr()
    for text in (stored, *(p.read_text() for p in results.iterdir()), printed.out + printed.err):
        assert IN_URI not in text and PASSWORD not in text

    # The journal keeps the masked URI: sync takes the password from the environment.
    journal.with_suffix(".delivered").unlink()
    refused = run_cli("sync", str(results))
    assert refused.returncode == 2 and refused.stderr.splitlines()[-1] == (
        f"xlt-search: error: tracking URI {shown} has its password masked (journals and logged "
        "specs keep it so); pass the whole URI with --tracking-uri or $MLFLOW_TRACKING_URI, or "
        "set $MLFLOW_TRACKING_PASSWORD"
    )
    for env in ({"MLFLOW_TRACKING_URI": uri}, {"MLFLOW_TRACKING_PASSWORD": PASSWORD}):
        journal.with_suffix(".delivered").unlink(missing_ok=True)
        synced = run_cli("sync", str(results), env=env)
        assert synced.returncode == 0, synced.stderr[-2000:]
        assert synced.stdout.splitlines()[-1] == (
            f"delivered 4 logging operations from {results} to MLflow"
        )
        assert IN_URI not in synced.stdout + synced.stderr


@pytest.mark.e2e
def test_mlflows_own_credential_variables_work(
    proxy: AuthProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", USER)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    tracking.check_tracking_uri(proxy.uri)
    logger = SearchLogger(proxy.uri, journal_dir=tmp_path / "results")
    logger.start("creds", "search", "name: creds\n", tags={})
    logger.trial_started("t1", "k1-syn_a", {"tasks": "syn_a", "n_tasks": 1})
    assert logger.finish() == 0
    assert proxy.seen and set(proxy.seen) == {BASIC}
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "nope")
    with pytest.raises(UserError, match="refuses the credentials"):
        tracking.check_tracking_uri(proxy.uri)

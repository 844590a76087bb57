"""Which Ray a search runs on, and a Ray that cannot start or be joined: one line, exit status 2.

The end-to-end test starts a `ray start --head` cluster on loopback (its own temp folder and
ports, ended by its process group) where Ray's own default would join it, then checks that a
plain `xlt-search run` starts a local instance of its own instead, bound to 127.0.0.1 only (the
listening TCP sockets of every process of the search's session), says where it stands while its
trials run, and that `--address` or `RAY_ADDRESS` joins the cluster.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from processes import Hold, free_port, kill_group, run_cli, start_cli, wait_for
from search_specs import search_spec, write_spec

from xlt_search.errors import UserError
from xlt_search.search.ray_instance import LOCAL, RayTarget, ray_target, startup_error

RAY = str(Path(sys.executable).with_name("ray"))


def test_a_search_starts_a_local_instance_unless_told_a_cluster(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert ray_target(None) == RayTarget(LOCAL, "")
    monkeypatch.setenv("RAY_ADDRESS", "")
    assert ray_target(None).local
    monkeypatch.setenv("RAY_ADDRESS", "local")
    assert ray_target(None).local
    monkeypatch.setenv("RAY_ADDRESS", "auto")  # the cluster `ray start` made here: Ray finds it
    assert ray_target(None) == RayTarget("auto", "RAY_ADDRESS")
    assert ray_target("local").local  # --address wins over RAY_ADDRESS
    with socket.create_server(("127.0.0.1", 0)) as server:  # a cluster that answers
        address = f"127.0.0.1:{server.getsockname()[1]}"
        assert ray_target(address) == RayTarget(address, "--address")
        monkeypatch.setenv("RAY_ADDRESS", address)  # as `ray job submit` sets it
        assert ray_target(None) == RayTarget(address, "RAY_ADDRESS")


@pytest.mark.parametrize(
    ("address", "says"),
    [
        ("head-node", "--address 'head-node': expected HOST:PORT"),
        ("ray://127.0.0.1:10001", "a Ray Client address, which xlt-search does not use"),
        ("127.0.0.1:{port}", "Ray: nothing answers at 127.0.0.1:{port} (from --address)"),
    ],
)
def test_an_address_that_cannot_be_joined_is_refused_in_one_line(address: str, says: str) -> None:
    port = free_port()  # nothing listens there once free_port has closed it
    with pytest.raises(UserError) as raised:
        ray_target(address.format(port=port))
    assert says.format(port=port) in str(raised.value)
    assert "\n" not in str(raised.value)


def test_ray_timing_out_at_startup_names_the_busy_machine() -> None:
    # The exception and text Ray 2.60 raises when its raylet does not register within 30 s
    # (ray/_private/node.py); a machine busy enough to cause it is not one a test can order.
    timed_out = Exception(
        "The current node timed out during startup. This could happen because some of the "
        "raylet failed to startup or the GCS has become overloaded."
    )
    line = str(startup_error(RayTarget(LOCAL, ""), timed_out))
    assert line.startswith(
        "Ray: a local instance did not start (Exception: The current node timed out during startup."
    )
    assert "too busy for Ray's processes to start within Ray's fixed 30 s" in line
    joining = str(startup_error(RayTarget("10.0.0.1:6379", "RAY_ADDRESS"), ConnectionError("x")))
    assert joining.startswith("Ray: could not join the cluster at 10.0.0.1:6379 (from RAY_ADDRESS)")
    assert "RAY_AUTH_MODE=token ray status --address 10.0.0.1:6379" in joining


def _small_spec(tmp_path: Path, name: str, **changes) -> Path:
    return write_spec(tmp_path, search_spec(name, tmp_path, pool_size=2, **changes))


def test_a_cluster_that_does_not_answer_stops_the_search_before_its_data(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    address = f"127.0.0.1:{free_port()}"
    result = run_cli(
        "run",
        str(_small_spec(tmp_path, "nobody")),
        "--address",
        address,
        cwd=tmp_path,
        env={"MLFLOW_TRACKING_URI": f"sqlite:///{db}"},
    )
    assert result.returncode == 2, result.stderr[-2000:]
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"xlt-search: error: Ray: nothing answers at {address} (from --address)")
    assert "preparing data" not in result.stdout  # checked first: it costs a connection
    assert not db.exists() and not (tmp_path / "runs").exists()


def test_a_ray_that_does_not_start_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """A real `ray.init` failure: Ray's temp folder is a file (`RAY_TMPDIR`)."""
    in_the_way = tmp_path / "not-a-folder"
    in_the_way.write_text("")
    db = tmp_path / "mlflow.db"
    result = run_cli(
        "run",
        str(_small_spec(tmp_path, "no-ray")),
        cwd=tmp_path,
        env={"MLFLOW_TRACKING_URI": f"sqlite:///{db}", "RAY_TMPDIR": str(in_the_way)},
    )
    assert result.returncode == 2, result.stderr[-2000:]
    line = result.stderr.strip().splitlines()[-1]  # Ray's notice about its auth comes first
    assert line.startswith(
        "xlt-search: error: Ray: a local instance did not start (NotADirectoryError: "
    )
    assert f"under {in_the_way}/ray ($RAY_TMPDIR): it must be a folder this user can write" in line
    assert "Traceback" not in result.stderr
    assert not db.exists() and not (tmp_path / "runs").exists()
    assert in_the_way.read_text() == ""


def _session_processes(session_id: int) -> list[int]:
    """The processes of a session (a search started with start_new_session=True: its driver
    and the Ray it started), and their descendants."""
    parents: dict[int, int] = {}
    members = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            # the fields after the command's closing parenthesis: state, ppid, pgrp, session
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended since the listing
        parents[int(entry)] = int(fields[1])
        if int(fields[3]) == session_id:
            members.add(int(entry))
    grew = True
    while grew:
        children = {pid for pid, parent in parents.items() if parent in members} - members
        members |= children
        grew = bool(children)
    return sorted(members)


def _listening_sockets(pids: list[int]) -> list[tuple[str, int, str]]:
    """(address, port, process name) of every listening TCP socket the processes hold, read
    from /proc/net/tcp and tcp6 and mapped to them through their /proc/PID/fd links."""
    owner: dict[str, str] = {}
    for pid in pids:
        try:
            name = Path(f"/proc/{pid}/cmdline").read_text().split("\0")[0]
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    owner[link[len("socket:[") : -1]] = Path(name).name or name
        except OSError:
            continue  # ended, or a descriptor closed since the listing
    found = []
    for table in ("tcp", "tcp6"):
        for row in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = row.split()
            if fields[3] != "0A" or fields[9] not in owner:  # 0A: LISTEN
                continue
            hex_address, hex_port = fields[1].split(":")
            raw = bytes.fromhex(hex_address)
            # the kernel prints the address as 32-bit words in host (little-endian) order
            words = struct.unpack(f"<{len(raw) // 4}I", raw)
            address = ipaddress.ip_address(struct.pack(f">{len(words)}I", *words))
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
                address = address.ipv4_mapped  # ::ffff:127.0.0.1 is the IPv4 address
            found.append((str(address), int(hex_port, 16), owner[fields[9]]))
    return found


def test_the_socket_reader_sees_what_a_process_listens_on() -> None:
    """A known answer for `_listening_sockets`: sockets this process binds itself."""
    with contextlib.ExitStack() as sockets:
        everywhere = sockets.enter_context(socket.create_server(("0.0.0.0", 0)))
        loopback = sockets.enter_context(socket.create_server(("127.0.0.1", 0)))
        mapped = sockets.enter_context(socket.socket(socket.AF_INET6))
        mapped.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # as Ray's servers bind
        mapped.bind(("::ffff:127.0.0.1", 0))
        mapped.listen()
        sockets.enter_context(socket.socket())  # not listening: not listed
        found = {(address, port) for address, port, _ in _listening_sockets([os.getpid()])}
        assert ("0.0.0.0", everywhere.getsockname()[1]) in found
        assert ("127.0.0.1", loopback.getsockname()[1]) in found
        assert ("127.0.0.1", mapped.getsockname()[1]) in found  # IPv4 on an IPv6 socket
        assert len(found) == 3


def _ray_sessions(ray_tmp: Path) -> set[str]:
    return {p.name for p in (ray_tmp / "ray").glob("session_2*")}


STATUS = re.compile(
    r"^status: (\d+) running, (\d+) pending, (\d+) done, (\d+) stopped, (\d+) errored \| "
    r"elapsed \S+ \| (\d+) of at most (\d+) budget_steps, (ETA unknown|[\d.]+/s, ETA at most \S+)"
    r" \| best completed(: none yet| [\d.]+ k=\d+ \S+)$"
)


@pytest.mark.e2e
def test_a_local_search_binds_loopback_says_where_it_stands_and_joins_only_when_told(
    tmp_path: Path,
) -> None:
    # One Ray temp folder for the cluster and the searches: where Ray's default would find it
    # (short: Ray's socket paths under it may not exceed 107 bytes).
    ray_tmp = Path(tempfile.mkdtemp(prefix="xlt-ray-", dir="/tmp"))
    env = {
        "RAY_TMPDIR": str(ray_tmp),
        "RAY_AUTH_MODE": "token",
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    port, head_log = free_port(), tmp_path / "head.log"
    head = subprocess.Popen(
        [
            RAY, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
            f"--ray-client-server-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}", f"--metrics-export-port={free_port()}",
            "--include-dashboard=false", "--num-cpus=1", "--disable-usage-stats",
        ],
        # Loopback even on a machine with other interfaces (Ray's single-node setting).
        env={**os.environ, **env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_ADDRESS": ""},
        stdout=head_log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # the cluster's daemons stay in this process group
    )  # fmt: skip
    try:
        assert head.wait(timeout=180) == 0, head_log.read_text()[-3000:]
        address = f"127.0.0.1:{port}"
        head_sessions = _ray_sessions(ray_tmp)
        assert len(head_sessions) == 1

        # Ray's own default, ray.init() with no address, joins that cluster (1 CPU) ...
        default = subprocess.run(
            [sys.executable, "-c", "import ray; ray.init(); print(ray.cluster_resources()['CPU'])"],
            env={**os.environ, **env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_ADDRESS": ""},
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert default.stdout.strip().splitlines()[-1] == "1.0", default.stderr[-2000:]

        # ... and so does a search told to, by --address or RAY_ADDRESS: its trial's 2 CPUs
        # are more than the cluster's 1, so it stops there, before anything is written.
        two_cpus = _small_spec(tmp_path, "joins", resources={"cpu": 2, "gpu": 0})
        for how, options, extra in (
            ("--address", ["--address", address], {}),
            ("RAY_ADDRESS", [], {"RAY_ADDRESS": address}),
        ):
            joined = run_cli("run", str(two_cpus), *options, cwd=tmp_path, env={**env, **extra})
            assert joined.returncode == 2, joined.stderr[-3000:]
            assert f"Ray: the cluster at {address} (1 node, 1 CPUs, 0 GPUs; from {how})" in (
                joined.stdout.splitlines()
            )
            assert joined.stderr.strip().splitlines()[-1] == (
                "xlt-search: error: resources.cpu: 2 per trial, but the cluster has 1 CPUs; lower it"
            )
        # Joining without the cluster's token fails in ray.init itself (after Ray's retries).
        no_token = run_cli(
            "run",
            str(two_cpus),
            "--address",
            address,
            cwd=tmp_path,
            env={**env, "RAY_AUTH_MODE": "disabled"},
        )
        assert no_token.returncode == 2, no_token.stderr[-3000:]
        assert (
            no_token.stderr.strip()
            .splitlines()[-1]
            .startswith(
                f"xlt-search: error: Ray: could not join the cluster at {address} (from --address): "
            )
        )
        assert "Traceback" not in no_token.stderr
        assert _ray_sessions(ray_tmp) == head_sessions  # joined: no instance of their own

        # A plain run starts its own instance, bound to 127.0.0.1, even with the cluster there.
        hold = Hold(tmp_path / "hold", budget_steps=20)
        out, err = tmp_path / "search.out", tmp_path / "search.err"
        spec = _small_spec(tmp_path, "local")
        search = start_cli(
            "run", str(spec), "--status-every-s", "1", cwd=tmp_path, stdout=out, stderr=err,
            env={**env, **hold.env},
        )  # fmt: skip
        try:
            wait_for(lambda: len(hold.held()) == 2, "both trials held at budget_steps 20", search)
            # the status line while they are held: both running, 40 steps done, a rate
            wait_for(
                lambda: any(
                    line.startswith("status: 2 running, 0 pending, 0 done")
                    and "| 40 of at most 360 budget_steps, " in line
                    and "ETA at most" in line
                    for line in out.read_text().splitlines()
                ),
                "a status line with both trials running and a rate",
                search,
            )
            sockets = _listening_sockets(_session_processes(search.pid))
            hold.release()
            assert search.wait(timeout=600) == 0, err.read_text()[-3000:]
        finally:
            kill_group(search)
        names = {name for _, _, name in sockets}
        assert {"gcs_server", "raylet"} <= names, sockets  # and the driver, workers, agents
        assert len(sockets) >= 6, sockets
        assert {address for address, _, _ in sockets} == {"127.0.0.1"}, sockets
        assert len(_ray_sessions(ray_tmp) - head_sessions) == 1  # a session of its own

        lines = out.read_text().splitlines()
        assert re.fullmatch(r"Ray: a local instance on 127\.0\.0\.1 \(\d+ CPUs, 0 GPUs\)", lines[
            next(i for i, line in enumerate(lines) if line.startswith("Ray:"))
        ])  # fmt: skip
        statuses = [line for line in lines if line.startswith("status:")]
        assert all(STATUS.match(line) for line in statuses), statuses
        assert "ETA unknown" in statuses[0]  # before the first report
        assert statuses[-1].startswith("status: 0 running, 0 pending, 2 done, 0 stopped, 0 errored")
        assert "| 360 of at most 360 budget_steps, " in statuses[-1]
        finished = [line for line in lines if re.match(r"^\[\d/2\] completed ", line)]
        assert len(finished) == 2
        # each finished trial's line is followed by the status line
        assert all(lines[lines.index(line) + 1].startswith("status:") for line in finished)
        noise = out.read_text() + err.read_text()
        for hint in ("TensorBoard", "Configuration for experiment", "View detailed results", "%|"):
            assert hint not in noise
    finally:
        with contextlib.suppress(ProcessLookupError):  # the cluster: what `ray start` began
            os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(ray_tmp, ignore_errors=True)

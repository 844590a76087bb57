"""The Ray a search runs on: a local instance of its own, bound to 127.0.0.1, unless it is told to
join a cluster (`--address`, else `RAY_ADDRESS`, which `ray job submit` sets).

Ray's own default differs on both counts: with no address, `ray.init()` joins the cluster the
machine's last `ray start` made (another user's, maybe), and a local instance listens on every
interface (gcs_server, raylet, workers, agents), since Ray turns a loopback node address into the
machine's interface address. Ray keeps 127.0.0.1 only on a single-node machine, which
`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` declares (`ray/_private/services.py`,
`get_node_ip_address`); Ray reads it when it is imported, so it is set before.

A start that fails, a cluster that does not answer, is one line (`UserError`), never Ray's
traceback.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
from dataclasses import dataclass
from typing import Any

from xlt_search.errors import UserError
from xlt_search.search import interrupts

LOOPBACK = "127.0.0.1"
SINGLE_NODE_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray keeps a loopback address
LOCAL = "local"  # the address of a local instance of the search's own, as Ray spells it
CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class RayTarget:
    """Where a search's Ray is: `address` is "local", "auto" (the last `ray start` on this
    machine) or a cluster's HOST:PORT; `source` says who asked for it."""

    address: str
    source: str  # "--address", "RAY_ADDRESS", or "" for the default, a local instance

    @property
    def local(self) -> bool:
        """A local instance of the search's own."""
        return self.address == LOCAL

    @property
    def host_port(self) -> tuple[str, int] | None:
        """The cluster's host and port, when the address names them."""
        host, sep, port = self.address.rpartition(":")
        if not sep or not port.isdigit() or not host:
            return None
        return host.strip("[]"), int(port)


def ray_target(address: str | None) -> RayTarget:
    """The Ray a search uses: `address` (the `--address` option), else `$RAY_ADDRESS`, else a
    local instance. A cluster's HOST:PORT must answer (within `CONNECT_TIMEOUT_S`): Ray itself
    would retry for minutes."""
    source = "--address" if address else "RAY_ADDRESS"
    address = address or os.environ.get("RAY_ADDRESS", "").strip()
    if not address or address == LOCAL:
        return RayTarget(LOCAL, "")
    target = RayTarget(address, source)
    if "://" in address:
        raise UserError(
            f"{source} {address!r}: a Ray Client address, which xlt-search does not use; give "
            "the cluster's HOST:PORT from a machine of the cluster, or submit the search with "
            "`ray job submit` (see docs/cluster.md)"
        )
    if address != "auto" and target.host_port is None:
        raise UserError(
            f"{source} {address!r}: expected HOST:PORT (a Ray cluster's address, as "
            "`ray start --head` prints it), auto (the cluster `ray start` made on this machine) "
            "or local"
        )
    if target.host_port is not None:
        host, port = target.host_port
        try:
            socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
        except OSError as error:
            raise UserError(
                f"Ray: nothing answers at {address} (from {source}): "
                f"{error.strerror or error}; start the cluster there (`ray start --head "
                "--port PORT`) or correct the address; without --address and RAY_ADDRESS "
                "a search starts a local Ray instance of its own"
            ) from None
    return target


def start_ray(target: RayTarget) -> Any:
    """Start the search's local Ray instance, or join the cluster of `target`, and print which
    (one line); returns the `ray` module. A failure is a UserError."""
    if target.local or _is_loopback(target):
        # A loopback cluster's address stays 127.0.0.1 too: Ray would dial the interface.
        os.environ[SINGLE_NODE_ENV] = "0"
    # Every report checkpoints (one checkpoint per trial, so a trial resumes mid-phase), which
    # forces Tune to snapshot its state as often; its warning about that is the design, not news.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    with interrupts.held():  # a Ctrl-C stops the search once Ray has started (interrupts says why)
        import ray

        if ray.is_initialized():
            return ray
        try:
            ray.init(address=target.address, log_to_driver=False, configure_logging=False)
        except Exception as error:
            with contextlib.suppress(Exception):
                ray.shutdown()  # what it had started of a local instance
            raise startup_error(target, error) from error
    print(describe(ray, target), flush=True)
    return ray


def describe(ray: Any, target: RayTarget) -> str:
    """The line that says which Ray the search uses, and its CPUs and GPUs."""
    resources = ray.cluster_resources()
    cpus, gpus = resources.get("CPU", 0.0), resources.get("GPU", 0.0)
    if target.local:
        where = f"a local instance on {ray.util.get_node_ip_address()}"
        return f"Ray: {where} ({cpus:g} CPUs, {gpus:g} GPUs)"
    nodes = sum(1 for node in ray.nodes() if node["Alive"])
    return (
        f"Ray: the cluster at {ray.get_runtime_context().gcs_address} ({nodes} "
        f"node{'s' if nodes != 1 else ''}, {cpus:g} CPUs, {gpus:g} GPUs; from {target.source})"
    )


def startup_error(target: RayTarget, error: Exception) -> UserError:
    """The one line for an exception out of `ray.init`: what failed, why, and what to do."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    cause = f"{type(error).__name__}: {lines[0] if lines else 'no message'}"[:300]
    if not target.local:
        return UserError(
            f"Ray: could not join the cluster at {target.address} (from {target.source}): "
            f"{cause}; check that it runs and that this machine has its token "
            f"(`RAY_AUTH_MODE=token ray status --address {target.address}`); without --address "
            "and RAY_ADDRESS a search starts a local Ray instance of its own"
        )
    if "timed out during startup" in cause:
        fix = (
            "the machine was too busy for Ray's processes to start within Ray's fixed 30 s; run "
            "the search again when it is less loaded"
        )
    elif isinstance(error, OSError):
        fix = (
            f"Ray keeps its session files under {_ray_files()}: it must be a folder this user "
            "can write, with a short path (Ray's socket paths may not exceed 107 bytes); set "
            "RAY_TMPDIR to one"
        )
    else:
        fix = f"--debug shows the traceback; Ray's logs are under {_ray_files()}/session_latest"
    return UserError(f"Ray: a local instance did not start ({cause}); {fix}")


def _is_loopback(target: RayTarget) -> bool:
    if target.host_port is None:
        return False
    host = target.host_port[0]
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host).is_loopback
    return host == "localhost"


def _ray_files() -> str:
    """Where Ray keeps its session files, in Ray's order of the variables (ray/_common/utils.py)."""
    for variable in ("RAY_TMPDIR", "TMPDIR"):
        if os.environ.get(variable):
            return f"{os.environ[variable]}/ray (${variable})"
    return "/tmp/ray"

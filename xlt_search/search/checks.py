"""The checks of a search's places before its trials start: storage, experiment, cluster, resources.

Each refuses, in one line that says what to change, what would otherwise fail minutes into the
search. The storage check and the experiment check need no Ray and run before it starts; the
cluster and resources checks read the Ray instance the search joined. (The model and the labels
are checked by `xlt_search.preflight`.)
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xlt_search.errors import UserError
from xlt_search.search.paths import cache_dir, is_uri

if TYPE_CHECKING:
    from xlt_search.spec import SearchSpec


def check_storage(spec: SearchSpec) -> None:
    """A local storage_path must be a folder this process can create and write in.

    Nothing is created here: a search stopped by a later check leaves no folder behind. A missing
    folder is checked through its nearest existing parent, where Tune will create it.
    """
    if is_uri(spec.storage_path):
        return
    folder = Path(spec.storage_path).resolve()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    try:
        if not existing.is_dir():
            raise NotADirectoryError(20, "Not a directory")
        probe = existing / f".xlt-search-write-{uuid.uuid4().hex}"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise UserError(
            f"storage_path: {folder} cannot hold the search's results ({error.strerror or error}); "
            "point storage_path at a writable folder (on a cluster, one every node mounts) or "
            "at cloud storage (s3://..., gs://...)"
        ) from None


def check_experiment(path: str) -> None:
    """Refuse, in one line, an experiment folder that is gone or holds a damaged checkpoint."""
    from xlt_search.trial import STATE_FILE, check_checkpoint

    if is_uri(path):
        return  # Tune reads cloud storage itself and reports what it cannot find
    folder = Path(path)
    if not (folder / "tuner.pkl").is_file():
        raise UserError(
            f"{folder} holds no Tune experiment (no tuner.pkl): the search's storage_path was "
            "moved or deleted; restore it there, or start the search again with xlt-search run"
        )
    for state in sorted(folder.glob(f"*/checkpoint_*/{STATE_FILE}")):
        try:
            check_checkpoint(state.parent)
        except ValueError as error:
            raise UserError(
                f"{error}; delete that checkpoint folder ({state.parent}) so its trial restarts "
                "from its previous checkpoint or from scratch, then resume again"
            ) from None


def check_cluster(spec: SearchSpec, ray: Any) -> None:
    """On a cluster of several nodes, results must reach every node and MLflow must be a server."""
    from xlt_search import tracking

    nodes = [node for node in ray.nodes() if node["Alive"]]
    if len(nodes) < 2:
        return
    uri = tracking.resolve_tracking_uri(spec.tracking_uri)
    if not uri.startswith(("http://", "https://")):
        raise UserError(
            f"mlflow.tracking_uri: {tracking.masked(uri)} is a store on this machine, but the "
            f"Ray cluster has {len(nodes)} nodes; use an http:// MLflow server every search can "
            "reach (`mlflow server --host 0.0.0.0 --port 5000`), e.g. mlflow.tracking_uri: "
            "http://HEAD:5000"
        )
    for key, folder in (
        ("storage_path", spec.storage_path),
        ("data.cache_dir", str(cache_dir(spec))),
    ):
        if is_uri(folder):
            continue
        missing = _nodes_missing(ray, nodes, Path(folder).resolve())
        if missing:
            raise UserError(
                f"{key}: {Path(folder).resolve()} is not shared: {len(missing)} of the cluster's "
                f"{len(nodes)} nodes ({', '.join(missing[:3])}) cannot see it; use a folder "
                "mounted on every node (NFS) or cloud storage (s3://..., gs://...)"
            )


def _nodes_missing(ray: Any, nodes: list[dict], folder: Path) -> list[str]:
    """The nodes (by address) that do not see a marker file written in `folder` by this process."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / f".xlt-search-shared-{uuid.uuid4().hex}"
    marker.write_text("")

    @ray.remote(num_cpus=0)
    def sees(path: str) -> bool:
        return Path(path).exists()

    try:
        checks = [
            sees.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
            ).remote(str(marker))
            for node in nodes
        ]
        seen = ray.get(checks, timeout=60)
    finally:
        marker.unlink(missing_ok=True)
    return [node["NodeManagerAddress"] for node, ok in zip(nodes, seen, strict=True) if not ok]


def check_resources(spec: SearchSpec, available: dict[str, float]) -> None:
    """A trial's resources must fit the cluster's (`available`: Ray's `cluster_resources()`)."""
    cpus, gpus = available.get("CPU", 0.0), available.get("GPU", 0.0)
    if spec.resources.gpu > 0 and gpus == 0:
        raise UserError(
            f"resources.gpu: {spec.resources.gpu:g} asks for a GPU but the Ray cluster has none; "
            "set resources.gpu: 0 to train on CPUs, or run on a cluster with GPUs"
        )
    if spec.resources.gpu > gpus:
        raise UserError(
            f"resources.gpu: {spec.resources.gpu:g} per trial, but the cluster has {gpus:g} GPUs"
        )
    if spec.resources.cpu > cpus:
        raise UserError(
            f"resources.cpu: {spec.resources.cpu:g} per trial, but the cluster has {cpus:g} CPUs; "
            "lower it"
        )

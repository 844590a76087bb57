"""Where a search keeps its files: Tune's experiment, the local results folder, the data cache.

The storage path of a spec is a local folder or a URI (s3://..., gs://...); Tune keeps each search
in a folder of it named after the search's run.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xlt_search.spec import SearchSpec


def is_uri(path: str) -> bool:
    """Whether a storage path is a URI (cloud storage) rather than a local folder."""
    return "://" in path


def experiment_path(spec: SearchSpec, run_name: str) -> str:
    """Where Tune keeps the search (results, checkpoints, its state): a URI or an absolute path."""
    if is_uri(spec.storage_path):
        return f"{spec.storage_path.rstrip('/')}/{run_name}"
    return str(Path(spec.storage_path).resolve() / run_name)


def results_dir(spec: SearchSpec, run_name: str) -> Path:
    """A local folder for the curve's files: the experiment's own, or ./xlt_results/<run> when the
    experiment lives in cloud storage (the files are logged to MLflow either way)."""
    if is_uri(spec.storage_path):
        return Path("xlt_results").resolve() / run_name
    return Path(spec.storage_path).resolve() / run_name


def cache_dir(spec: SearchSpec) -> Path:
    """The folder of the prepared (tokenized) splits: the spec's, else one under the cache root."""
    from xlt_search.synthetic import cache_root

    return Path(spec.data.cache_dir) if spec.data.cache_dir else cache_root() / "prepared"

"""What the benchmarks share."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import yaml


def isolate(work: Path) -> None:
    """Every cache and store this run (and Ray's workers, which it starts) write goes under `work`
    (each starts empty there), offline, without progress bars, and `work` becomes the working
    directory."""
    import datasets
    from transformers.utils import logging as transformers_logging

    os.environ.update(
        XLT_SEARCH_CACHE=str(work / "xlt-cache"),
        HF_HOME=str(work / "hf"),
        HF_DATASETS_CACHE=str(work / "hf" / "datasets"),
        HF_HUB_OFFLINE="1",
        MLFLOW_TRACKING_URI=f"sqlite:///{work}/mlflow.db",
        MPLCONFIGDIR=str(work / "matplotlib"),
        RAY_ADDRESS="",
        RAY_USAGE_STATS_ENABLED="0",
    )
    datasets.config.HF_DATASETS_CACHE = Path(os.environ["HF_DATASETS_CACHE"])
    datasets.disable_progress_bars()
    transformers_logging.disable_progress_bar()
    os.chdir(work)


def run_search(spec: dict, folder: Path) -> tuple[str, float]:
    """Run `spec` through the CLI in `folder`; returns its tracking URI and wall seconds."""
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump({**spec, "storage_path": str(folder / "runs")}))
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "xlt_search", "run", str(path)],
        cwd=folder,
        env={**os.environ, "MLFLOW_TRACKING_URI": uri, "RAY_ADDRESS": ""},
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return uri, time.perf_counter() - started

"""What the benchmarks share."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
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


def run_search(
    spec: dict,
    folder: Path,
    command: str = "run",
    *,
    tracking_uri: str | None = None,
    driver: Sequence[str] = ("-m", "xlt_search"),
    options: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> tuple[str, float, float]:
    """Run `spec` through the CLI in `folder`; returns its tracking URI, its wall seconds, and
    the CPU seconds of the driver process alone (sampled each second while it runs, so the last
    second's are missed; Ray's and the trials' processes are not counted).

    `tracking_uri` defaults to a SQLite store in `folder`; `driver` is the Python program that
    takes the CLI's arguments (`command`, the spec, then `options`); `env` goes over this
    process's environment."""
    import psutil

    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump({**spec, "storage_path": str(folder / "runs")}))
    uri = tracking_uri or f"sqlite:///{folder / 'mlflow.db'}"
    started = time.perf_counter()
    driver_process = subprocess.Popen(
        [sys.executable, *driver, command, str(path), *options],
        cwd=folder,
        env={**os.environ, "MLFLOW_TRACKING_URI": uri, "RAY_ADDRESS": "", **(env or {})},
        stdout=subprocess.DEVNULL,
    )
    cpu = 0.0
    while driver_process.poll() is None:
        try:
            times = psutil.Process(driver_process.pid).cpu_times()
            cpu = times.user + times.system
        except psutil.Error:  # it has just ended
            pass
        time.sleep(1.0)
    if driver_process.returncode:
        raise subprocess.CalledProcessError(driver_process.returncode, driver_process.args)
    return uri, time.perf_counter() - started, cpu


def timeline(experiment: str, uri: str) -> list[tuple[int, str, int, float, bool]]:
    """Every report of every trial as (time in ms, run id, budget_steps, score, final), by time."""
    from mlflow import MlflowClient

    from xlt_search.tracking import load_trials

    client = MlflowClient(tracking_uri=uri)
    events = []
    for run_id in load_trials(experiment, uri)["run_id"]:
        history = {
            key: {m.step: m for m in client.get_metric_history(run_id, key)}
            for key in ("score", "final")
        }
        for step, score in history["score"].items():
            final = step in history["final"] and history["final"][step].value == 1.0
            events.append((score.timestamp, run_id, step, score.value, final))
    return sorted(events)

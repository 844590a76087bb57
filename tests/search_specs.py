"""The tests' search specs: one base, tests/specs/e2e.yaml, changed key by key, as data or a file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

E2E_SPEC = Path(__file__).resolve().parent / "specs" / "e2e.yaml"

# The phases of a search that tests the machinery: 60 + 60 x 2 budget_steps a trial, a report
# every 20, FIFO.
SMALL_BUDGET: dict[str, Any] = {
    "intermediate_steps": 60,
    "target_steps": 60,
    "report_every_steps": 20,
    "probe_steps": 5,
    "scheduler": "fifo",
}


def search_spec(
    name: str,
    work: Path | None = None,
    *,
    pool_size: int | None = None,
    base: Path = E2E_SPEC,
    **changes: Any,
) -> dict[str, Any]:
    """The spec at `base` (the e2e spec: a quickstart-sized search on the synthetic suite) as
    search `name`, logging to the MLflow experiment `name`, as plain data.

    `work`: the search stores its results under `work/runs`. `pool_size`: a search that tests the
    machinery, not the answer: the first `pool_size` pool tasks, one subset of each size and no
    baseline, and `SMALL_BUDGET`. `changes` replace top-level keys, last.
    """
    raw = yaml.safe_load(base.read_text())
    raw.update(name=name, mlflow={"experiment": name})
    if work is not None:
        raw["storage_path"] = str(work / "runs")
    if pool_size is not None:
        raw.update(
            pool=raw["pool"][:pool_size],
            subsets={
                "sampler": "stratified",
                "sizes": list(range(1, pool_size + 1)),
                "per_size": 1,
                "baseline": False,
            },
            budget=dict(SMALL_BUDGET),
        )
    raw.update(changes)
    return raw


def write_spec(folder: Path, raw: dict[str, Any]) -> Path:
    """`raw` written as `folder/<its name>.yaml`; returns that path."""
    path = folder / f"{raw['name']}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path

"""What the benchmarks share."""

from __future__ import annotations

import os
from pathlib import Path


def isolate(work: Path) -> None:
    """Every cache this run writes goes under `work` (each starts empty there), offline, without
    progress bars, and `work` becomes the working directory."""
    import datasets
    from transformers.utils import logging as transformers_logging

    os.environ.update(
        XLT_SEARCH_CACHE=str(work / "xlt-cache"),
        HF_HOME=str(work / "hf"),
        HF_DATASETS_CACHE=str(work / "hf" / "datasets"),
        HF_HUB_OFFLINE="1",
    )
    datasets.config.HF_DATASETS_CACHE = Path(os.environ["HF_DATASETS_CACHE"])
    datasets.disable_progress_bars()
    transformers_logging.disable_progress_bar()
    os.chdir(work)

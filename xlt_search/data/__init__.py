"""Task data: loading through `datasets`, tokenization per task kind, the prepared cache, batching."""

from xlt_search.data import coverage
from xlt_search.data.batches import (
    LENGTH_GROUP_BATCHES,
    TRAIN_COLUMNS,
    BatchStream,
    collate,
    eval_batches,
)
from xlt_search.data.cache import FORMAT_VERSION, PreparedData, SplitRequest, prepare_data
from xlt_search.data.controls import augmented, load_synonyms
from xlt_search.data.coverage import SplitCoverage, text_batches
from xlt_search.data.errors import DataError, DataUnavailable
from xlt_search.data.layouts import files_id, mirror_error, read_files, resolve_files
from xlt_search.data.loading import load_task_split
from xlt_search.data.sources import share_rows
from xlt_search.data.tokenization import PAIR_KINDS, SEGMENTS, span_windows, tokenize

__all__ = [
    "FORMAT_VERSION",
    "LENGTH_GROUP_BATCHES",
    "PAIR_KINDS",
    "SEGMENTS",
    "TRAIN_COLUMNS",
    "BatchStream",
    "DataError",
    "DataUnavailable",
    "PreparedData",
    "SplitCoverage",
    "SplitRequest",
    "augmented",
    "collate",
    "coverage",
    "eval_batches",
    "files_id",
    "load_synonyms",
    "load_task_split",
    "mirror_error",
    "prepare_data",
    "read_files",
    "resolve_files",
    "share_rows",
    "span_windows",
    "text_batches",
    "tokenize",
]

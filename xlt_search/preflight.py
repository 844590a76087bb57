"""Checks a search makes before it starts anything: the model is one, the data's labels fit the
task's declaration. Each failure is one `UserError` line that names the fix.

`check_model` is cheap without `load` (`xlt-search run --dry-run`: a local folder exists and holds a
model's files; a hub id is checked against the hub and this machine's Hugging Face cache,
`check_hub_model`); with it, the folder's config is read and a synthetic model is generated.
"""

from __future__ import annotations

import functools
import os
import re
import socket
import sys
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow.compute as pc

from xlt_search.errors import UserError

if TYPE_CHECKING:
    import datasets

    from xlt_search.tasks.base import Task

CONFIG_FILE = "config.json"
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "sentencepiece.bpe.model",
    "spiece.model",
    "vocab.txt",
    "vocab.json",
    "tokenizer.model",
)
HUB_CONNECT_TIMEOUT_S = 5.0
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_MAKE_ONE = (
    "point model at a folder written by save_pretrained (config.json, the weights and the "
    "tokenizer's files), at a hub id, or at one `xlt-search encoder SPEC DIR` builds"
)


def check_model(name: str, *, load: bool = False) -> str:
    """The model's local folder (a ``synthetic:`` one generated when `load`), or its hub id.

    A name that exists on disk, or reads as a path (``/``, ``.``, ``~``, more than one ``/``), must
    be a folder with a config, weights and a tokenizer; with `load` its config is read too. A hub
    id is left to loading, which knows whether the hub or its cache has it.
    """
    if name.startswith("synthetic:"):
        from xlt_search.synthetic import SYNTHETIC_MODEL, resolve_model

        if load or name != SYNTHETIC_MODEL:
            return resolve_model(name)  # an unknown name is refused before anything is made
        return name
    folder = Path(name).expanduser()
    if not folder.exists():
        if _HUB_ID.match(name) and "--" not in name and ".." not in name:
            check_hub_model(name, required=load)
            return name
        raise UserError(f"model: the folder {folder.absolute()} does not exist; {_MAKE_ONE}")
    if not folder.is_dir():
        raise UserError(f"model: {folder} is a file, not a model folder; {_MAKE_ONE}")
    missing = [
        what
        for what, files in (
            (CONFIG_FILE, (CONFIG_FILE,)),
            ("weights (model.safetensors or pytorch_model.bin)", WEIGHT_FILES),
            ("tokenizer (tokenizer.json or tokenizer_config.json)", TOKENIZER_FILES),
        )
        if not any((folder / file).is_file() for file in files)
    ]
    if missing:
        raise UserError(
            f"model: {folder} is not a model folder (it has no {' and no '.join(missing)}); "
            f"{_MAKE_ONE}"
        )
    if load:
        from transformers import AutoConfig

        try:
            AutoConfig.from_pretrained(folder)
        except (OSError, ValueError, KeyError) as error:
            detail = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
            raise UserError(
                f"model: {folder / CONFIG_FILE} cannot be read ({detail}); {_MAKE_ONE}"
            ) from None
    return str(folder)


def check_hub_model(name: str, required: bool = True) -> None:
    """A hub model when the hub does not answer within HUB_CONNECT_TIMEOUT_S: one in this
    machine's cache switches the search to the cache alone (HF_HUB_OFFLINE=1, which Ray's
    workers inherit), one that is not is refused in one line when `required` (a dry run prints
    its plan first). The libraries would otherwise retry every file they look for, about 25 s
    each, before falling back to the cache or failing: 144 s for a cached model's config and
    tokenizer. With HF_HUB_OFFLINE set, nothing is asked. The first call of a command comes
    before the hub's libraries are imported: they read HF_HUB_OFFLINE then."""
    if os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE"):
        return
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    reason = _unanswered(endpoint)
    if reason is None:
        return
    cache = _hub_cache()
    if not _cached(cache, name):
        if not required:
            return
        raise UserError(
            f"model {name}: not in this machine's Hugging Face cache ({cache}) and the hub at "
            f"{endpoint} does not answer ({reason}); download it where the hub answers "
            f"(`hf download {name}`, then copy HF_HOME here), or point model at a folder "
            "save_pretrained wrote"
        )
    os.environ["HF_HUB_OFFLINE"] = "1"  # read by the libraries when imported: none is yet
    print(
        f"xlt-search: warning: the hub at {endpoint} does not answer ({reason}): the model and "
        "the hub's datasets are read from this machine's cache (HF_HUB_OFFLINE=1)",
        file=sys.stderr,
        flush=True,
    )


@functools.cache  # asked once a process: a command checks its model more than once
def _unanswered(endpoint: str) -> str | None:
    """Why the hub at `endpoint` does not take a connection, or None when it does."""
    parts = urllib.parse.urlsplit(endpoint)
    try:
        socket.create_connection(
            (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)),
            timeout=HUB_CONNECT_TIMEOUT_S,
        ).close()
    except OSError as error:
        return error.strerror or str(error)
    return None


def _hub_cache() -> Path:
    """The hub's cache folder, from the variables huggingface_hub reads when it is imported (not
    imported here: HF_HUB_OFFLINE may have to be set first)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    cache_home = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("HF_HOME") or Path(cache_home) / "huggingface").expanduser() / "hub"


def _cached(cache: Path, name: str) -> bool:
    """Whether the cache holds a snapshot of the model's main revision with its config."""
    folder = cache / f"models--{name.replace('/', '--')}"
    ref = folder / "refs" / "main"
    return (
        ref.is_file() and (folder / "snapshots" / ref.read_text().strip() / CONFIG_FILE).is_file()
    )


def check_labels(task: Task, dataset: datasets.Dataset, key: str) -> None:
    """Refuse a split whose class labels or tags fall outside the task's `num_labels` (for
    multiple choice: past the example's choices); -1 marks an unlabelled row or untagged word."""
    if task.kind not in ("classification", "multiple_choice", "tagging"):
        return
    table = dataset.with_format(None).data
    if dataset._indices is not None:  # a selection over the table: check the rows it holds
        table = dataset.flatten_indices().data
    if task.kind == "multiple_choice":
        labels = table.column("label").to_numpy()
        choices = pc.list_value_length(table.column("choices")).to_numpy(zero_copy_only=False)
        past = labels >= choices
        if past.any():
            row = int(np.argmax(past))
            raise UserError(
                f"task {task.key}: {int(past.sum())} examples of {key} have a label past their "
                f"choices (the first: label {labels[row]} of {choices[row]} choices, 0-based); "
                "fix the labels in its data, or the task's label column"
            )
        return
    column = table.column("tags").combine_chunks().flatten() if task.kind == "tagging" else None
    values = (column if column is not None else table.column("label")).to_numpy(
        zero_copy_only=False
    )
    outside = values >= task.num_labels
    if outside.any():
        what = "tags" if task.kind == "tagging" else "labels"
        raise UserError(
            f"task {task.key}: {key} has {what} up to {int(values.max())} ({int(outside.sum())} "
            f"outside the task's {task.num_labels} labels, 0 to {task.num_labels - 1}); set "
            f"tasks.{task.key}.num_labels in the spec to the number of classes, or fix the data"
        )

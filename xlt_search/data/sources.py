"""Where a task's data is, for one language, and what identifies it: a declaration's placeholders
filled in, a hub dataset's copy in the mirror, the rows a split takes of a shared source split,
and the digests of values and of files' contents that
fingerprints are made of."""

from __future__ import annotations

import hashlib
import json
import string
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from xlt_search.data.errors import DataError
from xlt_search.tasks.base import DataSource


def fill_placeholders(template: str, language: str) -> str:
    """Fill a DataSource string's placeholders; the synthetic suite is made only when named."""
    fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    unknown = fields - {"lang", "synthetic_root"}
    if unknown:
        raise DataError(
            f"unknown placeholder {{{sorted(unknown)[0]}}} in '{template}'; "
            "known: {lang}, {synthetic_root}"
        )
    values = {"lang": language}
    if "synthetic_root" in fields:
        from xlt_search.synthetic import ensure_suite

        values["synthetic_root"] = str(ensure_suite())
    return template.format(**values)


def local_copy(source: DataSource, mirror: str | Path | None) -> str:
    """The mirror's copy of a hub source, when it has one; otherwise the source's own path."""
    if mirror is not None and source.is_hub:
        local = Path(mirror).expanduser() / source.path
        if local.is_dir():
            return str(local)
    return source.path


def content_digest(files: Sequence[Path]) -> str:
    """A digest of the files' sizes and contents, in order (``missing:PATH`` for the first file
    that is not there, which loading then reports)."""
    hasher = hashlib.sha256()
    for path in files:
        if not path.is_file():
            return f"missing:{path}"
        hasher.update(f"{path.stat().st_size}:".encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                hasher.update(block)
    return hasher.hexdigest()


def digest(*parts: Any) -> str:
    """A hex digest of JSON-serializable `parts` (others by their `str`)."""
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


def share_rows(count: int, shares: Mapping[str, float], split: str, seed: int) -> list[int]:
    """The rows `split` takes of a source split of `count` rows that `shares` carves up.

    The rows are put in one order drawn with NumPy's ``default_rng(seed)`` and cut, in the order
    `shares` lists the splits, at ``round(cumulative share * count)``; each split keeps its rows in
    their source order. The draw depends on `count` and `seed` alone, so data that is parallel
    across languages (Belebele's 900 questions) is split the same way in every language.
    """
    order = np.random.default_rng(seed).permutation(count)
    start, cumulative = 0, 0.0
    for name, share in shares.items():
        cumulative += share
        end = round(cumulative * count)
        if name == split:
            return sorted(order[start:end].tolist())
        start = end
    raise DataError(f"split '{split}' has no share; the shares are for {', '.join(shares)}")

"""Where the synthetic suite lives: generated once per version into the cache, reused after."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from xlt_search.errors import UserError, did_you_mean
from xlt_search.synthetic.encoder import save_encoder
from xlt_search.synthetic.generate import MARKER_WORDS, SYNONYMS_FILE, write_data
from xlt_search.synthetic.world import build_world

# Part of the folder name: bump it whenever the generated files change, so no cache is reused stale.
# 3: the word-order target syn_lead; 4: translated intermediate data, the parallel corpus,
# synonyms and the two RS-DA targets
SUITE_VERSION = "4"
SYNTHETIC_MODEL = "synthetic:tiny-xlmr"
_SYNTHETIC_MODELS = (SYNTHETIC_MODEL,)


def cache_root() -> Path:
    """xlt-search's cache folder: ``$XLT_SEARCH_CACHE``, else ``~/.cache/xlt-search``."""
    return Path(os.environ.get("XLT_SEARCH_CACHE") or "~/.cache/xlt-search").expanduser()


_default_root = cache_root  # ensure_suite's parameter of the same name hides the function


def generate_suite(folder: Path) -> None:
    """Write the whole suite (data and encoder) into `folder`, which must not exist yet."""
    world = build_world()
    folder.mkdir(parents=True)
    write_data(world, folder / "data")
    words = [word for lexicon in world.lexicons.values() for word in lexicon]
    words += list(world.synonyms)
    save_encoder(words + list(MARKER_WORDS), folder / "encoder")


def synonyms_file(suite: Path) -> Path:
    """The suite's synonyms file (`data.synonyms` of an rs_da spec on the synthetic world)."""
    return suite / "data" / SYNONYMS_FILE


def ensure_suite(cache_root: Path | None = None) -> Path:
    """The suite's folder under `cache_root` (default: `cache_root()`), generated on first use.

    Generation goes to a temporary folder that is renamed into place, so concurrent callers and
    interrupted runs never see a half-written suite.
    """
    root = Path(cache_root) if cache_root is not None else _default_root()
    folder = root / f"synthetic-v{SUITE_VERSION}"
    if folder.is_dir():
        return folder
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".synthetic-", dir=root))
    try:
        generate_suite(staging / "suite")
        try:
            (staging / "suite").rename(folder)
        except OSError:
            if not folder.is_dir():  # lost the race to another process: its copy is identical
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def resolve_model(name: str) -> str:
    """The local folder for a ``synthetic:`` model name (generated if needed); any other name (a hub
    id or a path) unchanged."""
    if not name.startswith("synthetic:"):
        return name
    if name not in _SYNTHETIC_MODELS:
        raise UserError(
            f"unknown synthetic model '{name}'{did_you_mean(name, _SYNTHETIC_MODELS)}; "
            f"the built-in one is '{SYNTHETIC_MODEL}'"
        )
    return str(ensure_suite() / "encoder")

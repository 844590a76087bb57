"""The offline world: synthetic languages, tasks with planted relatedness, and a tiny encoder.

`ensure_suite()` generates it once into the cache (deterministic, atomic) and returns its folder:
``data/<task>/<split>.<language>.jsonl`` for `datasets.load_dataset("json", ...)`, and ``encoder/``
for `AutoModel` / `AutoTokenizer.from_pretrained`. The world is described in
`xlt_search.synthetic.world`; the task declarations and the ground truth (`RELATEDNESS`) are in
`xlt_search.tasks.synthetic`.
"""

from xlt_search.synthetic.suite import (
    SUITE_VERSION,
    SYNTHETIC_MODEL,
    cache_root,
    ensure_suite,
    generate_suite,
    resolve_model,
    synonyms_file,
)
from xlt_search.tasks.synthetic import DEFAULT_POOL, LANGUAGES, RELATEDNESS, TASKS

__all__ = [
    "DEFAULT_POOL",
    "LANGUAGES",
    "RELATEDNESS",
    "SUITE_VERSION",
    "SYNTHETIC_MODEL",
    "TASKS",
    "cache_root",
    "ensure_suite",
    "generate_suite",
    "resolve_model",
    "synonyms_file",
]

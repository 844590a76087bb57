"""The task registry: every task family file declares its tasks; this module collects them, with
the languages and the named pools of intermediate tasks."""

from __future__ import annotations

from collections.abc import Mapping

from xlt_search.errors import UnknownTaskError, did_you_mean
from xlt_search.tasks import (
    commonsense,
    languages,
    nli,
    paraphrase,
    qa,
    reasoning,
    retrieval,
    synthetic,
    tagging,
)
from xlt_search.tasks.base import Language, Task

_FAMILIES = (nli, paraphrase, qa, commonsense, reasoning, tagging, retrieval, synthetic)
REGISTRY: dict[str, Task] = {task.key: task for family in _FAMILIES for task in family.TASKS}
LANGUAGES: dict[str, Language] = {
    lang.code: lang for lang in (*languages.LANGUAGES, *synthetic.LANGUAGES)
}

# The nine intermediate tasks of Phang et al. (2020), the default pool of a real search.
PHANG2020_POOL: tuple[str, ...] = (
    "anli_plus",
    "mnli",
    "qqp",
    "squad",
    "squad_v2",
    "hellaswag",
    "ccg",
    "cosmos_qa",
    "commonsense_qa",
)
POOLS: dict[str, tuple[str, ...]] = {
    "phang2020": PHANG2020_POOL,
    "synthetic": synthetic.DEFAULT_POOL,
}


def get_task(key: str, registry: Mapping[str, Task] | None = None) -> Task:
    """The task `key` (of the registry, or of `registry`); an unknown key raises a one-line error
    that suggests the closest."""
    registry = REGISTRY if registry is None else registry
    try:
        return registry[key]
    except KeyError:
        raise UnknownTaskError(
            f"unknown task '{key}'{did_you_mean(key, registry)}; `xlt-search tasks` lists them"
        ) from None


def get_language(code: str, known: Mapping[str, Language] | None = None) -> Language:
    """The language `code` (of the registry, or of `known`)."""
    known = LANGUAGES if known is None else known
    try:
        return known[code]
    except KeyError:
        raise UnknownTaskError(
            f"unknown language '{code}'{did_you_mean(code, known)}; "
            "`xlt-search tasks` lists each task's languages"
        ) from None

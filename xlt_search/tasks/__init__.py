"""The task registry: every task family file declares its tasks and languages; this module collects them."""

from __future__ import annotations

from xlt_search.errors import UnknownTaskError, did_you_mean
from xlt_search.tasks import synthetic
from xlt_search.tasks.base import TASK_KINDS, DataSource, Language, Task, TaskKind

REGISTRY: dict[str, Task] = {task.key: task for task in synthetic.TASKS}
LANGUAGES: dict[str, Language] = {lang.code: lang for lang in synthetic.LANGUAGES}


def get_task(key: str) -> Task:
    """The registered task `key`; an unknown key raises a one-line error that suggests the closest."""
    try:
        return REGISTRY[key]
    except KeyError:
        raise UnknownTaskError(
            f"unknown task '{key}'{did_you_mean(key, REGISTRY)}; `xlt-search tasks` lists them"
        ) from None


def get_language(code: str) -> Language:
    """The registered language `code`."""
    try:
        return LANGUAGES[code]
    except KeyError:
        raise UnknownTaskError(
            f"unknown language '{code}'{did_you_mean(code, LANGUAGES)}; "
            "`xlt-search tasks` lists each task's languages"
        ) from None


__all__ = [
    "TASK_KINDS",
    "DataSource",
    "Language",
    "LANGUAGES",
    "REGISTRY",
    "Task",
    "TaskKind",
    "get_language",
    "get_task",
]

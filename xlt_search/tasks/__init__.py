"""Task declarations, one file per family, and the registry that collects them (`registry`)."""

from xlt_search.tasks.base import TASK_KINDS, DataSource, Language, Task, TaskKind
from xlt_search.tasks.registry import (
    LANGUAGES,
    PHANG2020_POOL,
    POOLS,
    REGISTRY,
    get_language,
    get_task,
)

__all__ = [
    "LANGUAGES",
    "PHANG2020_POOL",
    "POOLS",
    "REGISTRY",
    "TASK_KINDS",
    "DataSource",
    "Language",
    "Task",
    "TaskKind",
    "get_language",
    "get_task",
]

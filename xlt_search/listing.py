"""The tables the CLI prints: past searches (`xlt-search list`) and the tasks a registry holds
(`xlt-search tasks`), as rows of text cells, and the one function that aligns them."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from xlt_search.errors import UserError
from xlt_search.tasks import Task
from xlt_search.tracking.read import SearchSummary

Row = tuple[str, ...]


def search_rows(found: Iterable[SearchSummary]) -> list[Row]:
    """A header, then one row per search: name, experiment, state, start, trials ended of those
    its spec plans (with the count per ending), and the best completed score with its subset."""
    rows: list[Row] = [
        ("search", "experiment", "state", "started", "trials ended", "best (completed)")
    ]
    for search in found:
        counts = ", ".join(f"{n} {status}" for status, n in search.trials_ended.items() if n)
        trials = f"{sum(search.trials_ended.values())}/{planned_trials(search.spec_text)}"
        best = search.best_tasks or "(baseline)"
        rows.append(
            (
                search.run_name,
                search.experiment,
                search.state,
                time.strftime("%Y-%m-%d %H:%M", time.localtime(search.start_time_ms / 1000)),
                trials + (f" ({counts})" if counts else ""),
                "-" if search.best_score is None else f"{search.best_score:.4f} {best}",
            )
        )
    return rows


def planned_trials(spec_text: str) -> str:
    """The trials a logged spec plans; '?' when it no longer reads as a spec (an older one)."""
    import yaml

    from xlt_search.search.plan import make_plan
    from xlt_search.spec import parse_spec

    try:
        return str(make_plan(parse_spec(yaml.safe_load(spec_text))).num_trials)
    except (UserError, yaml.YAMLError):
        return "?"


def task_rows(registry: Mapping[str, Task]) -> list[Row]:
    """A header, then one row per task: key, kind, metric, where its data comes from, languages."""
    rows: list[Row] = [("task", "kind", "metric", "source", "languages")]
    for task in registry.values():
        languages = ",".join(task.languages) if len(task.languages) > 1 else "en only"
        rows.append((task.key, task.kind, task.metric, task.origin or "(your files)", languages))
    return rows


def print_table(rows: list[Row]) -> None:
    """Rows in aligned columns, the last one left ragged."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip())

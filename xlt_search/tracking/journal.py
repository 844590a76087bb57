"""The journal: every operation a logger queues, on disk first, with how many MLflow has taken, and
its replay (`sync`, `xlt-search sync`) for what a dead driver or an absent server left undelivered."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from xlt_search.errors import UserError
from xlt_search.tracking.queries import get_run, trial_runs
from xlt_search.tracking.runs import Runs
from xlt_search.tracking.uri import check_tracking_uri, resolve_tracking_uri

JOURNAL_PATTERN = "mlflow-journal-*.jsonl"  # a logger's journal, in the folder it was given


class Journal:
    """One logger's journal: a JSON header line (the store, experiment and parent run), then one
    JSON line per operation, appended before the operation is queued. Beside it,
    `<name>.delivered` holds how many operations MLflow has taken (replaced atomically after
    each); an flock on the journal keeps two processes (a search's driver and `xlt-search sync`)
    from delivering it at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.marker = path.with_suffix(".delivered")

    @classmethod
    def create(cls, folder: Path, header: Mapping[str, Any]) -> Journal:
        """A new journal in `folder`, numbered after those already there."""
        folder.mkdir(parents=True, exist_ok=True)
        number = len(journal_paths(folder))
        while True:
            path = folder / JOURNAL_PATTERN.replace("*", str(number))
            try:
                with path.open("x", encoding="utf-8") as file:
                    file.write(json.dumps(header) + "\n")
                return cls(path)
            except FileExistsError:
                number += 1  # another logger took this number first

    def append(self, operation: Mapping[str, Any]) -> None:
        """Add one operation at the end."""
        # Written through to the OS at once: a driver that dies loses nothing it logged.
        with self.path.open("a", encoding="utf-8") as file:
            file.write(json.dumps(operation, allow_nan=False) + "\n")

    def read(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The header and the operations; a last line cut short (a driver killed while writing
        it) is left out, as its operation was never queued."""
        *lines, _cut_short = self.path.read_text(encoding="utf-8").split("\n")
        records = []
        for number, line in enumerate(lines, 1):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise UserError(
                    f"MLflow journal {self.path} is damaged at line {number} ({error}); "
                    "mend or delete that line, then sync again"
                ) from None
        return (records[0] if records else {}), records[1:]

    def delivered(self) -> int:
        """How many operations, from the first, MLflow has taken."""
        try:
            return int(self.marker.read_text())
        except FileNotFoundError:
            return 0

    def mark_delivered(self, count: int) -> None:
        """Record that MLflow has taken the first `count` operations."""
        partial = self.marker.with_name(self.marker.name + ".partial")
        partial.write_text(str(count))
        os.replace(partial, self.marker)

    @contextlib.contextmanager
    def locked(self, wait_s: float | None = None) -> Iterator[None]:
        """Hold the journal's delivery lock, waiting for it at most `wait_s` seconds (None: as
        long as it takes); a UserError if another process keeps it longer."""
        import fcntl

        with self.path.open("rb") as file:
            if wait_s is None:
                fcntl.flock(file, fcntl.LOCK_EX)
            else:
                deadline = time.monotonic() + wait_s
                while True:
                    try:
                        fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() > deadline:
                            raise UserError(
                                f"another process is delivering {self.path} (is its search "
                                "still running?); sync again once it has ended"
                            ) from None
                        time.sleep(0.1)
            try:
                yield
            finally:
                fcntl.flock(file, fcntl.LOCK_UN)


def journal_paths(folder: Path) -> list[Path]:
    """The journals in `folder`, in the order their loggers made them."""
    prefix, suffix = JOURNAL_PATTERN.split("*")
    numbered = []
    for path in folder.glob(JOURNAL_PATTERN):
        number = path.name[len(prefix) : -len(suffix)]
        if number.isdigit():
            numbered.append((int(number), path))
    return [path for _, path in sorted(numbered)]


def sync(journal_dir: Path | str, tracking_uri: str | None = None) -> int:
    """Deliver to MLflow what the journals in `journal_dir` still hold; returns how many
    operations were delivered (0: nothing was left).

    `journal_dir` is the folder a `SearchLogger` journaled into (a search's results folder,
    `<storage_path>/<run name>`). Each journal goes to the tracking URI it names, or to
    `tracking_uri`, from where its delivered count stops. Every operation is safe to apply twice
    (a trial's run is looked up by its trial id before one is made, params already there are not
    logged again, and a metric goes with its report's timestamp, which MLflow keeps once), so the
    one a dead driver may have sent without hearing back is sent again harmlessly, and running
    sync twice logs nothing twice. A server that cannot be reached is a one-line UserError; what
    is left stays in the journal for the next sync.
    """
    folder = Path(journal_dir)
    paths = journal_paths(folder)
    if not paths:
        raise UserError(
            f"{folder} holds no MLflow journal ({JOURNAL_PATTERN}); give the folder of a "
            "search's results, <storage_path>/<run name>"
        )
    return sum(replay(Journal(path), tracking_uri) for path in paths)


def replay(journal: Journal, tracking_uri: str | None) -> int:
    """Deliver what `journal` still holds, to `tracking_uri` or else the store its header names;
    returns how many operations MLflow took."""
    header, operations = journal.read()
    if journal.delivered() >= len(operations):
        return 0
    uri = resolve_tracking_uri(tracking_uri or header["tracking_uri"])
    check_tracking_uri(uri)
    runs = Runs(uri, header["experiment_id"], header["parent_run_id"], {})
    get_run(runs.client, runs.parent_run_id, uri)  # the wrong store: one line, nothing skipped
    runs.run_ids.update(trial_runs(runs.client, runs.experiment_id, runs.parent_run_id))
    done = 0
    with journal.locked(wait_s=10.0):
        for index in range(journal.delivered(), len(operations)):
            if runs.apply(operations[index]) is not None:
                raise UserError(
                    f"MLflow at {uri} stopped answering after {done} of the operations in "
                    f"{journal.path}; the other {len(operations) - index} wait there: run "
                    f"`xlt-search sync {journal.path.parent}` again once it is back"
                )
            journal.mark_delivered(index + 1)
            done += 1
    return done - runs.refused

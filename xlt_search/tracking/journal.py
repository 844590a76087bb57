"""The journal: every operation a logger queues, on disk first, with how many MLflow has taken, and
its replay (`sync`, `xlt-search sync`) for what a dead driver or an absent server left undelivered."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from xlt_search.errors import UserError
from xlt_search.tracking.queries import get_run, trial_runs
from xlt_search.tracking.runs import Runs
from xlt_search.tracking.uri import check_tracking_uri, masked, resolve_tracking_uri

JOURNAL_PATTERN = "mlflow-journal-*.jsonl"  # a logger's journal, in the folder it was given
_OPERATION_START = '{"op": '  # how every operation's line begins (json.dumps, "op" first)


class Contents(NamedTuple):
    """A journal read back: its header, its whole operations in order, and how many torn
    pieces (the start of an operation a failed write cut short) were left out."""

    header: dict[str, Any]
    operations: list[dict[str, Any]]
    torn: int


class Journal:
    """One logger's journal: a JSON header line (the store, its password masked, the experiment
    and the parent run), then one JSON line per operation. Each line goes in whole or not at all
    (one write, undone if the file system took part of it). Beside it, `<name>.delivered` holds
    how many operations MLflow has taken (replaced atomically); an flock on the journal keeps two
    processes (a search's driver and `xlt-search sync`) from delivering it at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.marker = path.with_suffix(".delivered")

    @classmethod
    def create(cls, folder: Path, header: Mapping[str, Any]) -> Journal:
        """A new journal in `folder`, numbered after those already there; an OSError (a full
        disk) leaves no file behind."""
        folder.mkdir(parents=True, exist_ok=True)
        line = _line(header)
        number = len(journal_paths(folder))
        while True:
            path = folder / JOURNAL_PATTERN.replace("*", str(number))
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                number += 1  # another logger took this number first
                continue
            try:
                _write_whole(fd, line)
            except OSError:
                path.unlink(missing_ok=True)
                raise
            finally:
                os.close(fd)
            return cls(path)

    def append(self, operation: Mapping[str, Any]) -> None:
        """Add one operation at the end, whole, or raise OSError (a full disk) and leave the
        journal as it was."""
        # Written through to the OS at once: a driver that dies loses nothing it logged.
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            _write_whole(fd, _line(operation))
        finally:
            os.close(fd)

    def read(self) -> Contents:
        """The header and the whole operations. A last line cut short (a driver killed while
        writing it) is left out, as its operation was never queued; so is a torn piece inside a
        line (an older writer's failed write, followed by the next operation on the same line),
        and the whole operations around it are kept."""
        *lines, _cut_short = self.path.read_text(encoding="utf-8", errors="replace").split("\n")
        if not lines:
            return Contents({}, [], 0)  # not even a whole header: nothing was journaled
        header, torn = _parse_line(lines[0])
        if torn or len(header) != 1 or "op" in header[0]:
            raise UserError(
                f"MLflow journal {self.path} has a damaged header (its first line); restore "
                "it, or move that journal out of the folder and sync the others"
            )
        operations = []
        for line in lines[1:]:
            parsed, left_out = _parse_line(line)
            operations += parsed
            torn += left_out
        return Contents(header[0], operations, torn)

    def delivered(self) -> int:
        """How many operations, from the first, MLflow has taken."""
        try:
            return int(self.marker.read_text())
        except FileNotFoundError:
            return 0

    def mark_delivered(self, count: int) -> None:
        """Record that MLflow has taken the first `count` operations."""
        partial = self.marker.with_name(self.marker.name + ".partial")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _write_whole(fd, str(count).encode())
        finally:
            os.close(fd)
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


def _line(record: Mapping[str, Any]) -> bytes:
    return (json.dumps(record, allow_nan=False) + "\n").encode()


def _write_whole(fd: int, data: bytes) -> None:
    """Write `data` to `fd` in one write, or raise OSError with the file cut back to its size
    before (a full disk may take part of a write)."""
    size = os.fstat(fd).st_size
    try:
        written = os.write(fd, data)
        if written != len(data):
            raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)} (a write cut short)")
    except OSError:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, size)
        raise


def _parse_line(line: str) -> tuple[list[dict[str, Any]], int]:
    """The records on one line of a journal, and how many torn pieces it held: a line that is
    not one record is cut where each operation begins, and each piece that is not whole left
    out."""
    try:
        return [json.loads(line)], 0
    except json.JSONDecodeError:
        pass
    starts, at = [], line.find(_OPERATION_START)
    while at >= 0:
        starts.append(at)
        at = line.find(_OPERATION_START, at + 1)
    records, torn = [], 0
    for begin, end in zip([0, *starts], [*starts, len(line)], strict=True):
        if begin == end:
            continue
        try:
            record = json.loads(line[begin:end])
        except json.JSONDecodeError:
            torn += 1
            continue
        if isinstance(record, dict) and "op" in record:
            records.append(record)
        else:
            torn += 1
    return records, torn


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
    """Deliver what `journal` still holds, to `tracking_uri` or else the store its header names
    (its password masked: `resolve_tracking_uri` says where the real one comes from); returns how
    many operations MLflow took."""
    header, operations, torn = journal.read()
    if torn:
        print(
            f"xlt-search: warning: MLflow journal {journal.path} holds the torn start of {torn} "
            f"operation{'s' if torn > 1 else ''} never queued (a write cut short by a full "
            "disk): left out; every whole operation is delivered",
            file=sys.stderr,
        )
    if journal.delivered() >= len(operations):
        return 0
    uri = resolve_tracking_uri(tracking_uri or header["tracking_uri"])
    check_tracking_uri(uri)
    runs = Runs(uri, header["experiment_id"], header["parent_run_id"], {}, must_exist=True)
    get_run(runs.client, runs.parent_run_id, uri)  # the wrong store: one line, nothing skipped
    runs.run_ids.update(trial_runs(runs.client, runs.experiment_id, runs.parent_run_id))
    done = 0
    with journal.locked(wait_s=10.0):
        for index in range(journal.delivered(), len(operations)):
            reason = runs.apply(operations[index])
            if reason is not None:
                raise UserError(
                    f"MLflow at {masked(uri)} {reason} (after {done} of the operations in "
                    f"{journal.path}); the other {len(operations) - index} wait there: run "
                    f"`xlt-search sync {journal.path.parent}` again once it is back"
                )
            journal.mark_delivered(index + 1)
            done += 1
    return done - runs.refused

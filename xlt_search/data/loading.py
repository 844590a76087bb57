"""Loading one split of a task through `datasets` (the hub, a mirror of it, or local files) onto
the canonical columns of its kind, so tokenizers, heads and metrics see one shape per kind; data
that cannot be reached fails with one line naming the fix."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import datasets
from datasets.exceptions import DatasetNotFoundError

from xlt_search.data.errors import DataError, DataUnavailable
from xlt_search.data.layouts import mirror_error, read_files
from xlt_search.data.sources import fill_placeholders, local_copy, share_rows
from xlt_search.tasks.base import KIND_FIELDS, OPTIONAL_FIELDS, ColumnRef, DataSource, Task


def load_task_split(
    task: Task | str, split: str, language: str, *, mirror: str | Path | None = None
) -> datasets.Dataset:
    """One split of a task in one language, with the canonical columns of its kind (untokenized).

    Each source goes through `datasets.load_dataset(path, name, data_files=..., split=...,
    revision=...)` with its placeholders filled in, and the sources that have the split are
    concatenated. A hub source is read from ``<mirror>/<hub id>`` when that folder exists (a copy
    made with ``hf download <hub id> --repo-type dataset --local-dir <mirror>/<hub id>``).
    Data that cannot be reached raises `DataUnavailable`, one line naming the fix.
    """
    task = _as_task(task)
    if task.files is not None:  # the authors' own files, as the task's layout declares them
        return _canonical_columns(*read_files(task, split, language))
    if not task.sources:
        raise DataUnavailable(f"task {task.key} has no data source. {task.note}".strip())
    parts = [
        _load_source(task, source, split, language, mirror)
        for source in task.sources
        if split in source.splits
    ]
    if not parts:
        have = sorted({name for source in task.sources for name in source.splits})
        raise DataError(f"task {task.key} has no '{split}' split; it has {', '.join(have)}")
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)


def _load_source(
    task: Task, source: DataSource, split: str, language: str, mirror: str | Path | None
) -> datasets.Dataset:
    code = source.code(language)
    source_split = fill_placeholders(source.splits[split], code)
    kwargs: dict[str, Any] = {"split": source_split}
    if source.data_files is not None:
        if split not in source.data_files:
            raise DataError(f"task {task.key} declares no data file for its '{split}' split")
        kwargs["data_files"] = {
            _split_name(source_split): fill_placeholders(source.data_files[split], code)
        }
        kwargs["split"] = _split_name(source_split)
    path = local_copy(source, mirror)
    if source.revision is not None and path == source.path:
        kwargs["revision"] = source.revision
    if source.data_dir is not None:
        kwargs["data_dir"] = fill_placeholders(source.data_dir, code)
    name = fill_placeholders(source.name, code) if source.name is not None else None
    try:
        raw = datasets.load_dataset(path, name, **kwargs)
    except (ConnectionError, FileNotFoundError, DatasetNotFoundError) as error:
        raise DataUnavailable(_unavailable(task, source, name, path, mirror, error)) from None
    except RuntimeError as error:
        if "scripts are no longer supported" not in str(error):
            raise
        raise DataUnavailable(
            f"dataset {source.path} for task {task.key} is a loading script, which datasets 4+ "
            "cannot run; give the source a revision with Parquet files (often "
            "refs/convert/parquet) or point the task at local files, in the spec's tasks section"
        ) from None
    except ValueError as error:  # an unknown config or split
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if path != source.path:  # a mirror folder not laid out as the hub repository
            raise DataError(mirror_error(task, source, path, detail)) from None
        raise DataError(f"task {task.key}: loading {source.path} ({name}): {detail}") from None
    if source.language_column is not None:
        raw = raw.filter(lambda value: value.startswith(code), input_columns=source.language_column)
    if split in source.shares:
        raw = raw.select(share_rows(len(raw), source.shares, split, source.shares_seed))
    return _canonical_columns(task, raw)


def _split_name(source_split: str) -> str:
    """A name for local files' split: a ``+``-joined hub split name is not a valid one."""
    return source_split if "+" not in source_split else "train"


def _unavailable(
    task: Task,
    source: DataSource,
    name: str | None,
    path: str,
    mirror: str | Path | None,
    error: Exception,
) -> str:
    detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    if not source.is_hub:
        return f"task {task.key}: cannot read its data files ({detail}). {task.note}".strip()
    config = f" (config {name})" if name else ""
    revision = f" --revision {source.revision}" if source.revision else ""
    if path != source.path:  # the mirror has a copy, but not what the task reads
        return (
            f"dataset {source.path}{config} for task {task.key}: the mirror's copy {path} cannot "
            f"be read ({detail}); copy it again with `hf download {source.path} --repo-type "
            f"dataset{revision} --local-dir {path}`"
        )
    download = f"`hf download {source.path} --repo-type dataset{revision} --local-dir"
    if mirror is not None:
        return (
            f"dataset {source.path}{config} for task {task.key} is not on the hub (unreachable "
            f"from here), in the local cache or in the mirror; on a machine with network run "
            f"{download} {Path(mirror) / source.path}` and copy it here"
        )
    return (
        f"dataset {source.path}{config} for task {task.key} is neither on the hub (unreachable "
        f"from here) nor in the local cache; on a machine with network run {download} "
        f"MIRROR/{source.path}`, copy it here and set data.mirror: MIRROR in the spec"
    )


def _as_task(task: Task | str) -> Task:
    if isinstance(task, Task):
        return task
    from xlt_search.tasks import get_task

    return get_task(task)


def _canonical_columns(task: Task, raw: datasets.Dataset) -> datasets.Dataset:
    """The kind's fields, named canonically, read from the source's columns as `task.columns`
    maps them; labels and tags become class indices (-1 for an unlabelled row)."""
    plan: dict[str, ColumnRef] = {}
    for canonical in KIND_FIELDS[task.kind]:
        ref = task.column(canonical)
        if ref is None:
            if canonical in OPTIONAL_FIELDS:
                continue
            raise DataError(f"task {task.key} maps no column to the '{canonical}' field")
        for column in (ref,) if isinstance(ref, str) else ref:
            if column.split(".")[0] not in raw.column_names:
                raise DataError(
                    f"task {task.key}: column '{column}' (for '{canonical}') is not in the data; "
                    f"it has {', '.join(raw.column_names)}"
                )
        plan[canonical] = ref
    label_field = {"classification": "label", "multiple_choice": "label", "tagging": "tags"}
    labelled = label_field.get(task.kind)
    needs_lookup = labelled is not None and _is_string(raw.features, plan[labelled])
    if labelled == "label" and task.labels and all(name.isdigit() for name in task.labels):
        needs_lookup = True  # numerals: an integer is read as its numeral (1-based answers too)
    if needs_lookup and not task.labels:
        raise DataError(
            f"task {task.key}: its '{plan[labelled]}' column holds strings; declare the task's "
            "labels (their names in class order) so they can be mapped to class indices"
        )
    if all(isinstance(ref, str) and "." not in ref for ref in plan.values()) and not needs_lookup:
        dataset = raw.select_columns(list(plan.values()))
        renames = {ref: canonical for canonical, ref in plan.items() if ref != canonical}
        dataset = dataset.rename_columns(renames) if renames else dataset
    else:
        dataset = raw.map(
            _canonical_batch,
            batched=True,
            remove_columns=raw.column_names,
            fn_kwargs={
                "plan": plan,
                "labelled": labelled if needs_lookup else None,
                "index": {name: i for i, name in enumerate(task.labels)},
            },
            desc=f"reading {task.key}",
        )
    if (
        labelled is not None
    ):  # plain int64 class indices: sources with other label names concatenate
        kind = datasets.Value("int64")
        dataset = dataset.cast_column(
            labelled, kind if labelled == "label" else datasets.List(kind)
        )
    return dataset


def _is_string(features: datasets.Features, ref: ColumnRef) -> bool:
    if not isinstance(ref, str) or "." in ref:
        return False
    feature: Any = features[ref]
    while not hasattr(feature, "dtype") and hasattr(feature, "feature"):
        feature = feature.feature  # a list of values
    return getattr(feature, "dtype", None) in ("string", "large_string")


def _canonical_batch(
    batch: dict[str, list], plan: Mapping[str, ColumnRef], labelled: str | None, index: dict
) -> dict[str, list]:
    out = {}
    for canonical, ref in plan.items():
        if isinstance(ref, tuple):
            parts = zip(*(batch[column] for column in ref), strict=True)
            out[canonical] = (
                [_present_choices(row) for row in parts]
                if canonical == "choices"
                else [" ".join(str(part) for part in row if part) for row in parts]
            )
        elif "." in ref:
            column, *inner = ref.split(".")
            out[canonical] = [_field(row, inner) for row in batch[column]]
        else:
            out[canonical] = batch[ref]
    if labelled == "label":
        # stripped: some sources end string labels with a newline (SocialIQA's "1\n")
        out["label"] = [index.get(str(value).strip(), -1) for value in out["label"]]
    elif labelled == "tags":
        unknown = {tag for tags in out["tags"] for tag in tags if tag not in index}
        if unknown:
            raise DataError(
                f"tags {', '.join(sorted(map(str, unknown))[:5])} are not among the task's "
                f"{len(index)} declared labels"
            )
        out["tags"] = [[index[tag] for tag in tags] for tags in out["tags"]]
    return out


def _field(value: Any, path: list[str]) -> Any:
    """A field of a struct column, at any depth (X-CSQA's ``question.choices.text``)."""
    for name in path:
        value = value[name]
    return value


def _present_choices(row: tuple) -> list:
    """The choices of one row, less the empty columns at its end: ARC's ``option_e`` is empty on
    its four-choice questions, so the answer's index is unchanged."""
    choices = list(row)
    while choices and choices[-1] in (None, ""):
        choices.pop()
    return choices

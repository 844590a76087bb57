"""The prepared cache: every split a search reads, tokenized once and saved as Arrow under a
fingerprint of everything that shapes it.

The driver calls `prepare_data` once per search, so trials only memory-map files (`PreparedData`)
and a second search with the same tokenizer and lengths reuses them.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from xlt_search import preflight
from xlt_search.data import coverage, mixing
from xlt_search.data.controls import controlled, load_synonyms
from xlt_search.data.errors import DataUnavailable
from xlt_search.data.layouts import files_id
from xlt_search.data.loading import load_task_split
from xlt_search.data.sources import content_digest, digest, fill_placeholders, local_copy
from xlt_search.data.tokenization import tokenize
from xlt_search.encoders import check_length, read_traits
from xlt_search.errors import UserError
from xlt_search.names import RS_DA
from xlt_search.tasks import get_language, get_task
from xlt_search.tasks.base import Language, Task

# Bump when tokenization (`tokenization.py`) or what a split's folder holds changes, so caches made
# by older code are not reused.
# 4: pairs keep their token_type_ids for an encoder that reads segment ids, and each split's
# folder holds its tokenizer coverage (`coverage.FILE`).
FORMAT_VERSION = 4


@dataclass(frozen=True)
class SplitRequest:
    """One split a search needs: a task's `split` (train, validation, test) in one language.

    A mixed-language cell (`data.mixing`) names its `second` language too, and the languages
    its rows are `aligned` across (the target's mixed languages). With `control`, the split as
    the control trains on it (`data.controls`).
    """

    task: str
    split: str
    language: str
    second: str | None = None
    aligned: tuple[str, ...] = ()
    control: str = ""

    @property
    def key(self) -> str:
        cell = "" if self.second is None else f"-{self.second}"
        plain = f"{self.task}/{self.split}/{self.language}{cell}"
        return f"{plain}/{self.control}" if self.control else plain


@dataclass(frozen=True)
class PreparedData:
    """Where the tokenized splits of a search live, and the declarations they were made from.

    Small and picklable: it travels to every trial, which opens splits with `load`.
    """

    root: str
    splits: Mapping[str, str]  # SplitRequest.key -> directory written by `save_to_disk`
    tasks: Mapping[str, Task]
    families: Mapping[str, str]  # language code -> family
    tokenizer: str
    pad_token_id: int
    max_seq_length: int
    pooling: str = "first"  # what the model's classification heads pool (`encoders.pooling`)
    # SplitRequest.key of each mixed-language cell -> its directory (`data.mixing`)
    mixed: Mapping[str, str] = field(default_factory=dict)
    # target task -> the counts of the alignment its mixed cells were made from
    alignments: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def path(self, task: str, split: str, language: str, control: str = "") -> Path:
        """The directory of one prepared split (as `control` trains on it, if given)."""
        key = SplitRequest(task, split, language, control=control).key
        if key not in self.splits:
            raise KeyError(
                f"split {key} was not prepared for this search; prepared: {', '.join(self.splits)}"
            )
        return Path(self.splits[key])

    def load(self, task: str, split: str, language: str, control: str = "") -> datasets.Dataset:
        """One prepared split (as `control` trains on it, if given), memory-mapped and
        torch-formatted."""
        folder = self.path(task, split, language, control)
        return datasets.load_from_disk(str(folder)).with_format("torch")

    def load_mixed(self, task: str, first: str, second: str) -> datasets.Dataset:
        """One prepared mixed-language cell of a target's validation data, memory-mapped."""
        key = SplitRequest(task, "validation", first, second).key
        if key not in self.mixed:
            raise KeyError(f"mixed-language cell {key} was not prepared for this search")
        return datasets.load_from_disk(self.mixed[key]).with_format("torch")

    def task(self, key: str) -> Task:
        """The declaration of task `key`, as the data was prepared with it."""
        try:
            return self.tasks[key]
        except KeyError:
            raise KeyError(f"task {key} was not prepared for this search") from None


def prepare_data(
    requests: Sequence[SplitRequest],
    tokenizer: str,
    max_seq_length: int,
    max_train_examples: int | None,
    cache_dir: Path,
    seed: int,
    *,
    max_train_examples_per_task: Mapping[str, int] | None = None,
    registry: Mapping[str, Task] | None = None,
    languages: Mapping[str, Language] | None = None,
    mirror: str | Path | None = None,
    synonyms: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    cached_only: bool = False,
) -> PreparedData:
    """Tokenize every requested split into `cache_dir` (once; later calls reuse the files).

    Each split is saved under a fingerprint of the tokenizer, `max_seq_length`, the train cap and
    seed, the task's declaration and its sources (file contents, a mirror's file listing, or hub
    id and revision). Training splits larger than their cap (`max_train_examples`, or the task's
    own in `max_train_examples_per_task`) are subsampled, deterministically from `seed`. `registry` and
    `languages` default to the task registry's; `mirror` is where hub datasets are copied to.
    `progress` is given one line per split it tokenizes. `tokenizer` names the model (its
    folder or hub id): its config says whether pairs keep their segment ids and how long a
    sequence may be (a `max_seq_length` beyond it is refused, `encoders.check_length`). Each
    split's labels are checked against its task's (`preflight.check_labels`), and how well the
    tokenizer reads it is measured and saved in its folder (`coverage`). A request with a
    `control` is its split made as the control trains on it (`data.controls`, from `seed`); an
    RS-DA variant's words are swapped for their neighbours in the `synonyms` file (read once,
    part of the variant's fingerprint by content). With `cached_only`, nothing is loaded or
    tokenized: the result holds the requested splits already in the cache, and no mixed cell.
    """
    from transformers import AutoTokenizer

    registry, languages = _registries(registry, languages)
    if max_seq_length < 8:
        raise ValueError(f"max_seq_length must be at least 8, got {max_seq_length}")
    try:
        tok = AutoTokenizer.from_pretrained(tokenizer)
    except OSError as error:  # not a local folder, not in the hub cache, hub unreachable
        raise DataUnavailable(
            f"model {tokenizer} cannot be loaded ({str(error).strip().splitlines()[0]}); offline, "
            f"download it where there is network (`hf download {tokenizer} --local-dir DIR`), "
            "copy DIR here and set model: DIR in the spec"
        ) from None
    if not tok.is_fast or tok.pad_token_id is None:
        raise UserError(
            f"tokenizer {tokenizer} must be a fast tokenizer with a padding token "
            "(offsets and word ids are needed for span and tagging tasks)"
        )
    traits = read_traits(tokenizer, tok)
    check_length(tokenizer, traits, max_seq_length)
    tokenizer_id = digest(type(tok).__name__, tok.backend_tokenizer.to_str(), traits.segments)
    cache_dir = Path(cache_dir).resolve()
    cache_dir.mkdir(parents=True, exist_ok=True)

    splits: dict[str, str] = {}
    unique = [r for r in dict.fromkeys(requests) if r.second is None]  # in order
    table = None
    variant_id: dict[str, tuple[Any, ...]] = {}  # a variant -> what its data depends on
    if synonyms is not None and any(r.control.startswith(RS_DA) for r in unique):
        table = load_synonyms(synonyms)
        variant_id = {
            r.control: (r.control, seed, content_digest([Path(synonyms)]))
            for r in unique
            if r.control.startswith(RS_DA)
        }
    for number, request in enumerate(unique, 1):
        task = get_task(request.task, registry)
        cap = None
        if request.split == "train":
            cap = (max_train_examples_per_task or {}).get(request.task, max_train_examples)
        source: Any = _source_id(task, request.split, request.language, mirror)
        if request.control:  # the variant's data depends on the seed (and RS-DA's synonyms)
            source = [source, variant_id.get(request.control, (request.control, seed))]
        fingerprint = _fingerprint(
            (tokenizer_id, max_seq_length, cap, seed if cap is not None else None),
            task,
            request.split,
            request.language,
            source,
        )
        control = f".{request.control}" if request.control else ""
        target = (
            cache_dir
            / f"{request.task}.{request.split}.{request.language}{control}-{fingerprint[:16]}"
        )
        if not (target / "dataset_info.json").exists():
            if cached_only:
                continue
            started = time.perf_counter()
            dataset = load_task_split(task, request.split, request.language, mirror=mirror)
            preflight.check_labels(task, dataset, request.key)
            if cap is not None and len(dataset) > cap:
                rng = np.random.default_rng([seed, zlib.crc32(request.task.encode())])
                dataset = dataset.select(np.sort(rng.choice(len(dataset), cap, replace=False)))
            if request.control:  # the rows the real split keeps, then remade from the seed
                dataset = controlled(task, dataset, request.control, seed, table)
            tokenized = tokenize(task, dataset, tok, max_seq_length, segments=traits.segments)
            measured = coverage.measure(task, dataset, tokenized, tok, max_seq_length)
            _save_atomically(tokenized, target, partial(coverage.save, coverage=measured))
            if progress is not None:
                progress(
                    f"[{number}/{len(unique)}] tokenized {request.key}: {len(tokenized)} "
                    f"examples in {time.perf_counter() - started:.1f} s"
                )
        splits[request.key] = str(target)

    mixed = [r for r in dict.fromkeys(requests) if r.second is not None and not cached_only]
    mixed_dirs, alignments = _prepare_mixed(
        mixed,
        partial(tokenize, tokenizer=tok, max_seq_length=max_seq_length, segments=traits.segments),
        tokenizer_id,
        max_seq_length,
        registry,
        cache_dir,
        mirror,
        progress,
    )
    codes = sorted({r.language for r in requests})
    return PreparedData(
        root=str(cache_dir),
        splits=splits,
        tasks={r.task: get_task(r.task, registry) for r in requests},
        families={code: get_language(code, languages).family for code in codes},
        tokenizer=tokenizer,
        pad_token_id=int(tok.pad_token_id),
        max_seq_length=max_seq_length,
        pooling=traits.pooling,
        mixed=mixed_dirs,
        alignments=alignments,
    )


def _fingerprint(shape: tuple[Any, ...], task: Task, split: str, language: str, source: Any) -> str:
    """What a prepared split is keyed by: the tokenizer and lengths (`shape`: the tokenizer's id,
    max_seq_length, the train cap and its seed), the task's declaration, the split and its data."""
    return digest(
        FORMAT_VERSION,
        *shape,
        task.kind,
        repr(task.sources),
        sorted(task.columns.items()),
        task.labels,
        task.num_labels,
        split,
        language,
        source,
    )


def _prepare_mixed(
    requests: Sequence[SplitRequest],
    tokenizing: Callable[[Task, datasets.Dataset], datasets.Dataset],
    tokenizer_id: str,
    max_seq_length: int,
    registry: Mapping[str, Task],
    cache_dir: Path,
    mirror: str | Path | None,
    progress: Callable[[str], None] | None,
) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """The mixed-language cells (`data.mixing`): each target's languages loaded and aligned once,
    every cell built from the alignment and tokenized into the cache; the folders of the cells
    and, per target, its alignment's counts (kept in every cell's folder)."""
    folders: dict[str, str] = {}
    alignments: dict[str, dict[str, Any]] = {}
    groups: dict[tuple[str, str, tuple[str, ...]], list[SplitRequest]] = {}
    for request in requests:
        groups.setdefault((request.task, request.split, request.aligned), []).append(request)
    for (key, split, languages), cells in groups.items():
        task = get_task(key, registry)
        sources = [_source_id(task, split, lang, mirror) for lang in languages]
        shape = (tokenizer_id, max_seq_length)
        targets = {
            cell.key: cache_dir / f"{key}.{split}.mixed.{cell.language}-{cell.second}-"
            f"{_fingerprint(shape, task, split, cell.key, [languages, sources])[:16]}"
            for cell in cells
        }
        if not all((target / "dataset_info.json").exists() for target in targets.values()):
            started = time.perf_counter()
            splits = {lang: load_task_split(task, split, lang, mirror=mirror) for lang in languages}
            for lang, loaded in splits.items():
                preflight.check_labels(task, loaded, SplitRequest(key, split, lang).key)
            alignment = mixing.align(task, splits)
            for cell in cells:
                built = mixing.mixed_cell(task, splits, alignment, cell.language, str(cell.second))
                add = partial(mixing.save, counts=alignment.counts())
                _save_atomically(tokenizing(task, built), targets[cell.key], add)
            if progress is not None:
                progress(
                    f"mixed {len(cells)} cells of {key}/{split} in "
                    f"{time.perf_counter() - started:.1f} s: "
                    f"{mixing.describe(key, alignment.counts())}"
                )
        folders.update({cell: str(target) for cell, target in targets.items()})
        alignments[key] = mixing.load(next(iter(targets.values())))
    return folders, alignments


def _registries(
    registry: Mapping[str, Task] | None, languages: Mapping[str, Language] | None
) -> tuple[Mapping[str, Task], Mapping[str, Language]]:
    if registry is None or languages is None:
        from xlt_search import tasks

        registry = tasks.REGISTRY if registry is None else registry
        languages = tasks.LANGUAGES if languages is None else languages
    return registry, languages


def _source_id(task: Task, split: str, language: str, mirror: str | Path | None) -> list[str]:
    """The identity of a split's data: local files by content (wherever they live), a mirrored
    hub dataset by its files' names, sizes and times, hub data by id and revision."""
    if task.files is not None:
        return [files_id(task, split, language)]
    ids = []
    for source in task.sources:
        if split not in source.splits:
            continue
        local = local_copy(source, mirror)
        if source.data_files is not None and split in source.data_files:
            pattern = fill_placeholders(source.data_files[split], source.code(language))
            files = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
            ids.append(content_digest([Path(name) for name in files]))
        elif local != source.path:
            listing = sorted(
                (str(path.relative_to(local)), path.stat().st_size, path.stat().st_mtime_ns)
                for path in Path(local).rglob("*")
                if path.is_file() and ".cache" not in path.parts
            )
            ids.append(digest(listing))
        else:
            ids.append(f"{source.path}:{source.name}:{source.revision}")
    return ids


def _save_atomically(
    dataset: datasets.Dataset, target: Path, add: Callable[[Path], None] | None = None
) -> None:
    """Write beside `target` (and `add` to the folder), then rename it into place: readers never
    see half a split."""
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        dataset.save_to_disk(str(scratch / "split"))
        if add is not None:
            add(scratch / "split")
        try:
            os.rename(scratch / "split", target)
        except OSError:
            if not (target / "dataset_info.json").exists():
                raise  # not a concurrent writer that got there first
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

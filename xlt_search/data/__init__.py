"""Task data: loading through `datasets`, tokenization per task kind, the prepared cache, batching.

The driver calls `prepare_data` once per search: every split the search needs is loaded, tokenized
and saved as Arrow under a fingerprint of everything that shapes it, so trials only memory-map files
and a second search with the same tokenizer and lengths reuses them. Trials draw batches with
`BatchStream` (training) and `eval_batches` (evaluation), each padded to its longest sequence.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch

from xlt_search import preflight
from xlt_search.data import coverage
from xlt_search.data.coverage import SplitCoverage as SplitCoverage
from xlt_search.data.coverage import text_batches as text_batches
from xlt_search.data.errors import DataError as DataError
from xlt_search.data.errors import DataUnavailable
from xlt_search.data.loading import load_task_split
from xlt_search.data.sources import content_digest, digest, fill_placeholders, local_copy
from xlt_search.encoders import check_length, read_traits
from xlt_search.errors import UserError
from xlt_search.tasks.base import Language, Task

# Bump when the tokenization below changes, so caches made by older code are not reused.
# 4: pairs keep their token_type_ids for an encoder that reads segment ids, and each split's
# folder holds its tokenizer coverage (`coverage.FILE`).
FORMAT_VERSION = 4


@dataclass(frozen=True)
class SplitRequest:
    """One split a search needs: a task's `split` (train, validation, test) in one language."""

    task: str
    split: str
    language: str

    @property
    def key(self) -> str:
        return f"{self.task}/{self.split}/{self.language}"


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

    def path(self, task: str, split: str, language: str) -> Path:
        """The directory of one prepared split."""
        key = SplitRequest(task, split, language).key
        if key not in self.splits:
            raise KeyError(
                f"split {key} was not prepared for this search; prepared: {', '.join(self.splits)}"
            )
        return Path(self.splits[key])

    def load(self, task: str, split: str, language: str) -> datasets.Dataset:
        """One prepared split, memory-mapped and torch-formatted."""
        return datasets.load_from_disk(str(self.path(task, split, language))).with_format("torch")

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
    progress: Callable[[str], None] | None = None,
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
    tokenizer reads it is measured and saved in its folder (`coverage`).
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
    unique = list(dict.fromkeys(requests))  # in order
    for number, request in enumerate(unique, 1):
        task = _lookup(registry, request.task)
        cap = None
        if request.split == "train":
            cap = (max_train_examples_per_task or {}).get(request.task, max_train_examples)
        fingerprint = digest(
            FORMAT_VERSION,
            tokenizer_id,
            max_seq_length,
            cap,
            seed if cap is not None else None,
            task.kind,
            repr(task.sources),
            sorted(task.columns.items()),
            task.labels,
            task.num_labels,
            request.split,
            request.language,
            _source_id(task, request.split, request.language, mirror),
        )
        target = cache_dir / f"{request.task}.{request.split}.{request.language}-{fingerprint[:16]}"
        if not (target / "dataset_info.json").exists():
            started = time.perf_counter()
            dataset = load_task_split(task, request.split, request.language, mirror=mirror)
            preflight.check_labels(task, dataset, request.key)
            if cap is not None and len(dataset) > cap:
                rng = np.random.default_rng([seed, zlib.crc32(request.task.encode())])
                dataset = dataset.select(np.sort(rng.choice(len(dataset), cap, replace=False)))
            tokenized = tokenize(task, dataset, tok, max_seq_length, segments=traits.segments)
            measured = coverage.measure(task, dataset, tokenized, tok, max_seq_length)
            _save_atomically(tokenized, target, partial(coverage.save, coverage=measured))
            if progress is not None:
                progress(
                    f"[{number}/{len(unique)}] tokenized {request.key}: {len(tokenized)} "
                    f"examples in {time.perf_counter() - started:.1f} s"
                )
        splits[request.key] = str(target)

    codes = sorted({r.language for r in requests})
    return PreparedData(
        root=str(cache_dir),
        splits=splits,
        tasks={r.task: _lookup(registry, r.task) for r in requests},
        families={code: _lookup_language(languages, code).family for code in codes},
        tokenizer=tokenizer,
        pad_token_id=int(tok.pad_token_id),
        max_seq_length=max_seq_length,
        pooling=traits.pooling,
    )


# The kinds whose inputs are pairs of segments: they keep token_type_ids for a model reading them.
PAIR_KINDS = ("classification", "multiple_choice", "span")
SEGMENTS = "token_type_ids"


def tokenize(
    task: Task,
    dataset: datasets.Dataset,
    tokenizer: Any,
    max_seq_length: int,
    *,
    segments: bool = False,
) -> datasets.Dataset:
    """Tokenize a split with canonical columns into the model's inputs and labels for its kind.

    classification: ``input_ids``, ``labels``; multiple_choice: ``input_ids`` [choices][tokens],
    ``labels``; tagging: ``input_ids``, ``labels`` per token (first sub-token of a word; -100
    elsewhere); span: one row per window of the context (`span_windows`) with ``input_ids``,
    ``start_positions`` and ``end_positions`` (0 when the window holds no answer) and, for
    evaluation, the ``example`` it came from, each token's character offsets in the context (-1
    outside it), the ``context`` and the gold ``answers``; retrieval: ``input_ids`` (the query)
    and ``candidate_ids`` (its translation). With `segments`, the pairs (classification,
    multiple choice, span) also keep the tokenizer's ``token_type_ids``, shaped like ``input_ids``.
    """
    functions = {
        "classification": _tokenize_classification,
        "multiple_choice": _tokenize_multiple_choice,
        "tagging": _tokenize_tagging,
        "span": _tokenize_span,
        "retrieval": _tokenize_retrieval,
    }
    if task.kind in ("classification", "multiple_choice"):
        dataset = dataset.filter(lambda label: label >= 0, input_columns="label")
    return dataset.map(
        functions[task.kind],
        batched=True,
        with_indices=task.kind == "span",
        remove_columns=dataset.column_names,
        fn_kwargs={"tokenizer": tokenizer, "max_length": max_seq_length}
        | ({"segments": segments} if task.kind in PAIR_KINDS else {}),
        load_from_cache_file=False,
        keep_in_memory=True,
        desc=f"tokenizing {task.key}",
    )


def _tokenize_classification(batch: dict, tokenizer: Any, max_length: int, segments: bool) -> dict:
    pair = (batch["text_b"],) if "text_b" in batch else ()
    encoded = tokenizer(
        batch["text_a"],
        *pair,
        truncation=True,
        max_length=max_length,
        return_token_type_ids=segments,
    )
    out = {"input_ids": encoded["input_ids"], "labels": batch["label"]}
    return out | ({SEGMENTS: encoded[SEGMENTS]} if segments else {})


def _tokenize_multiple_choice(batch: dict, tokenizer: Any, max_length: int, segments: bool) -> dict:
    contexts, choices, counts = [], [], []
    for context, options in zip(batch["context"], batch["choices"], strict=True):
        contexts += [context] * len(options)
        choices += list(options)
        counts.append(len(options))
    encoded = tokenizer(
        contexts, choices, truncation=True, max_length=max_length, return_token_type_ids=segments
    )
    out = {"labels": batch["label"]}
    for column in ("input_ids", SEGMENTS) if segments else ("input_ids",):
        grouped, start = [], 0
        for count in counts:
            grouped.append(encoded[column][start : start + count])
            start += count
        out[column] = grouped
    return out


def _tokenize_tagging(batch: dict, tokenizer: Any, max_length: int) -> dict:
    encoded = tokenizer(
        batch["tokens"], is_split_into_words=True, truncation=True, max_length=max_length
    )
    labels = []
    for i, tags in enumerate(batch["tags"]):
        previous, row = None, []
        for word in encoded.word_ids(i):
            first = word is not None and word != previous
            row.append(tags[word] if first and tags[word] >= 0 else -100)  # -1: an untagged word
            previous = word
        labels.append(row)
    return {"input_ids": encoded["input_ids"], "labels": labels}


def _tokenize_retrieval(batch: dict, tokenizer: Any, max_length: int) -> dict:
    return {
        "input_ids": tokenizer(batch["query"], truncation=True, max_length=max_length)["input_ids"],
        "candidate_ids": tokenizer(batch["candidate"], truncation=True, max_length=max_length)[
            "input_ids"
        ],
    }


def span_windows(max_length: int) -> tuple[int, int]:
    """(question tokens kept, tokens shared by consecutive windows) for span QA at `max_length`.

    A question longer than a third of the sequence is cut, so every window keeps room for the
    context; a long context is read in windows that overlap by a sixth of the sequence, as
    SQuAD-style readers do (an answer cut by one window is whole in the next).
    """
    return max(1, max_length // 3), max(1, max_length // 6)


def _tokenize_span(
    batch: dict, indices: list[int], tokenizer: Any, max_length: int, segments: bool
) -> dict:
    question_tokens, stride = span_windows(max_length)
    questions = tokenizer(
        batch["question"],
        add_special_tokens=False,
        truncation=True,
        max_length=question_tokens,
        return_offsets_mapping=True,
    )["offset_mapping"]
    cut = [
        q[: spans[-1][1]] if spans else q
        for q, spans in zip(batch["question"], questions, strict=True)
    ]
    encoded = tokenizer(
        cut,
        batch["context"],
        truncation="only_second",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        return_token_type_ids=segments,
    )
    out: dict[str, list] = {
        "input_ids": encoded["input_ids"],
        **({SEGMENTS: encoded[SEGMENTS]} if segments else {}),
        "start_positions": [],
        "end_positions": [],
        "example": [],
        "offset_start": [],
        "offset_end": [],
        "context": [],
        "answers": [],
    }
    for i, source in enumerate(encoded["overflow_to_sample_mapping"]):
        answers = batch["answers"][source]
        in_context = [s == 1 for s in encoded.sequence_ids(i)]
        offsets = encoded["offset_mapping"][i]
        starts = [o[0] if c else -1 for o, c in zip(offsets, in_context, strict=True)]
        ends = [o[1] if c else -1 for o, c in zip(offsets, in_context, strict=True)]
        start_token = end_token = 0
        if answers["text"]:
            first = answers["answer_start"][0]
            last = first + len(answers["text"][0])
            covering_start = [t for t, s in enumerate(starts) if s != -1 and s <= first < ends[t]]
            covering_end = [t for t, e in enumerate(ends) if e != -1 and starts[t] < last <= e]
            if covering_start and covering_end:
                start_token, end_token = covering_start[0], covering_end[-1]
        out["start_positions"].append(start_token)
        out["end_positions"].append(end_token)
        out["example"].append(indices[source])
        out["offset_start"].append(starts)
        out["offset_end"].append(ends)
        out["context"].append(batch["context"][source])
        out["answers"].append(list(answers["text"]))
    return out


# The columns a training step reads, per kind (span splits also carry evaluation-only columns), and
# SEGMENTS where a split has them.
TRAIN_COLUMNS: dict[str, tuple[str, ...]] = {
    "classification": ("input_ids", "labels"),
    "multiple_choice": ("input_ids", "labels"),
    "tagging": ("input_ids", "labels"),
    "span": ("input_ids", "start_positions", "end_positions"),
}


def collate(kind: str, rows: Mapping[str, Sequence[Any]], pad_token_id: int) -> dict[str, Any]:
    """Pad a batch of tokenized rows (column -> one entry per example) to its longest sequence.

    Gives ``input_ids`` and ``attention_mask`` ([batch, tokens]; [batch, choices, tokens] for
    multiple choice, with ``choice_mask`` when examples have different numbers of choices), the
    ``token_type_ids`` when the rows have them (padded with 0), and the labels of the kind, as
    tensors; span batches keep their evaluation columns, when present, as
    lists; retrieval batches hold the candidates as ``candidate_ids`` and ``candidate_mask``.
    """
    if kind == "multiple_choice":
        per_example = [len(choices) for choices in rows["input_ids"]]
        num_choices = max(per_example)
        # A missing choice is one padding token attending to itself; its score is masked out.
        filler = [np.array([pad_token_id])]
        sequences = [
            seq
            for choices in rows["input_ids"]
            for seq in [*choices, *filler * (num_choices - len(choices))]
        ]
        ids, mask = _pad(sequences, pad_token_id)
        batch = {
            "input_ids": ids.view(len(per_example), num_choices, -1),
            "attention_mask": mask.view(len(per_example), num_choices, -1),
            "labels": torch.as_tensor(np.asarray(rows["labels"], dtype=np.int64)),
        }
        if SEGMENTS in rows:
            types = [
                seq
                for choices in rows[SEGMENTS]
                for seq in [*choices, *[np.array([0])] * (num_choices - len(choices))]
            ]
            batch[SEGMENTS] = _pad(types, 0)[0].view(len(per_example), num_choices, -1)
        if min(per_example) < num_choices:
            counts = torch.tensor(per_example)
            batch["choice_mask"] = torch.arange(num_choices)[None, :] < counts[:, None]
        return batch

    ids, mask = _pad(rows["input_ids"], pad_token_id)
    batch = {"input_ids": ids, "attention_mask": mask}
    if SEGMENTS in rows:
        batch[SEGMENTS] = _pad(rows[SEGMENTS], 0)[0]
    if kind == "classification":
        batch["labels"] = torch.as_tensor(np.asarray(rows["labels"], dtype=np.int64))
    elif kind == "tagging":
        batch["labels"] = _pad(rows["labels"], -100)[0]
    elif kind == "span":
        batch["start_positions"] = torch.as_tensor(np.asarray(rows["start_positions"], np.int64))
        batch["end_positions"] = torch.as_tensor(np.asarray(rows["end_positions"], np.int64))
        if "offset_start" in rows:
            batch["example"] = [int(example) for example in rows["example"]]
            batch["offset_start"] = _pad(rows["offset_start"], -1)[0].tolist()
            batch["offset_end"] = _pad(rows["offset_end"], -1)[0].tolist()
            batch["context"] = list(rows["context"])
            batch["answers"] = [list(a) for a in rows["answers"]]
    elif kind == "retrieval":
        batch["candidate_ids"], batch["candidate_mask"] = _pad(rows["candidate_ids"], pad_token_id)
    else:
        raise ValueError(f"unknown task kind '{kind}'")
    return batch


def _pad(sequences: Sequence[Sequence[int]], value: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences as one [n, longest] int64 tensor padded with `value`, and its attention mask."""
    lengths = np.fromiter((len(seq) for seq in sequences), dtype=np.int64, count=len(sequences))
    out = np.full((len(sequences), int(lengths.max())), value, dtype=np.int64)
    for row, seq in zip(out, sequences, strict=True):
        row[: len(seq)] = seq
    mask = np.arange(out.shape[1])[None, :] < lengths[:, None]
    return torch.from_numpy(out), torch.from_numpy(mask.astype(np.int64))


class _ArrowRows:
    """Rows of a memory-mapped split read straight from its Arrow buffers (no Python objects per
    token): integer columns and (nested) lists of integers, as numpy arrays and slices of them."""

    def __init__(self, dataset: datasets.Dataset, columns: Sequence[str]) -> None:
        table = dataset.with_format(None).data
        if dataset._indices is not None:  # a selection over the table: materialize it once
            table = dataset.flatten_indices().data
        self.columns = {name: self._unpack(table.column(name).combine_chunks()) for name in columns}

    @staticmethod
    def _unpack(array: Any) -> tuple[np.ndarray, ...]:
        """(values,) for a scalar column; (offsets, ..., values) for a list column, outermost first."""
        parts = []
        while hasattr(array, "offsets"):
            # offsets of a sliced array start past 0: keep them absolute into `values`
            parts.append(array.offsets.to_numpy())
            array = array.values
        return (*parts, array.to_numpy(zero_copy_only=False))

    def lengths(self, name: str) -> np.ndarray:
        """Each row's length in list column `name`; a row of lists (the choices of a multiple
        choice example) counts its longest."""
        offsets, *inner = self.columns[name][:-1]
        if not inner:
            return np.diff(offsets)
        # every example has at least one choice: each segment of reduceat is non-empty
        return np.maximum.reduceat(np.diff(inner[0])[: offsets[-1]], offsets[:-1])

    def take(self, indices: Sequence[int]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for name, parts in self.columns.items():
            if len(parts) == 1:
                out[name] = parts[0][np.asarray(indices)]
            elif len(parts) == 2:
                offsets, values = parts
                out[name] = [values[offsets[i] : offsets[i + 1]] for i in indices]
            else:
                outer, inner, values = parts
                out[name] = [
                    [values[inner[j] : inner[j + 1]] for j in range(outer[i], outer[i + 1])]
                    for i in indices
                ]
        return out


# Training batches are grouped by length within windows of this many batches (as Trainer's
# `group_by_length` does): little padding, and a window is still a random draw from the split.
LENGTH_GROUP_BATCHES = 50


class BatchStream:
    """Endless training batches from one split: shuffled epoch after epoch, grouped by length,
    padded per batch.

    Epoch e's order is drawn from (seed, e): a permutation of the split, cut into windows of
    `LENGTH_GROUP_BATCHES` batches, each window sorted by length and cut into batches, the batches
    then shuffled. A batch never straddles two epochs (the tail of an epoch is dropped), and the
    stream's whole state is two integers.
    """

    def __init__(
        self, dataset: datasets.Dataset, kind: str, pad_token_id: int, batch_size: int, seed: int
    ) -> None:
        if len(dataset) == 0:
            raise ValueError("cannot draw batches from an empty split")
        segments = (SEGMENTS,) if SEGMENTS in dataset.column_names else ()
        self.rows = _ArrowRows(dataset, TRAIN_COLUMNS[kind] + segments)
        self.size = len(dataset)
        self.kind, self.pad_token_id, self.seed = kind, pad_token_id, seed
        self.batch_size = min(batch_size, len(dataset))
        self.lengths = self.rows.lengths("input_ids")
        self.epoch, self.position = 0, 0
        self._order = self._epoch_order(0)

    def __len__(self) -> int:
        return self.size

    def _epoch_order(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(self.size)
        usable = self.size - self.size % self.batch_size
        window = LENGTH_GROUP_BATCHES * self.batch_size
        for start in range(0, usable, window):
            part = order[start : min(start + window, usable)]
            order[start : start + len(part)] = part[np.argsort(self.lengths[part], kind="stable")]
        batches = order[:usable].reshape(-1, self.batch_size)
        return np.concatenate([batches[rng.permutation(len(batches))].ravel(), order[usable:]])

    def next(self) -> dict[str, Any]:
        """The next padded batch."""
        if self.position + self.batch_size > self.size:
            self.epoch, self.position = self.epoch + 1, 0
            self._order = self._epoch_order(self.epoch)
        indices = self._order[self.position : self.position + self.batch_size]
        self.position += self.batch_size
        return collate(self.kind, self.rows.take(indices.tolist()), self.pad_token_id)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._order = self._epoch_order(self.epoch)


def eval_batches(
    dataset: datasets.Dataset, kind: str, pad_token_id: int, batch_size: int
) -> list[dict[str, Any]]:
    """A whole evaluation split as padded batches, grouped by length so little is padding."""
    rows = dataset.with_format(None)
    if kind == "multiple_choice":
        lengths = [max(len(seq) for seq in choices) for choices in rows["input_ids"]]
    else:
        lengths = [len(seq) for seq in rows["input_ids"]]
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [
        collate(kind, rows[order[i : i + batch_size].tolist()], pad_token_id)
        for i in range(0, len(order), batch_size)
    ]


def _registries(
    registry: Mapping[str, Task] | None, languages: Mapping[str, Language] | None
) -> tuple[Mapping[str, Task], Mapping[str, Language]]:
    if registry is None or languages is None:
        from xlt_search import tasks

        registry = tasks.REGISTRY if registry is None else registry
        languages = tasks.LANGUAGES if languages is None else languages
    return registry, languages


def _lookup(registry: Mapping[str, Task], key: str) -> Task:
    if key not in registry:
        from xlt_search.errors import UnknownTaskError, did_you_mean

        raise UnknownTaskError(f"unknown task '{key}'{did_you_mean(key, registry)}")
    return registry[key]


def _lookup_language(languages: Mapping[str, Language], code: str) -> Language:
    if code not in languages:
        from xlt_search.errors import UnknownTaskError, did_you_mean

        raise UnknownTaskError(f"unknown language '{code}'{did_you_mean(code, languages)}")
    return languages[code]


def _source_id(task: Task, split: str, language: str, mirror: str | Path | None) -> list[str]:
    """The identity of a split's data: local files by content (wherever they live), a mirrored
    hub dataset by its files' names, sizes and times, hub data by id and revision."""
    if task.files is not None:
        from xlt_search.data.layouts import files_id

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

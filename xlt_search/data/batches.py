"""Batches from prepared splits: padding to the longest sequence of a batch, a view of the rows
straight from the Arrow buffers, endless shuffled training batches grouped by length
(`BatchStream`), and whole evaluation splits (`eval_batches`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import numpy as np
import torch

from xlt_search.data.tokenization import SEGMENTS

# The columns a training step reads, per kind (span splits also carry evaluation-only columns), and
# SEGMENTS where a split has them.
TRAIN_COLUMNS: dict[str, tuple[str, ...]] = {
    "classification": ("input_ids", "labels"),
    "multiple_choice": ("input_ids", "labels"),
    "tagging": ("input_ids", "labels"),
    "span": ("input_ids", "start_positions", "end_positions"),
    "parallel": ("input_ids", "candidate_ids"),
}


def collate(kind: str, rows: Mapping[str, Sequence[Any]], pad_token_id: int) -> dict[str, Any]:
    """Pad a batch of tokenized rows (column -> one entry per example) to its longest sequence.

    Gives ``input_ids`` and ``attention_mask`` ([batch, tokens]; [batch, choices, tokens] for
    multiple choice, with ``choice_mask`` when examples have different numbers of choices), the
    ``token_type_ids`` when the rows have them (padded with 0), and the labels of the kind, as
    tensors; span batches keep their evaluation columns, when present, as
    lists; retrieval batches hold the candidates as ``candidate_ids`` and ``candidate_mask``.
    Parallel batches are one encoder batch of 2 x batch rows: the English sentences, then their
    translations in the same order (``input_ids``, ``attention_mask``).
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

    if kind == "parallel":
        ids, mask = _pad([*rows["input_ids"], *rows["candidate_ids"]], pad_token_id)
        return {"input_ids": ids, "attention_mask": mask}
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

"""Loading, tokenization per kind, the prepared cache and batching, on the toy world's real files."""

from __future__ import annotations

import dataclasses
import pickle
from collections import Counter
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from conftest import ToyWorld
from transformers import AutoTokenizer

from xlt_search.data import (
    BatchStream,
    DataError,
    PreparedData,
    SplitRequest,
    collate,
    eval_batches,
    load_task_split,
    prepare_data,
    span_windows,
    tokenize,
)
from xlt_search.synthetic.encoder import save_encoder
from xlt_search.tasks.base import DataSource, Task

ALL_TASKS = ("toy_nli", "toy_copa", "toy_qa", "toy_choice4", "toy_tags")


def _prepare(world: ToyWorld, cache: Path, requests: list[SplitRequest], **kw) -> PreparedData:
    settings = {"max_seq_length": 32, "max_train_examples": None, "seed": 0} | kw
    return prepare_data(
        requests,
        str(world.encoder),
        cache_dir=cache,
        registry=world.tasks,
        languages=world.languages,
        **settings,
    )


@pytest.fixture(scope="module")
def prepared(toy_world: ToyWorld, tmp_path_factory: pytest.TempPathFactory) -> PreparedData:
    requests = [SplitRequest(key, "train", "en") for key in ALL_TASKS]
    requests += [SplitRequest("toy_qa", "validation", lang) for lang in ("en", "ta")]
    return _prepare(toy_world, tmp_path_factory.mktemp("prepared"), requests)


@pytest.fixture(scope="module")
def tokenizer(toy_world: ToyWorld):  # noqa: ANN201
    return AutoTokenizer.from_pretrained(toy_world.encoder)


def test_load_task_split_gives_canonical_columns_per_language(toy_world: ToyWorld) -> None:
    nli = toy_world.tasks["toy_nli"]
    english = load_task_split(nli, "validation", "en")
    far = load_task_split(nli, "validation", "tb")
    assert english.column_names == ["text_a", "text_b", "label"]
    assert len(english) == len(far) == 60
    # the {lang} placeholder picked each language's own file
    assert any(w.startswith("tb") for row in far["text_a"] for w in row.split())
    assert not any(w.startswith("tb") for row in english["text_a"] for w in row.split())
    choice = load_task_split(toy_world.tasks["toy_copa"], "train", "en")
    assert choice.column_names == ["context", "choices", "label"]
    tags = load_task_split(toy_world.tasks["toy_tags"], "train", "en")
    assert tags.column_names == ["tokens", "tags"]


def test_load_task_split_errors_name_the_problem(toy_world: ToyWorld) -> None:
    nli = toy_world.tasks["toy_nli"]
    with pytest.raises(DataError, match="no 'test' split"):
        load_task_split(nli, "test", "en")
    typo = dataclasses.replace(nli, columns={**nli.columns, "label": "labl"})
    with pytest.raises(DataError, match="column 'labl'"):
        load_task_split(typo, "train", "en")
    source = DataSource(path="json", data_files={"train": "{where}/x.jsonl"})
    odd = dataclasses.replace(nli, sources=(source,))
    with pytest.raises(DataError, match="unknown placeholder"):
        load_task_split(odd, "train", "en")


def test_classification_is_the_pair_template_with_truncation(
    toy_world: ToyWorld, tokenizer
) -> None:
    task = toy_world.tasks["toy_nli"]
    raw = datasets.Dataset.from_list([{"text_a": "w1 w2 w3", "text_b": "w4", "label": 2}])
    row = tokenize(task, raw, tokenizer, max_seq_length=32)[0]
    ids = tokenizer.convert_ids_to_tokens(row["input_ids"])
    assert ids == ["<s>", "w1", "w2", "w3", "</s>", "</s>", "w4", "</s>"]
    assert row["labels"] == 2
    long = datasets.Dataset.from_list(
        [{"text_a": " ".join(["w1"] * 40), "text_b": "w4", "label": 0}]
    )
    assert len(tokenize(task, long, tokenizer, max_seq_length=16)[0]["input_ids"]) == 16


def test_multiple_choice_makes_one_sequence_per_choice(toy_world: ToyWorld, tokenizer) -> None:
    task = toy_world.tasks["toy_copa"]
    raw = datasets.Dataset.from_list([{"context": "w1 w2", "choices": ["w3", "w4 w5"], "label": 1}])
    row = tokenize(task, raw, tokenizer, max_seq_length=32)[0]
    assert [tokenizer.convert_ids_to_tokens(ids) for ids in row["input_ids"]] == [
        ["<s>", "w1", "w2", "</s>", "</s>", "w3", "</s>"],
        ["<s>", "w1", "w2", "</s>", "</s>", "w4", "w5", "</s>"],
    ]
    assert row["labels"] == 1


def test_tagging_labels_the_first_sub_token_only(tmp_path: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "[PAD]": 3, "ab": 4, "##cd": 5, "ef": 6}
    backend = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    wordpiece = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]"
    )
    task = Task("t", "tagging", (DataSource("json"),), {"tokens": "t", "tags": "g"}, 3, "accuracy")
    raw = datasets.Dataset.from_list([{"tokens": ["abcd", "ef", "ab"], "tags": [2, 1, -1]}])
    row = tokenize(task, raw, wordpiece, max_seq_length=32)[0]
    assert row["input_ids"] == [4, 5, 6, 4]
    assert row["labels"] == [2, -100, 1, -100]  # -1 marks an untagged word: not scored


def test_string_tags_map_through_the_labels_and_unknown_ones_are_named(
    toy_world: ToyWorld, tmp_path: Path
) -> None:
    path = tmp_path / "tags.jsonl"
    path.write_text('{"words": ["w1", "w2"], "pos": ["NOUN", "VERB"]}\n')
    task = Task(
        "t",
        "tagging",
        (DataSource("json", data_files={"train": str(path)}),),
        {"tokens": "words", "tags": "pos"},
        2,
        "accuracy",
        labels=("VERB", "NOUN"),
    )
    assert load_task_split(task, "train", "en")["tags"] == [[1, 0]]
    with pytest.raises(DataError, match="tags NOUN are not among the task's 1 declared labels"):
        load_task_split(dataclasses.replace(task, labels=("VERB",), num_labels=1), "train", "en")
    with pytest.raises(DataError, match="holds strings; declare the task's labels"):
        load_task_split(dataclasses.replace(task, labels=()), "train", "en")


def test_span_positions_point_at_the_answer(toy_world: ToyWorld, tokenizer) -> None:
    task = toy_world.tasks["toy_qa"]
    context = "w5 w6 w7 w8"
    raw = datasets.Dataset.from_list(
        [
            {
                "context": context,
                "question": "w6",
                "answers": {"text": ["w7 w8"], "answer_start": [6]},
            },
            {"context": context, "question": "w9", "answers": {"text": [], "answer_start": []}},
            {
                "context": context,
                "question": "w6",
                "answers": {"text": ["w8"], "answer_start": [9]},
            },
        ]
    )
    rows = tokenize(task, raw, tokenizer, max_seq_length=32)
    first = rows[0]
    # <s> w6 </s> </s> w5 w6 w7 w8 </s>: the answer is tokens 6..7
    assert (first["start_positions"], first["end_positions"]) == (6, 7)
    start, end = first["offset_start"][6], first["offset_end"][7]
    assert context[start:end] == "w7 w8"
    assert first["offset_start"][:4] == [-1, -1, -1, -1]
    assert (rows[1]["start_positions"], rows[1]["end_positions"]) == (0, 0)
    assert rows["example"] == [0, 1, 2]  # one window each: the contexts fit


def test_a_long_context_is_read_in_overlapping_windows(toy_world: ToyWorld, tokenizer) -> None:
    task = toy_world.tasks["toy_qa"]
    context = " ".join(f"w{i}" for i in range(10, 30))  # 20 words
    answer_start = context.index("w27")
    raw = datasets.Dataset.from_list(
        [
            {"context": "w1 w2", "question": "w3", "answers": {"text": [], "answer_start": []}},
            {
                "context": context,
                "question": " ".join(["w5"] * 12),  # longer than a third of the sequence: cut
                "answers": {"text": ["w27 w28"], "answer_start": [answer_start]},
            },
        ]
    )
    max_length = 16
    question_tokens, stride = span_windows(max_length)
    rows = tokenize(task, raw, tokenizer, max_seq_length=max_length)
    windows = [row for row in rows if row["example"] == 1]
    assert len(windows) > 1 and rows[0]["example"] == 0
    seen: list[str] = []
    for row in windows:
        assert len(row["input_ids"]) <= max_length
        assert (
            row["input_ids"][1 : 1 + question_tokens + 1].count(
                tokenizer.convert_tokens_to_ids("w5")
            )
            == question_tokens
        )
        words = [
            context[s:e]
            for s, e in zip(row["offset_start"], row["offset_end"], strict=True)
            if s >= 0
        ]
        if seen:  # consecutive windows share `stride` words
            assert words[:stride] == seen[-stride:]
        seen += words[stride:] if seen else words
        if "w27" in words and "w28" in words:
            span = slice(row["start_positions"], row["end_positions"] + 1)
            assert (
                context[row["offset_start"][span.start] : row["offset_end"][span.stop - 1]]
                == "w27 w28"
            )
        else:  # the answer is not whole in this window: it points at "no answer"
            assert (row["start_positions"], row["end_positions"]) == (0, 0)
    assert seen == context.split()  # the windows cover the whole context
    assert any(row["start_positions"] > 0 for row in windows)


def test_retrieval_rows_hold_both_sentences(toy_world: ToyWorld, tokenizer) -> None:
    task = dataclasses.replace(
        toy_world.tasks["toy_nli"],
        kind="retrieval",
        columns={"query": "text_a", "candidate": "text_b"},
        num_labels=0,
    )
    raw = datasets.Dataset.from_list([{"query": "w1 w2 w3", "candidate": "w4"}])
    rows = tokenize(task, raw, tokenizer, max_seq_length=32)
    assert tokenizer.convert_ids_to_tokens(rows[0]["input_ids"]) == [
        "<s>",
        "w1",
        "w2",
        "w3",
        "</s>",
    ]
    assert tokenizer.convert_ids_to_tokens(rows[0]["candidate_ids"]) == ["<s>", "w4", "</s>"]
    batch = collate("retrieval", rows[:1], tokenizer.pad_token_id)
    assert batch["input_ids"].shape == (1, 5) and batch["candidate_ids"].shape == (1, 3)
    assert batch["candidate_mask"].tolist() == [[1, 1, 1]]


def test_parallel_pairs_train_as_one_batch_of_both_sides(toy_world: ToyWorld, tokenizer) -> None:
    task = dataclasses.replace(
        toy_world.tasks["toy_nli"],
        kind="parallel",
        columns={"source": "text_a", "target": "text_b"},
        num_labels=0,
    )
    raw = datasets.Dataset.from_list(
        [{"source": "w1 w2 w3", "target": "w7"}, {"source": "w5", "target": "w8 w9"}]
    )
    rows = tokenize(task, raw, tokenizer, max_seq_length=32)
    second = tokenizer.convert_ids_to_tokens(rows[1]["candidate_ids"])
    assert second == ["<s>", "w8", "w9", "</s>"]
    stream = BatchStream(rows, "parallel", tokenizer.pad_token_id, batch_size=2, seed=0)
    batch = stream.next()
    # the English sentences, then their translations in the same order, padded to the longest
    ids = batch["input_ids"].tolist()
    english = {tuple(tokenizer.convert_ids_to_tokens(ids[i])[1:3]) for i in (0, 1)}
    assert english == {("w1", "w2"), ("w5", "</s>")}
    for i in (0, 1):
        first = tokenizer.convert_ids_to_tokens(ids[i])[1]
        assert tokenizer.convert_ids_to_tokens(ids[i + 2])[1] == {"w1": "w7", "w5": "w8"}[first]
    assert batch["attention_mask"].sum(1).tolist() == [
        len(ids[i]) - ids[i].count(tokenizer.pad_token_id) for i in range(4)
    ]


def test_prepared_splits_are_torch_formatted_and_picklable(prepared: PreparedData) -> None:
    split = prepared.load("toy_nli", "train", "en")
    assert len(split) == 300
    assert isinstance(split[0]["input_ids"], torch.Tensor)
    assert pickle.loads(pickle.dumps(prepared)) == prepared
    assert prepared.families == {"en": "english", "ta": "toy-close"}
    assert prepared.pad_token_id == 1
    with pytest.raises(KeyError, match="toy_nli/validation/tb was not prepared"):
        prepared.load("toy_nli", "validation", "tb")


def test_a_second_prepare_reuses_the_cache(toy_world: ToyWorld, tmp_path: Path) -> None:
    requests = [SplitRequest("toy_nli", "train", "en"), SplitRequest("toy_nli", "validation", "ta")]
    first = _prepare(toy_world, tmp_path, requests)
    stamps = {key: Path(path).stat().st_mtime_ns for key, path in first.splits.items()}
    second = _prepare(toy_world, tmp_path, requests)
    assert second == first
    assert {key: Path(path).stat().st_mtime_ns for key, path in second.splits.items()} == stamps
    # a different length is a different fingerprint
    shorter = _prepare(toy_world, tmp_path, requests, max_seq_length=16)
    assert set(shorter.splits.values()).isdisjoint(first.splits.values())
    # the train cap only changes the train split's fingerprint
    capped = _prepare(toy_world, tmp_path, requests, max_train_examples=50)
    train = "toy_nli/train/en"
    assert capped.splits[train] != first.splits[train]
    assert capped.splits["toy_nli/validation/ta"] == first.splits["toy_nli/validation/ta"]


def test_the_cache_key_follows_the_tokenizer_and_what_shapes_the_data(
    toy_world: ToyWorld, tmp_path: Path
) -> None:
    requests = [SplitRequest("toy_nli", "train", "en")]
    first = _prepare(toy_world, tmp_path, requests)
    other_vocabulary = tmp_path / "other-encoder"
    save_encoder([f"v{i}" for i in range(30)], other_vocabulary)
    retokenized = prepare_data(
        requests, str(other_vocabulary), 32, None, tmp_path, 0, registry=toy_world.tasks
    )
    assert retokenized.splits != first.splits
    nli = toy_world.tasks["toy_nli"]

    def with_task(task: Task) -> PreparedData:
        world = dataclasses.replace(toy_world, tasks={**toy_world.tasks, "toy_nli": task})
        return _prepare(world, tmp_path, requests)

    # the metric and the languages do not shape the tokenized data; the columns do
    same = with_task(dataclasses.replace(nli, metric="f1", languages=("en",)))
    assert same.splits == first.splits
    swapped = dict(nli.columns, text_a=nli.columns["text_b"], text_b=nli.columns["text_a"])
    assert with_task(dataclasses.replace(nli, columns=swapped)).splits != first.splits


def test_changed_source_files_are_prepared_again(toy_world: ToyWorld, tmp_path: Path) -> None:
    source = toy_world.root / "toy_nli" / "train.en.jsonl"
    copy = tmp_path / "train.en.jsonl"
    copy.write_text(source.read_text())
    task = dataclasses.replace(
        toy_world.tasks["toy_nli"],
        sources=(DataSource(path="json", data_files={"train": str(copy)}),),
    )
    registry = {**toy_world.tasks, "toy_nli": task}
    request = [SplitRequest("toy_nli", "train", "en")]

    def prepare() -> PreparedData:
        return prepare_data(
            request,
            str(toy_world.encoder),
            32,
            None,
            tmp_path / "cache",
            0,
            registry=registry,
            languages=toy_world.languages,
        )

    before = prepare()
    copy.write_text("\n".join(source.read_text().splitlines()[:10]) + "\n")
    after = prepare()
    assert after.splits != before.splits
    assert len(after.load("toy_nli", "train", "en")) == 10


def test_train_cap_subsamples_deterministically(toy_world: ToyWorld, tmp_path: Path) -> None:
    requests = [SplitRequest("toy_nli", "train", "en")]
    a = _prepare(toy_world, tmp_path / "a", requests, max_train_examples=50, seed=1)
    b = _prepare(toy_world, tmp_path / "b", requests, max_train_examples=50, seed=1)
    c = _prepare(toy_world, tmp_path / "c", requests, max_train_examples=50, seed=2)

    def ids(data: PreparedData) -> list[list[int]]:
        return data.load("toy_nli", "train", "en").with_format(None)["input_ids"]

    assert len(ids(a)) == 50
    assert ids(a) == ids(b) != ids(c)


def test_a_task_can_have_its_own_cap(toy_world: ToyWorld, tmp_path: Path) -> None:
    requests = [SplitRequest("toy_nli", "train", "en"), SplitRequest("toy_tags", "train", "en")]
    requests.append(SplitRequest("toy_nli", "validation", "en"))
    data = _prepare(
        toy_world,
        tmp_path,
        requests,
        max_train_examples=100,
        max_train_examples_per_task={"toy_nli": 20},
    )
    assert len(data.load("toy_nli", "train", "en")) == 20
    assert len(data.load("toy_tags", "train", "en")) == 100  # the cap for every other task
    assert len(data.load("toy_nli", "validation", "en")) == 60  # caps are for training splits


def test_batch_stream_pads_to_the_longest_in_each_batch(prepared: PreparedData) -> None:
    split = prepared.load("toy_nli", "train", "en")
    stream = BatchStream(split, "classification", prepared.pad_token_id, batch_size=8, seed=0)
    for _ in range(5):
        batch = stream.next()
        lengths = batch["attention_mask"].sum(1)
        assert batch["input_ids"].shape == (8, int(lengths.max()))
        assert (batch["input_ids"][batch["attention_mask"] == 0] == prepared.pad_token_id).all()


def test_batch_stream_covers_each_epoch_once_and_resumes(prepared: PreparedData) -> None:
    split = prepared.load("toy_nli", "train", "en")
    stream = BatchStream(split, "classification", prepared.pad_token_id, batch_size=32, seed=5)
    # 300 examples, batches of 32: 9 batches an epoch, the 12 left over are dropped
    seen = [stream.next() for _ in range(9)]
    labels = torch.cat([b["labels"] for b in seen])
    assert len(labels) == 288 and stream.state_dict() == {"epoch": 0, "position": 288}
    stream.next()
    assert stream.state_dict() == {"epoch": 1, "position": 32}
    state = stream.state_dict()
    expected = [stream.next()["input_ids"] for _ in range(12)]
    resumed = BatchStream(split, "classification", prepared.pad_token_id, batch_size=32, seed=5)
    resumed.load_state_dict(state)
    assert all(torch.equal(resumed.next()["input_ids"], e) for e in expected)
    other = BatchStream(split, "classification", prepared.pad_token_id, batch_size=32, seed=6)
    assert not torch.equal(other.next()["input_ids"], seen[0]["input_ids"])


@pytest.mark.parametrize("key", ["toy_nli", "toy_copa"])
def test_batch_stream_groups_by_length(prepared: PreparedData, key: str) -> None:
    split = prepared.load(key, "train", "en")
    stream = BatchStream(split, prepared.task(key).kind, prepared.pad_token_id, 8, seed=3)
    epoch = [stream.next() for _ in range(len(split) // 8)]
    assert stream.state_dict()["epoch"] == 0

    def padding(lengths: np.ndarray) -> float:  # [batches, examples]: the share padded
        widths = lengths.max(1, keepdims=True)
        return float((widths - lengths).sum() / (widths.sum() * lengths.shape[1]))

    # an example's length: its tokens, or its longest choice's
    grouped = np.stack([b["attention_mask"].sum(-1).reshape(8, -1).amax(-1).numpy() for b in epoch])
    assert [b["input_ids"].shape[-1] for b in epoch] == grouped.max(1).tolist()
    shuffled = stream.lengths[np.random.default_rng(0).permutation(len(split))]
    shuffled = shuffled[: grouped.size].reshape(grouped.shape)
    assert padding(grouped) < padding(shuffled) / 2


def test_batch_stream_draws_each_example_once_an_epoch(prepared: PreparedData) -> None:
    split = prepared.load("toy_nli", "train", "en")
    stream = BatchStream(split, "classification", prepared.pad_token_id, 8, seed=3)
    epoch = [stream.next() for _ in range(len(split) // 8)]
    seen = Counter(
        str(row[mask.bool()].tolist())
        for batch in epoch
        for row, mask in zip(batch["input_ids"], batch["attention_mask"], strict=True)
    )
    everything = Counter(str(list(ids)) for ids in split.with_format(None)["input_ids"])
    assert sum(seen.values()) == len(epoch) * 8 and not seen - everything


def test_batch_streams_of_every_kind(prepared: PreparedData) -> None:
    kinds = {key: prepared.task(key).kind for key in ALL_TASKS}
    for key, kind in kinds.items():
        batch = BatchStream(prepared.load(key, "train", "en"), kind, 1, 4, seed=0).next()
        if kind == "multiple_choice":
            assert batch["input_ids"].ndim == 3 and batch["input_ids"].shape[0] == 4
        elif kind == "tagging":
            assert batch["labels"].shape == batch["input_ids"].shape
        elif kind == "span":
            assert batch["start_positions"].shape == (4,)
            assert "offset_start" not in batch  # evaluation-only columns stay on disk


def test_collate_masks_missing_choices() -> None:
    rows = {"input_ids": [[[0, 5, 2], [0, 6, 7, 2]], [[0, 8, 2]]], "labels": [1, 0]}
    batch = collate("multiple_choice", rows, pad_token_id=1)
    assert batch["input_ids"].shape == (2, 2, 4)
    assert batch["choice_mask"].tolist() == [[True, True], [True, False]]
    assert batch["attention_mask"][0, 0].tolist() == [1, 1, 1, 0]


def test_eval_batches_hold_every_example_once_sorted_by_length(prepared: PreparedData) -> None:
    split = prepared.load("toy_qa", "validation", "ta")
    batches = eval_batches(split, "span", prepared.pad_token_id, batch_size=16)
    contexts = [c for b in batches for c in b["context"]]
    assert sorted(contexts) == sorted(split.with_format(None)["context"])
    widths = [b["input_ids"].shape[1] for b in batches]
    assert widths == sorted(widths)
    assert all(len(row) == b["input_ids"].shape[1] for b in batches for row in b["offset_start"])
    assert np.sum([len(b["context"]) for b in batches]) == len(split)


@pytest.mark.parametrize("key", ALL_TASKS)
def test_batch_stream_reads_the_rows_of_a_selection(prepared: PreparedData, key: str) -> None:
    kind = prepared.task(key).kind
    split = prepared.load(key, "train", "en").select(range(5, 25))
    batch = BatchStream(split, kind, prepared.pad_token_id, batch_size=20, seed=0).next()

    def unpadded(ids: torch.Tensor, mask: torch.Tensor) -> list[tuple[int, ...]]:
        return [tuple(row[m.bool()].tolist()) for row, m in zip(ids, mask, strict=True)]

    expected = split.with_format(None)["input_ids"]
    if kind == "multiple_choice":
        got = [
            tuple(unpadded(ids, mask))
            for ids, mask in zip(batch["input_ids"], batch["attention_mask"], strict=True)
        ]
        expected = [tuple(tuple(seq) for seq in choices) for choices in expected]
    else:
        got = unpadded(batch["input_ids"], batch["attention_mask"])
        expected = [tuple(seq) for seq in expected]
    assert sorted(got) == sorted(expected)

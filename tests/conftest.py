"""Shared fixtures: a tiny saved encoder and a toy multilingual world of every task kind, on disk.

They go through the real loading code (`from_pretrained` on a saved directory, `datasets` on local
JSON-lines files), independently of the synthetic suite.
"""

from __future__ import annotations

import errno
import json
import os
import random
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# Tests never reach the hub: a dataset or model missing here fails at once instead of after
# retries (set before `datasets` and `huggingface_hub` read it, at import).
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from processes import run_cli  # noqa: E402

from xlt_search.synthetic.encoder import save_encoder  # noqa: E402
from xlt_search.tasks.base import DataSource, Language, Task  # noqa: E402

TOY_WORDS = 40
TOY_LANGUAGES: tuple[Language, ...] = (
    Language("en", "English", "english", "Latn"),
    Language("ta", "Toy A", "toy-close", "Latn"),
    Language("tb", "Toy B", "toy-far", "Latn"),
)


@dataclass(frozen=True)
class ToyWorld:
    """A toy task registry with its data files and the tiny encoder that reads them."""

    root: Path
    encoder: Path
    tasks: dict[str, Task]
    languages: dict[str, Language]


def toy_word(i: int, lang: str) -> str:
    """The toy world's word `i` (below TOY_WORDS) in language `lang`."""
    # "ta" keeps the English word for most of the vocabulary, "tb" for few.
    keep = {"en": TOY_WORDS, "ta": int(TOY_WORDS * 0.8), "tb": int(TOY_WORDS * 0.2)}[lang]
    return f"w{i}" if i < keep else f"{lang}{i}"


def _write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def _sentence(rng: random.Random, lang: str, length: int) -> list[int]:
    return [rng.randrange(TOY_WORDS) for _ in range(length)]


def _words(ids: list[int], lang: str) -> str:
    return " ".join(toy_word(i, lang) for i in ids)


def _pair_rows(rng: random.Random, lang: str, n: int) -> list[dict]:
    """Entailment-like: 0 when the hypothesis word is in the premise, 1 when its 'antonym' (i xor 1)
    is, 2 otherwise."""
    rows = []
    for _ in range(n):
        premise = _sentence(rng, lang, rng.randint(3, 8))
        label = rng.randrange(3)
        if label == 0:
            word = rng.choice(premise)
        elif label == 1:
            word = rng.choice(premise) ^ 1
        else:
            word = rng.choice(
                [i for i in range(TOY_WORDS) if i not in premise and i ^ 1 not in premise]
            )
        rows.append(
            {"premise": _words(premise, lang), "hypothesis": _words([word], lang), "label": label}
        )
    return rows


def _choice_rows(rng: random.Random, lang: str, n: int, num_choices: int) -> list[dict]:
    """The right choice holds the context's first word."""
    rows = []
    for _ in range(n):
        context = _sentence(rng, lang, rng.randint(2, 6))
        label = rng.randrange(num_choices)
        choices = [
            _words([context[0]] if j == label else _sentence(rng, lang, 1), lang)
            for j in range(num_choices)
        ]
        rows.append({"premise": _words(context, lang), "options": choices, "answer": label})
    return rows


def _tag_rows(rng: random.Random, n: int) -> list[dict]:
    rows = []
    for _ in range(n):
        ids = _sentence(rng, "en", rng.randint(2, 9))
        rows.append({"words": [toy_word(i, "en") for i in ids], "tags": [i % 3 for i in ids]})
    return rows


def _span_rows(rng: random.Random, lang: str, n: int) -> list[dict]:
    """Question "wK": the answer is the word after wK in the context; none when wK is absent."""
    rows = []
    for _ in range(n):
        ids = _sentence(rng, lang, rng.randint(4, 10))
        words = [toy_word(i, lang) for i in ids]
        context = " ".join(words)
        if rng.random() < 0.2:
            absent = [i for i in range(TOY_WORDS) if i not in ids]
            question, answers = toy_word(rng.choice(absent), lang), {"text": [], "answer_start": []}
        else:
            k = words.index(words[rng.randrange(len(ids) - 1)])  # the first occurrence decides
            question = words[k]
            start = len(" ".join(words[: k + 1])) + 1
            answers = {"text": [words[k + 1]], "answer_start": [start]}
        rows.append({"passage": context, "query": question, "answers": answers})
    return rows


def _source(root: Path, key: str, multilingual: bool) -> DataSource:
    validation = "validation.{lang}.jsonl" if multilingual else "validation.en.jsonl"
    return DataSource(
        path="json",
        data_files={
            "train": str(root / key / "train.en.jsonl"),
            "validation": str(root / key / validation),
        },
        splits={"train": "train", "validation": "validation"},
    )


def build_toy_world(root: Path, train_size: int = 300, eval_size: int = 60) -> ToyWorld:
    """Write the toy world's files under `root` and declare its tasks."""
    rng = random.Random(0)
    codes = tuple(lang.code for lang in TOY_LANGUAGES)
    for key, make in {
        "toy_nli": lambda lang, n: _pair_rows(rng, lang, n),
        "toy_copa": lambda lang, n: _choice_rows(rng, lang, n, 2),
        "toy_qa": lambda lang, n: _span_rows(rng, lang, n),
    }.items():
        _write(root / key / "train.en.jsonl", make("en", train_size))
        for lang in codes:
            _write(root / key / f"validation.{lang}.jsonl", make(lang, eval_size))
    _write(root / "toy_choice4" / "train.en.jsonl", _choice_rows(rng, "en", train_size, 4))
    _write(root / "toy_choice4" / "validation.en.jsonl", _choice_rows(rng, "en", eval_size, 4))
    for split, n in (("train", train_size), ("validation", eval_size)):
        _write(root / "toy_tags" / f"{split}.en.jsonl", _tag_rows(rng, n))

    pair = {"text_a": "premise", "text_b": "hypothesis", "label": "label"}
    choice = {"context": "premise", "choices": "options", "label": "answer"}
    span = {"context": "passage", "question": "query", "answers": "answers"}
    tasks = [
        Task(
            "toy_nli",
            "classification",
            (_source(root, "toy_nli", True),),
            pair,
            3,
            "accuracy",
            codes,
        ),
        Task(
            "toy_copa",
            "multiple_choice",
            (_source(root, "toy_copa", True),),
            choice,
            2,
            "accuracy",
            codes,
        ),
        Task("toy_qa", "span", (_source(root, "toy_qa", True),), span, 2, "f1", codes),
        Task(
            "toy_choice4",
            "multiple_choice",
            (_source(root, "toy_choice4", False),),
            choice,
            4,
            "accuracy",
        ),
        Task(
            "toy_tags",
            "tagging",
            (_source(root, "toy_tags", False),),
            {"tokens": "words", "tags": "tags"},
            3,
            "accuracy",
        ),
        # A target that trains on another task's English data (as XCOPA trains on SIQA then COPA).
        Task(
            "toy_copa_via_choice",
            "multiple_choice",
            (_source(root, "toy_copa", True),),
            choice,
            2,
            "accuracy",
            codes,
            train_tasks=("toy_choice4", "toy_copa"),
        ),
    ]
    words = [toy_word(i, lang) for lang in codes for i in range(TOY_WORDS)]
    encoder = root / "encoder"
    save_encoder(dict.fromkeys(words), encoder, hidden_size=32, intermediate_size=64)
    return ToyWorld(
        root=root,
        encoder=encoder,
        tasks={task.key: task for task in tasks},
        languages={lang.code: lang for lang in TOY_LANGUAGES},
    )


@pytest.fixture(scope="session")
def toy_world(tmp_path_factory: pytest.TempPathFactory) -> ToyWorld:
    """The toy world, written once per test session."""
    return build_toy_world(tmp_path_factory.mktemp("toy_world"))


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs mounted on a folder of tmp_path, unmounted after the test."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs takes root")
    folder = tmp_path / "small-disk"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def fill(folder: Path) -> Path:
    """A file that takes every free byte of `folder`'s file system."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError as error:
        assert error.errno == errno.ENOSPC
    try:
        while True:
            os.write(fd, b"\0")
    except OSError as error:
        assert error.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


@dataclass(frozen=True)
class FinishedSearch:
    """A search run through the real CLI into its own folder and MLflow store."""

    work: Path
    uri: str
    spec: Path
    stdout: str


@pytest.fixture(scope="session")
def quickstart_search(tmp_path_factory: pytest.TempPathFactory) -> FinishedSearch:
    """The README's quickstart search, run once per session: `xlt-search run
    search_spaces/quickstart.yaml` with a real local Ray and a SQLite MLflow store."""
    spec = Path(__file__).resolve().parents[1] / "search_spaces" / "quickstart.yaml"
    work = tmp_path_factory.mktemp("quickstart")
    uri = f"sqlite:///{work / 'mlflow.db'}"
    env = {"MLFLOW_TRACKING_URI": uri}
    result = run_cli("run", str(spec), cwd=work, env=env, timeout_s=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return FinishedSearch(work, uri, spec, result.stdout)

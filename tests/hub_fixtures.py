"""Small copies of the hub datasets the registry reads, in each dataset's own schema.

`write_mirror(root)` lays out ``root/<hub id>/`` as the hub repositories are: a README.md whose
``configs:`` section maps each config's splits to Parquet files, and the files with the column
names and feature types the hub serves (ClassLabel names, string labels, structs of lists).
Pointing `data.mirror` at `root` makes the real loader read them through `datasets.load_dataset`.
The rows are random sentences over a small vocabulary (`WORDS`), enough to tokenize, train a few
steps and score; they carry no meaning.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import yaml

from xlt_search.tasks import REGISTRY

WORDS = tuple(f"w{i}" for i in range(60)) + ("cause", "effect")
ROWS = 12  # per split and language
NLI = ["entailment", "neutral", "contradiction"]
NER = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]
UPOS = "ADJ ADP ADV AUX CCONJ DET INTJ NOUN NUM PART PRON PROPN PUNCT SCONJ SYM VERB X".split()

Value, ClassLabel, List = datasets.Value, datasets.ClassLabel, datasets.List
Row = Callable[[random.Random, int, str], dict[str, Any]]


@dataclass(frozen=True)
class HubDataset:
    """One hub repository: its configs (name -> the language its rows are in, and split names),
    its features, and how a row of it looks. `export`: the layout of the hub's own Parquet export
    (``refs/convert/parquet``): ``<config>/<split>/0000.parquet`` and no ``configs:`` section."""

    configs: dict[str, tuple[str, tuple[str, ...]]]
    features: datasets.Features
    row: Row
    export: bool = False


def _text(rng: random.Random, low: int = 3, high: int = 8) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(low, high)))


def _nli(rng: random.Random, i: int, lang: str) -> dict[str, Any]:
    return {"premise": _text(rng), "hypothesis": _text(rng), "label": rng.randrange(3)}


def _squad(rng: random.Random, i: int, lang: str, *, answerable: bool = True) -> dict[str, Any]:
    context = _text(rng, 20, 40)  # longer than one window at the tests' sequence length
    words = context.split()
    start = rng.randrange(len(words) - 2)
    answer = " ".join(words[start : start + 2])
    char = len(" ".join(words[:start])) + (1 if start else 0)
    answers = (
        {"text": [answer], "answer_start": [char]}
        if answerable
        else {"text": [], "answer_start": []}
    )
    return {
        "id": f"q{i}",
        "title": "t",
        "context": context,
        "question": _text(rng),
        "answers": answers,
    }


_SQUAD_FEATURES = {
    "id": Value("string"),
    "title": Value("string"),
    "context": Value("string"),
    "question": Value("string"),
    "answers": {"text": List(Value("string")), "answer_start": List(Value("int32"))},
}
# google/xtreme's QA configs declare the answer fields the other way round, and XQuAD has no title.
_XTREME_ANSWERS = {"answer_start": List(Value("int32")), "text": List(Value("string"))}


def _languages(key: str) -> list[tuple[str, str]]:
    """(our code, the source's spelling) for each evaluation language of a registered task."""
    source = REGISTRY[key].sources[0]
    return [(code, source.code(code)) for code in REGISTRY[key].languages]


def _hub() -> dict[str, HubDataset]:
    tydiqa_names = dict(_languages("tydiqa"))
    return {
        "facebook/xnli": HubDataset(
            {code: (code, ("train", "validation", "test")) for code, _ in _languages("xnli")},
            datasets.Features(
                premise=Value("string"), hypothesis=Value("string"), label=ClassLabel(names=NLI)
            ),
            _nli,
        ),
        "nyu-mll/glue": HubDataset(
            {
                "mnli": (
                    "en",
                    ("train", "validation_matched", "validation_mismatched", "test_matched"),
                ),
                "qqp": ("en", ("train", "validation", "test")),
            },
            datasets.Features(),  # per config below
            _nli,
        ),
        "facebook/anli": HubDataset(
            {
                "plain_text": (
                    "en",
                    tuple(f"{s}_r{r}" for r in (1, 2, 3) for s in ("train", "dev", "test")),
                )
            },
            datasets.Features(
                uid=Value("string"),
                premise=Value("string"),
                hypothesis=Value("string"),
                label=ClassLabel(names=NLI),
                reason=Value("string"),
            ),
            lambda rng, i, lang: {**_nli(rng, i, lang), "uid": f"u{i}", "reason": ""},
        ),
        "stanfordnlp/snli": HubDataset(
            {"plain_text": ("en", ("train", "validation", "test"))},
            datasets.Features(
                premise=Value("string"), hypothesis=Value("string"), label=ClassLabel(names=NLI)
            ),
            # SNLI marks pairs with no gold label -1
            lambda rng, i, lang: {
                **_nli(rng, i, lang),
                "label": -1 if i == 0 else rng.randrange(3),
            },
        ),
        "google-research-datasets/paws": HubDataset(
            {"labeled_final": ("en", ("train", "validation", "test"))},
            _PAWS_FEATURES,
            _paws,
        ),
        "google-research-datasets/paws-x": HubDataset(
            {code: (code, ("train", "validation", "test")) for code, _ in _languages("paws_x")},
            _PAWS_FEATURES,
            _paws,
        ),
        "rajpurkar/squad": HubDataset(
            {"plain_text": ("en", ("train", "validation"))},
            datasets.Features(_SQUAD_FEATURES),
            _squad,
        ),
        "rajpurkar/squad_v2": HubDataset(
            {"squad_v2": ("en", ("train", "validation"))},
            datasets.Features(_SQUAD_FEATURES),
            lambda rng, i, lang: _squad(rng, i, lang, answerable=i % 3 != 0),
        ),
        "google-research-datasets/tydiqa": HubDataset(
            # one config for every language: an example's id starts with its language's name
            {"secondary_task": ("all", ("train", "validation"))},
            datasets.Features(_SQUAD_FEATURES),
            lambda rng, i, lang: {
                **_squad(rng, i, lang),
                "id": f"{list(tydiqa_names.values())[i % len(tydiqa_names)]}{i}",
            },
        ),
        "google/xtreme": HubDataset(
            {
                **{f"XQuAD.{s}": (c, ("validation",)) for c, s in _languages("xquad")},
                **{f"MLQA.{s}.{s}": (c, ("test", "validation")) for c, s in _languages("mlqa")},
                **{
                    f"udpos.{s}": (c, ("train", "validation", "test"))
                    for c, s in _languages("udpos")
                },
                **{
                    f"PAN-X.{s}": (c, ("train", "validation", "test"))
                    for c, s in _languages("panx")
                },
                **{f"tatoeba.{s}": (c, ("validation",)) for c, s in _languages("tatoeba")},
            },
            datasets.Features(),  # per config family below
            _nli,
        ),
        "Rowan/hellaswag": HubDataset(
            {"default": ("en", ("train", "validation", "test"))}, _HELLASWAG_FEATURES, _hellaswag
        ),
        "Samsoup/cosmos_qa": HubDataset(
            {"default": ("en", ("train", "validation", "test"))},
            datasets.Features(
                id=Value("string"),
                context=Value("string"),
                question=Value("string"),
                **{f"answer{k}": Value("string") for k in range(4)},
                label=Value("int32"),
            ),
            lambda rng, i, lang: {
                "id": f"c{i}",
                "context": _text(rng),
                "question": _text(rng),
                **{f"answer{k}": _text(rng, 1, 3) for k in range(4)},
                "label": rng.randrange(4),
            },
        ),
        "tau/commonsense_qa": HubDataset(
            {"default": ("en", ("train", "validation", "test"))},
            datasets.Features(
                id=Value("string"),
                question=Value("string"),
                question_concept=Value("string"),
                choices={"label": List(Value("string")), "text": List(Value("string"))},
                answerKey=Value("string"),  # "A".."E"
            ),
            lambda rng, i, lang: {
                "id": f"k{i}",
                "question": _text(rng),
                "question_concept": rng.choice(WORDS),
                "choices": {"label": list("ABCDE"), "text": [_text(rng, 1, 2) for _ in range(5)]},
                "answerKey": rng.choice("ABCDE"),
            },
        ),
        "allenai/social_i_qa": HubDataset(
            {"default": ("en", ("train", "validation"))},
            datasets.Features(
                context=Value("string"),
                question=Value("string"),
                answerA=Value("string"),
                answerB=Value("string"),
                answerC=Value("string"),
                label=Value("string"),  # "1".."3", sometimes with a trailing newline
            ),
            lambda rng, i, lang: {
                "context": _text(rng),
                "question": _text(rng),
                "answerA": _text(rng, 1, 3),
                "answerB": _text(rng, 1, 3),
                "answerC": _text(rng, 1, 3),
                "label": f"{rng.randint(1, 3)}" + ("\n" if i % 2 else ""),
            },
        ),
        "aps/super_glue": HubDataset(
            {"copa": ("en", ("train", "validation", "test"))},
            datasets.Features(
                premise=Value("string"),
                choice1=Value("string"),
                choice2=Value("string"),
                question=Value("string"),
                idx=Value("int32"),
                label=ClassLabel(names=["choice1", "choice2"]),
            ),
            lambda rng, i, lang: {**_copa(rng, i, lang), "idx": i},
            export=True,  # its main branch holds a loading script; the task reads the export
        ),
        "cambridgeltl/xcopa": HubDataset(
            {code: (code, ("validation", "test")) for code, _ in _languages("xcopa")},
            datasets.Features(
                premise=Value("string"),
                choice1=Value("string"),
                choice2=Value("string"),
                question=Value("string"),
                label=Value("int32"),
                idx=Value("int32"),
                changed=Value("bool"),
            ),
            lambda rng, i, lang: {**_copa(rng, i, lang), "idx": i, "changed": False},
        ),
        **_reasoning_hub(),
    }


def _reasoning_hub() -> dict[str, HubDataset]:
    """The reasoning targets' repositories and their English training data."""
    wino = datasets.Features(
        sentence=Value("string"),
        option1=Value("string"),
        option2=Value("string"),
        answer=Value("string"),  # "1" or "2"
    )
    letters = "ABCDE"
    return {
        # the export of a script repository: <lang>/{train,eval}/0000.parquet
        "juletxara/xstory_cloze": HubDataset(
            {code: (code, ("train", "eval")) for code, _ in _languages("xstory_cloze")},
            datasets.Features(
                story_id=Value("string"),
                **{f"input_sentence_{k}": Value("string") for k in range(1, 5)},
                sentence_quiz1=Value("string"),
                sentence_quiz2=Value("string"),
                answer_right_ending=Value("int32"),  # 1 or 2
            ),
            lambda rng, i, lang: {
                "story_id": f"s{i}",
                **{f"input_sentence_{k}": _text(rng) for k in range(1, 5)},
                "sentence_quiz1": _text(rng, 2, 4),
                "sentence_quiz2": _text(rng, 2, 4),
                "answer_right_ending": rng.randint(1, 2),
            },
            export=True,
        ),
        "allenai/winogrande": HubDataset(
            {"winogrande_xl": ("en", ("train", "validation", "test"))},
            wino,
            _winograd,
            export=True,
        ),
        "Muennighoff/xwinograd": HubDataset(
            {spelt: (code, ("test",)) for code, spelt in _languages("xwinograd")},
            wino,
            _winograd,
            export=True,
        ),
        "alexandrainst/m_hellaswag": HubDataset(
            {code: (code, ("val",)) for code, _ in _languages("m_hellaswag")},
            _HELLASWAG_FEATURES,
            _hellaswag,
        ),
        "allenai/ai2_arc": HubDataset(
            {
                name: ("en", ("train", "validation", "test"))
                for name in ("ARC-Challenge", "ARC-Easy")
            },
            datasets.Features(
                id=Value("string"),
                question=Value("string"),
                choices={"text": List(Value("string")), "label": List(Value("string"))},
                answerKey=Value("string"),
            ),
            _arc,
        ),
        "alexandrainst/m_arc": HubDataset(
            {code: (code, ("train", "val", "test")) for code, _ in _languages("m_arc")},
            datasets.Features(
                id=Value("string"),
                instruction=Value("string"),
                **{f"option_{letter}": Value("string") for letter in "abcde"},
                answer=Value("string"),
            ),
            lambda rng, i, lang: {
                "id": f"m{i}",
                "instruction": _text(rng),
                # every third question has four choices: its option_e is empty
                **{f"option_{x}": _text(rng, 1, 3) for x in "abcd"},
                "option_e": "" if i % 3 == 0 else _text(rng, 1, 3),
                "answer": rng.choice(letters[:4] if i % 3 == 0 else letters),
            },
        ),
        "ehovy/race": HubDataset(
            {"all": ("en", ("train", "validation", "test"))},
            datasets.Features(
                example_id=Value("string"),
                article=Value("string"),
                answer=Value("string"),  # "A".."D"
                question=Value("string"),
                options=List(Value("string")),
            ),
            lambda rng, i, lang: {
                "example_id": f"r{i}",
                "article": _text(rng, 10, 20),
                "answer": rng.choice(letters[:4]),
                "question": _text(rng),
                "options": [_text(rng, 1, 3) for _ in range(4)],
            },
        ),
        # JSON lines on the hub; the schema is what the declaration reads
        "facebook/belebele": HubDataset(
            {spelt: (code, ("test",)) for code, spelt in _languages("belebele")},
            datasets.Features(
                link=Value("string"),
                question_number=Value("int64"),
                flores_passage=Value("string"),
                question=Value("string"),
                **{f"mc_answer{k}": Value("string") for k in range(1, 5)},
                correct_answer_num=Value("string"),  # "1".."4"
                dialect=Value("string"),
            ),
            lambda rng, i, lang: {
                "link": f"https://example.org/{i // 2}",
                "question_number": 1 + i % 2,
                "flores_passage": _text(rng, 10, 20),
                "question": _text(rng),
                **{f"mc_answer{k}": _text(rng, 1, 3) for k in range(1, 5)},
                "correct_answer_num": str(rng.randint(1, 4)),
                "dialect": lang,
            },
        ),
        "INK-USC/xcsr": HubDataset(
            {f"X-CSQA-{s}": (c, ("validation", "test")) for c, s in _languages("xcsqa")},
            datasets.Features(
                id=Value("string"),
                lang=Value("string"),
                question={
                    "stem": Value("string"),
                    "choices": {"label": List(Value("string")), "text": List(Value("string"))},
                },
                answerKey=Value("string"),  # "A".."E"; "" on the test split
            ),
            lambda rng, i, lang: {
                "id": f"x{i}",
                "lang": lang,
                "question": {
                    "stem": _text(rng),
                    "choices": {
                        "label": list(letters),
                        "text": [_text(rng, 1, 2) for _ in letters],
                    },
                },
                "answerKey": rng.choice(letters),
            },
            export=True,
        ),
    }


def _winograd(rng: random.Random, i: int, lang: str) -> dict[str, Any]:
    words = _text(rng, 5, 9).split()
    words[rng.randrange(len(words))] = "_"
    return {
        "sentence": " ".join(words),
        "option1": rng.choice(WORDS),
        "option2": rng.choice(WORDS),
        "answer": str(rng.randint(1, 2)),
    }


def _arc(rng: random.Random, i: int, lang: str) -> dict[str, Any]:
    count = 3 + i % 3  # three to five choices
    # a few ARC questions are keyed 1-4 rather than A-E: the first row of each split here
    keys = [str(k + 1) for k in range(count)] if i == 0 else list("ABCDE"[:count])
    return {
        "id": f"a{i}",
        "question": _text(rng),
        "choices": {"text": [_text(rng, 1, 3) for _ in keys], "label": keys},
        "answerKey": rng.choice(keys),
    }


_HELLASWAG_FEATURES = datasets.Features(
    ind=Value("int32"),
    activity_label=Value("string"),
    ctx_a=Value("string"),
    ctx_b=Value("string"),
    ctx=Value("string"),
    endings=List(Value("string")),
    source_id=Value("string"),
    split=Value("string"),
    split_type=Value("string"),
    label=Value("string"),  # "0".."3"; "" on the test split
)
_PAWS_FEATURES = datasets.Features(
    id=Value("int32"),
    sentence1=Value("string"),
    sentence2=Value("string"),
    label=ClassLabel(names=["0", "1"]),
)


def _paws(rng: random.Random, i: int, lang: str) -> dict[str, Any]:
    return {"id": i, "sentence1": _text(rng), "sentence2": _text(rng), "label": rng.randrange(2)}


def _hellaswag(rng: random.Random, i: int, lang: str) -> dict[str, Any]:
    return {
        "ind": i,
        "activity_label": rng.choice(WORDS),
        "ctx_a": _text(rng),
        "ctx_b": rng.choice(WORDS),
        "ctx": _text(rng),
        "endings": [_text(rng, 2, 4) for _ in range(4)],
        "source_id": f"s{i}",
        "split": "train",
        "split_type": "indomain",
        "label": str(rng.randrange(4)),
    }


def _copa(rng: random.Random, i: int, lang: str) -> dict[str, Any]:
    return {
        "premise": _text(rng),
        "choice1": _text(rng, 2, 4),
        "choice2": _text(rng, 2, 4),
        "question": rng.choice(["cause", "effect"]),
        "label": rng.randrange(2),
    }


def _tags(rng: random.Random, names: list[str]) -> tuple[list[str], list[int]]:
    tokens = _text(rng, 4, 10).split()
    return tokens, [rng.randrange(len(names)) for _ in tokens]


# Configs whose features differ inside one repository.
def _config_features(repo: str, config: str) -> tuple[datasets.Features, Row] | None:
    if repo == "nyu-mll/glue" and config == "mnli":
        return (
            datasets.Features(
                premise=Value("string"),
                hypothesis=Value("string"),
                label=ClassLabel(names=NLI),
                idx=Value("int32"),
            ),
            lambda rng, i, lang: {**_nli(rng, i, lang), "idx": i},
        )
    if repo == "nyu-mll/glue" and config == "qqp":
        return (
            datasets.Features(
                question1=Value("string"),
                question2=Value("string"),
                label=ClassLabel(names=["not_duplicate", "duplicate"]),
                idx=Value("int32"),
            ),
            lambda rng, i, lang: {
                "question1": _text(rng),
                "question2": _text(rng),
                "label": rng.randrange(2),
                "idx": i,
            },
        )
    if repo != "google/xtreme":
        return None
    family = config.split(".")[0]
    if family in ("XQuAD", "MLQA"):
        features = {**_SQUAD_FEATURES, "answers": _XTREME_ANSWERS}
        if family == "XQuAD":
            features.pop("title")
        return datasets.Features(features), lambda rng, i, lang: {
            key: value for key, value in _squad(rng, i, lang).items() if key in features
        }
    if family == "udpos":
        return (
            datasets.Features(tokens=List(Value("string")), pos_tags=List(ClassLabel(names=UPOS))),
            lambda rng, i, lang: dict(zip(("tokens", "pos_tags"), _tags(rng, UPOS), strict=True)),
        )
    if family == "PAN-X":

        def panx(rng: random.Random, i: int, lang: str) -> dict[str, Any]:
            tokens, tags = _tags(rng, NER)
            return {"tokens": tokens, "ner_tags": tags, "langs": [lang] * len(tokens)}

        return (
            datasets.Features(
                tokens=List(Value("string")),
                ner_tags=List(ClassLabel(names=NER)),
                langs=List(Value("string")),
            ),
            panx,
        )
    assert family == "tatoeba", config
    return (
        datasets.Features(
            source_sentence=Value("string"),
            target_sentence=Value("string"),
            source_lang=Value("string"),
            target_lang=Value("string"),
        ),
        lambda rng, i, lang: {
            "source_sentence": _text(rng),
            "target_sentence": _text(rng),
            "source_lang": lang,
            "target_lang": "eng",
        },
    )


def write_mirror(root: Path, seed: int = 0) -> Path:
    """Write every hub dataset the registry reads under `root`, as the hub lays them out."""
    for repo, hub in _hub().items():
        folder = root / repo
        configs = []
        for config, (lang, splits) in hub.configs.items():
            features, row = _config_features(repo, config) or (hub.features, hub.row)
            files = []
            for split in splits:
                rng = random.Random(f"{seed}:{repo}:{config}:{split}")
                rows = [row(rng, i, lang) for i in range(ROWS if lang != "all" else 3 * ROWS)]
                if "label" in features and split.startswith("test"):
                    unlabelled = "" if features["label"] == Value("string") else -1
                    rows = [{**r, "label": unlabelled} for r in rows]  # hub test sets hide labels
                name = f"{split}/0000.parquet" if hub.export else f"{split}-00000-of-00001.parquet"
                path = folder / config / name
                datasets.Dataset.from_list(rows, features=features).to_parquet(str(path))
                files.append({"split": split, "path": f"{config}/{split}-*"})
            configs.append({"config_name": config, "data_files": files})
        if not hub.export:
            card = yaml.safe_dump({"configs": configs}, sort_keys=False)
            (folder / "README.md").write_text(f"---\n{card}---\n")
    return root


def write_ccg_files(folder: Path, seed: int = 0) -> dict[str, str]:
    """CCG in the shape users supply it (no public copy): JSON lines of tokens and supertag ids."""
    import json

    rng = random.Random(f"{seed}:ccg")
    files = {}
    for split in ("train", "validation"):
        path = folder / f"ccg.{split}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w") as handle:
            for _ in range(ROWS):
                tokens = _text(rng, 4, 10).split()
                tags = [rng.randrange(REGISTRY["ccg"].num_labels) for _ in tokens]
                handle.write(json.dumps({"tokens": tokens, "tags": tags}) + "\n")
        files[split] = str(path)
    return files

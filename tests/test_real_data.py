"""Real data as its authors ship it: slices of XCOPA, two UD treebanks, XQuAD and XWinograd (tests/data/, each
with its licence and source) read through the registered declarations and a spec's `files`,
tokenized, trained on for a few steps, and the one-line errors for files in the wrong layout."""

from __future__ import annotations

import collections
import json
import math
import shutil
from pathlib import Path

import pytest
import yaml
from hub_fixtures import write_mirror

from xlt_search.data import DataError, DataUnavailable, SplitRequest, load_task_split, prepare_data
from xlt_search.spec import parse_spec
from xlt_search.synthetic.encoder import save_encoder
from xlt_search.tasks import Task
from xlt_search.tasks.tagging import UPOS_TAGS
from xlt_search.trial import TargetConfig, TrialConfig, run_trial

DATA = Path(__file__).resolve().parent / "data"
QUICKSTART = Path(__file__).resolve().parents[1] / "search_spaces" / "quickstart.yaml"
EWT = DATA / "udpos" / "UD_English-EWT"
XCOPA_LANGUAGES = ("et", "sw", "zh")


def registry_with(tasks: dict) -> dict[str, Task]:
    """The registry as a spec with this `tasks:` section sees it."""
    raw = yaml.safe_load(QUICKSTART.read_text())
    raw["tasks"] = tasks
    return parse_spec(raw).registry


@pytest.fixture(scope="module")
def registry() -> dict[str, Task]:
    # the few spec lines docs/tasks.md gives for each dataset
    return registry_with(
        {
            "xcopa": {"files": str(DATA / "xcopa")},
            "udpos": {
                "files": {
                    # the stored treebank snapshots lack the train files: the EWT dev slice
                    # stands in for English training data
                    "train": str(EWT / "en_ewt-ud-dev.conllu"),
                    "validation": str(DATA / "udpos" / "*" / "{lang}_*-ud-dev.conllu"),
                    "test": str(DATA / "udpos" / "*" / "{lang}_*-ud-test.conllu"),
                }
            },
            "xquad": {"files": str(DATA / "xquad")},
            "xwinograd": {"files": str(DATA / "xwinograd")},
        }
    )


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny encoder, its word-level vocabulary every whitespace-separated word of the slices."""
    words: dict[str, None] = {}
    for path in sorted(DATA.rglob("*")):
        if path.suffix in (".jsonl", ".json", ".conllu", ".tsv"):
            words.update(dict.fromkeys(path.read_text(encoding="utf-8").split()))
    folder = tmp_path_factory.mktemp("encoder")
    save_encoder(words, folder, hidden_size=32, intermediate_size=64)
    return str(folder)


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_xcopa_reads_its_authors_jsonl(registry: dict[str, Task]) -> None:
    xcopa = registry["xcopa"]
    assert xcopa.origin == "files"
    for lang in XCOPA_LANGUAGES:
        for split, name, counts in (
            ("validation", "val", {0: 20, 1: 20}),
            ("test", "test", {0: 24, 1: 16}),
        ):
            data = load_task_split(xcopa, split, lang)
            raw = _rows(DATA / "xcopa" / "data" / lang / f"{name}.{lang}.jsonl")
            assert data.column_names == ["label", "context", "choices"]
            assert collections.Counter(data["label"]) == counts
            first = data[0]
            assert first["context"] == f"{raw[0]['premise']} {raw[0]['question']}"
            assert first["choices"] == [raw[0]["choice1"], raw[0]["choice2"]]
    with pytest.raises(DataError, match="its authors ship no 'train' split"):
        load_task_split(xcopa, "train", "et")


def test_udpos_reads_conllu_without_ranges_or_empty_nodes(registry: dict[str, Task]) -> None:
    udpos = registry["udpos"]
    # sentences, words (lines whose ID is an integer), NOUN and PUNCT counted in the files
    expected = {
        ("validation", "en"): (60, 1433, 249, 186),
        ("test", "en"): (40, 623, 88, 72),
        ("validation", "de"): (40, 470, 83, 56),
        ("test", "de"): (40, 605, 109, 85),
    }
    for (split, lang), (sentences, words, nouns, puncts) in expected.items():
        data = load_task_split(udpos, split, lang)
        assert data.column_names == ["tokens", "tags"] and len(data) == sentences
        tags = collections.Counter(UPOS_TAGS[tag] for row in data["tags"] for tag in row)
        assert sum(tags.values()) == words == sum(len(row) for row in data["tokens"])
        assert (tags["NOUN"], tags["PUNCT"]) == (nouns, puncts)
    dev = load_task_split(udpos, "validation", "en")
    # 29-30 "didn't" is a multiword range: its words "did" and "n't" are read, not the range
    sentence = next(row for row in dev["tokens"] if "n't" in row)
    assert "didn't" not in sentence and sentence[sentence.index("n't") - 1] == "did"
    # "... write anything they like about ..." holds the empty node 8.1, a copy of "write"
    (with_empty_node,) = [row for row in dev["tokens"] if "write" in row and "anything" in row]
    assert with_empty_node.count("write") == 1
    assert len(load_task_split(udpos, "train", "en")) == 60


def test_xquad_reads_squad_json_one_row_per_question(registry: dict[str, Task]) -> None:
    for lang in ("en", "de", "zh"):
        data = load_task_split(registry["xquad"], "validation", lang)
        assert data.column_names == ["context", "question", "answers"]
        assert len(data) == 47  # three paragraphs of one article, the same questions in each
        for row in data:
            (text,), (start,) = row["answers"]["text"], row["answers"]["answer_start"]
            assert row["context"][start : start + len(text)] == text


def test_xwinograd_reads_its_authors_tsv_in_seeded_halves(registry: dict[str, Task]) -> None:
    """XWINO's TSV (8 schemas each of en, fr and jp here) read as WinoGrande-style rows, each
    language's rows shared out into a validation and a test half."""
    xwinograd = registry["xwinograd"]
    lines = (DATA / "xwinograd" / "dataset.tsv").read_text(encoding="utf-8").splitlines()
    for lang, spelt in (("en", "en"), ("fr", "fr"), ("ja", "jp")):
        # (text, pronoun, candidates) of the language's lines
        schemas = [
            (fields[3], json.loads(fields[5])[0], json.loads(fields[6]))
            for fields in (line.split("\t") for line in lines)
            if fields[0] == spelt
        ]
        halves = [load_task_split(xwinograd, split, lang) for split in ("validation", "test")]
        assert [len(half) for half in halves] == [4, 4]
        read = [row for half in halves for row in half]
        for row in read:  # each row is one schema: its pronoun is the blank, its answer kept
            assert row["context"].count("_") == 1
            text, _, candidates = next(
                s for s in schemas if row["context"].replace("_", s[1]) == s[0]
            )
            assert row["choices"] == [candidates[0][0], candidates[1][0]]
            assert row["label"] == (0 if candidates[0][3] else 1)
        assert len({row["context"] for row in read}) == len(schemas)  # every schema once
    english = [
        row for split in ("validation", "test") for row in load_task_split(xwinograd, split, "en")
    ]
    assert {
        "context": "The city councilmen refused the demonstrators a permit because _ feared violence.",
        "choices": ["The city councilmen", "the demonstrators"],
        "label": 0,
    } in english
    japanese = [
        row["context"]
        for split in ("validation", "test")
        for row in load_task_split(xwinograd, split, "ja")
    ]
    assert "_は悪漢だったからだ。" in "".join(japanese)  # 彼 (he), the pronoun, is the blank


def test_the_slices_prepare_through_prepare_data(
    registry: dict[str, Task], encoder: str, tmp_path: Path
) -> None:
    requests = [SplitRequest("xcopa", "validation", lang) for lang in XCOPA_LANGUAGES]
    requests += [SplitRequest("udpos", "train", "en")]
    requests += [SplitRequest("udpos", "validation", lang) for lang in ("en", "de")]
    requests += [SplitRequest("xquad", "validation", lang) for lang in ("en", "de", "zh")]
    requests += [SplitRequest("xwinograd", "validation", lang) for lang in ("en", "fr", "ja")]
    data = prepare_data(requests, encoder, 64, None, tmp_path, 0, registry=registry)
    for lang in XCOPA_LANGUAGES:
        split = data.load("xcopa", "validation", lang)
        assert len(split) == 40 and len(split[0]["input_ids"]) == 2  # one sequence per choice
    tagged = data.load("udpos", "validation", "de")
    assert len(tagged) == 40 and int((tagged[0]["labels"] >= 0).sum()) > 0
    assert len(data.load("xquad", "validation", "en")) >= 47  # a long context spans windows
    assert len(data.load("xwinograd", "validation", "ja")) == 4
    again = prepare_data(requests, encoder, 64, None, tmp_path, 0, registry=registry)
    assert again.splits == data.splits  # the files' contents are the cache key


def test_a_short_trial_on_real_targets(
    registry: dict[str, Task], encoder: str, tmp_path: Path
) -> None:
    """UD-POS trained on English EWT and scored on German GSD; XCOPA scored on its slices after
    training on SocialIQA and COPA (hub-shaped local copies: neither ships outside the hub)."""
    targets = (TargetConfig("udpos", ("en", "de")), TargetConfig("xcopa", XCOPA_LANGUAGES))
    requests = [SplitRequest("udpos", "train", "en")]
    requests += [SplitRequest("udpos", "validation", lang) for lang in ("en", "de")]
    requests += [SplitRequest(key, "train", "en") for key in ("social_iqa", "copa")]
    requests += [SplitRequest("xcopa", "validation", lang) for lang in XCOPA_LANGUAGES]
    mirror = write_mirror(tmp_path / "hub")
    data = prepare_data(
        requests, encoder, 64, None, tmp_path / "cache", 0, registry=registry, mirror=mirror
    )
    config = TrialConfig(
        model=encoder,
        tasks=(),
        targets=targets,
        intermediate_steps=0,
        target_steps=4,
        report_every_steps=2,
        probe_steps=0,
        per_device_batch_size=4,
    )
    reports: list[dict[str, float]] = []
    final = run_trial(config, data, lambda metrics, save: reports.append(metrics))
    assert [report["budget_steps"] for report in reports] == [2, 4, 6, 8]  # 4 steps per target
    assert math.isfinite(final["loss"])
    for key in ("lang.udpos.de", *(f"lang.xcopa.{lang}" for lang in XCOPA_LANGUAGES)):
        assert 0.0 <= final[key] <= 1.0, key
    assert final["score"] == pytest.approx((final["score.udpos"] + final["score.xcopa"]) / 2)


def test_files_in_the_wrong_layout_fail_with_one_line(tmp_path: Path) -> None:
    def error(tasks: dict, key: str, split: str, lang: str, kind: type[Exception]) -> str:
        with pytest.raises(kind) as raised:
            load_task_split(registry_with(tasks)[key], split, lang)
        message = str(raised.value)
        assert "\n" not in message
        return message

    # a folder that is not the XCOPA clone: the layout it should have, and the spec key
    elsewhere = {"xcopa": {"files": str(DATA / "udpos")}}
    message = error(elsewhere, "xcopa", "validation", "et", DataUnavailable)
    assert f"no file {DATA / 'udpos'}/data/et/val.et.jsonl" in message
    assert "github.com/cambridgeltl/xcopa ships jsonl files laid out as" in message
    assert "validation: data/{lang}/val.{lang}.jsonl" in message and "tasks.xcopa.files" in message
    # JSON lines of another dataset: the columns the layout expects are named
    squad_json = {"xcopa": {"files": {"validation": str(DATA / "xquad" / "xquad.{lang}.json")}}}
    message = error(squad_json, "xcopa", "validation", "en", DataError)
    assert "not in the layout its authors ship" in message and "premise" in message
    # a JSON lines file where CoNLL-U is expected
    jsonl = str(DATA / "xcopa" / "data" / "{lang}" / "val.{lang}.jsonl")
    message = error(
        {"udpos": {"files": {"validation": jsonl}}}, "udpos", "validation", "et", DataError
    )
    assert "CoNLL-U has 10" in message and "*/{lang}_*-ud-dev.conllu" in message
    # JSON lines where SQuAD's nested JSON is expected
    message = error(
        {"xquad": {"files": {"validation": jsonl}}}, "xquad", "validation", "zh", DataError
    )
    assert "xquad.{lang}.json" in message

    # the XCOPA clone put in a mirror, where the hub repository cambridgeltl/xcopa is expected
    mirror = tmp_path / "hub"
    shutil.copytree(DATA / "xcopa", mirror / "cambridgeltl" / "xcopa")
    with pytest.raises(DataError) as raised:
        load_task_split("xcopa", "validation", "et", mirror=mirror)
    message = str(raised.value)
    copy = mirror / "cambridgeltl" / "xcopa"
    assert "\n" not in message and "BuilderConfig 'et' not found" in message
    assert f"the mirror's copy {copy} is laid out as the dataset's authors ship it" in message
    assert f"`tasks: {{xcopa: {{files: {copy}}}}}`" in message
    assert f"hf download cambridgeltl/xcopa --repo-type dataset --local-dir {copy}" in message


def test_tsv_layouts_read_unquoted_text_and_filter_by_language(tmp_path: Path) -> None:
    """XNLI-1.0's and PAWS-X's TSVs were not fetchable: rows written here in their documented
    columns check the reader (no quoting: a '"' is text; one file for all of XNLI's languages)."""
    header = "language\tgold_label\tsentence1_binary_parse\tsentence1\tsentence2\tpairID\n"
    rows = [
        'de\tneutral\t( x )\tEr sagte "ja".\tEr kam.\t1\n',
        "de\tcontradiction\t( x )\tNA\tnull\t2\n",
        "sw\tentailment\t( x )\tAlisema.\tAlikuja.\t3\n",
    ]
    (tmp_path / "xnli.dev.tsv").write_text(header + "".join(rows), encoding="utf-8")
    xnli = registry_with({"xnli": {"files": str(tmp_path)}})["xnli"]
    german = load_task_split(xnli, "validation", "de")
    assert german["text_a"] == ['Er sagte "ja".', "NA"] and german["text_b"] == ["Er kam.", "null"]
    assert german["label"] == [1, 2]  # neutral, contradiction
    assert load_task_split(xnli, "validation", "sw")["label"] == [0]

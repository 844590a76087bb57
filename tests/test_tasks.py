"""The contract every registered task passes, on local copies written in its hub dataset's schema.

Each task is loaded through the real loader (`datasets.load_dataset` on a mirror laid out like the
hub), tokenized, trained for a few steps of a tiny encoder and scored with its own metric in every
language it declares.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import datasets
import pytest
import torch
from hub_fixtures import WORDS, write_ccg_files, write_mirror
from processes import run_cli
from search_specs import search_spec, write_spec

from xlt_search.data import (
    BatchStream,
    DataError,
    DataUnavailable,
    PreparedData,
    SplitRequest,
    eval_batches,
    load_task_split,
    prepare_data,
    share_rows,
)
from xlt_search.metrics import METRICS_BY_KIND
from xlt_search.synthetic.encoder import save_encoder
from xlt_search.tasks import LANGUAGES, PHANG2020_POOL, REGISTRY, DataSource, Task
from xlt_search.tracking import load_trials
from xlt_search.trial import (
    MultiTaskModel,
    TargetConfig,
    TrialConfig,
    evaluate,
    evaluate_retrieval,
    load_encoder,
    run_trial,
)

MAX_SEQ_LENGTH = 48


@pytest.fixture(scope="module")
def mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mirror(tmp_path_factory.mktemp("hub"))


@pytest.fixture(scope="module")
def encoder(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("encoder")
    save_encoder(list(WORDS), folder)
    return str(folder)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Task]:
    """The registry, with CCG pointed at files a user supplies (as a spec's tasks section does)."""
    files = write_ccg_files(tmp_path_factory.mktemp("ccg"))
    ccg = dataclasses.replace(REGISTRY["ccg"], sources=(DataSource(path="json", data_files=files),))
    return {**REGISTRY, "ccg": ccg}


def _prepare(
    requests: list[SplitRequest], registry: dict[str, Task], mirror: Path, encoder: str, cache: Path
) -> PreparedData:
    return prepare_data(
        requests,
        encoder,
        MAX_SEQ_LENGTH,
        max_train_examples=None,
        cache_dir=cache,
        seed=0,
        registry=registry,
        mirror=mirror,
    )


def test_the_registry_is_the_zoo() -> None:
    real = {key for key, task in REGISTRY.items() if not key.startswith("syn_")}
    assert set(PHANG2020_POOL) <= real and len(PHANG2020_POOL) == 9
    assert {"social_iqa", "copa", "paws"} <= real
    targets = {key for key in real if any(code != "en" for code in REGISTRY[key].languages)}
    assert targets == {
        "xnli", "xcopa", "paws_x", "udpos", "panx", "xquad", "mlqa", "tydiqa", "tatoeba",
        "xstory_cloze", "xwinograd", "m_hellaswag", "m_arc", "belebele", "xcsqa",
    }  # fmt: skip
    assert REGISTRY["xwinograd"].train_tasks == ("winogrande",)
    assert REGISTRY["belebele"].train_tasks == ("race",)
    assert REGISTRY["xcsqa"].train_tasks == ("commonsense_qa",)
    assert REGISTRY["xnli"].train_tasks == ("mnli",)
    assert REGISTRY["xcopa"].train_tasks == ("social_iqa", "copa")
    assert REGISTRY["paws_x"].train_tasks == ("paws",)
    for task in REGISTRY.values():
        assert task.metric in METRICS_BY_KIND[task.kind], task.key
        assert set(task.languages) <= set(LANGUAGES), task.key
        assert task.train_languages[0] == "en" and set(task.train_languages) <= set(LANGUAGES)
        for key in task.train_tasks:
            assert REGISTRY[key].kind == task.kind and REGISTRY[key].languages == ("en",)
    for language in LANGUAGES.values():
        assert language.family and len(language.script) == 4


@pytest.mark.parametrize("key", sorted(REGISTRY))
def test_every_task_loads_trains_and_scores_in_each_language(
    key: str,
    registry: dict[str, Task],
    mirror: Path,
    encoder: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    task = registry[key]
    trains = task.kind != "retrieval"
    train_keys = (task.train_tasks or (key,)) if trains else ()
    # a parallel task only trains: it is never scored (the spec refuses it as a target)
    scored = task.languages if task.kind != "parallel" else ()
    requests = [SplitRequest(k, "train", "en") for k in train_keys]
    # translate-train copies: every language the task declares training data in
    requests += [SplitRequest(key, "train", lang) for lang in task.train_languages[1:]]
    requests += [SplitRequest(key, "validation", lang) for lang in scored]
    data = _prepare(requests, registry, mirror, encoder, tmp_path_factory.mktemp("prepared"))
    for request in requests:
        assert len(data.load(request.task, request.split, request.language)) > 0, request

    torch.manual_seed(0)
    heads = {key: (task.kind, task.num_labels)} if trains else {}  # retrieval has no head
    model = MultiTaskModel(load_encoder(encoder), heads)
    model.train()
    if trains:
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for k in train_keys:
            stream = BatchStream(data.load(k, "train", "en"), task.kind, data.pad_token_id, 4, 0)
            for _ in range(2):
                loss, _ = model(key, stream.next())
                assert math.isfinite(loss.item())
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
    for lang in scored:
        batches = eval_batches(data.load(key, "validation", lang), task.kind, data.pad_token_id, 8)
        if trains:
            scores = evaluate(model, key, task, batches)
            # QA is reported as exact match and F1; every other kind by its own metric
            names = {"exact_match", "f1"} if task.kind == "span" else {task.metric}
            labels = {name for name in scores if name.startswith("label.")}
            assert set(scores) - labels == names, key
            # classification and multiple choice also give the accuracy on each gold label's rows
            assert bool(labels) == (task.kind in ("classification", "multiple_choice")), key
            score = scores[task.metric]
        else:
            score = evaluate_retrieval(model.encoder, batches)
        assert 0.0 <= score <= 1.0, (key, lang)


def test_a_string_label_maps_through_the_declared_labels(mirror: Path) -> None:
    siqa = load_task_split("social_iqa", "train", "en", mirror=mirror)
    assert set(siqa["label"]) <= {0, 1, 2}  # "1".."3", some with a trailing newline
    csqa = load_task_split("commonsense_qa", "validation", "en", mirror=mirror)
    assert all(len(choices) == 5 for choices in csqa["choices"])
    assert set(csqa["label"]) <= set(range(5))
    # the hub hides test labels ("" or -1): such rows become -1 and are dropped when tokenized
    hellaswag = REGISTRY["hellaswag"]
    with_test = dataclasses.replace(
        hellaswag, sources=(dataclasses.replace(hellaswag.sources[0], splits={"test": "test"}),)
    )
    assert set(load_task_split(with_test, "test", "en", mirror=mirror)["label"]) == {-1}


def test_a_test_only_source_is_shared_out_into_disjoint_seeded_halves(mirror: Path) -> None:
    """XWinograd ships only test: validation and test are a seeded half each of its rows."""
    for lang in REGISTRY["xwinograd"].languages:
        source = mirror / "Muennighoff" / "xwinograd" / ("jp" if lang == "ja" else lang)
        rows = list(
            datasets.load_dataset("parquet", data_dir=str(source), split="test")["sentence"]
        )
        halves = [
            list(load_task_split("xwinograd", split, lang, mirror=mirror)["context"])
            for split in ("validation", "test")
        ]
        assert [len(half) for half in halves] == [6, 6]
        assert sorted(halves[0] + halves[1]) == sorted(rows)  # every row once
        assert halves[0] == [row for row in rows if row in halves[0]]  # in their source order
    # the draw depends on the row count and the seed alone: parallel languages split alike
    validation = share_rows(900, {"validation": 0.5, "test": 0.5}, "validation", 0)
    test = share_rows(900, {"validation": 0.5, "test": 0.5}, "test", 0)
    assert len(validation) == len(test) == 450 and not set(validation) & set(test)
    assert validation == share_rows(900, {"validation": 0.5, "test": 0.5}, "validation", 0)
    assert validation != share_rows(900, {"validation": 0.5, "test": 0.5}, "validation", 1)
    assert share_rows(10, {"validation": 0.3}, "validation", 0) == sorted(
        share_rows(10, {"validation": 0.3, "rest": 0.7}, "validation", 0)
    )
    with pytest.raises(DataError, match="split 'train' has no share"):
        share_rows(10, {"validation": 0.5}, "train", 0)


def test_reasoning_sources_read_as_their_hub_schemas(mirror: Path) -> None:
    # 1-based integer answers (XStoryCloze) map through numeral labels
    stories = load_task_split("xstory_cloze", "validation", "sw", mirror=mirror)
    raw = mirror / "juletxara" / "xstory_cloze" / "sw" / "eval" / "0000.parquet"
    answers = datasets.load_dataset("parquet", data_files=str(raw), split="train")
    assert list(stories["label"]) == [answer - 1 for answer in answers["answer_right_ending"]]
    assert len(stories) == 12 and len(load_task_split("xstory_cloze", "train", "en", mirror=mirror))
    # an empty fifth option (a four-choice ARC question) is left out, the others kept in order
    arc = load_task_split("m_arc", "validation", "de", mirror=mirror)
    assert [len(choices) for choices in arc["choices"]] == [4, 5, 5] * 4
    assert all(0 <= label < len(c) for label, c in zip(arc["label"], arc["choices"], strict=True))
    # ARC's questions keyed 1-4 are unlabelled here: one per configuration's train split
    assert list(load_task_split("arc", "train", "en", mirror=mirror)["label"]).count(-1) == 2
    # X-CSQA's choices sit two structs deep
    xcsqa = load_task_split("xcsqa", "validation", "ja", mirror=mirror)
    assert len(xcsqa) == 12 and all(len(choices) == 5 for choices in xcsqa["choices"])


def test_several_sources_concatenate_and_unlabelled_rows_are_kept_apart(mirror: Path) -> None:
    anli_plus = load_task_split("anli_plus", "train", "en", mirror=mirror)
    # three ANLI rounds, MNLI and SNLI, 12 rows each; SNLI's first pair has no gold label
    assert len(anli_plus) == 5 * 12
    assert anli_plus["label"].count(-1) == 1
    assert len(load_task_split("anli_plus", "validation", "en", mirror=mirror)) == 3 * 12


def test_a_mixed_language_split_is_filtered_by_its_language_column(mirror: Path) -> None:
    sizes = {
        lang: len(load_task_split("tydiqa", "validation", lang, mirror=mirror))
        for lang in REGISTRY["tydiqa"].languages
    }
    assert sum(sizes.values()) == 3 * 12 and all(size > 0 for size in sizes.values())


def test_retrieval_targets_score_the_intermediate_encoder_without_training(
    registry: dict[str, Task], mirror: Path, encoder: str, tmp_path: Path
) -> None:
    targets = (
        TargetConfig("xnli", ("en", "de", "sw")),
        TargetConfig("tatoeba", ("de", "sw"), fine_tuned=False),
    )
    requests = [SplitRequest("mnli", "train", "en")]
    requests += [SplitRequest("xnli", "validation", lang) for lang in targets[0].languages]
    requests += [SplitRequest("tatoeba", "validation", lang) for lang in targets[1].languages]
    data = _prepare(requests, registry, mirror, encoder, tmp_path)
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
    assert config.final_budget_steps == 4  # tatoeba adds no steps
    reports: list[dict[str, float]] = []
    final = run_trial(config, data, lambda metrics, save: reports.append(metrics))
    assert [r["budget_steps"] for r in reports] == [2, 4]
    untrained = load_encoder(encoder)
    for lang in ("de", "sw"):
        batches = eval_batches(data.load("tatoeba", "validation", lang), "retrieval", 1, 16)
        expected = evaluate_retrieval(untrained, batches)
        assert [r[f"lang.tatoeba.{lang}"] for r in reports] == [expected, expected]
    assert final["score"] == pytest.approx((final["score.xnli"] + final["score.tatoeba"]) / 2)

    alone = dataclasses.replace(config, targets=targets[1:])
    reports.clear()
    final = run_trial(alone, data, lambda metrics, save: reports.append(metrics))
    assert len(reports) == 1 and final["final"] == 1.0 and final["budget_steps"] == 0
    assert "loss" not in final  # nothing was trained


def test_a_changed_mirror_copy_is_prepared_again(
    registry: dict[str, Task], encoder: str, tmp_path: Path
) -> None:
    mirror = write_mirror(tmp_path / "hub")
    requests = [SplitRequest("xnli", "validation", "de")]
    first = _prepare(requests, registry, mirror, encoder, tmp_path / "cache")
    again = _prepare(requests, registry, mirror, encoder, tmp_path / "cache")
    assert again.splits == first.splits
    write_mirror(mirror, seed=1)  # new rows in every file
    changed = _prepare(requests, registry, mirror, encoder, tmp_path / "cache")
    assert changed.splits != first.splits


def test_a_task_with_no_public_copy_says_how_to_supply_it() -> None:
    with pytest.raises(DataUnavailable, match="CCGbank is licensed by the LDC") as error:
        load_task_split("ccg", "train", "en")
    assert "\n" not in str(error.value)


def test_a_hub_dataset_missing_from_the_mirror_names_the_hub_id_and_the_fix(
    tmp_path: Path,
) -> None:
    # an empty mirror, and the hub unreachable (this machine has no network)
    with pytest.raises(DataUnavailable) as error:
        load_task_split("xnli", "validation", "de", mirror=tmp_path)
    message = str(error.value)
    assert "facebook/xnli (config de)" in message and "\n" not in message
    assert (
        f"hf download facebook/xnli --repo-type dataset --local-dir {tmp_path}/facebook/xnli"
        in message
    )


def _real_spec(tmp_path: Path, encoder: str, mirror: Path | None) -> Path:
    """A two-trial search over real tasks on the tiny encoder, reading the hub's copies, with CCG
    and a task of the spec's own read from local files."""
    pairs = tmp_path / "pairs.csv"
    pairs.write_text(
        "left,right,same\n" + "".join(f"w{i} w{i + 1},w{i},{i % 2}\n" for i in range(20))
    )
    data = {"max_seq_length": MAX_SEQ_LENGTH, "cache_dir": str(tmp_path / "cache")}
    if mirror is not None:
        data["mirror"] = str(mirror)
    raw = search_spec(
        "real-tasks",
        tmp_path,
        model=encoder,
        pool=["mnli", "squad_v2", "ccg", "my_pairs"],
        targets=[
            {"task": "xnli", "languages": ["en", "de", "sw"]},
            {"task": "tatoeba", "languages": ["de", "sw"]},
        ],
        tasks={
            "ccg": {"sources": [{"path": "json", "data_files": write_ccg_files(tmp_path)}]},
            "my_pairs": {
                "kind": "classification",
                "sources": [{"path": "csv", "data_files": {"train": str(pairs)}}],
                "columns": {"text_a": "left", "text_b": "right", "label": "same"},
                "num_labels": 2,
                "metric": "accuracy",
            },
        },
        subsets={"sampler": "stratified", "sizes": [1, 4], "per_size": 1},
        budget={
            "intermediate_steps": 4,
            "target_steps": 4,
            "report_every_steps": 2,
            "probe_steps": 2,
            "scheduler": "fifo",
        },
        hyperparameters={"per_device_batch_size": 4},
        data=data,
        mlflow={"tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"},
    )
    return write_spec(tmp_path, raw)


@pytest.mark.e2e
def test_a_search_over_real_tasks_reads_the_mirror(
    mirror: Path, encoder: str, tmp_path: Path
) -> None:
    spec = _real_spec(tmp_path, encoder, mirror)
    result = run_cli("run", str(spec), cwd=tmp_path, env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    trials = load_trials("real-tasks", f"sqlite:///{tmp_path / 'mlflow.db'}")
    # 0: the baseline; 4: ccg and my_pairs trained too
    assert sorted(trials["n_tasks"].astype(int)) == [0, 1, 4]
    assert set(trials["status"]) == {"completed"}
    for lang in ("de", "sw"):
        assert trials[f"lang.tatoeba.{lang}"].between(0, 1).all()
        assert trials[f"lang.xnli.{lang}"].between(0, 1).all()
    # budget_steps: 4 intermediate + 4 for xnli (the baseline: xnli's 4); tatoeba is not fine-tuned
    assert dict(zip(trials["n_tasks"], trials["budget_steps"].astype(int), strict=True)) == {
        0: 4,
        1: 8,
        4: 8,
    }


def test_a_dataset_missing_offline_is_one_line_and_writes_nothing(
    encoder: str, tmp_path: Path
) -> None:
    spec = _real_spec(tmp_path, encoder, mirror=None)
    result = run_cli("run", str(spec), cwd=tmp_path, env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("xlt-search: error: dataset nyu-mll/glue (config mnli)")
    assert "hf download nyu-mll/glue --repo-type dataset" in lines[-1]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mlflow.db").exists()


def test_a_model_missing_offline_names_the_fix(tmp_path: Path) -> None:
    requests = [SplitRequest("xnli", "validation", "de")]
    with pytest.raises(DataUnavailable) as error:
        prepare_data(requests, "FacebookAI/xlm-roberta-base", 128, None, tmp_path, 0)
    message = str(error.value)
    assert message.startswith("model FacebookAI/xlm-roberta-base cannot be loaded")
    assert "hf download FacebookAI/xlm-roberta-base --local-dir DIR" in message
    assert "\n" not in message and not any(tmp_path.iterdir())

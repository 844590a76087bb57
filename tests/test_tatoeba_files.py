"""Parallel data as two line-aligned files (the Moses format of OPUS and of LASER's Tatoeba test
sets, which XTREME's Tatoeba is): a slice of LASER's data/tatoeba/v1 (tests/data/tatoeba, with its
licence and source) read as the tatoeba target and as the parallel task tatoeba_parallel, a short
trial trained on its pairs, and the one-line errors for pairs that do not line up."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import yaml

from xlt_search.data import DataError, DataUnavailable, SplitRequest, load_task_split, prepare_data
from xlt_search.errors import SpecError
from xlt_search.spec import parse_spec
from xlt_search.synthetic.encoder import save_encoder
from xlt_search.tasks import Task
from xlt_search.trial import TargetConfig, TrialConfig, run_trial

LASER = Path(__file__).resolve().parent / "data" / "tatoeba"
PAIRS = LASER / "data" / "tatoeba" / "v1"
QUICKSTART = Path(__file__).resolve().parents[1] / "search_spaces" / "quickstart.yaml"
LANGUAGES = {"de": "deu", "fr": "fra", "zh": "cmn"}  # ours -> LASER's file names


def spec_with(tasks: dict, pool: list[str] | None = None, targets: list | None = None) -> dict:
    raw = yaml.safe_load(QUICKSTART.read_text())
    raw["tasks"] = tasks
    if pool is not None:
        raw.update(pool=pool, subsets={"sampler": "grid", "sizes": [1]})
    if targets is not None:
        raw["targets"] = targets
    return raw


def registry_with(tasks: dict) -> dict[str, Task]:
    return parse_spec(spec_with(tasks)).registry


@pytest.fixture(scope="module")
def registry() -> dict[str, Task]:
    # the spec lines docs/tasks.md gives: the LASER clone's folder
    return registry_with({key: {"files": str(LASER)} for key in ("tatoeba", "tatoeba_parallel")})


def _lines(code: str, side: str) -> list[str]:
    return (PAIRS / f"tatoeba.{code}-eng.{side}").read_text(encoding="utf-8").splitlines()


def test_the_target_reads_each_language_s_pair_of_files(registry: dict[str, Task]) -> None:
    for lang, code in LANGUAGES.items():
        rows = load_task_split(registry["tatoeba"], "validation", lang)
        assert rows["query"] == _lines(code, code), lang  # the sentence in its language
        assert rows["candidate"] == _lines(code, "eng"), lang  # line for line, its translation


def test_the_parallel_task_reads_every_pair_with_english(registry: dict[str, Task]) -> None:
    rows = load_task_split(registry["tatoeba_parallel"], "train", "en")
    english = [line for code in sorted(LANGUAGES.values()) for line in _lines(code, "eng")]
    translations = [line for code in sorted(LANGUAGES.values()) for line in _lines(code, code)]
    assert rows["source"] == english and rows["target"] == translations


def test_pairs_that_do_not_line_up_fail_with_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "v1"
    shutil.copytree(PAIRS, folder)
    (folder / "tatoeba.fra-eng.eng").write_text("\n".join(_lines("fra", "eng")[:-1]) + "\n")
    (folder / "tatoeba.cmn-eng.eng").unlink()
    pattern = str(folder / "tatoeba.{lang}-eng.{lang}")
    tatoeba = registry_with({"tatoeba": {"files": {"validation": pattern}}})["tatoeba"]

    with pytest.raises(DataError) as raised:
        load_task_split(tatoeba, "validation", "fr")
    message = str(raised.value)
    assert "\n" not in message and "30 lines against 29" in message
    assert "github.com/facebookresearch/LASER ships moses files" in message

    with pytest.raises(DataUnavailable) as missing:
        load_task_split(tatoeba, "validation", "zh")
    message = str(missing.value)
    assert "\n" not in message and f"has no partner {folder / 'tatoeba.cmn-eng.eng'}" in message

    unnamed = folder / "deu.txt"
    shutil.copy(folder / "tatoeba.deu-eng.deu", unnamed)
    tatoeba = registry_with({"tatoeba": {"files": {"validation": str(unnamed)}}})["tatoeba"]
    with pytest.raises(DataError, match=r"not named as a Moses pair's side \(NAME.L1-L2.L1\)"):
        load_task_split(tatoeba, "validation", "de")


def test_the_pool_may_not_train_on_the_files_the_target_is_scored_on(tmp_path: Path) -> None:
    tasks = {key: {"files": str(LASER)} for key in ("tatoeba", "tatoeba_parallel")}
    targets = [{"task": "syn_nli"}, {"task": "tatoeba", "languages": ["de"]}]
    with pytest.raises(SpecError) as raised:
        parse_spec(spec_with(tasks, ["tatoeba_parallel"], targets))
    message = str(raised.value)
    assert f"tatoeba_parallel trains on {PAIRS / 'tatoeba.deu-eng'}" in message
    assert "which target tatoeba is scored on" in message
    # the parallel task read from its French pair alone shares nothing with German's
    french = str(PAIRS / "tatoeba.fra-eng.eng")
    tasks["tatoeba_parallel"] = {"files": {"train": french}}
    assert parse_spec(spec_with(tasks, ["tatoeba_parallel"], targets)).pool == ("tatoeba_parallel",)


def test_a_short_trial_trains_on_the_pairs_and_scores_retrieval(tmp_path: Path) -> None:
    """Translation ranking on the French and Chinese pairs, then retrieval scored on German's."""
    words = dict.fromkeys(
        word for path in sorted(PAIRS.glob("tatoeba.*")) for word in path.read_text().split()
    )
    save_encoder(words, tmp_path / "encoder", hidden_size=32, intermediate_size=64)
    fra_and_cmn = str(PAIRS / "tatoeba.[fc][rm][an]-eng.eng")
    registry = registry_with(
        {"tatoeba": {"files": str(LASER)}, "tatoeba_parallel": {"files": {"train": fra_and_cmn}}}
    )
    requests = [SplitRequest("tatoeba_parallel", "train", "en")]
    requests += [SplitRequest("tatoeba", "validation", "de")]
    encoder = str(tmp_path / "encoder")
    data = prepare_data(requests, encoder, 32, None, tmp_path / "cache", 0, registry=registry)
    assert len(data.load("tatoeba_parallel", "train", "en")) == 60
    config = TrialConfig(
        model=encoder,
        tasks=("tatoeba_parallel",),
        targets=(TargetConfig("tatoeba", ("de",), fine_tuned=False),),
        intermediate_steps=4,
        target_steps=0,
        report_every_steps=4,
        probe_steps=0,
        per_device_batch_size=8,
    )
    reports: list[dict[str, float]] = []
    final = run_trial(config, data, lambda metrics, save: reports.append(metrics))
    losses = [report["loss"] for report in reports if "loss" in report]
    assert losses and all(math.isfinite(loss) for loss in losses), reports
    assert 0.0 <= final["lang.tatoeba.de"] <= 1.0

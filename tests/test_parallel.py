"""The parallel kind's planted effect on the synthetic suite: translation ranking on syn_parallel
lifts the far family's alignment with English, where a corpus with its translations mismatched
(nothing to learn about which word translates which) leaves it where plain training does."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from xlt_search.data import BatchStream, PreparedData, SplitRequest, collate, prepare_data
from xlt_search.metrics import aligned_retrieval
from xlt_search.synthetic import SYNTHETIC_MODEL, resolve_model
from xlt_search.tasks import REGISTRY, DataSource
from xlt_search.trial import MultiTaskModel, load_encoder, make_optimizer, mean_pooled, train_step

STEPS = 80
PAIRS = 200  # syn_nli validation rows measured on: 100 to fit the map, 100 to score
FAR = ("xf1", "xf2")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> PreparedData:
    """syn_parallel, the same rows with every translation moved to the next sentence
    (`mismatched`), and syn_nli's validation rows (parallel across languages) to measure on."""
    folder = tmp_path_factory.mktemp("mismatched")
    rows = [json.loads(line) for line in _train_file().read_text().splitlines()]
    targets = [row["target"] for row in rows]
    with (folder / "train.jsonl").open("w") as handle:
        for row, target in zip(rows, targets[1:] + targets[:1], strict=True):
            handle.write(json.dumps(row | {"target": target}) + "\n")
    mismatched = dataclasses.replace(
        REGISTRY["syn_parallel"],
        key="mismatched",
        sources=(DataSource("json", data_files={"train": str(folder / "train.jsonl")}),),
    )
    registry = dict(REGISTRY) | {"mismatched": mismatched}
    requests = [SplitRequest(key, "train", "en") for key in ("syn_parallel", "mismatched")]
    requests += [SplitRequest("syn_nli", "validation", lang) for lang in ("en", *FAR)]
    return prepare_data(
        requests,
        resolve_model(SYNTHETIC_MODEL),
        max_seq_length=32,
        max_train_examples=None,
        cache_dir=tmp_path_factory.mktemp("prepared"),
        seed=0,
        registry=registry,
    )


def _train_file() -> Path:
    source = REGISTRY["syn_parallel"].sources[0]
    model = Path(resolve_model(SYNTHETIC_MODEL))  # the suite's encoder folder
    assert source.data_files is not None
    return Path(source.data_files["train"].format(synthetic_root=model.parent, lang="en"))


def _alignment(prepared: PreparedData, task: str | None) -> dict[str, tuple[float, float]]:
    """The far languages' alignment, (`align.<lang>.before`, `align.<lang>`): retrieval of the
    English translation as it is and after an orthogonal map, of the suite's encoder after `STEPS`
    steps on `task` (None: the encoder as it is)."""
    torch.manual_seed(0)
    encoder = load_encoder(resolve_model(SYNTHETIC_MODEL))
    if task is not None:
        model = MultiTaskModel(encoder, {task: ("parallel", 0)}).train()
        stream = BatchStream(prepared.load(task, "train", "en"), "parallel", 1, 16, seed=0)
        optimizer, scheduler = make_optimizer(model, 1e-3, 0.01, 0.1, STEPS)
        for _ in range(STEPS):
            train_step(model, task, stream.next(), optimizer, scheduler)
    encoder.eval()

    @torch.inference_mode()
    def embedded(lang: str) -> torch.Tensor:
        rows = prepared.load("syn_nli", "validation", lang).with_format(None)[:PAIRS]
        batch = collate("classification", rows, prepared.pad_token_id)  # rows in their order
        return mean_pooled(encoder, batch["input_ids"], batch["attention_mask"])

    english = embedded("en")
    return {lang: aligned_retrieval(embedded(lang), english, len(english) // 2) for lang in FAR}


def test_parallel_data_lifts_the_far_family_s_alignment(prepared: PreparedData) -> None:
    plain = _alignment(prepared, None)
    parallel = _alignment(prepared, "syn_parallel")
    mismatched = _alignment(prepared, "mismatched")
    for lang in FAR:
        # the retrieval translation ranking trains: from chance-ish to near perfect
        assert parallel[lang][0] > plain[lang][0] + 0.3, (lang, plain, parallel)
        assert parallel[lang][1] >= plain[lang][1], (lang, plain, parallel)
        # nothing to find in mismatched pairs: no gain over the plain encoder
        assert mismatched[lang][0] < plain[lang][0] + 0.1, (lang, plain, mismatched)

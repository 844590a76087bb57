"""Intermediate languages: the intermediate phase trains on its tasks' translations when asked,
the spec checks they exist, and on the synthetic suite translated intermediate data helps the far
family (whose own words English training never shows) and leaves the close family alone."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from xlt_search.data import SplitRequest, prepare_data
from xlt_search.errors import SpecError
from xlt_search.spec import parse_spec
from xlt_search.trial import TargetConfig, TrialConfig, required_splits, run_trial

QUICKSTART = Path(__file__).resolve().parents[1] / "search_spaces" / "quickstart.yaml"
BUDGET = {"intermediate_steps": 200, "target_steps": 200, "report_every_steps": 200}


def test_the_spec_asks_for_translations_every_pool_task_has() -> None:
    raw = yaml.safe_load(QUICKSTART.read_text())
    raw["hyperparameters"] = {"intermediate_languages": {"grid": ["en", "en+xf1+xf2", "xf1"]}}
    assert parse_spec(raw).intermediate_languages == ("en", "xf1", "xf2")
    for value, problem in (("en+de", "syn_sentiment has no de training data"), ("en+", "no list")):
        raw["hyperparameters"] = {"intermediate_languages": value}
        with pytest.raises(SpecError, match=problem):
            parse_spec(raw)
    raw.update(pool=["mnli"], hyperparameters={"intermediate_languages": "en+de"})
    with pytest.raises(SpecError, match="mnli has no de training data"):
        parse_spec(raw)
    raw.update(pool=["mnli_translated"])
    assert parse_spec(raw).intermediate_languages == ("en", "de")


def test_the_splits_of_a_translated_intermediate_phase_are_prepared() -> None:
    target = TargetConfig("syn_nli", ("en", "xf1"))
    requests = required_splits(("syn_kind",), (target,), languages=("en", "xf1"))
    assert SplitRequest("syn_kind", "train", "en") in requests
    assert SplitRequest("syn_kind", "train", "xf1") in requests


def test_translated_intermediate_data_helps_the_far_family_and_leaves_the_close_one(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XLT_SEARCH_CACHE", str(tmp_path_factory.mktemp("xlt_cache")))
        from xlt_search.synthetic import RELATEDNESS, SYNTHETIC_MODEL, resolve_model
        from xlt_search.tasks import REGISTRY

        targets = tuple(TargetConfig(key, REGISTRY[key].languages) for key in sorted(RELATEDNESS))
        tasks = ("syn_pole_tags", "syn_sentiment")  # helpful to both targets
        model = resolve_model(SYNTHETIC_MODEL)
        data = prepare_data(
            required_splits(tasks, targets, languages=("en", "xf1", "xf2")),
            model,
            max_seq_length=32,
            max_train_examples=None,
            cache_dir=tmp_path_factory.mktemp("prepared"),
            seed=0,
        )
        final = {
            languages: run_trial(
                TrialConfig(
                    model,
                    tasks,
                    targets,
                    probe_steps=0,
                    learning_rate=1e-3,
                    intermediate_languages=languages,
                    **BUDGET,
                ),
                data,
                lambda metrics, save_state: None,
            )
            for languages in ("en", "en+xf1+xf2")
        }
    english, translated = final["en"], final["en+xf1+xf2"]
    assert translated["family.synthetic-far"] > english["family.synthetic-far"] + 0.1
    # the close family's own words are not among the translations: nothing to find there
    assert abs(translated["family.synthetic-close"] - english["family.synthetic-close"]) < 0.05

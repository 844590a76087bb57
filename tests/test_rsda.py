"""RS-DA (randomized smoothing with data augmentation): the augmented copies against Robust-XLT's
rule, the spec's rules, the splits a search prepares, and a planted known answer on the synthetic
world (rs_da reads synonyms no English training shows; on the twin target with no swaps it gains
nothing)."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest
import yaml

from xlt_search.data import augmented, load_synonyms, prepare_data
from xlt_search.data.controls import controlled
from xlt_search.errors import SpecError, UserError
from xlt_search.spec import load_spec
from xlt_search.tasks import REGISTRY
from xlt_search.trial import Phase, TargetConfig, TrialConfig, required_splits, run_trial

ROOT = Path(__file__).resolve().parents[1]
NEIGHBOURS = ROOT / "tests" / "data" / "robust_xlt" / "counterfitted_neighbors.json"
SYNONYMS = {"hot": ["warm", "boiling"], "cold": ["chilly"], "big": []}
PAIRS = datasets.Dataset.from_dict(
    {
        "text_a": ["the hot soup", "a big cold day", "no word here"],
        "text_b": ["cold hands", "hot", "nothing"],
        "label": [0, 1, 2],
    }
)


def _task(kind: str):  # noqa: ANN202
    return next(t for t in REGISTRY.values() if t.kind == kind)


def test_each_row_becomes_n_copies_in_order_with_labels_kept() -> None:
    out = controlled(_task("classification"), PAIRS, augmented(4), seed=0, synonyms=SYNONYMS)
    assert len(out) == 4 * len(PAIRS)
    assert out["label"] == [0] * 4 + [1] * 4 + [2] * 4
    originals = [row for row in PAIRS.to_list() for _ in range(4)]
    for row, original in zip(out.to_list(), originals, strict=True):
        for field in ("text_a", "text_b"):
            words, source = row[field].split(), original[field].split()
            assert len(words) == len(source)
            assert all(w in (s, *SYNONYMS.get(s, ())) for w, s in zip(words, source, strict=True))
    assert out["text_a"][8:] == ["no word here"] * 4  # no word with neighbours: unchanged
    # "big" has an empty list: only "cold" can change
    assert set(out["text_a"][4:8]) <= {"a big cold day", "a big chilly day"}


def test_the_copies_are_fixed_by_the_seed_and_change_with_it() -> None:
    task = _task("classification")
    once = controlled(task, PAIRS, augmented(8), seed=0, synonyms=SYNONYMS).to_list()
    assert once == controlled(task, PAIRS, augmented(8), seed=0, synonyms=SYNONYMS).to_list()
    assert once != controlled(task, PAIRS, augmented(8), seed=1, synonyms=SYNONYMS).to_list()


def test_a_word_is_drawn_uniformly_from_itself_and_its_neighbours() -> None:
    # Robust-XLT's perturb.py: uniform over [word] + neighbours ("hot": 1/3 each of 3).
    rows = datasets.Dataset.from_dict({"text_a": ["hot " * 50], "label": [0]})
    out = controlled(_task("classification"), rows, augmented(40), seed=3, synonyms=SYNONYMS)
    words = " ".join(out["text_a"]).split()
    shares = {w: words.count(w) / len(words) for w in ("hot", "warm", "boiling")}
    assert sum(shares.values()) == 1.0
    assert all(abs(share - 1 / 3) < 0.05 for share in shares.values()), shares


def test_tags_keep_their_words_place_and_choices_their_labels() -> None:
    tags = datasets.Dataset.from_dict({"tokens": [["hot", "big", "cold"]], "tags": [[1, 2, 3]]})
    out = controlled(_task("tagging"), tags, augmented(5), seed=0, synonyms=SYNONYMS)
    assert out["tags"] == [[1, 2, 3]] * 5
    assert all(row[1] == "big" and row[2] in ("cold", "chilly") for row in out["tokens"])
    choices = datasets.Dataset.from_dict(
        {"context": ["hot day"], "choices": [["cold", "big"]], "label": [1]}
    )
    out = controlled(_task("multiple_choice"), choices, augmented(3), seed=0, synonyms=SYNONYMS)
    assert out["label"] == [1, 1, 1] and all(c[1] == "big" for c in out["choices"])


def test_a_span_task_is_not_augmented() -> None:
    with pytest.raises(ValueError, match="span task"):
        controlled(_task("span"), PAIRS, augmented(2), seed=0, synonyms=SYNONYMS)


def test_robust_xlts_neighbours_file_is_read_and_used() -> None:
    table = load_synonyms(NEIGHBOURS)
    assert table["movie"][:2] == ["film", "filmmaking"] and table["br"] == []
    rows = datasets.Dataset.from_dict({"text_a": ["a good movie"], "label": [1]})
    out = controlled(_task("classification"), rows, augmented(20), seed=0, synonyms=table)
    seconds = {text.split()[2] for text in out["text_a"]}
    assert {text.split()[0] for text in out["text_a"]} == {"a"}  # not in the table
    assert seconds <= {"movie", *table["movie"]} and len(seconds) > 2


@pytest.mark.parametrize("content", ['["movie", "film"]', '{"movie": "film"}', "{not json"])
def test_a_neighbours_file_in_another_format_is_refused_in_one_line(
    tmp_path: Path, content: str
) -> None:
    path = tmp_path / "neighbours.json"
    path.write_text(content)
    with pytest.raises(UserError) as refused:
        load_synonyms(path)
    assert "\n" not in str(refused.value) and str(refused.value).startswith("data.synonyms: ")


# The spec, the splits it prepares, the trial's variants.


def _spec(tmp_path: Path, **hyperparameters: object) -> Path:
    raw = yaml.safe_load((ROOT / "search_spaces" / "quickstart.yaml").read_text())
    raw["hyperparameters"] = {**(raw.get("hyperparameters") or {}), **hyperparameters}
    raw.setdefault("data", {})["synonyms"] = str(NEIGHBOURS)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_the_copies_a_spec_can_take_are_the_ones_prepared(tmp_path: Path) -> None:
    spec = load_spec(_spec(tmp_path, robust_training={"choice": ["none", "rs_da"]}))
    assert spec.augmented_copies == (3,) and not spec.augments_intermediate
    spec = load_spec(_spec(tmp_path, robust_training="rs_da", robust_copies={"randint": [2, 4]}))
    assert spec.augmented_copies == (2, 3)
    assert load_spec(_spec(tmp_path, robust_copies=5)).augmented_copies == ()  # no rs_da


def test_rs_da_on_a_span_task_of_the_intermediate_phase_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot swap words in syn_pole_span, a span task"):
        load_spec(_spec(tmp_path, robust_training="rs_da", robust_phases="all"))


def test_required_splits_add_the_augmented_variants() -> None:
    targets = (TargetConfig("syn_nli", ("en", "xc1")),)
    plain = required_splits(("syn_kind",), targets)
    both = required_splits(("syn_kind",), targets, augmentations=["rs_da.3", "rs_da.10"])
    added = {r.key for r in both} - {r.key for r in plain}
    assert added == {"syn_nli/train/en/rs_da.3", "syn_nli/train/en/rs_da.10"}
    every = required_splits(
        ("syn_kind",), targets, augmentations=["rs_da.3"], augment_intermediate=True
    )
    assert {r.key for r in every} - {r.key for r in plain} == {
        "syn_nli/train/en/rs_da.3",
        "syn_kind/train/en/rs_da.3",
    }


def test_a_trial_reads_the_copies_where_it_trains_robustly_and_steps_plainly() -> None:
    config = TrialConfig("m", (), (), 1, 1, 1, 0, robust_training="rs_da", robust_copies=10)
    assert config.train_variant(Phase.TARGET) == "rs_da.10"
    assert config.train_variant(Phase.INTERMEDIATE) == ""
    assert config.robustness(Phase.TARGET).kind == "none"
    everywhere = TrialConfig("m", (), (), 1, 1, 1, 0, robust_training="rs_da", robust_phases="all")
    assert everywhere.train_variant(Phase.INTERMEDIATE) == "rs_da.3"
    control = TrialConfig("m", (), (), 1, 1, 1, 0, robust_training="rs_da", control="word_shuffle")
    assert control.train_variant(Phase.TARGET) == "word_shuffle"  # a control is a control
    assert TrialConfig("m", (), (), 1, 1, 1, 0).train_variant(Phase.TARGET) == ""


# The planted known answer, trained for real on the synthetic world (no Ray).


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, float]]:
    """Final metrics of plain and rs_da fine-tunes of syn_synonyms and syn_polarity."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XLT_SEARCH_CACHE", str(tmp_path_factory.mktemp("xlt_cache")))
        from xlt_search.synthetic import SYNTHETIC_MODEL, ensure_suite, resolve_model, synonyms_file

        keys = ("syn_synonyms", "syn_polarity")
        targets = tuple(TargetConfig(key, REGISTRY[key].languages) for key in keys)
        model = resolve_model(SYNTHETIC_MODEL)
        data = prepare_data(
            required_splits((), targets, augmentations=[augmented(3)]),
            model,
            max_seq_length=32,
            max_train_examples=1000,
            cache_dir=tmp_path_factory.mktemp("prepared"),
            seed=0,
            synonyms=synonyms_file(ensure_suite()),
        )
        return {
            kind: run_trial(
                TrialConfig(
                    model, (), targets, 1, 200, 10**6, 0, robust_training=kind, robust_copies=3
                ),
                data,
                lambda metrics, save_state: None,
            )
            for kind in ("none", "rs_da")
        }


def test_rs_da_reads_the_synonyms_no_english_training_shows(planted: dict) -> None:
    # Measured: plain 0.54, rs_da 0.75 (chance 0.5).
    gain = planted["rs_da"]["score.syn_synonyms"] - planted["none"]["score.syn_synonyms"]
    assert gain > 0.1, gain


def test_rs_da_gains_nothing_where_evaluation_swaps_no_word(planted: dict) -> None:
    # The same examples as written: both 0.76 (measured -0.01 to +0.00 over two seeds).
    gain = planted["rs_da"]["score.syn_polarity"] - planted["none"]["score.syn_polarity"]
    assert abs(gain) < 0.03, gain
    assert planted["none"]["score.syn_polarity"] > 0.65  # plain training learned it

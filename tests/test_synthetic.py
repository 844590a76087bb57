"""The synthetic suite: deterministic, cached, loaded like hub data and models, as planted."""

from __future__ import annotations

import hashlib
from pathlib import Path

import datasets
import pytest

from xlt_search.errors import UserError
from xlt_search.synthetic import (
    DEFAULT_POOL,
    RELATEDNESS,
    SUITE_VERSION,
    SYNTHETIC_MODEL,
    ensure_suite,
    generate_suite,
    resolve_model,
)
from xlt_search.synthetic.world import SHARED_SHARE, World, build_world
from xlt_search.tasks import synthetic
from xlt_search.tasks.base import KIND_FIELDS, OPTIONAL_FIELDS, Task

MAX_TOKENS = 32  # with specials: keeps a trial cheap on a CPU
TARGETS = ("syn_nli", "syn_copa")
SYNTHETIC = {task.key: task for task in synthetic.TASKS}


@pytest.fixture(scope="module")
def suite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_suite(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def world() -> World:
    return build_world()


def _load(suite: Path, task: Task, split: str, language: str) -> datasets.Dataset:
    assert task.sources[0].data_files is not None
    pattern = task.sources[0].data_files[split]
    path = pattern.format(synthetic_root=suite, lang=language)
    return datasets.load_dataset(task.sources[0].path, data_files={split: path}, split=split)


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_generation_is_deterministic(suite: Path, tmp_path: Path) -> None:
    generate_suite(tmp_path / "again")
    assert _digest(tmp_path / "again") == _digest(suite)


def test_ensure_suite_is_cached_and_versioned(suite: Path) -> None:
    assert suite.name == f"synthetic-v{SUITE_VERSION}"
    marker = suite / "data" / "syn_nli" / "train.en.jsonl"
    before = marker.stat().st_mtime_ns
    assert ensure_suite(suite.parent) == suite
    assert marker.stat().st_mtime_ns == before
    assert [p.name for p in suite.parent.iterdir()] == [suite.name]  # no staging folder left


def test_resolve_model(suite: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XLT_SEARCH_CACHE", str(suite.parent))  # the suite made once, above
    assert resolve_model(SYNTHETIC_MODEL) == str(
        suite.parent / f"synthetic-v{SUITE_VERSION}" / "encoder"
    )
    assert resolve_model("FacebookAI/xlm-roberta-large") == "FacebookAI/xlm-roberta-large"
    assert resolve_model("/some/local/dir") == "/some/local/dir"
    with pytest.raises(UserError, match="did you mean 'synthetic:tiny-xlmr'"):
        resolve_model("synthetic:tiny-xlm")


def test_every_split_loads_with_the_declared_columns(suite: Path) -> None:
    for task in SYNTHETIC.values():
        assert task.sources[0].data_files is not None
        for split in task.sources[0].data_files:
            languages = task.languages if split != "train" else ("en",)
            for language in languages:
                data = _load(suite, task, split, language)
                assert len(data) >= 300
                for canonical in KIND_FIELDS[task.kind]:
                    column = task.column(canonical)
                    if column is None:
                        assert canonical in OPTIONAL_FIELDS, (task.key, canonical)
                    else:
                        assert column in data.column_names, (task.key, column)


def test_target_shapes(suite: Path) -> None:
    for key in TARGETS:
        task = SYNTHETIC[key]
        assert task.languages[0] == "en" and set(task.languages) == set(synthetic.ALL_LANGUAGES)
        assert len(_load(suite, task, "train", "en")) >= 3000
    nli = _load(suite, SYNTHETIC["syn_nli"], "validation", "xc1")
    assert set(nli["label"]) == {0, 1, 2}
    copa = _load(suite, SYNTHETIC["syn_copa"], "test", "xf2")
    assert {len(choices) for choices in copa["choices"]} == {2} and set(copa["label"]) == {0, 1}


def test_eval_sets_are_parallel_across_languages(suite: Path) -> None:
    task = SYNTHETIC["syn_nli"]
    english = _load(suite, task, "validation", "en")
    for code in ("xc1", "xf1"):
        other = _load(suite, task, "validation", code)
        assert other["label"] == english["label"]
        assert other["premise"] != english["premise"]
        lengths = [len(p.split()) for p in other["premise"]]
        assert lengths == [len(p.split()) for p in english["premise"]]


def test_span_answers_point_into_the_context(suite: Path) -> None:
    for key in ("syn_pole_span", "syn_kind_span"):
        data = _load(suite, SYNTHETIC[key], "train", "en")
        for row in data:
            for text, start in zip(
                row["answers"]["text"], row["answers"]["answer_start"], strict=True
            ):
                assert row["context"][start : start + len(text)] == text
    unanswerable = _load(suite, SYNTHETIC["syn_pole_span"], "train", "en")
    assert any(not row["answers"]["text"] for row in unanswerable)


def test_tags_align_with_tokens(suite: Path) -> None:
    for key in ("syn_pole_tags", "syn_kind_tags"):
        task = SYNTHETIC[key]
        for row in _load(suite, task, "train", "en"):
            assert len(row["tokens"]) == len(row["tags"])
            assert all(0 <= tag < task.num_labels for tag in row["tags"])


def _concepts(world: World, text: str) -> list[int]:
    concept = {word: c for c, word in enumerate(world.lexicons["en"])}
    return [concept[word] for word in text.split()]


def _topic_and_pole(world: World, concepts: list[int]) -> tuple[set[int], set[int]]:
    return {world.topic[c] for c in concepts}, {World.pole(c) for c in concepts}


@pytest.mark.parametrize("split", ["train", "validation"])
def test_nli_labels_follow_the_planted_rule(suite: Path, world: World, split: str) -> None:
    for row in _load(suite, SYNTHETIC["syn_nli"], split, "en"):
        topics, poles = _topic_and_pole(world, _concepts(world, row["premise"]))
        assert len(topics) == 1 and len(poles) == 1
        hypothesis = _concepts(world, row["hypothesis"])
        if all(world.topic[c] not in topics for c in hypothesis):
            expected = 1
        elif all(World.pole(c) in poles for c in hypothesis):
            expected = 0
        else:
            expected = 2
        assert row["label"] == expected


def test_copa_answer_is_the_opposite_pole_of_the_same_topic(suite: Path, world: World) -> None:
    for row in _load(suite, SYNTHETIC["syn_copa"], "validation", "en"):
        topics, poles = _topic_and_pole(world, _concepts(world, row["premise"]))
        fits = []
        for choice in row["choices"]:
            choice_topics, choice_poles = _topic_and_pole(world, _concepts(world, choice))
            fits.append(choice_topics == topics and choice_poles.isdisjoint(poles))
        assert fits.index(True) == row["label"] and sum(fits) == 1


def test_targets_train_on_common_words_and_are_evaluated_on_all(suite: Path, world: World) -> None:
    common = world.common_concepts
    assert len(common) == world.num_concepts // 2
    for key in ("syn_nli", "syn_copa"):
        for split in ("train", "validation"):
            rows = _load(suite, SYNTHETIC[key], split, "en")
            seen = {c for row in rows for c in _concepts(world, row["premise"])}
            assert (seen <= common) == (split == "train"), (key, split)


def test_the_conflicting_task_flips_the_rare_words(suite: Path, world: World) -> None:
    from xlt_search.synthetic.generate import stance_of

    for row in _load(suite, SYNTHETIC["syn_stance"], "train", "en"):
        first = {stance_of(world, c) for c in _concepts(world, row["sentence1"])}
        second = _concepts(world, row["sentence2"])
        assert len(first) == 1 and not any(world.common[c] for c in second)
        assert row["label"] == int(all(stance_of(world, c) in first for c in second))
        # In the true lexicon, the rare words take the opposite side.
        assert row["label"] == int(all(World.pole(c) not in first for c in second))


def test_model_and_tokenizer_load_like_a_hub_model(suite: Path) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    folder = suite / "encoder"
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder)
    assert model.config.model_type == "xlm-roberta"
    assert model.config.vocab_size == len(tokenizer)

    encoded = tokenizer("a b", "c", return_offsets_mapping=True)
    tokens = tokenizer.convert_ids_to_tokens(encoded["input_ids"])
    assert tokens == ["<s>", "<unk>", "<unk>", "</s>", "</s>", "<unk>", "</s>"]
    assert encoded["offset_mapping"][1:3] == [(0, 1), (2, 3)]
    words = tokenizer(["x", "y"], is_split_into_words=True)
    assert words.word_ids() == [None, 0, 1, None]

    with torch.no_grad():
        batch = tokenizer(["a b c"], return_tensors="pt")
        hidden = model(**batch).last_hidden_state
    assert hidden.shape == (1, 5, model.config.hidden_size)


def test_every_word_is_a_token_and_inputs_are_short(suite: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(suite / "encoder")
    for task in SYNTHETIC.values():
        data = _load(suite, task, "validation", task.languages[-1])
        first = {c: task.column(c) for c in KIND_FIELDS[task.kind]}
        for row in data:
            if task.kind == "classification":
                pair = [row[first["text_a"]]] + ([row[first["text_b"]]] if first["text_b"] else [])
                ids = tokenizer(*pair)["input_ids"]
            elif task.kind == "multiple_choice":
                longest = max(row[first["choices"]], key=len)
                ids = tokenizer(row[first["context"]], longest)["input_ids"]
            elif task.kind == "tagging":
                ids = tokenizer(row[first["tokens"]], is_split_into_words=True)["input_ids"]
            elif task.kind == "parallel":  # each side its own sequence
                ids = tokenizer(row["target"])["input_ids"]
                assert tokenizer.unk_token_id not in tokenizer(row["source"])["input_ids"]
            else:
                ids = tokenizer(row[first["question"]], row[first["context"]])["input_ids"]
            assert tokenizer.unk_token_id not in ids, (task.key, row)
            assert len(ids) <= MAX_TOKENS, (task.key, len(ids))


def test_planted_relatedness_covers_the_pool() -> None:
    assert len(DEFAULT_POOL) == 9 and set(DEFAULT_POOL) <= set(SYNTHETIC)
    # every kind that trains (retrieval does not; parallel is opt-in: syn_parallel)
    kinds = set(KIND_FIELDS) - {"retrieval", "parallel"}
    assert {SYNTHETIC[key].kind for key in DEFAULT_POOL} == kinds
    assert SYNTHETIC["syn_parallel"].kind == "parallel" and "syn_parallel" not in DEFAULT_POOL
    assert set(RELATEDNESS) == set(TARGETS)
    for target, planted in RELATEDNESS.items():
        assert set(planted) == set(DEFAULT_POOL), target
        labels = list(planted.values())
        assert labels.count("helpful") >= 2
        assert labels.count("neutral") >= 2
        assert labels.count("conflicting") >= 1
    for key in DEFAULT_POOL:
        task = SYNTHETIC[key]
        assert task.languages == ("en",) and set(task.sources[0].data_files or {}) == {
            "train",
            "validation",
        }


def test_language_families(world: World) -> None:
    assert synthetic.ALL_LANGUAGES == ("en", *(lang.code for lang in synthetic.LANGUAGES))
    families = {lang.code: lang.family for lang in synthetic.LANGUAGES}
    assert sorted(set(families.values())) == ["synthetic-close", "synthetic-far"]
    assert sum(f == "synthetic-close" for f in families.values()) >= 2
    assert sum(f == "synthetic-far" for f in families.values()) >= 2
    for code, family in families.items():
        assert world.shared_share(code) == pytest.approx(SHARED_SHARE[family], abs=0.02)
        assert len(set(world.lexicons[code])) == world.num_concepts
    assert SHARED_SHARE["synthetic-close"] > SHARED_SHARE["synthetic-far"]

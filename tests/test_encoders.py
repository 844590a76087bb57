"""Every encoder family the field uses, as tiny random-weight models built from their configs and
saved with their tokenizers: what each needs is read from its config, and the real pipeline trains
and evaluates on each. Segment ids reach the encoders that read them; a sequence longer than a
model's positions is refused before any trial.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from conftest import ToyWorld
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from xlt_search.data import BatchStream, PreparedData, eval_batches, prepare_data
from xlt_search.encoders import EncoderTraits, ModelError, read_traits
from xlt_search.errors import UserError
from xlt_search.trial import (
    MultiTaskModel,
    TargetConfig,
    TrialConfig,
    load_encoder,
    required_splits,
    run_trial,
)

LANGS = ("en", "ta", "tb")
POOL = ("toy_choice4", "toy_nli", "toy_qa", "toy_tags")  # every kind
TARGETS = (
    TargetConfig("toy_nli", LANGS),
    TargetConfig("toy_copa_via_choice", LANGS),
    TargetConfig("toy_qa", LANGS),
    TargetConfig("toy_retrieval", LANGS, fine_tuned=False),
)
SIZES = {"num_hidden_layers": 2, "num_attention_heads": 2, "hidden_size": 32}
POSITIONS = 64


def _config(family: str, vocab_size: int) -> object:
    import transformers as tf

    if family == "xlm-roberta":  # XLM-R base and large, mE5: positions count from pad + 1
        return tf.XLMRobertaConfig(
            vocab_size=vocab_size,
            intermediate_size=64,
            max_position_embeddings=POSITIONS + 2,
            type_vocab_size=1,
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
            **SIZES,
        )
    if family == "bert":  # mBERT
        return tf.BertConfig(
            vocab_size=vocab_size, intermediate_size=64, max_position_embeddings=POSITIONS, **SIZES
        )
    if family == "distilbert":  # DistilmBERT: no segment embeddings at all
        return tf.DistilBertConfig(
            vocab_size=vocab_size,
            dim=32,
            hidden_dim=64,
            n_layers=2,
            n_heads=2,
            max_position_embeddings=POSITIONS,
        )
    if family == "deberta-v2":  # mDeBERTa-v3: relative positions only, no segment embeddings
        return tf.DebertaV2Config(
            vocab_size=vocab_size,
            intermediate_size=64,
            max_position_embeddings=POSITIONS,
            type_vocab_size=0,
            relative_attention=True,
            position_biased_input=False,
            pos_att_type=["p2c", "c2p"],
            max_relative_positions=-1,
            position_buckets=16,
            norm_rel_ebd="layer_norm",
            share_att_key=True,
            **SIZES,
        )
    if family == "rembert":  # RemBERT: decoupled input embeddings
        return tf.RemBertConfig(
            vocab_size=vocab_size,
            intermediate_size=64,
            input_embedding_size=16,
            output_embedding_size=16,
            max_position_embeddings=POSITIONS,
            bos_token_id=2,
            eos_token_id=3,
            **SIZES,
        )
    assert family == "mt5"  # an encoder-decoder: the pipeline takes its encoder alone
    return tf.MT5Config(
        vocab_size=vocab_size,
        d_model=32,
        d_kv=16,
        d_ff=64,
        num_layers=2,
        num_heads=2,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )


# The tokenizer style each family's hub tokenizer has: its specials and its pair template.
STYLES = {
    "xlm-roberta": "roberta",
    "bert": "bert",
    "distilbert": "bert",
    "deberta-v2": "bert",
    "rembert": "bert",
    "mt5": "t5",
}

# What each family needs, as its config says.
EXPECTED = {
    "xlm-roberta": EncoderTraits(segments=False, max_tokens=POSITIONS, pooling="first"),
    "bert": EncoderTraits(segments=True, max_tokens=POSITIONS, pooling="first"),
    "distilbert": EncoderTraits(segments=False, max_tokens=POSITIONS, pooling="first"),
    "deberta-v2": EncoderTraits(segments=False, max_tokens=None, pooling="first"),
    "rembert": EncoderTraits(segments=True, max_tokens=POSITIONS, pooling="first"),
    "mt5": EncoderTraits(segments=False, max_tokens=None, pooling="mean"),
}
FAMILIES = tuple(EXPECTED)


def _tokenizer(style: str, words: list[str], roberta: Path) -> PreTrainedTokenizerFast:
    """A word-level tokenizer over `words` in the family's style; segment ids 1 on the second
    sequence of a BERT-style pair, as the hub's BERT tokenizers give."""
    if style == "roberta":
        return AutoTokenizer.from_pretrained(roberta)  # the toy world's, XLM-R's template
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    if style == "bert":
        specials = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]"}
        extra = ("[MASK]",)
        single, pair = "[CLS] $A [SEP]", "[CLS] $A [SEP] $B:1 [SEP]:1"
        template = ("[CLS]", "[SEP]")
    else:  # T5: no classification token, each sequence closed by </s>
        specials = {"pad": "<pad>", "eos": "</s>", "unk": "<unk>"}
        extra = ()
        single, pair = "$A </s>", "$A </s> $B </s>"
        template = ("</s>",)
    vocab = {token: i for i, token in enumerate([*specials.values(), *extra, *words])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=specials["unk"]))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(
        single=single, pair=pair, special_tokens=[(t, vocab[t]) for t in template]
    )
    names = {f"{role}_token": token for role, token in specials.items()}
    if style == "bert":
        names["mask_token"] = "[MASK]"
    return PreTrainedTokenizerFast(tokenizer_object=backend, model_max_length=POSITIONS, **names)


@pytest.fixture(scope="module")
def world(toy_world: ToyWorld) -> ToyWorld:
    """The toy world plus a retrieval target (each premise against its hypothesis)."""
    nli = toy_world.tasks["toy_nli"]
    retrieval = dataclasses.replace(
        nli,
        key="toy_retrieval",
        kind="retrieval",
        columns={"query": "premise", "candidate": "hypothesis"},
        num_labels=0,
    )
    return dataclasses.replace(toy_world, tasks={**toy_world.tasks, retrieval.key: retrieval})


@pytest.fixture(scope="module")
def family_model(
    toy_world: ToyWorld, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], Path]:
    """A folder per family: a tiny random-weight model and its tokenizer, via `save_pretrained`."""
    import transformers as tf

    toy = AutoTokenizer.from_pretrained(toy_world.encoder)
    words = [word for word in toy.get_vocab() if word not in toy.all_special_tokens]
    folders: dict[str, Path] = {}

    def make(family: str) -> Path:
        if family not in folders:
            tokenizer = _tokenizer(STYLES[family], sorted(words), toy_world.encoder)
            config = _config(family, len(tokenizer))
            torch.manual_seed(0)
            # mT5 as the hub has it: the whole encoder-decoder, of which the encoder is read
            model = (
                tf.MT5ForConditionalGeneration(config)
                if family == "mt5"
                else tf.AutoModel.from_config(config)
            )
            folder = tmp_path_factory.mktemp(family)
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)
            folders[family] = folder
        return folders[family]

    return make


def _prepare(world: ToyWorld, model: Path, cache: Path, **changes: object) -> PreparedData:
    settings = {"max_seq_length": 32, "max_train_examples": 120, "seed": 0} | changes
    return prepare_data(
        required_splits(POOL, TARGETS, registry=world.tasks),
        str(model),
        cache_dir=cache,
        registry=world.tasks,
        languages=world.languages,
        **settings,
    )


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_s_needs_come_from_its_config(
    family: str, family_model: Callable[[str], Path]
) -> None:
    folder = family_model(family)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert read_traits(str(folder), tokenizer) == EXPECTED[family]
    encoder = load_encoder(str(folder))
    if family == "mt5":  # the encoder alone, its decoder left unread
        assert type(encoder).__name__ == "MT5EncoderModel"
        assert not any(name.startswith("decoder") for name, _ in encoder.named_parameters())
    assert MultiTaskModel(encoder, {}).segments == EXPECTED[family].segments


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_trains_and_evaluates_every_kind(
    family: str,
    world: ToyWorld,
    family_model: Callable[[str], Path],
    tmp_path: Path,
) -> None:
    folder = family_model(family)
    data = _prepare(world, folder, tmp_path)
    assert data.pooling == EXPECTED[family].pooling
    segments = "token_type_ids" in data.load("toy_nli", "train", "en").column_names
    assert segments == EXPECTED[family].segments
    config = TrialConfig(
        model=str(folder),
        tasks=POOL,
        targets=TARGETS,
        intermediate_steps=4,
        target_steps=4,
        report_every_steps=4,
        probe_steps=2,
        learning_rate=1e-3,
        per_device_batch_size=8,
    )
    reports: list[dict[str, float]] = []
    final = run_trial(config, data, lambda metrics, save_state: reports.append(metrics))
    assert [r["budget_steps"] for r in reports] == [4, 8, 12, 16]
    assert all(math.isfinite(r["loss"]) and r["loss"] > 0 for r in reports)
    for target in TARGETS:
        for lang in LANGS:
            assert 0 <= final[f"lang.{target.task}.{lang}"] <= 1
    assert math.isfinite(final["score"])


def test_bert_pairs_keep_their_segments_to_the_encoder(
    world: ToyWorld, family_model: Callable[[str], Path], tmp_path: Path
) -> None:
    folder = family_model("bert")
    data = _prepare(world, folder, tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    sep = tokenizer.sep_token_id

    def second_segment_is_one(ids: list[int], types: list[int]) -> bool:
        first_sep = ids.index(sep)
        return set(types[: first_sep + 1]) == {0} and set(types[first_sep + 1 :]) == {1}

    nli = data.load("toy_nli", "train", "en").with_format(None)
    assert all(map(second_segment_is_one, nli["input_ids"], nli["token_type_ids"]))
    choices = data.load("toy_copa", "train", "en").with_format(None)
    for ids, types in zip(choices["input_ids"], choices["token_type_ids"], strict=True):
        assert all(map(second_segment_is_one, ids, types))
    qa = data.load("toy_qa", "validation", "ta").with_format(None)
    for types, starts in zip(qa["token_type_ids"], qa["offset_start"], strict=True):
        # the context is the second segment: every context token has type 1
        assert all(t == 1 for t, s in zip(types, starts, strict=True) if s >= 0)
    tags = data.load("toy_tags", "train", "en")
    assert "token_type_ids" not in tags.column_names  # one sequence: nothing to tell apart

    # Batches carry them, padded with 0, in the shape of the ids.
    stream = BatchStream(data.load("toy_nli", "train", "en"), "classification", 0, 8, seed=0)
    batch = stream.next()
    assert batch["token_type_ids"].shape == batch["input_ids"].shape
    assert (batch["token_type_ids"][batch["attention_mask"] == 0] == 0).all()
    assert (batch["token_type_ids"] == 1).any(dim=1).all()
    mc = BatchStream(data.load("toy_copa", "train", "en"), "multiple_choice", 0, 8, seed=0).next()
    assert mc["token_type_ids"].shape == mc["input_ids"].shape
    span = eval_batches(data.load("toy_qa", "validation", "ta"), "span", 0, 8)[0]
    assert span["token_type_ids"].shape == span["input_ids"].shape

    # The encoder embeds them: its segment embedding sees the 1s, and its output depends on them.
    torch.manual_seed(0)
    model = MultiTaskModel(load_encoder(str(folder)), {"toy_nli": ("classification", 3)}).eval()
    seen: list[torch.Tensor] = []
    embeddings = model.encoder.embeddings.token_type_embeddings
    hook = embeddings.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    try:
        with torch.no_grad():
            _, with_segments = model("toy_nli", batch)
            _, without = model("toy_nli", {k: v for k, v in batch.items() if k != "token_type_ids"})
    finally:
        hook.remove()
    assert torch.equal(seen[0], batch["token_type_ids"])
    assert not seen[1].any()  # left out: all segment 0
    assert not torch.allclose(with_segments, without)


def test_a_model_that_reads_no_segments_gets_none(
    world: ToyWorld, family_model: Callable[[str], Path], tmp_path: Path
) -> None:
    # XLM-R (one segment embedding) and DistilBERT (none): pairs are told apart by separators.
    for family in ("xlm-roberta", "distilbert"):
        data = _prepare(world, family_model(family), tmp_path / family)
        assert "token_type_ids" not in data.load("toy_nli", "train", "en").column_names
    # A batch that has them anyway leaves DistilBERT's forward untouched.
    model = MultiTaskModel(
        load_encoder(str(family_model("distilbert"))), {"c": ("classification", 2)}
    )
    batch = {
        "input_ids": torch.tensor([[2, 7, 3, 8, 3]]),
        "attention_mask": torch.ones(1, 5, dtype=torch.long),
        "token_type_ids": torch.tensor([[0, 0, 0, 1, 1]]),
    }
    assert model("c", batch)[1].shape == (1, 2)


@pytest.mark.parametrize("family", ["xlm-roberta", "bert"])
def test_a_sequence_longer_than_the_model_s_positions_is_refused_in_one_line(
    family: str, world: ToyWorld, family_model: Callable[[str], Path], tmp_path: Path
) -> None:
    folder = family_model(family)
    with pytest.raises(ModelError) as refused:
        _prepare(world, folder, tmp_path, max_seq_length=POSITIONS + 1)
    message = str(refused.value)
    assert isinstance(refused.value, UserError) and "\n" not in message
    assert f"data.max_seq_length {POSITIONS + 1}" in message and f"at most {POSITIONS}" in message
    assert not list(tmp_path.iterdir())  # refused before anything was tokenized

    # The limit is the model's own: POSITIONS tokens run through it, one more does not (XLM-R's
    # positions start after the padding id: two of its POSITIONS + 2 are never used).
    encoder = load_encoder(str(folder)).eval()
    longest = torch.full((1, POSITIONS), 7)
    with torch.no_grad():
        encoder(input_ids=longest, attention_mask=torch.ones_like(longest))
        with pytest.raises((IndexError, RuntimeError)):
            encoder(input_ids=torch.full((1, POSITIONS + 1), 7))

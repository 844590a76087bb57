"""The tiny XLM-R-shaped encoder and its word-level tokenizer, saved like a hub model.

The tokenizer has one token per word of every language (plus RoBERTa's specials and pair template
``<s> A </s></s> B </s>``), so a language's own words are tokens the English training never touches:
transfer has to come through the shared words and the encoder's layers. The encoder is randomly
initialised with a fixed seed; `AutoModel.from_pretrained` and `AutoTokenizer.from_pretrained` load
the directory back.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast, XLMRobertaModel

ENCODER_SEED = 0
MAX_POSITIONS = 128
SPECIALS: tuple[str, ...] = ("<s>", "<pad>", "</s>", "<unk>")
MASK = "<mask>"


def build_vocab(words: Iterable[str]) -> dict[str, int]:
    """Token ids: RoBERTa's specials first (``<s>`` 0, ``<pad>`` 1, ``</s>`` 2, ``<unk>`` 3), then
    the words in first-seen order, then ``<mask>`` last, as in XLM-R."""
    vocab = {token: index for index, token in enumerate(SPECIALS)}
    for word in words:
        vocab.setdefault(word, len(vocab))
    vocab[MASK] = len(vocab)
    return vocab


def save_encoder(
    words: Iterable[str],
    folder: Path,
    *,
    hidden_size: int = 64,
    intermediate_size: int = 128,
    max_positions: int = MAX_POSITIONS,
) -> None:
    """Build the tokenizer over `words` and a fresh encoder for its vocabulary, and save both in
    `folder` with `save_pretrained` (the sizes default to the synthetic suite's encoder; inputs
    may be up to `max_positions` - 2 tokens long)."""
    from transformers.utils import logging

    tokenizer = _tokenizer(build_vocab(words), max_positions)
    tokenizer.save_pretrained(folder)
    model = _model(len(tokenizer), hidden_size, intermediate_size, max_positions)
    bars = logging.is_progress_bar_enabled()
    logging.disable_progress_bar()  # a one-shard save needs no progress bar in the user's terminal
    try:
        model.save_pretrained(folder)
    finally:
        if bars:
            logging.enable_progress_bar()


def _tokenizer(vocab: dict[str, int], max_positions: int) -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    bos, eos = vocab["<s>"], vocab["</s>"]
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", bos), ("</s>", eos)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token=MASK,
        model_max_length=max_positions - 2,
    )


def _model(
    vocab_size: int, hidden_size: int, intermediate_size: int, max_positions: int
) -> XLMRobertaModel:
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    config = XLMRobertaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=intermediate_size,
        # XLM-R counts positions from padding_idx + 1, so two more than the longest input.
        max_position_embeddings=max_positions,
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
    )
    torch.manual_seed(ENCODER_SEED)
    return XLMRobertaModel(config)

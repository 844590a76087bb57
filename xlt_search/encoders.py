"""What an encoder family needs from the pipeline, read from the model's own config, modules and
tokenizer (never from its name).

- Its class: the library's text-encoder class for the config (`AutoModelForTextEncoding`: the
  model itself for BERT-, RoBERTa- and DeBERTa-style encoders, the encoder alone of T5, mT5 and
  UMT5), else `AutoModel`.
- Segment ids: given to the encoder when its forward takes ``token_type_ids`` and its config has
  more than one segment embedding (``type_vocab_size > 1``: BERT, mBERT, RemBERT). XLM-R has one,
  DeBERTa-v3 none, DistilBERT's and T5's forwards take none: their pairs are told apart by the
  separator tokens alone.
- The longest input: the size of the absolute position embeddings, less the positions a model
  skips (RoBERTa-style embeddings count from ``pad_token_id + 1``: XLM-R's 514 positions hold 512
  tokens). Relative positions only (T5, DeBERTa-v3 with ``position_biased_input`` off) set no
  limit.
- Pooling for classification and multiple choice: the first token when the tokenizer puts a
  classification token there (``[CLS]``, ``<s>``); the mean over the attention mask when it has
  none (T5's sequences start with their first word).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from xlt_search.errors import UserError

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel


class ModelError(UserError):
    """A model that cannot run the search as specified (its config, its length limit)."""


@dataclass(frozen=True)
class EncoderTraits:
    """What the data and the heads must respect for one encoder."""

    segments: bool  # the encoder reads token_type_ids: pairs are prepared with them
    max_tokens: int | None  # the longest input its positions allow; None: no limit
    pooling: str  # "first" or "mean": what classification and multiple choice heads pool


def encoder_class(config: PretrainedConfig) -> Any:
    """The auto class that loads the encoder of `config`'s model (and nothing more)."""
    from transformers import AutoModel, AutoModelForTextEncoding
    from transformers.models.auto.modeling_auto import MODEL_FOR_TEXT_ENCODING_MAPPING

    return (
        AutoModelForTextEncoding if type(config) in MODEL_FOR_TEXT_ENCODING_MAPPING else AutoModel
    )


def uses_segments(encoder: PreTrainedModel) -> bool:
    """Whether `encoder` reads segment ids (its forward takes them, it embeds more than one)."""
    takes = "token_type_ids" in inspect.signature(encoder.forward).parameters
    return takes and int(getattr(encoder.config, "type_vocab_size", 0) or 0) > 1


def max_tokens(encoder: PreTrainedModel) -> int | None:
    """The longest input `encoder`'s absolute position embeddings allow; None without them."""
    from torch import nn

    limits = [
        module.num_embeddings - (0 if module.padding_idx is None else module.padding_idx + 1)
        for name, module in encoder.named_modules()
        if name.split(".")[-1] == "position_embeddings" and isinstance(module, nn.Embedding)
    ]
    return min(limits) if limits else None


def pooling(tokenizer: Any) -> str:
    """ "first" when the tokenizer starts every sequence with a classification token, else
    "mean"."""
    return "first" if tokenizer.cls_token is not None else "mean"


def read_traits(model: str, tokenizer: Any) -> EncoderTraits:
    """The traits of the model at `model` (a local folder or a hub id), its `tokenizer` loaded.

    The encoder is built from its config on the meta device: no weights are read or allocated.
    """
    import torch
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(model)
    except (OSError, ValueError) as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelError(f"model {model}: its config cannot be read ({detail})") from None
    with torch.device("meta"):
        encoder = encoder_class(config).from_config(config)
    return EncoderTraits(uses_segments(encoder), max_tokens(encoder), pooling(tokenizer))


def check_length(model: str, traits: EncoderTraits, max_seq_length: int) -> None:
    """Refuse a `max_seq_length` longer than the model's positions allow (one line)."""
    if traits.max_tokens is not None and max_seq_length > traits.max_tokens:
        raise ModelError(
            f"data.max_seq_length {max_seq_length} is longer than model {model} takes "
            f"({traits.max_tokens} tokens, from its position embeddings); set data.max_seq_length "
            f"to at most {traits.max_tokens}"
        )

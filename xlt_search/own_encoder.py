"""A tiny encoder over the words of a spec's own tasks (`xlt-search encoder SPEC OUT`).

For known-answer worlds of one's own, made the way the synthetic suite is: the tokenizer has one
token per whitespace-separated word of every split the spec's search reads (its intermediate tasks'
and targets' training data and the targets' evaluation data, loaded through the tasks' own
loaders), so none of that text is an unknown token; the encoder is the synthetic suite's, freshly
initialised (`synthetic.encoder.save_encoder`). Both are saved with `save_pretrained` and load
back with `AutoModel` / `AutoTokenizer.from_pretrained`; `model: OUT` in a spec searches with it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from xlt_search.errors import UserError

if TYPE_CHECKING:
    import datasets

    from xlt_search.spec import SearchSpec
    from xlt_search.tasks.base import Task


@dataclass(frozen=True)
class BuiltEncoder:
    """What `build_encoder` wrote: the folder, its vocabulary's size, the splits it was read from."""

    folder: Path
    words: int
    splits: int


def spec_words(
    spec: SearchSpec, progress: Callable[[str], None] | None = None
) -> tuple[list[str], int]:
    """Every distinct word of the splits a search over `spec` reads, in first-seen order, and the
    number of splits."""
    from xlt_search.data import load_task_split
    from xlt_search.search import target_configs
    from xlt_search.trial import required_splits

    requests = required_splits(
        spec.pool, target_configs(spec), spec.registry, languages=spec.intermediate_languages
    )
    words: dict[str, None] = {}
    for number, request in enumerate(requests, 1):
        task = spec.registry[request.task]
        raw = load_task_split(task, request.split, request.language, mirror=spec.data.mirror)
        before = len(words)
        words.update(dict.fromkeys(_words(task, raw)))
        if progress is not None:
            progress(
                f"[{number}/{len(requests)}] read {request.key}: {len(raw)} examples, "
                f"{len(words) - before} new words"
            )
    return list(words), len(requests)


def _words(task: Task, raw: datasets.Dataset) -> Iterator[str]:
    from xlt_search.data import text_batches

    for texts, pretokenized in text_batches(task, raw):
        for text in texts:
            for piece in text if pretokenized else (text,):
                yield from piece.split()  # as the tokenizer's WhitespaceSplit cuts it


def build_encoder(
    spec: SearchSpec,
    out: Path,
    *,
    hidden_size: int = 64,
    intermediate_size: int = 128,
    progress: Callable[[str], None] | None = None,
) -> BuiltEncoder:
    """Write a word-level tokenizer over `spec`'s words and a fresh tiny encoder into `out` (new
    or empty); its positions fit the spec's `data.max_seq_length`."""
    from xlt_search.synthetic.encoder import MAX_POSITIONS, save_encoder

    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"{out} already exists and is not empty; write the encoder to a new folder")
    if hidden_size < 2 or hidden_size % 2 or intermediate_size < 1:
        raise UserError(
            f"--hidden-size {hidden_size}: the encoder's two attention heads need an even hidden "
            "size of at least 2, and --intermediate-size at least 1"
        )
    words, splits = spec_words(spec, progress)
    save_encoder(
        words,
        out,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        max_positions=max(MAX_POSITIONS, spec.data.max_seq_length + 2),
    )
    return BuiltEncoder(out, len(words), splits)

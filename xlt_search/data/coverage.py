"""How well the model's tokenizer reads each prepared split, measured once, at preparation.

Per split (a task's split in one language), over the text the model reads (both sentences of a
pair, a context and its choices or question, a tagged sentence's words, a query and its
candidate), tokenized without truncation and without special tokens:

- unknown: the share of tokens that are the tokenizer's ``unk_token_id``. A tokenizer whose
  vocabulary does not hold a language's words reads them as one token, ``<unk>``, and a search on
  such data trains at chance without another sign of it;
- tokens per word: tokens over whitespace-separated words. Scripts written without spaces between
  words (Chinese, Japanese, Thai, Khmer, Lao, Burmese, Tibetan) have no such words: "-" there;
- truncated: the share of examples whose input reached `max_seq_length` (for span tasks, whose
  context took more than one window).

`measure` runs when a split is tokenized; its counts are saved as `FILE` in the split's folder, so
a second preparation reads them back with the split instead of tokenizing again.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow.compute as pc

from xlt_search.errors import UserError

if TYPE_CHECKING:
    import datasets

    from xlt_search.data.cache import PreparedData
    from xlt_search.tasks.base import Language, Task

FILE = "xlt_coverage.json"  # in each prepared split's folder, beside the Arrow files
TAG = "xlt.coverage"  # the parent run's tag: the compact summary (`summary`)
ARTIFACT = "coverage.json"  # the parent run's artifact: every split's counts and shares
WARN_UNKNOWN_SHARE = 0.05  # above this share of unknown tokens, preparation warns
STOP_UNKNOWN_SHARE = 0.5  # above this, the search stops unless data.allow_unknown_tokens
UNSPACED_SCRIPTS = frozenset(
    {"Hani", "Hans", "Hant", "Jpan", "Thai", "Khmr", "Laoo", "Mymr", "Tibt"}
)

# The fields of each kind that hold text the model reads (lists: one text per item).
_TEXT_FIELDS: dict[str, tuple[str, ...]] = {
    "classification": ("text_a", "text_b"),
    "multiple_choice": ("context", "choices"),
    "tagging": ("tokens",),
    "span": ("question", "context"),
    "retrieval": ("query", "candidate"),
    "parallel": ("source", "target"),
}
_BATCH_ROWS = 1000


@dataclass(frozen=True)
class SplitCoverage:
    """The counts one prepared split was measured with."""

    examples: int  # as prepared (span tasks: questions, not windows)
    tokens: int  # the text's tokens, untruncated, special tokens left out
    unknown: int  # of those, the tokenizer's unknown token
    words: int  # whitespace-separated words of the text
    truncated: int  # examples whose input reached max_seq_length

    @property
    def unknown_share(self) -> float:
        return self.unknown / self.tokens if self.tokens else 0.0

    @property
    def tokens_per_word(self) -> float | None:
        return self.tokens / self.words if self.words else None

    @property
    def truncated_share(self) -> float:
        return self.truncated / self.examples if self.examples else 0.0


def measure(
    task: Task,
    raw: datasets.Dataset,
    tokenized: datasets.Dataset,
    tokenizer: Any,
    max_seq_length: int,
) -> SplitCoverage:
    """Measure one split: `raw` with its kind's canonical columns, `tokenized` as `data.tokenize`
    made it from `raw` with the fast `tokenizer`."""
    backend = tokenizer.backend_tokenizer
    # The last call through transformers left its truncation (and padding) set on the backend;
    # the text is measured whole. Each call through transformers sets its own again.
    backend.no_truncation()
    backend.no_padding()
    unk = tokenizer.unk_token_id
    special = sorted(set(tokenizer.all_special_ids) - {unk})
    tokens = unknown = words = 0
    for texts, pretokenized in text_batches(task, raw):
        encodings = backend.encode_batch(
            texts, is_pretokenized=pretokenized, add_special_tokens=False
        )
        words += sum(len(text.split()) for text in _flat(texts, pretokenized))
        ids = np.fromiter(itertools.chain.from_iterable(e.ids for e in encodings), np.int64)
        ids = ids[~np.isin(ids, special)]
        tokens += len(ids)
        unknown += int((ids == unk).sum()) if unk is not None else 0
    examples, truncated = _truncated(task.kind, tokenized, max_seq_length)
    return SplitCoverage(examples, tokens, unknown, words, truncated)


def text_batches(
    task: Task, raw: datasets.Dataset
) -> Iterator[tuple[list[str] | list[list[str]], bool]]:
    """The text the model reads in a split with canonical columns, in batches: (texts, False), or
    (sentences as lists of words, True) for a tagging task's pre-split words."""
    fields = [name for name in _TEXT_FIELDS[task.kind] if name in raw.column_names]
    for batch in raw.select_columns(fields).iter(batch_size=_BATCH_ROWS):
        for name, values in batch.items():
            if name == "tokens":
                yield [[word for word in row if word] for row in values], True
            elif name == "choices":
                yield [text or "" for row in values for text in row], False
            else:
                yield [text or "" for text in values], False


def _flat(texts: list[str] | list[list[str]], pretokenized: bool) -> Iterator[str]:
    return (word for row in texts for word in row) if pretokenized else iter(texts)


def _truncated(kind: str, tokenized: datasets.Dataset, max_seq_length: int) -> tuple[int, int]:
    """(examples, examples whose longest input sequence reached max_seq_length)."""
    table = tokenized.with_format(None).data
    # a sentence and its translation (retrieval, parallel): both sides count
    columns = [name for name in ("input_ids", "candidate_ids") if name in table.column_names]
    longest = np.zeros(len(tokenized), dtype=np.int64)
    for name in columns:
        column = table.column(name).combine_chunks()
        if kind == "multiple_choice":  # one sequence per choice: the example's longest counts
            lengths = pc.list_value_length(column.flatten()).to_numpy(zero_copy_only=False)
            parents = pc.list_parent_indices(column).to_numpy(zero_copy_only=False)
            np.maximum.at(longest, parents, lengths)
        else:
            lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
            longest = np.maximum(longest, lengths)
    hit = longest >= max_seq_length
    if kind == "span":  # one row per window: an example is cut when one of its windows is full
        examples = table.column("example").to_numpy()
        return len(np.unique(examples)), len(np.unique(examples[hit]))
    return len(tokenized), int(hit.sum())


def save(folder: Path, coverage: SplitCoverage) -> None:
    """Write a split's counts into its prepared folder."""
    (Path(folder) / FILE).write_text(json.dumps(asdict(coverage)))


def load(data: PreparedData) -> dict[str, SplitCoverage]:
    """Every prepared split's counts, by split key (task/split/language), as they were saved."""
    return {
        key: SplitCoverage(**json.loads((Path(path) / FILE).read_text()))
        for key, path in data.splits.items()
    }


def _language(key: str) -> str:
    return key.rsplit("/", 1)[1]


def _per_word(coverage: SplitCoverage, key: str, languages: Mapping[str, Language]) -> str:
    language = languages.get(_language(key))
    if coverage.tokens_per_word is None or (language and language.script in UNSPACED_SCRIPTS):
        return "-"
    return f"{coverage.tokens_per_word:.2f}"


def table(
    measured: Mapping[str, SplitCoverage], languages: Mapping[str, Language], max_seq_length: int
) -> str:
    """The aligned table preparation prints: one row per split."""
    rows = [("split", "examples", "unknown", "tokens/word", f"truncated at {max_seq_length}")]
    for key, coverage in measured.items():
        rows.append(
            (
                key,
                str(coverage.examples),
                f"{coverage.unknown_share:.1%}",
                _per_word(coverage, key, languages),
                f"{coverage.truncated_share:.1%}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(
            [row[0].ljust(widths[0])]
            + [cell.rjust(w) for cell, w in zip(row[1:], widths[1:], strict=True)]
        )
        for row in rows
    )


def _shares(keys: Iterable[str], measured: Mapping[str, SplitCoverage]) -> str:
    return ", ".join(f"{key} {measured[key].unknown_share:.1%}" for key in keys)


def check(measured: Mapping[str, SplitCoverage], model: str, allow_unknown: bool) -> list[str]:
    """The warning about splits with many unknown tokens (one line, or none); raises a one-line
    UserError for a split that is mostly unknown tokens, unless `allow_unknown`."""
    unreadable = [k for k, c in measured.items() if c.unknown_share > STOP_UNKNOWN_SHARE]
    if unreadable and not allow_unknown:
        first = measured[unreadable[0]]
        others = f" (and {len(unreadable) - 1} more splits)" if len(unreadable) > 1 else ""
        raise UserError(
            f"{unreadable[0]}{others} is {first.unknown_share:.1%} unknown tokens for the "
            f"tokenizer of {model}: the model cannot read this data; use a model whose "
            "vocabulary covers it, or build one over the spec's tasks with `xlt-search encoder "
            "SPEC DIR` and set model: DIR (data.allow_unknown_tokens: true searches anyway)"
        )
    many = [k for k, c in measured.items() if c.unknown_share > WARN_UNKNOWN_SHARE]
    if not many:
        return []
    return [
        f"{len(many)} of {len(measured)} splits are more than {WARN_UNKNOWN_SHARE:.0%} unknown "
        f"tokens for the tokenizer of {model}: {_shares(many[:5], measured)}"
        + (", ..." if len(many) > 5 else "")
        + "; their scores say what the model cannot read, not only how it transfers"
    ]


def summary(measured: Mapping[str, SplitCoverage]) -> str:
    """The parent run's `xlt.coverage` tag: the worst unknown and truncated shares, and where."""
    if not measured:
        return "no splits"
    unknown = max(measured, key=lambda k: measured[k].unknown_share)
    truncated = max(measured, key=lambda k: measured[k].truncated_share)
    return (
        f"{len(measured)} splits; unknown tokens at most {measured[unknown].unknown_share:.1%} "
        f"({unknown}); truncated at most {measured[truncated].truncated_share:.1%} ({truncated})"
    )


def to_json(measured: Mapping[str, SplitCoverage], languages: Mapping[str, Language]) -> str:
    """Every split's counts and shares, as the parent run's `coverage.json` artifact."""
    return json.dumps(
        {
            key: {
                **asdict(c),
                "unknown_share": round(c.unknown_share, 6),
                "tokens_per_word": None
                if _per_word(c, key, languages) == "-"
                else round(c.tokens_per_word or 0.0, 4),
                "truncated_share": round(c.truncated_share, 6),
            }
            for key, c in measured.items()
        },
        indent=1,
        sort_keys=True,
    )

"""What a task is: a small declaration (data source, columns, kind, languages, metric), never code.

Adding a task is adding one `Task(...)` to a family file and registering it; the trainer never changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

TaskKind = Literal["classification", "multiple_choice", "tagging", "span", "retrieval", "parallel"]
TASK_KINDS: tuple[str, ...] = (
    "classification",
    "multiple_choice",
    "tagging",
    "span",
    "retrieval",
    "parallel",
)

# The canonical fields each kind reads; `Task.columns` maps them to the source's columns.
#   classification:  text_a, text_b (optional: pair tasks), label
#   multiple_choice: context, choices (a list), label (the index of the right choice)
#   tagging:         tokens (a list of words), tags (a list, one per word)
#   span:            context, question, answers ({"text": [...], "answer_start": [...]}, SQuAD's
#                    shape; empty lists mean no answer)
#   retrieval:       query, candidate (a sentence and its translation; no training)
#   parallel:        source, target (an English sentence and its translation; trains the encoder
#                    to rank each translation above the batch's others; never a target)
# and, optional for the kinds that mix languages (`MIXED_PARTS`), id: a row's id, shared by its
# translations, by which mixed-language instances are aligned (else by position).
# A label or tag is an int (the class index) or, when the task declares `labels`, a string looked
# up in them; anything else (-1, "") marks an unlabelled row, which is dropped.
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "classification": ("text_a", "text_b", "label", "id"),
    "multiple_choice": ("context", "choices", "label", "id"),
    "tagging": ("tokens", "tags"),
    "span": ("context", "question", "answers", "id"),
    "retrieval": ("query", "candidate"),
    "parallel": ("source", "target"),
}
OPTIONAL_FIELDS: frozenset[str] = frozenset({"text_b", "id"})
# The fields a mixed-language instance takes from its second language (`data.mixing`); every other
# field, labels and answer spans included, comes from the first. Kinds left out (tagging,
# retrieval, parallel), and classification without text_b, have no parts to mix.
MIXED_PARTS: dict[str, tuple[str, ...]] = {
    "classification": ("text_b",),
    "multiple_choice": ("choices",),
    "span": ("question",),
}
TEXT_FIELDS: frozenset[str] = frozenset({"text_a", "text_b", "context", "question"})

# A column mapping's value: a column, a field of a struct column ("choices.text"), or several
# columns: text fields join them with a space (Cosmos QA's context + question), `choices` makes
# them a list (COPA's choice1, choice2).
ColumnRef = str | tuple[str, ...]


@dataclass(frozen=True)
class Language:
    """A language with the metadata that scores are aggregated by."""

    code: str
    name: str
    family: str
    script: str


@dataclass(frozen=True)
class DataSource:
    """Where a task's data lives, as arguments to `datasets.load_dataset`.

    `path` is a hub id (``"facebook/xnli"``), a local folder laid out like a hub repository, or a
    packaged builder (``"json"``, ``"parquet"``, ``"csv"``) for local files. `name` (a hub
    config), the values of `splits` and those of `data_files` may hold ``{lang}`` (the language
    being loaded, spelt as `language_codes` maps it: ``udpos.{lang}`` with ``en: English``) and
    ``{synthetic_root}`` (the synthetic suite's folder). `splits` maps our split names (train,
    validation, test) to the source's; a ``+`` joins several (``dev_r1+dev_r2+dev_r3``).
    `data_dir` reads one folder of the repository (a config of the hub's Parquet export,
    ``refs/convert/parquet``, which has folders but no config names). `language_column`, for a
    split that mixes languages (TyDiQA), keeps the rows whose column starts with the language's
    `language_codes` spelling. `shares` carves our splits out of one source split that several of
    them map to (XWinograd and Belebele ship only ``test``): our split -> its share of the rows,
    drawn once by `shares_seed` (see `share_rows`), the same rows whatever the language.
    """

    path: str
    name: str | None = None
    data_files: Mapping[str, str] | None = None
    splits: Mapping[str, str] = field(
        default_factory=lambda: {"train": "train", "validation": "validation", "test": "test"}
    )
    revision: str | None = None
    data_dir: str | None = None
    language_codes: Mapping[str, str] = field(default_factory=dict)
    language_column: str | None = None
    shares: Mapping[str, float] = field(default_factory=dict)
    shares_seed: int = 0

    def code(self, language: str) -> str:
        """How this source spells `language` (our ISO code unless `language_codes` says otherwise)."""
        return self.language_codes.get(language, language)

    @property
    def is_hub(self) -> bool:
        """Whether `path` names a hub dataset (``owner/name``) rather than a builder or files."""
        return self.data_files is None and "/" in self.path and not self.path.startswith((".", "/"))


FileFormat = Literal["jsonl", "tsv", "conllu", "squad_json", "xwinograd_tsv", "moses"]
FILE_FORMATS: tuple[str, ...] = ("jsonl", "tsv", "conllu", "squad_json", "xwinograd_tsv", "moses")


@dataclass(frozen=True)
class FileLayout:
    """How a dataset's authors ship its files outside the hub (read by `xlt_search.layouts`).

    `files` maps our split names to each split's file in their release, relative to its root, with
    ``{lang}`` (spelt as `language_codes` maps it) and glob patterns (``*/{lang}_*-ud-dev.conllu``
    reads every UD treebank of a language). `format`: ``jsonl`` (one JSON object a line), ``tsv``
    (a header line, no quoting), ``conllu`` (one row per sentence: ``tokens``, ``upos``), or
    ``squad_json`` (SQuAD's nested JSON, one row per question: ``id``, ``title``, ``context``,
    ``question``, ``answers``). `columns` maps the kind's fields to the columns so read.
    ``xwinograd_tsv`` (XWINO's TSV as WinoGrande-style rows: ``lang``, ``source``, ``sentence``
    with ``_`` for the pronoun, ``option1``, ``option2``, ``answer``), or ``moses`` (a parallel
    corpus as two line-aligned text files, ``NAME.L1-L2.L1`` and ``NAME.L1-L2.L2``, as OPUS and
    LASER's Tatoeba ship them: the layout names one side's file, read as ``sentence``, and its
    line-for-line partner, the other side, as ``translation``). `language_column`: files
    that mix languages keep the rows whose column starts with the language's spelling. `shares`
    and `shares_seed`: as a `DataSource`'s, for files that hold one split. `home`: where the
    authors publish the files.
    """

    format: FileFormat
    files: Mapping[str, str]
    columns: Mapping[str, ColumnRef]
    home: str
    language_codes: Mapping[str, str] = field(default_factory=dict)
    language_column: str | None = None
    shares: Mapping[str, float] = field(default_factory=dict)
    shares_seed: int = 0

    def code(self, language: str) -> str:
        """How the files spell `language` (our ISO code unless `language_codes` says otherwise)."""
        return self.language_codes.get(language, language)


@dataclass(frozen=True)
class Task:
    """One task: an intermediate task, a target task, or both.

    `sources` are read in order and concatenated, split by split (ANLI+ is ANLI's three rounds,
    MNLI and SNLI); a source that lacks a split adds nothing to it. `languages` are the languages
    the task has evaluation data in ("en" first when it has English); `train_languages` those it
    has training data in (English, and translate-train copies: an intermediate phase may train
    on them, `intermediate_languages`). A target trains on the
    English training data of `train_tasks` in order (XCOPA: SIQA then COPA); empty means its own
    English train split; a retrieval target trains on nothing. `labels` names the classes (tags)
    in index order, and maps string labels in the data to their index. `unanswerable`: a span
    task whose questions may have no answer in the context (SQuAD v2.0), so "no answer" can be
    predicted. `note`: how to get the data where the hub has no ready copy. `layout`: the files
    as the dataset's authors ship them; setting `files` (a spec does: the folder they were
    unpacked or cloned into, or a path template per split) reads those in place of `sources`.
    """

    key: str
    kind: TaskKind
    sources: tuple[DataSource, ...]
    columns: Mapping[str, ColumnRef]
    num_labels: int
    metric: str
    languages: tuple[str, ...] = ("en",)
    train_languages: tuple[str, ...] = ("en",)
    train_tasks: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    unanswerable: bool = False
    description: str = ""
    note: str = ""
    layout: FileLayout | None = None
    files: str | Mapping[str, str] | None = None

    def split_files(self, split: str) -> str | None:
        """The path template of one split's files when `files` is set (the layout's path under
        the folder, or the spec's path for the split), placeholders unfilled; None when there is
        no such template."""
        if isinstance(self.files, str):
            if self.layout is None or split not in self.layout.files:
                return None
            return f"{self.files.rstrip('/')}/{self.layout.files[split]}"
        return (self.files or {}).get(split)

    def column(self, canonical: str) -> ColumnRef | None:
        """The source column(s) for a canonical field, or None when the task lacks that field."""
        return self.columns.get(canonical)

    @property
    def origin(self) -> str:
        """Where the data comes from, for listings: the hub ids, the local builder, or the files."""
        if self.files is not None:
            return "files"
        return "+".join(dict.fromkeys(source.path for source in self.sources))

    def describe(self) -> str:
        """A task's declaration, field by field, as `xlt-search tasks TASK` prints it."""
        lines = [f"{self.key}: {self.description}", f"  kind        {self.kind}"]
        lines.append(f"  metric      {self.metric}")
        for source in self.sources:
            config = f", config {source.name}" if source.name else ""
            revision = f", revision {source.revision}" if source.revision else ""
            splits = ", ".join(f"{ours}={theirs}" for ours, theirs in source.splits.items())
            lines.append(f"  source      {source.path}{config}{revision} ({splits})")
            if source.shares:
                shared = ", ".join(f"{split} {share:g}" for split, share in source.shares.items())
                lines.append(f"              rows shared out: {shared} (seed {source.shares_seed})")
            if source.data_files:
                lines += [
                    f"              {split}: {files}" for split, files in source.data_files.items()
                ]
        if not self.sources:
            lines.append("  source      none registered: point the task at your files")
        if self.layout is not None:
            shipped = ", ".join(f"{split}={path}" for split, path in self.layout.files.items())
            lines.append(f"  authors     {self.layout.home}, {self.layout.format}: {shipped}")
        if self.files is not None:
            lines.append(f"  files       {self.files} (read in place of the sources)")
        columns = ", ".join(
            f"{field} <- {'+'.join(ref) if isinstance(ref, tuple) else ref}"
            for field, ref in self.columns.items()
        )
        lines.append(f"  columns     {columns}")
        if self.labels or self.num_labels:
            named = f": {', '.join(self.labels)}" if self.labels else ""
            lines.append(f"  labels      {self.num_labels}{named}")
        lines.append(f"  languages   {', '.join(self.languages)}")
        if self.train_languages != ("en",):
            lines.append(f"  trains in   {', '.join(self.train_languages)}")
        if self.train_tasks:
            lines.append(f"  trains on   {' then '.join(self.train_tasks)} (English)")
        if self.unanswerable:
            lines.append("  no answer   some questions have none")
        if self.note:
            lines.append(f"  note        {self.note}")
        return "\n".join(lines)

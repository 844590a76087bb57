"""Datasets as their authors ship them: reading a task's `FileLayout` from files on disk.

A task whose spec sets `files` is read from those files instead of its hub sources: `files` is the
folder the authors' release was cloned or unpacked into (the layout's relative paths are looked up
under it), or one path template per split. JSON lines and TSV go through `datasets`' packaged
builders; CoNLL-U and SQuAD's nested JSON, which `datasets` has no builder for, are converted to
flat rows with `Dataset.from_generator` and a batched `map` over the json builder's articles.
Anything that does not fit the layout fails with one line naming the layout and the fix.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import datasets

from xlt_search.data.errors import DataError, DataUnavailable
from xlt_search.data.sources import content_digest, digest, fill_placeholders, share_rows
from xlt_search.tasks.base import DataSource, FileLayout, Task

_CONLLU_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "tokens": datasets.List(datasets.Value("string")),
        "upos": datasets.List(datasets.Value("string")),
    }
)
_XWINOGRAD_FEATURES = datasets.Features(
    {
        name: datasets.Value("string")
        for name in ("lang", "source", "sentence", "option1", "option2", "answer")
    }
)
_MOSES_FEATURES = datasets.Features(
    {name: datasets.Value("string") for name in ("sentence", "translation")}
)
_SQUAD_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "title": datasets.Value("string"),
        "context": datasets.Value("string"),
        "question": datasets.Value("string"),
        "answers": {
            "text": datasets.List(datasets.Value("string")),
            "answer_start": datasets.List(datasets.Value("int32")),
        },
    }
)


def read_files(task: Task, split: str, language: str) -> tuple[Task, datasets.Dataset]:
    """One split of `task` read from its `files` as its `layout` says, and the task with the
    layout's columns (which loading then maps onto the kind's canonical fields)."""
    layout = _layout(task)
    paths = resolve_files(task, split, language)
    try:
        raw = _READERS[layout.format](paths)
    except (ValueError, KeyError, TypeError, datasets.exceptions.DatasetGenerationError) as error:
        if isinstance(error, datasets.exceptions.DatasetGenerationError) and error.__cause__:
            error = error.__cause__  # what went wrong in the files, not "an error occurred"
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataError(f"{_wrong(task, paths[0])} ({detail}); {_expected(task)}") from None
    wanted = {
        column.split(".")[0]
        for ref in layout.columns.values()
        for column in ((ref,) if isinstance(ref, str) else ref)
    }
    if layout.language_column is not None:
        wanted.add(layout.language_column)
    missing = sorted(wanted - set(raw.column_names))
    if missing:
        raise DataError(
            f"{_wrong(task, paths[0])}: it has no column {', '.join(missing)} (its columns: "
            f"{', '.join(raw.column_names)}); {_expected(task)}"
        )
    if layout.language_column is not None:
        code = layout.code(language)
        raw = raw.filter(lambda value: value.startswith(code), input_columns=layout.language_column)
    if split in layout.shares:
        raw = raw.select(share_rows(len(raw), layout.shares, split, layout.shares_seed))
    return dataclasses.replace(task, columns=layout.columns), raw


def resolve_files(task: Task, split: str, language: str) -> list[str]:
    """The files that hold one split in one language (a glob may match several, read in order)."""
    layout = _layout(task)
    template = task.split_files(split)
    if template is None and isinstance(task.files, str):
        raise DataError(
            f"task {task.key}: its authors ship no '{split}' split; they ship "
            f"{', '.join(layout.files)}"
        )
    if template is None:
        raise DataError(
            f"task {task.key}: tasks.{task.key}.files names no file for its '{split}' split; "
            f"add {split}: PATH ({_expected(task)})"
        )
    pattern = str(Path(fill_placeholders(template, layout.code(language))).expanduser())
    paths = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
    if not paths or not Path(paths[0]).is_file():
        raise DataUnavailable(
            f"task {task.key}: no file {pattern} for its '{split}' split in {language}; "
            f"{_expected(task)}"
        )
    if layout.format == "moses":  # each side's file, then its partner's
        paths = [side for path in paths for side in (path, _moses_partner(task, path))]
    return paths


def _moses_partner(task: Task, path: str) -> str:
    """The other side of a Moses pair: ``NAME.de-en.de`` -> ``NAME.de-en.en``."""
    stem, pair, side = (Path(path).name.rsplit(".", 2) + ["", ""])[:3]
    languages = pair.split("-")
    if len(languages) != 2 or side not in languages:
        raise DataError(
            f"task {task.key}: {path} is not named as a Moses pair's side (NAME.L1-L2.L1); "
            f"{_expected(task)}"
        )
    other = languages[1] if side == languages[0] else languages[0]
    partner = Path(path).with_name(f"{stem}.{pair}.{other}")
    if not partner.is_file():
        raise DataUnavailable(
            f"task {task.key}: {path} has no partner {partner} holding its translations; "
            f"{_expected(task)}"
        )
    return str(partner)


def files_id(task: Task, split: str, language: str) -> str:
    """The identity of a split read from files: the layout and the files' contents."""
    paths = [Path(path) for path in resolve_files(task, split, language)]
    return digest(repr(task.layout), content_digest(paths))


def mirror_error(task: Task, source: DataSource, copy: str, detail: str) -> str:
    """One line for a mirror folder that `datasets` cannot read as the hub repository: when it
    holds the task's files as their authors ship them, how to read it with `files`."""
    revision = f" --revision {source.revision}" if source.revision else ""
    download = f"`hf download {source.path} --repo-type dataset{revision} --local-dir {copy}`"
    layout = task.layout
    if layout is not None and any(
        glob.glob(str(Path(copy) / fill_placeholders(pattern, layout.code(lang))))
        for pattern in layout.files.values()
        for lang in task.languages
    ):
        shipped = ", ".join(layout.files.values())
        return (
            f"task {task.key}: the mirror's copy {copy} is laid out as the dataset's authors ship "
            f"it ({layout.home}: {shipped}), not as the hub repository {source.path} ({detail}); "
            f"read it with `tasks: {{{task.key}: {{files: {copy}}}}}` in the spec, or replace it "
            f"with {download}"
        )
    return (
        f"task {task.key}: the mirror's copy {copy} is not laid out as the hub repository "
        f"{source.path} ({detail}); copy it again with {download}"
    )


def _layout(task: Task) -> FileLayout:
    if task.layout is None:
        raise DataError(
            f"task {task.key} declares no layout of its authors' files, so `files` cannot be read; "
            "point its sources at the files instead (path: json, data_files: ...)"
        )
    return task.layout


def _wrong(task: Task, path: str) -> str:
    return f"task {task.key}: {path} is not in the layout its authors ship"


def _expected(task: Task) -> str:
    """The layout a task's files must have, and how to point the spec at them."""
    layout = _layout(task)
    shipped = ", ".join(f"{split}: {path}" for split, path in layout.files.items())
    return (
        f"{layout.home} ships {layout.format} files laid out as {shipped}; set "
        f"tasks.{task.key}.files to the folder that holds them, or to a path per split with "
        "{lang} for the language"
    )


def _read_jsonl(paths: Sequence[str]) -> datasets.Dataset:
    return datasets.load_dataset("json", data_files=list(paths), split="train")


def _read_tsv(paths: Sequence[str]) -> datasets.Dataset:
    # The authors' TSVs quote nothing: a '"' is part of the sentence. keep_default_na keeps the
    # words "NA" and "null" as text.
    return datasets.load_dataset(
        "csv",
        data_files=list(paths),
        split="train",
        sep="\t",
        quoting=csv.QUOTE_NONE,
        keep_default_na=False,
    )


def _read_conllu(paths: Sequence[str]) -> datasets.Dataset:
    return _generated(_conllu_sentences, _CONLLU_FEATURES, "conllu", paths)


def _generated(
    rows: Callable[..., Iterator[dict]],
    features: datasets.Features,
    name: str,
    paths: Sequence[str],
    shards: Sequence[object] = (),
) -> datasets.Dataset:
    """The rows a generator reads from files that datasets has no builder for, fingerprinted by
    the files' contents. datasets hands the generator one shard at a time: a path, or one of
    `shards` where files are read together."""
    files = [Path(path) for path in paths]
    return datasets.Dataset.from_generator(
        rows,
        features=features,
        gen_kwargs={"paths": list(shards) or [str(path) for path in files]},
        fingerprint=digest(name, content_digest(files)),
    )


def _conllu_sentences(paths: Sequence[str]) -> Iterator[dict]:
    """One row per sentence: its words (FORM, column 2) and their UPOS tags (column 4).

    Comment lines, multiword token ranges (``1-2``, whose words follow as their own lines) and
    empty nodes (``1.1``, not part of the surface sentence) are skipped.
    """
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            sent_id, tokens, tags = "", [], []
            for number, line in enumerate(handle, 1):
                line = line.rstrip("\n")
                if not line:
                    if tokens:
                        yield {"id": sent_id, "tokens": tokens, "upos": tags}
                    sent_id, tokens, tags = "", [], []
                elif line.startswith("#"):
                    if line.startswith("# sent_id = "):
                        sent_id = line[len("# sent_id = ") :]
                else:
                    fields = line.split("\t")
                    if len(fields) != 10:
                        raise ValueError(
                            f"line {number} has {len(fields)} tab-separated fields, CoNLL-U has 10"
                        )
                    if "-" in fields[0] or "." in fields[0]:
                        continue
                    tokens.append(fields[1])
                    tags.append(fields[3])
            if tokens:
                yield {"id": sent_id, "tokens": tokens, "upos": tags}


def _read_xwinograd_tsv(paths: Sequence[str]) -> datasets.Dataset:
    return _generated(_xwinograd_schemas, _XWINOGRAD_FEATURES, "xwinograd_tsv", paths)


def _xwinograd_schemas(paths: Sequence[str]) -> Iterator[dict]:
    """XWINO's TSV (no header; language, source, English reference, text, then JSON of the
    tokens, the pronoun and the two candidates) as WinoGrande-style rows: the text with its
    pronoun replaced by ``_``, the candidates as ``option1`` and ``option2``, ``answer`` "1" or
    "2". The pronoun's place in the text is found by walking the tokens along it (a token the
    text does not hold, such as NLTK's quotes, is passed over)."""
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                fields = line.rstrip("\n").split("\t")
                if len(fields) != 7:
                    raise ValueError(f"line {number} has {len(fields)} tab-separated fields, not 7")
                lang, source, _, text, tokens, pronoun, candidates = fields
                (first, last), options = json.loads(pronoun)[1], json.loads(candidates)
                offsets, at = [], 0
                for token in json.loads(tokens):
                    found = text.find(token, at)
                    offsets.append(found)
                    at = found + len(token) if found >= 0 else at
                start, end = offsets[first], offsets[last - 1] + len(json.loads(tokens)[last - 1])
                yield {
                    "lang": lang,
                    "source": source,
                    "sentence": f"{text[:start]}_{text[end:]}",
                    "option1": options[0][0],
                    "option2": options[1][0],
                    "answer": "1" if options[0][3] else "2",
                }


def _read_moses(paths: Sequence[str]) -> datasets.Dataset:
    pairs = list(zip(paths[::2], paths[1::2], strict=True))  # each side, then its partner
    return _generated(_moses_pairs, _MOSES_FEATURES, "moses", paths, pairs)


def _moses_pairs(paths: Sequence[tuple[str, str]]) -> Iterator[dict]:
    """One row per line of each side's file: the sentence and its partner's line, its
    translation. Blank lines on either side are passed over (the pair is not a sentence pair);
    line counts that differ are refused."""
    for path, partner in paths:
        sentences = Path(path).read_text(encoding="utf-8").splitlines()
        translations = Path(partner).read_text(encoding="utf-8").splitlines()
        if len(sentences) != len(translations):
            raise ValueError(
                f"{len(sentences)} lines against {len(translations)} in {partner}: a Moses "
                "pair holds one sentence a line on each side"
            )
        for sentence, translation in zip(sentences, translations, strict=True):
            if sentence.strip() and translation.strip():
                yield {"sentence": sentence, "translation": translation}


def _read_squad_json(paths: Sequence[str]) -> datasets.Dataset:
    articles = datasets.load_dataset("json", data_files=list(paths), field="data", split="train")
    if "paragraphs" not in articles.column_names:
        raise ValueError(f"its articles have {', '.join(articles.column_names)}, not paragraphs")
    return articles.map(
        _squad_questions,
        batched=True,
        remove_columns=articles.column_names,
        features=_SQUAD_FEATURES,
        desc="reading SQuAD-format JSON",
    )


def _squad_questions(batch: dict[str, list]) -> dict[str, list]:
    """Articles -> one row per question, with its paragraph as the context."""
    rows: dict[str, list] = {name: [] for name in _SQUAD_FEATURES}
    titles = batch.get("title") or [""] * len(batch["paragraphs"])
    for title, paragraphs in zip(titles, batch["paragraphs"], strict=True):
        for paragraph in paragraphs:
            for qa in paragraph["qas"]:
                answers = qa.get("answers") or []
                rows["id"].append(str(qa["id"]))
                rows["title"].append(title or "")
                rows["context"].append(paragraph["context"])
                rows["question"].append(qa["question"])
                rows["answers"].append(
                    {
                        "text": [answer["text"] for answer in answers],
                        "answer_start": [int(answer["answer_start"]) for answer in answers],
                    }
                )
    return rows


_READERS = {
    "moses": _read_moses,
    "xwinograd_tsv": _read_xwinograd_tsv,
    "jsonl": _read_jsonl,
    "tsv": _read_tsv,
    "conllu": _read_conllu,
    "squad_json": _read_squad_json,
}

__all__ = ["files_id", "mirror_error", "read_files", "resolve_files"]

"""Extractive question answering: SQuAD v1.1 and v2.0 (intermediate); XQuAD, MLQA and
TyDiQA-GoldP (targets; XQuAD and MLQA train on SQuAD v1.1, TyDiQA on its own English data)."""

from __future__ import annotations

from xlt_search.tasks.base import DataSource, FileLayout, Task

_SQUAD_COLUMNS = {"context": "context", "question": "question", "answers": "answers"}
_TRAIN_DEV = {"train": "train", "validation": "validation"}

# TyDiQA-GoldP mixes its languages in one split; an example's id starts with the language's name.
_TYDIQA_LANGUAGES = {
    "en": "english-",
    "ar": "arabic-",
    "bn": "bengali-",
    "fi": "finnish-",
    "id": "indonesian-",
    "ko": "korean-",
    "ru": "russian-",
    "sw": "swahili-",
    "te": "telugu-",
}

TASKS: tuple[Task, ...] = (
    Task(
        key="squad",
        kind="span",
        sources=(DataSource("rajpurkar/squad", "plain_text", splits=_TRAIN_DEV),),
        columns=_SQUAD_COLUMNS,
        num_labels=0,
        metric="f1",
        description="SQuAD v1.1",
        layout=FileLayout(
            "squad_json",
            {"train": "train-v1.1.json", "validation": "dev-v1.1.json"},
            _SQUAD_COLUMNS,
            home="rajpurkar.github.io/SQuAD-explorer",
        ),
    ),
    Task(
        key="squad_v2",
        kind="span",
        sources=(DataSource("rajpurkar/squad_v2", "squad_v2", splits=_TRAIN_DEV),),
        columns=_SQUAD_COLUMNS,
        num_labels=0,
        metric="f1",
        unanswerable=True,
        description="SQuAD v2.0: a third of the questions have no answer",
    ),
    Task(
        key="xquad",
        kind="span",
        sources=(DataSource("google/xtreme", "XQuAD.{lang}", splits={"validation": "validation"}),),
        columns=_SQUAD_COLUMNS,
        num_labels=0,
        metric="f1",
        languages=("en", "ar", "de", "el", "es", "hi", "ru", "th", "tr", "vi", "zh"),
        train_tasks=("squad",),
        description="cross-lingual SQuAD, 11 languages (one split: it is the dev set here)",
        layout=FileLayout(
            "squad_json",
            {"validation": "xquad.{lang}.json"},
            _SQUAD_COLUMNS,
            home="github.com/google-deepmind/xquad",
        ),
    ),
    Task(
        key="mlqa",
        kind="span",
        sources=(
            DataSource(
                "google/xtreme",
                "MLQA.{lang}.{lang}",
                splits={"validation": "validation", "test": "test"},
            ),
        ),
        columns=_SQUAD_COLUMNS,
        num_labels=0,
        metric="f1",
        languages=("en", "ar", "de", "es", "hi", "vi", "zh"),
        train_tasks=("squad",),
        description="MLQA, context and question in the same language, 7 languages",
    ),
    Task(
        key="tydiqa",
        kind="span",
        sources=(
            DataSource(
                "google-research-datasets/tydiqa",
                "secondary_task",
                splits=_TRAIN_DEV,
                language_codes=_TYDIQA_LANGUAGES,
                language_column="id",
            ),
        ),
        columns=_SQUAD_COLUMNS,
        num_labels=0,
        metric="f1",
        languages=tuple(_TYDIQA_LANGUAGES),
        description="TyDiQA-GoldP, 9 languages; trains on its English training data",
        # one file per split for all languages; the dev .tgz's per-language files read the same
        layout=FileLayout(
            "squad_json",
            {"train": "tydiqa-goldp-v1.1-train.json", "validation": "tydiqa-goldp-v1.1-dev.json"},
            _SQUAD_COLUMNS,
            home="github.com/google-research-datasets/tydiqa (storage.googleapis.com/tydiqa/v1.1)",
            language_codes=_TYDIQA_LANGUAGES,
            language_column="id",
        ),
    ),
)

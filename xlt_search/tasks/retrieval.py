"""Sentence retrieval: Tatoeba (a target with no fine-tuning: the encoder's mean-pooled
embeddings find each sentence's English translation among all of them)."""

from __future__ import annotations

from xlt_search.tasks.base import DataSource, Task

# google/xtreme names its Tatoeba configs by ISO 639-3 code; the English side is the candidate.
_TATOEBA_LANGUAGES = {
    "af": "afr",
    "ar": "ara",
    "bg": "bul",
    "bn": "ben",
    "de": "deu",
    "el": "ell",
    "es": "spa",
    "et": "est",
    "eu": "eus",
    "fa": "pes",
    "fi": "fin",
    "fr": "fra",
    "he": "heb",
    "hi": "hin",
    "hu": "hun",
    "id": "ind",
    "it": "ita",
    "ja": "jpn",
    "jv": "jav",
    "ka": "kat",
    "kk": "kaz",
    "ko": "kor",
    "ml": "mal",
    "mr": "mar",
    "nl": "nld",
    "pt": "por",
    "ru": "rus",
    "sw": "swh",
    "ta": "tam",
    "te": "tel",
    "th": "tha",
    "tl": "tgl",
    "tr": "tur",
    "ur": "urd",
    "vi": "vie",
    "zh": "cmn",
}

TASKS: tuple[Task, ...] = (
    Task(
        key="tatoeba",
        kind="retrieval",
        sources=(
            DataSource(
                "google/xtreme",
                "tatoeba.{lang}",
                splits={"validation": "validation"},
                language_codes=_TATOEBA_LANGUAGES,
            ),
        ),
        columns={"query": "source_sentence", "candidate": "target_sentence"},
        num_labels=0,
        metric="accuracy",
        languages=tuple(_TATOEBA_LANGUAGES),
        description="Tatoeba: find each sentence's English translation, 36 languages",
    ),
)

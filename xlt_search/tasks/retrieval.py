"""Sentence retrieval and parallel sentences: Tatoeba as a target with no fine-tuning (the encoder's
mean-pooled embeddings find each sentence's English translation among all of them), and the same
pairs as a parallel intermediate task (`tatoeba_parallel`: translation ranking trains the encoder)."""

from __future__ import annotations

from xlt_search.tasks.base import DataSource, FileLayout, Task

_LASER = "github.com/facebookresearch/LASER"  # its data/tatoeba/v1, which XTREME reads

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
        layout=FileLayout(
            "moses",
            {"validation": "data/tatoeba/v1/tatoeba.{lang}-eng.{lang}"},
            {"query": "sentence", "candidate": "translation"},
            home=_LASER,
            language_codes=_TATOEBA_LANGUAGES,
        ),
    ),
    # Every language's pairs in one training split (the hub copy ships only XTREME's evaluation
    # pairs, 1,000 a language for most): the spec refuses it in a pool beside the tatoeba target,
    # which retrieves those very pairs.
    Task(
        key="tatoeba_parallel",
        kind="parallel",
        sources=tuple(
            DataSource("google/xtreme", f"tatoeba.{code}", splits={"train": "validation"})
            for code in _TATOEBA_LANGUAGES.values()
        ),
        columns={"source": "target_sentence", "target": "source_sentence"},
        num_labels=0,
        metric="none",
        description="Tatoeba's pairs of 36 languages with English as parallel data: rank each "
        "sentence's translation above the batch's others",
        note="not with the tatoeba target: it trains on the pairs tatoeba is scored on",
        # LASER's files hold all of its 112 languages' pairs with English: every one is read
        layout=FileLayout(
            "moses",
            {"train": "data/tatoeba/v1/tatoeba.*-eng.eng"},
            {"source": "sentence", "target": "translation"},
            home=_LASER,
        ),
    ),
)

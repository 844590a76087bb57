"""Token tagging: CCG supertagging (intermediate; users supply CCGbank), UD-POS and WikiANN NER
(targets, each trained on its English data)."""

from __future__ import annotations

from xlt_search.tasks.base import DataSource, FileLayout, Task

UPOS_TAGS = (
    "ADJ",
    "ADP",
    "ADV",
    "AUX",
    "CCONJ",
    "DET",
    "INTJ",
    "NOUN",
    "NUM",
    "PART",
    "PRON",
    "PROPN",
    "PUNCT",
    "SCONJ",
    "SYM",
    "VERB",
    "X",
)
NER_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC")

# google/xtreme names its UD configs by the language's English name. Kazakh, Tagalog, Thai and
# Yoruba have no dev set there, so they are not evaluation languages here.
_UDPOS_LANGUAGES = {
    "en": "English",
    "af": "Afrikaans",
    "ar": "Arabic",
    "bg": "Bulgarian",
    "de": "German",
    "el": "Greek",
    "es": "Spanish",
    "et": "Estonian",
    "eu": "Basque",
    "fa": "Persian",
    "fi": "Finnish",
    "fr": "French",
    "he": "Hebrew",
    "hi": "Hindi",
    "hu": "Hungarian",
    "id": "Indonesian",
    "it": "Italian",
    "ja": "Japanese",
    "ko": "Korean",
    "mr": "Marathi",
    "nl": "Dutch",
    "pt": "Portuguese",
    "ru": "Russian",
    "ta": "Tamil",
    "te": "Telugu",
    "tr": "Turkish",
    "ur": "Urdu",
    "vi": "Vietnamese",
    "zh": "Chinese",
}
_PANX_LANGUAGES = (
    "en",
    "af",
    "ar",
    "bg",
    "bn",
    "de",
    "el",
    "es",
    "et",
    "eu",
    "fa",
    "fi",
    "fr",
    "he",
    "hi",
    "hu",
    "id",
    "it",
    "ja",
    "jv",
    "ka",
    "kk",
    "ko",
    "ml",
    "mr",
    "ms",
    "my",
    "nl",
    "pt",
    "ru",
    "sw",
    "ta",
    "te",
    "th",
    "tl",
    "tr",
    "ur",
    "vi",
    "yo",
    "zh",
)

TASKS: tuple[Task, ...] = (
    Task(
        key="ccg",
        kind="tagging",
        sources=(),
        columns={"tokens": "tokens", "tags": "tags"},
        num_labels=1363,
        metric="accuracy",
        description="CCG supertagging on CCGbank (1,363 supertags, as jiant numbers them)",
        note="CCGbank is licensed by the LDC and has no public copy: point ccg at your files in "
        "the spec, e.g. tasks: {ccg: {sources: [{path: json, data_files: {train: ccg/train.jsonl,"
        " validation: ccg/dev.jsonl}}]}}, one JSON object per sentence with tokens and tags "
        "(supertag ids; or strings with the task's labels declared).",
    ),
    Task(
        key="udpos",
        kind="tagging",
        sources=(DataSource("google/xtreme", "udpos.{lang}", language_codes=_UDPOS_LANGUAGES),),
        columns={"tokens": "tokens", "tags": "pos_tags"},
        num_labels=len(UPOS_TAGS),
        metric="accuracy",
        languages=tuple(_UDPOS_LANGUAGES),
        labels=UPOS_TAGS,
        description="Universal Dependencies part-of-speech tags (XTREME's treebanks)",
        # a UD release (or clones of treebank repositories side by side): UD_<Name>-<TB>/ folders
        # whose files start with the language's code; every treebank of the language is read
        layout=FileLayout(
            "conllu",
            {
                "train": "*/{lang}_*-ud-train.conllu",
                "validation": "*/{lang}_*-ud-dev.conllu",
                "test": "*/{lang}_*-ud-test.conllu",
            },
            {"tokens": "tokens", "tags": "upos"},
            home="universaldependencies.org (github.com/UniversalDependencies/UD_*)",
        ),
    ),
    Task(
        key="panx",
        kind="tagging",
        sources=(DataSource("google/xtreme", "PAN-X.{lang}"),),
        columns={"tokens": "tokens", "tags": "ner_tags"},
        num_labels=len(NER_TAGS),
        metric="entity_f1",
        languages=_PANX_LANGUAGES,
        labels=NER_TAGS,
        description="WikiANN named entities (PAN-X, XTREME's splits), 40 languages",
    ),
)

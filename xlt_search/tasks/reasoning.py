"""Reasoning targets and their English training data: XStoryCloze, XWinograd (trained on
WinoGrande), Okapi's multilingual HellaSwag and ARC (trained on HellaSwag and ARC), Belebele
(trained on RACE) and X-CSQA (trained on CommonsenseQA).

XWinograd and Belebele ship only a test split: a seeded half of each language's rows is the
validation split that selects, the other half stays the test split (`DataSource.shares`).
"""

from __future__ import annotations

from xlt_search.tasks.base import DataSource, FileLayout, Task

_EXPORT = "refs/convert/parquet"  # the hub's own Parquet export, for repositories with a script
_SCRIPT_ONLY = (
    "The hub repository's main was seen holding a loading script, which datasets 4+ no longer "
    "runs; the default reads the hub's own Parquet export (refs/convert/parquet)."
)
_HALVES = {"validation": 0.5, "test": 0.5}  # a seeded half selects, the other half is reported
_HALVED = (
    "Only a test split is published: a fixed half of each language's rows (seed 0, the same "
    "rows in every language of the same size) is the validation split, the rest the test split."
)
_OKAPI = (
    "Okapi's machine translations (Lai et al. 2023), licensed CC BY-NC 4.0: non-commercial use "
    "only."
)
_OKAPI_LANGUAGES = (
    "en", "ar", "bn", "ca", "da", "de", "es", "eu", "fr", "gu", "hi", "hr", "hu", "hy", "id", "it",
    "kn", "ml", "mr", "ne", "nl", "pt", "ro", "ru", "sk", "sr", "sv", "ta", "te", "uk", "vi", "zh",
)  # fmt: skip
_WINO_COLUMNS = {"context": "sentence", "choices": ("option1", "option2"), "label": "answer"}
_LETTERS = ("A", "B", "C", "D", "E")

# Belebele's FLORES-200 codes for the languages registered here (one variant per language: the
# native script; Chinese is zho_Hans).
_BELEBELE_CODES = {
    "en": "eng_Latn", "af": "afr_Latn", "am": "amh_Ethi", "ar": "arb_Arab", "az": "azj_Latn",
    "bg": "bul_Cyrl", "bn": "ben_Beng", "ca": "cat_Latn", "da": "dan_Latn", "de": "deu_Latn",
    "el": "ell_Grek", "es": "spa_Latn", "et": "est_Latn", "eu": "eus_Latn", "fa": "pes_Arab",
    "fi": "fin_Latn", "fr": "fra_Latn", "gu": "guj_Gujr", "ha": "hau_Latn", "he": "heb_Hebr",
    "hi": "hin_Deva", "hr": "hrv_Latn", "ht": "hat_Latn", "hu": "hun_Latn", "hy": "hye_Armn",
    "id": "ind_Latn", "it": "ita_Latn", "ja": "jpn_Jpan", "jv": "jav_Latn", "ka": "kat_Geor",
    "kk": "kaz_Cyrl", "kn": "kan_Knda", "ko": "kor_Hang", "lt": "lit_Latn", "ml": "mal_Mlym",
    "mr": "mar_Deva", "ms": "zsm_Latn", "my": "mya_Mymr", "ne": "npi_Deva", "nl": "nld_Latn",
    "pa": "pan_Guru", "pl": "pol_Latn", "pt": "por_Latn", "ro": "ron_Latn", "ru": "rus_Cyrl",
    "sk": "slk_Latn", "sr": "srp_Cyrl", "sv": "swe_Latn", "sw": "swh_Latn", "ta": "tam_Taml",
    "te": "tel_Telu", "th": "tha_Thai", "tl": "tgl_Latn", "tr": "tur_Latn", "uk": "ukr_Cyrl",
    "ur": "urd_Arab", "vi": "vie_Latn", "wo": "wol_Latn", "yo": "yor_Latn", "zh": "zho_Hans",
}  # fmt: skip

TASKS: tuple[Task, ...] = (
    Task(
        key="xstory_cloze",
        kind="multiple_choice",
        sources=(
            # the export's folders are {lang}/train and {lang}/eval; datasets reads "eval" as test
            DataSource(
                "juletxara/xstory_cloze",
                splits={"train": "train", "validation": "test"},
                revision=_EXPORT,
                data_dir="{lang}",
            ),
        ),
        columns={
            "context": tuple(f"input_sentence_{i}" for i in range(1, 5)),
            "choices": ("sentence_quiz1", "sentence_quiz2"),
            "label": "answer_right_ending",
        },
        num_labels=2,
        metric="accuracy",
        labels=("1", "2"),
        languages=("en", "ru", "zh", "es", "ar", "hi", "id", "te", "sw", "eu", "my"),
        description="XStoryCloze: the right ending of a four-sentence story, 11 languages; trains "
        "on its own 360 English training stories",
        note=_SCRIPT_ONLY + " Its eval split (1,511 stories) is the validation split here.",
    ),
    Task(
        key="winogrande",
        kind="multiple_choice",
        sources=(
            DataSource(
                "allenai/winogrande",
                splits={"train": "train", "validation": "validation"},
                revision=_EXPORT,
                data_dir="winogrande_xl",
            ),
        ),
        columns=_WINO_COLUMNS,
        num_labels=2,
        metric="accuracy",
        labels=("1", "2"),
        description="WinoGrande (XL, 40k): which of two names fills the blank",
        note=_SCRIPT_ONLY,
    ),
    Task(
        key="xwinograd",
        kind="multiple_choice",
        sources=(
            DataSource(
                "Muennighoff/xwinograd",
                splits={"validation": "test", "test": "test"},
                revision=_EXPORT,
                data_dir="{lang}",
                language_codes={"ja": "jp"},
                shares=_HALVES,
            ),
        ),
        columns=_WINO_COLUMNS,
        num_labels=2,
        metric="accuracy",
        labels=("1", "2"),
        languages=("en", "fr", "ja", "pt", "ru", "zh"),
        train_tasks=("winogrande",),
        description="XWinograd: Winograd schemas in 6 languages; trains on WinoGrande",
        note=f"{_SCRIPT_ONLY} {_HALVED}",
        # the authors' one TSV for all languages (16 Chinese schemas there, 504 on the hub)
        layout=FileLayout(
            "xwinograd_tsv",
            {"validation": "dataset.tsv", "test": "dataset.tsv"},
            _WINO_COLUMNS,
            home="github.com/yandex-research/crosslingual_winograd",
            language_codes={"ja": "jp"},
            language_column="lang",
            shares=_HALVES,
        ),
    ),
    Task(
        key="m_hellaswag",
        kind="multiple_choice",
        sources=(DataSource("alexandrainst/m_hellaswag", "{lang}", splits={"validation": "val"}),),
        columns={"context": "ctx", "choices": "endings", "label": "label"},
        num_labels=4,
        metric="accuracy",
        labels=("0", "1", "2", "3"),
        languages=_OKAPI_LANGUAGES,
        train_tasks=("hellaswag",),
        description="HellaSwag machine-translated by Okapi, 31 languages and English; trains on "
        "HellaSwag",
        note=_OKAPI + " Only HellaSwag's validation split was translated.",
    ),
    Task(
        key="arc",
        kind="multiple_choice",
        sources=(
            DataSource("allenai/ai2_arc", "ARC-Challenge"),
            DataSource("allenai/ai2_arc", "ARC-Easy", splits={"train": "train"}),
        ),
        columns={"context": "question", "choices": "choices.text", "label": "answerKey"},
        num_labels=5,
        metric="accuracy",
        labels=_LETTERS,
        description="ARC grade-school science questions: Challenge and Easy training questions, "
        "Challenge validation",
        note="A few questions are keyed 1-4 instead of A-E; those rows are dropped.",
    ),
    Task(
        key="m_arc",
        kind="multiple_choice",
        sources=(
            DataSource(
                "alexandrainst/m_arc",
                "{lang}",
                splits={"train": "train", "validation": "val", "test": "test"},
            ),
        ),
        columns={
            "context": "instruction",
            "choices": tuple(f"option_{letter}" for letter in "abcde"),
            "label": "answer",
        },
        num_labels=5,
        metric="accuracy",
        labels=_LETTERS,
        languages=_OKAPI_LANGUAGES,
        train_tasks=("arc",),
        description="ARC-Challenge machine-translated by Okapi, 31 languages and English; trains "
        "on ARC",
        note=_OKAPI + " Empty fifth options (four-choice questions) are left out.",
    ),
    Task(
        key="race",
        kind="multiple_choice",
        sources=(
            DataSource("ehovy/race", "all", splits={"train": "train", "validation": "validation"}),
        ),
        columns={"context": ("article", "question"), "choices": "options", "label": "answer"},
        num_labels=4,
        metric="accuracy",
        labels=_LETTERS[:4],
        description="RACE: English exam reading comprehension, four answers (middle and high)",
    ),
    Task(
        key="belebele",
        kind="multiple_choice",
        sources=(
            DataSource(
                "facebook/belebele",
                "{lang}",
                splits={"validation": "test", "test": "test"},
                language_codes=_BELEBELE_CODES,
                shares=_HALVES,
            ),
        ),
        columns={
            "context": ("flores_passage", "question"),
            "choices": tuple(f"mc_answer{i}" for i in range(1, 5)),
            "label": "correct_answer_num",
        },
        num_labels=4,
        metric="accuracy",
        labels=("1", "2", "3", "4"),
        languages=tuple(_BELEBELE_CODES),
        train_tasks=("race",),
        description="Belebele: reading comprehension on FLORES passages, 60 of its 122 variants; "
        "trains on RACE",
        note=_HALVED + " Its authors mean Belebele as a test set only: report the test half.",
    ),
    Task(
        key="xcsqa",
        kind="multiple_choice",
        sources=(
            DataSource(
                "INK-USC/xcsr",
                splits={"validation": "validation"},
                revision=_EXPORT,
                data_dir="X-CSQA-{lang}",
                language_codes={"ja": "jap"},
            ),
        ),
        columns={
            "context": "question.stem",
            "choices": "question.choices.text",
            "label": "answerKey",
        },
        num_labels=5,
        metric="accuracy",
        labels=_LETTERS,
        languages=(
            "en",
            "zh",
            "de",
            "es",
            "fr",
            "it",
            "ja",
            "nl",
            "pl",
            "pt",
            "ru",
            "ar",
            "vi",
            "hi",
            "sw",
            "ur",
        ),  # fmt: skip
        train_tasks=("commonsense_qa",),
        description="X-CSQA: CommonsenseQA machine-translated into 15 languages (validation "
        "only: its test labels are hidden); trains on CommonsenseQA",
        note=_SCRIPT_ONLY,
    ),
)

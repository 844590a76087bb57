"""Commonsense multiple choice: HellaSwag, Cosmos QA, CommonsenseQA (intermediate), SocialIQA and
COPA (XCOPA's English training, in that order), XCOPA (target)."""

from __future__ import annotations

from xlt_search.tasks.base import DataSource, FileLayout, Task

_COPA_COLUMNS = {
    "context": ("premise", "question"),
    "choices": ("choice1", "choice2"),
    "label": "label",
}
_SCRIPT_ONLY = "The hub repository holds a loading script, which datasets 4+ no longer runs; "

TASKS: tuple[Task, ...] = (
    Task(
        key="hellaswag",
        kind="multiple_choice",
        sources=(
            DataSource("Rowan/hellaswag", splits={"train": "train", "validation": "validation"}),
        ),
        columns={"context": "ctx", "choices": "endings", "label": "label"},
        num_labels=4,
        metric="accuracy",
        labels=("0", "1", "2", "3"),
        description="HellaSwag: pick the ending of a video caption",
    ),
    Task(
        key="cosmos_qa",
        kind="multiple_choice",
        sources=(
            DataSource("Samsoup/cosmos_qa", splits={"train": "train", "validation": "validation"}),
        ),
        columns={
            "context": ("context", "question"),
            "choices": ("answer0", "answer1", "answer2", "answer3"),
            "label": "label",
        },
        num_labels=4,
        metric="accuracy",
        description="Cosmos QA: reading comprehension that needs commonsense",
        note=_SCRIPT_ONLY
        + "the default is the community Parquet copy Samsoup/cosmos_qa (same columns) of "
        "allenai/cosmos_qa.",
    ),
    Task(
        key="commonsense_qa",
        kind="multiple_choice",
        sources=(
            DataSource("tau/commonsense_qa", splits={"train": "train", "validation": "validation"}),
        ),
        columns={"context": "question", "choices": "choices.text", "label": "answerKey"},
        num_labels=5,
        metric="accuracy",
        labels=("A", "B", "C", "D", "E"),
        description="CommonsenseQA: five answers to a ConceptNet question",
    ),
    Task(
        key="social_iqa",
        kind="multiple_choice",
        sources=(
            DataSource(
                "allenai/social_i_qa",
                splits={"train": "train", "validation": "validation"},
                revision="refs/pr/3",
            ),
        ),
        columns={
            "context": ("context", "question"),
            "choices": ("answerA", "answerB", "answerC"),
            "label": "label",
        },
        num_labels=3,
        metric="accuracy",
        labels=("1", "2", "3"),
        description="SocialIQA: social situations, three answers",
        note=_SCRIPT_ONLY + "the default reads the Parquet conversion of the hub's pull request 3.",
    ),
    Task(
        key="copa",
        kind="multiple_choice",
        sources=(
            DataSource(
                "aps/super_glue",
                splits={"train": "train", "validation": "validation"},
                revision="refs/convert/parquet",
                data_dir="copa",
            ),
        ),
        columns=_COPA_COLUMNS,
        num_labels=2,
        metric="accuracy",
        description="COPA (SuperGLUE): the more plausible cause or effect",
        note=_SCRIPT_ONLY
        + "the default reads the hub's own Parquet export (refs/convert/parquet).",
    ),
    Task(
        key="xcopa",
        kind="multiple_choice",
        sources=(
            DataSource(
                "cambridgeltl/xcopa", "{lang}", splits={"validation": "validation", "test": "test"}
            ),
        ),
        columns=_COPA_COLUMNS,
        num_labels=2,
        metric="accuracy",
        languages=("et", "ht", "id", "it", "qu", "sw", "ta", "th", "tr", "vi", "zh"),
        train_tasks=("social_iqa", "copa"),
        description="cross-lingual COPA, 11 languages; trains on SocialIQA, then COPA",
        layout=FileLayout(
            "jsonl",
            {"validation": "data/{lang}/val.{lang}.jsonl", "test": "data/{lang}/test.{lang}.jsonl"},
            _COPA_COLUMNS,
            home="github.com/cambridgeltl/xcopa",
        ),
    ),
)

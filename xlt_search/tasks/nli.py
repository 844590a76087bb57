"""Natural language inference: ANLI+, MNLI and MNLI with its translations (intermediate), XNLI
(target, trained on MNLI)."""

from __future__ import annotations

from xlt_search.tasks.base import DataSource, FileLayout, Task

NLI_LABELS = ("entailment", "neutral", "contradiction")
_NLI_COLUMNS = {"text_a": "premise", "text_b": "hypothesis", "label": "label"}
XNLI_LANGUAGES = tuple("en ar bg de el es fr hi ru sw th tr ur vi zh".split())
_MNLI = DataSource(
    "nyu-mll/glue", "mnli", splits={"train": "train", "validation": "validation_matched"}
)

TASKS: tuple[Task, ...] = (
    Task(
        key="anli_plus",
        kind="classification",
        sources=(
            DataSource(
                "facebook/anli",
                "plain_text",
                splits={
                    "train": "train_r1+train_r2+train_r3",
                    "validation": "dev_r1+dev_r2+dev_r3",
                },
            ),
            DataSource("nyu-mll/glue", "mnli", splits={"train": "train"}),
            DataSource("stanfordnlp/snli", "plain_text", splits={"train": "train"}),
        ),
        columns=_NLI_COLUMNS,
        num_labels=3,
        metric="accuracy",
        labels=NLI_LABELS,
        description="ANLI rounds 1-3 + MNLI + SNLI training data, ANLI dev sets",
    ),
    Task(
        key="mnli",
        kind="classification",
        sources=(_MNLI,),
        columns=_NLI_COLUMNS,
        num_labels=3,
        metric="accuracy",
        labels=NLI_LABELS,
        description="MultiNLI (validation: the matched dev set)",
    ),
    Task(
        key="mnli_translated",
        kind="classification",
        sources=(
            DataSource(
                "facebook/xnli", "{lang}", splits={"train": "train", "validation": "validation"}
            ),
        ),
        columns=_NLI_COLUMNS,
        num_labels=3,
        metric="accuracy",
        train_languages=XNLI_LANGUAGES,
        labels=NLI_LABELS,
        description="MNLI's training set and its machine translations into XNLI's 14 languages "
        "(XNLI's train split per language, translate-train); English validation: XNLI's dev",
        note="an intermediate task for intermediate_languages: the hub's facebook/xnli holds a "
        "train split of 392,702 rows in every language config (the XNLI paper's translations of "
        "MNLI); its English train is MNLI's own",
    ),
    Task(
        key="xnli",
        kind="classification",
        sources=(DataSource("facebook/xnli", "{lang}"),),
        columns=_NLI_COLUMNS,
        num_labels=3,
        metric="accuracy",
        languages=XNLI_LANGUAGES,
        train_tasks=("mnli",),
        labels=NLI_LABELS,
        description="cross-lingual NLI, 15 languages; trains on English MNLI",
        # XNLI-1.0.zip: one TSV per split for all languages, a `language` column
        layout=FileLayout(
            "tsv",
            {"validation": "xnli.dev.tsv", "test": "xnli.test.tsv"},
            {"text_a": "sentence1", "text_b": "sentence2", "label": "gold_label"},
            home="github.com/facebookresearch/XNLI (dl.fbaipublicfiles.com/XNLI/XNLI-1.0.zip)",
            language_column="language",
        ),
    ),
)

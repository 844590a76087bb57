"""The synthetic suite's tasks and languages (generated offline by `xlt_search.synthetic`).

Nine intermediate tasks of the four kinds (in English, and translated into every synthetic
language for `intermediate_languages`), an opt-in parallel corpus (`syn_parallel`: English and its
translations, which transfer cannot use from the others), two targets shaped like XNLI and XCOPA,
one whose label lives in word order (`syn_lead`, for the word-shuffle control), and two for RS-DA:
`syn_synonyms`, evaluated with every English word swapped for a synonym no training shows, and
its twin `syn_polarity`, the same examples as written (nothing for RS-DA to find), each target with
English training data and validation/test data in every language. Which intermediate task helps,
leaves alone or hurts which target is the world's ground truth: `RELATEDNESS`.
Files live under ``{synthetic_root}/data/<task>/<split>.<language>.jsonl``; the data loader fills
in ``{synthetic_root}`` (from `xlt_search.synthetic.ensure_suite`) and ``{lang}``.
"""

from __future__ import annotations

from typing import Literal

from xlt_search.tasks.base import DataSource, Language, Task

Relatedness = Literal["helpful", "neutral", "conflicting"]

# The synthetic languages; English is the registry's (`xlt_search.tasks.languages`).
LANGUAGES: tuple[Language, ...] = (
    Language(code="xc1", name="Synthetic Close 1", family="synthetic-close", script="Latn"),
    Language(code="xc2", name="Synthetic Close 2", family="synthetic-close", script="Latn"),
    Language(code="xf1", name="Synthetic Far 1", family="synthetic-far", script="Latn"),
    Language(code="xf2", name="Synthetic Far 2", family="synthetic-far", script="Latn"),
)
ALL_LANGUAGES: tuple[str, ...] = ("en", *(language.code for language in LANGUAGES))


def _english_only(key: str) -> DataSource:
    """An intermediate task's files: English validation data, training data in every language
    (English, and its translations: the same examples in each synthetic language's words)."""
    return DataSource(
        path="json",
        data_files={
            "train": f"{{synthetic_root}}/data/{key}/train.{{lang}}.jsonl",
            "validation": f"{{synthetic_root}}/data/{key}/validation.en.jsonl",
        },
        splits={"train": "train", "validation": "validation"},
    )


def _multilingual(key: str) -> DataSource:
    return DataSource(
        path="json",
        data_files={
            "train": f"{{synthetic_root}}/data/{key}/train.en.jsonl",
            "validation": f"{{synthetic_root}}/data/{key}/validation.{{lang}}.jsonl",
            "test": f"{{synthetic_root}}/data/{key}/test.{{lang}}.jsonl",
        },
    )


_PAIR = {"text_a": "sentence1", "text_b": "sentence2", "label": "label"}
_SINGLE = {"text_a": "sentence", "label": "label"}
_CHOICE = {"context": "context", "choices": "endings", "label": "label"}
_TAGS = {"tokens": "tokens", "tags": "tags"}
_SPAN = {"context": "context", "question": "question", "answers": "answers"}

TARGETS: tuple[Task, ...] = (
    Task(
        key="syn_nli",
        kind="classification",
        sources=(_multilingual("syn_nli"),),
        columns={"text_a": "premise", "text_b": "hypothesis", "label": "label"},
        num_labels=3,
        metric="accuracy",
        languages=ALL_LANGUAGES,
        description="XNLI-shaped: does the hypothesis keep the premise's topic and pole "
        "(entailment), change its topic (neutral) or flip its pole (contradiction)?",
    ),
    Task(
        key="syn_copa",
        kind="multiple_choice",
        sources=(_multilingual("syn_copa"),),
        columns={"context": "premise", "choices": "choices", "label": "label"},
        num_labels=2,
        metric="accuracy",
        languages=ALL_LANGUAGES,
        description="XCOPA-shaped: pick the choice of the premise's topic and the opposite pole",
    ),
    # Not in RELATEDNESS: the target of the word-shuffle control (docs/reading.md), whose label
    # lives in word order, which the other two targets' labels do not depend on.
    Task(
        key="syn_lead",
        kind="classification",
        sources=(_multilingual("syn_lead"),),
        columns=_SINGLE,
        num_labels=2,
        metric="accuracy",
        languages=ALL_LANGUAGES,
        labels=("pole0", "pole1"),
        description="word order planted: the pole of the sentence's first word (the sentence "
        "holds as many words of each pole)",
    ),
    # Not in RELATEDNESS either: RS-DA's planted case (docs/reading.md). Both read the pole most
    # of a sentence's words have; syn_synonyms's evaluation has every word a language shares
    # with English swapped for the English synonym (the suite's synonyms.json links them).
    Task(
        key="syn_polarity",
        kind="classification",
        sources=(_multilingual("syn_polarity"),),
        columns=_SINGLE,
        num_labels=2,
        metric="accuracy",
        languages=ALL_LANGUAGES,
        labels=("pole0", "pole1"),
        description="the pole most of the sentence's words have (RS-DA's null case)",
    ),
    Task(
        key="syn_synonyms",
        kind="classification",
        sources=(_multilingual("syn_synonyms"),),
        columns=_SINGLE,
        num_labels=2,
        metric="accuracy",
        languages=ALL_LANGUAGES,
        labels=("pole0", "pole1"),
        description="syn_polarity evaluated with English's words swapped for synonyms that no "
        "training data shows (RS-DA's planted case)",
    ),
)

INTERMEDIATE: tuple[Task, ...] = (
    Task(
        key="syn_sentiment",
        kind="classification",
        train_languages=ALL_LANGUAGES,
        sources=(_english_only("syn_sentiment"),),
        columns=_SINGLE,
        num_labels=2,
        metric="accuracy",
        description="SST-shaped: the pole most of the sentence's words have",
    ),
    Task(
        key="syn_topic_choice",
        kind="multiple_choice",
        train_languages=ALL_LANGUAGES,
        sources=(_english_only("syn_topic_choice"),),
        columns=_CHOICE,
        num_labels=4,
        metric="accuracy",
        description="pick the ending of the context's topic among four",
    ),
    Task(
        key="syn_pole_tags",
        kind="tagging",
        train_languages=ALL_LANGUAGES,
        sources=(_english_only("syn_pole_tags"),),
        columns=_TAGS,
        num_labels=2,
        metric="accuracy",
        description="tag every word with its pole",
    ),
    Task(
        key="syn_pole_span",
        kind="span",
        train_languages=ALL_LANGUAGES,
        sources=(_english_only("syn_pole_span"),),
        columns=_SPAN,
        num_labels=2,
        metric="exact_match",
        unanswerable=True,
        description="SQuAD-2-shaped: find the one word of the pole the question names, if any",
    ),
    Task(
        key="syn_kind",
        kind="classification",
        train_languages=ALL_LANGUAGES,
        sources=(_english_only("syn_kind"),),
        columns=_SINGLE,
        num_labels=4,
        metric="accuracy",
        description="the kind most of the sentence's words are",
    ),
    Task(
        key="syn_next_choice",
        kind="multiple_choice",
        train_languages=ALL_LANGUAGES,
        sources=(_english_only("syn_next_choice"),),
        columns=_CHOICE,
        num_labels=4,
        metric="accuracy",
        description="HellaSwag-shaped: pick the word that continues a chain of successors",
    ),
    Task(
        key="syn_kind_tags",
        kind="tagging",
        train_languages=ALL_LANGUAGES,
        sources=(_english_only("syn_kind_tags"),),
        columns=_TAGS,
        num_labels=4,
        metric="accuracy",
        description="CCG-shaped: tag every word with its kind",
    ),
    Task(
        key="syn_kind_span",
        kind="span",
        train_languages=ALL_LANGUAGES,
        sources=(_english_only("syn_kind_span"),),
        columns=_SPAN,
        num_labels=2,
        metric="exact_match",
        description="SQuAD-1-shaped: find the one context word of the kind the question names",
    ),
    Task(
        key="syn_stance",
        kind="classification",
        train_languages=ALL_LANGUAGES,
        sources=(_english_only("syn_stance"),),
        columns=_PAIR,
        num_labels=2,
        metric="accuracy",
        description="does the second text take the first's stance? (rare words' poles flipped)",
    ),
)

# Opt-in (not in DEFAULT_POOL, nor in RELATEDNESS): parallel data from the world's own word maps.
PARALLEL: tuple[Task, ...] = (
    Task(
        key="syn_parallel",
        kind="parallel",
        sources=(_english_only("syn_parallel"),),
        columns={"source": "source", "target": "target"},
        num_labels=0,
        metric="none",
        description="parallel sentences: English and its word-for-word rendering in one of the "
        "synthetic languages, in turn",
    ),
)

TASKS: tuple[Task, ...] = TARGETS + INTERMEDIATE + PARALLEL

DEFAULT_POOL: tuple[str, ...] = tuple(task.key for task in INTERMEDIATE)

_HELPFUL = ("syn_sentiment", "syn_topic_choice", "syn_pole_tags", "syn_pole_span")
_NEUTRAL = ("syn_kind", "syn_next_choice", "syn_kind_tags", "syn_kind_span")
_CONFLICTING = ("syn_stance",)


def _planted() -> dict[str, Relatedness]:
    planted: dict[str, Relatedness] = {}
    planted.update(dict.fromkeys(_HELPFUL, "helpful"))
    planted.update(dict.fromkeys(_NEUTRAL, "neutral"))
    planted.update(dict.fromkeys(_CONFLICTING, "conflicting"))
    return planted


# The planted ground truth: for every target, what each pool task does to its zero-shot score.
# The targets ask for the topic and the pole of words, and train on the common words only.
# Helpful tasks teach every word's pole or topic; neutral ones teach unrelated attributes of the
# same words; the conflicting one teaches the wrong pole for the rare words, on the NLI format.
RELATEDNESS: dict[str, dict[str, Relatedness]] = {
    "syn_nli": _planted(),
    "syn_copa": _planted(),
}

"""Chance levels, and whether a search learned its targets at all.

A score means something only above what a model that learned nothing gets. Every target's chance
level is the score of the best trivial predictor on its evaluation data, under its own metric:

- classification: the higher of always predicting the majority class and predicting uniformly at
  random (1 / labels), under accuracy or macro F1;
- multiple choice: the higher of always picking the most frequent answer position and picking at
  random (the mean of 1 / choices);
- tagging: always predicting the most frequent tag (token accuracy; macro F1 of that predictor);
  0 for entity F1, where predicting no entity finds none;
- span: always answering "no answer": the share of unanswerable questions (0 for SQuAD v1-style
  tasks, where every question has an answer);
- retrieval: picking a candidate at random, 1 / candidates.

A trial *learned* a target when its English score is above chance beyond sampling noise: more than
`Z` binomial standard errors of the chance level on the evaluation set's size (one-sided, about
2.5%). For F1 metrics the binomial error is an approximation; it is the same rule everywhere.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from xlt_search.analysis.controls import candidates
from xlt_search.names import COMPLETED, EARLY_STOPPED

if TYPE_CHECKING:
    import pandas as pd

    from xlt_search.data import PreparedData
    from xlt_search.tasks.base import Task

Z = 1.96  # one-sided: a score this many standard errors above chance is not chance
TAG = "xlt.chance"  # the parent run's tag: {target: {language: [chance, examples]}} as JSON


@dataclass(frozen=True)
class Chance:
    """A target language's chance level and the number of examples it was measured on."""

    level: float
    examples: int

    def beaten_by(self, score: float) -> bool:
        """Whether `score` is above this chance level beyond sampling noise."""
        if math.isnan(score) or self.examples == 0:
            return False
        spread = math.sqrt(max(self.level * (1 - self.level), 1e-12) / self.examples)
        return score > self.level + Z * spread


def chance_level(task: Task, dataset: Sequence[Mapping] | object) -> Chance:
    """The chance level of `task`'s metric on one prepared evaluation split (`data.tokenize`'s
    columns)."""
    kind, metric = task.kind, task.metric
    if kind == "retrieval":
        n = len(dataset)
        return Chance(1.0 / max(1, n), n)
    if kind == "span":
        answers = {}
        for example, gold in zip(dataset["example"], dataset["answers"], strict=True):
            answers[int(example)] = list(gold)
        unanswerable = sum(1 for gold in answers.values() if not gold)
        return Chance(unanswerable / max(1, len(answers)), len(answers))
    if kind == "tagging":
        tags = [int(t) for row in dataset["labels"] for t in row if int(t) >= 0]
        if metric == "entity_f1" or not tags:
            return Chance(0.0, len(dataset))
        counts = Counter(tags)
        share = counts.most_common(1)[0][1] / len(tags)
        level = share if metric == "accuracy" else _constant_f1(share, task.num_labels)
        return Chance(level, len(dataset))
    labels = [int(label) for label in dataset["labels"]]
    n = len(labels)
    if n == 0:
        return Chance(0.0, 0)
    counts = Counter(labels)
    majority = counts.most_common(1)[0][1] / n
    if kind == "multiple_choice":
        uniform = sum(1.0 / len(choices) for choices in dataset["input_ids"]) / n
        return Chance(max(majority, uniform), n)
    if metric == "accuracy":
        return Chance(max(majority, 1.0 / task.num_labels), n)
    shares = [counts.get(c, 0) / n for c in range(task.num_labels)]
    random_f1 = sum(2 * p / (1 + task.num_labels * p) for p in shares if p > 0) / len(
        [p for p in shares if p > 0] or [0]
    )
    return Chance(max(_constant_f1(majority, len(counts)), random_f1), n)


def _constant_f1(share: float, classes: int) -> float:
    """Macro F1 of always predicting the class that holds `share` of the labels: only that
    class scores (F1 = 2p / (1 + p)); the others score 0."""
    return 2 * share / (1 + share) / max(1, classes)


def chance_levels(data: PreparedData, targets: Mapping[str, Sequence[str]]) -> dict:
    """{target: {language: Chance}} for every target's evaluation languages."""
    return {
        target: {
            lang: chance_level(data.task(target), data.load(target, "validation", lang))
            for lang in languages
        }
        for target, languages in targets.items()
    }


def to_tag(levels: Mapping[str, Mapping[str, Chance]]) -> str:
    """The levels as the parent run's `xlt.chance` tag."""
    return json.dumps(
        {
            target: {lang: [round(c.level, 6), c.examples] for lang, c in by_lang.items()}
            for target, by_lang in levels.items()
        },
        sort_keys=True,
    )


def from_tag(text: str | None) -> dict[str, dict[str, Chance]]:
    """The levels back from the tag; empty when the search logged none."""
    if not text:
        return {}
    return {
        target: {lang: Chance(float(v[0]), int(v[1])) for lang, v in by_lang.items()}
        for target, by_lang in json.loads(text).items()
    }


@dataclass(frozen=True)
class TargetCheck:
    """One target's learning check over a search's trials."""

    target: str
    language: str  # the language checked: English when evaluated, else the first one
    chance: Chance
    baseline_score: float  # NaN without a baseline trial
    best_score: float
    learned: int  # trials above chance beyond noise
    checked: int  # trials with a score for this target
    baseline_learned: bool | None  # None without a baseline trial

    @property
    def nothing_learned(self) -> bool:
        """The baseline stayed at chance, or (without one) most trials did."""
        if self.checked == 0:
            return False
        if self.baseline_learned is not None and not self.baseline_learned:
            return True
        return self.learned * 2 < self.checked


@dataclass(frozen=True)
class LearningCheck:
    """Whether a search learned its targets, target by target."""

    targets: tuple[TargetCheck, ...]
    stuck_loss: tuple[float, float] | None  # (final training loss, ln of the classes) when stuck

    @property
    def nothing_learned(self) -> bool:
        return any(t.nothing_learned for t in self.targets)

    def lines(self) -> list[str]:
        """What the report and the end of a search say: one line per target that was not
        learned, and the likely cause; nothing when every target was learned."""
        failed = [t for t in self.targets if t.nothing_learned]
        if not failed:
            return []
        parts = []
        for t in failed:
            shown = t.baseline_score if not math.isnan(t.baseline_score) else t.best_score
            who = "the baseline" if not math.isnan(t.baseline_score) else "the best trial"
            parts.append(
                f"{t.target} {t.language} {shown:.4f} ({who}) with chance {t.chance.level:.4f} "
                f"on {t.chance.examples} examples; {t.learned} of {t.checked} trials above chance"
            )
        lines = ["nothing was learned: " + "; ".join(parts)]
        if self.stuck_loss is not None:
            loss, level = self.stuck_loss
            lines.append(
                f"likely cause: the target training loss ended at {loss:.4f}, about ln(classes) = "
                f"{level:.4f}, so the model did not fit even the English training data (labels "
                "unrelated to the text, a tokenizer that cannot read it, or a learning rate "
                "far off)"
            )
        lines.append(
            "the ranking of tasks is not shown: differences between trials that learned nothing "
            "are noise"
        )
        return lines


def check_learning(
    trials: pd.DataFrame,
    levels: Mapping[str, Mapping[str, Chance]],
    classes: Mapping[str, int] | None = None,
) -> LearningCheck:
    """Check every target of `levels` against the trials' last scores (`lang.<target>.<lang>`).

    `classes` (target -> labels or choices) lets a training loss stuck at ln(classes) be named as
    the cause: the completed trials' median final `loss` (the target fine-tunes') against the mean
    of ln(classes) over targets.
    """
    trials = candidates(trials)  # a control's score says nothing of what the search learned
    counted = trials[trials["status"].isin((COMPLETED, EARLY_STOPPED))]
    checks = []
    for target, by_lang in levels.items():
        language = "en" if "en" in by_lang else next(iter(by_lang))
        column = f"lang.{target}.{language}"
        if column not in counted:
            continue
        scores = counted[column].astype(float)
        chance = by_lang[language]
        valid = scores.dropna()
        baseline = counted.loc[counted["n_tasks"] == 0, column].astype(float).dropna()
        baseline_score = float(baseline.mean()) if len(baseline) else math.nan
        checks.append(
            TargetCheck(
                target=target,
                language=language,
                chance=chance,
                baseline_score=baseline_score,
                best_score=float(valid.max()) if len(valid) else math.nan,
                learned=sum(chance.beaten_by(s) for s in valid),
                checked=len(valid),
                baseline_learned=chance.beaten_by(baseline_score) if len(baseline) else None,
            )
        )
    stuck = None
    done = counted[counted["status"] == COMPLETED]  # their last loss is the target phase's
    if classes and "loss" in done and done["loss"].notna().any():
        level = sum(math.log(max(2, c)) for c in classes.values()) / len(classes)
        loss = float(done["loss"].astype(float).median())
        if loss >= 0.95 * level:
            stuck = (loss, level)
    return LearningCheck(tuple(checks), stuck)

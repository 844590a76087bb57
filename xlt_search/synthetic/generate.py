"""Example generators for every synthetic task, and the writer that puts them on disk as JSON lines.

Each generator draws English examples over concepts. The targets train on the common concepts only
and are evaluated on all of them; their validation and test sets are rendered in every language
from the same concepts (parallel data, like XNLI and XCOPA). Each task and split has its own random
stream, so changing one task's generator leaves the others' data unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import random
import zlib
from collections.abc import Callable, Collection, Iterable, Iterator
from pathlib import Path
from typing import Any

from xlt_search.synthetic.world import NUM_KINDS, NUM_TOPICS, World
from xlt_search.tasks.synthetic import ALL_LANGUAGES, DEFAULT_POOL, LANGUAGES

TRAIN_SIZE = 4000
EVAL_SIZE = 400
SYNONYMS_FILE = "synonyms.json"  # the world's synonyms (World.synonym_table), beside the tasks
# The targets evaluated with every English word swapped for its synonym (World.swapped).
SWAPPED_TARGETS: frozenset[str] = frozenset({"syn_synonyms"})

# An example before rendering: its fields hold concept lists (rendered to words) or plain values.
Concepts = list[int]
Example = dict[str, Any]
Generator = Callable[[World, random.Random], Example]
# A target's generator also takes the concepts it may use (None: all of them).
TargetGenerator = Callable[[World, random.Random, Collection[int] | None], Example]

HYPOTHESIS_WORDS = 3
CHOICE_WORDS = 2
# The question words of the span tasks: English-only words outside the concept lexicon.
POLE_WORDS: tuple[str, ...] = ("pole0", "pole1")
KIND_WORDS: tuple[str, ...] = tuple(f"kind{k}" for k in range(NUM_KINDS))
MARKER_WORDS: tuple[str, ...] = POLE_WORDS + KIND_WORDS


def _concepts(world: World, within: Collection[int] | None = None, **attributes: int) -> Concepts:
    """The concepts (of `within`; default: all) whose topic, pole or kind equal the values given."""
    return [
        c
        for c in (range(world.num_concepts) if within is None else sorted(within))
        if all(_attribute(world, name, c) == value for name, value in attributes.items())
    ]


def _attribute(world: World, name: str, concept: int) -> int:
    if name == "pole":
        return World.pole(concept)
    return getattr(world, name)[concept]


def _other(rng: random.Random, count: int, value: int) -> int:
    """A value in range(count) other than `value`."""
    return (value + rng.randrange(1, count)) % count


# Targets.


def nli(world: World, rng: random.Random, within: Collection[int] | None) -> Example:
    """A premise of one topic and pole; a hypothesis of the same topic and pole (entailment), of
    another topic (neutral), or of the same topic and the other pole (contradiction)."""
    topic, pole = rng.randrange(NUM_TOPICS), rng.randrange(2)
    premise = rng.sample(_concepts(world, within, topic=topic, pole=pole), rng.randint(3, 5))
    label = rng.randrange(3)
    if label == 0:
        hypothesis = rng.sample(_concepts(world, within, topic=topic, pole=pole), HYPOTHESIS_WORDS)
    elif label == 1:
        other = _other(rng, NUM_TOPICS, topic)
        hypothesis = rng.sample(_concepts(world, within, topic=other), HYPOTHESIS_WORDS)
    else:
        hypothesis = rng.sample(
            _concepts(world, within, topic=topic, pole=1 - pole), HYPOTHESIS_WORDS
        )
    return {"premise": premise, "hypothesis": hypothesis, "label": label}


def copa(world: World, rng: random.Random, within: Collection[int] | None) -> Example:
    """A premise of one topic and pole; the right choice has the same topic and the other pole,
    the wrong one the same pole, or another topic."""
    topic, pole = rng.randrange(NUM_TOPICS), rng.randrange(2)
    premise = rng.sample(_concepts(world, within, topic=topic, pole=pole), rng.randint(3, 5))
    right = rng.sample(_concepts(world, within, topic=topic, pole=1 - pole), CHOICE_WORDS)
    if rng.random() < 0.5:
        wrong = rng.sample(_concepts(world, within, topic=topic, pole=pole), CHOICE_WORDS)
    else:
        other = _other(rng, NUM_TOPICS, topic)
        wrong = rng.sample(_concepts(world, within, topic=other, pole=1 - pole), CHOICE_WORDS)
    label = rng.randrange(2)
    choices = [wrong, wrong]
    choices[label] = right
    return {"premise": premise, "choices": choices, "label": label}


def lead(world: World, rng: random.Random, within: Collection[int] | None) -> Example:
    """Word order planted: the label is the pole of the sentence's first word. The sentence holds
    as many words of one pole as of the other, so its bag of words says nothing of the label:
    trained on its words shuffled (the word-shuffle control), a model can only guess."""
    label, half = rng.randrange(2), rng.randint(2, 3)
    first, *same = rng.sample(_concepts(world, within, pole=label), half)
    rest = same + rng.sample(_concepts(world, within, pole=1 - label), half)
    rng.shuffle(rest)
    return {"sentence": [first, *rest], "label": label}


# Helpful intermediate tasks: the targets' sub-skills (a word's pole, a word's topic).


def sentiment(world: World, rng: random.Random, within: Collection[int] | None = None) -> Example:
    """SST-shaped: the pole most words of a mixed-topic sentence have. Also the targets
    syn_polarity and syn_synonyms (the latter evaluated on the English synonyms)."""
    label = rng.randrange(2)
    length = rng.randint(5, 7)
    majority = rng.randint(length // 2 + 1, length)
    sentence = rng.sample(_concepts(world, within, pole=label), majority)
    sentence += rng.sample(_concepts(world, within, pole=1 - label), length - majority)
    rng.shuffle(sentence)
    return {"sentence": sentence, "label": label}


def topic_choice(world: World, rng: random.Random) -> Example:
    """Pick the ending of the context's topic; each ending has its own topic."""
    topic = rng.randrange(NUM_TOPICS)
    context = rng.sample(_concepts(world, topic=topic), rng.randint(2, 3))
    endings = [rng.choice(_concepts(world, topic=t)) for t in range(NUM_TOPICS)]
    rng.shuffle(endings)
    label = [world.topic[e] for e in endings].index(topic)
    return {"context": context, "endings": [[e] for e in endings], "label": label}


def pole_tags(world: World, rng: random.Random) -> Example:
    """Every word's pole."""
    tokens = rng.sample(range(world.num_concepts), rng.randint(5, 8))
    return {"tokens": tokens, "tags": [World.pole(c) for c in tokens]}


def pole_span(world: World, rng: random.Random) -> Example:
    """SQuAD-2-shaped: the one context word of the pole the question names (the rest of the
    context has the other pole); unanswerable when there is none."""
    pole = rng.randrange(2)
    context = rng.sample(_concepts(world, pole=1 - pole), rng.randint(4, 6))
    answer = None
    if rng.random() < 0.67:
        answer = rng.choice(_concepts(world, pole=pole))
        context.append(answer)
    rng.shuffle(context)
    return {"context": context, "question": POLE_WORDS[pole], "answer": answer}


# Neutral intermediate tasks: the same words, skills the targets do not use.


def kind(world: World, rng: random.Random) -> Example:
    """The kind most of the sentence's words are."""
    label = rng.randrange(NUM_KINDS)
    length = rng.randint(5, 7)
    majority = length // 2 + 1
    same = _concepts(world, kind=label)
    rest = [c for c in range(world.num_concepts) if world.kind[c] != label]
    sentence = rng.sample(same, majority) + rng.sample(rest, length - majority)
    rng.shuffle(sentence)
    return {"sentence": sentence, "label": label}


def next_choice(world: World, rng: random.Random) -> Example:
    """HellaSwag-shaped: pick the word that continues a chain of successors."""
    chain = [rng.randrange(world.num_concepts)]
    for _ in range(rng.randint(2, 4)):
        chain.append(world.successor[chain[-1]])
    right = world.successor[chain[-1]]
    distractors = rng.sample([c for c in range(world.num_concepts) if c != right], 3)
    label = rng.randrange(4)
    endings = distractors[:label] + [right] + distractors[label:]
    return {"context": chain, "endings": [[e] for e in endings], "label": label}


def kind_tags(world: World, rng: random.Random) -> Example:
    """CCG-shaped: every word's kind."""
    tokens = rng.sample(range(world.num_concepts), rng.randint(5, 8))
    return {"tokens": tokens, "tags": [world.kind[c] for c in tokens]}


def kind_span(world: World, rng: random.Random) -> Example:
    """SQuAD-1-shaped: the one context word of the kind the question names."""
    wanted = rng.randrange(NUM_KINDS)
    answer = rng.choice(_concepts(world, kind=wanted))
    rest = [c for c in range(world.num_concepts) if world.kind[c] != wanted]
    context = rng.sample(rest, rng.randint(4, 7)) + [answer]
    rng.shuffle(context)
    return {"context": context, "question": KIND_WORDS[wanted], "answer": answer}


# The conflicting intermediate task.


def stance(world: World, rng: random.Random) -> Example:
    """On the NLI target's input format: do the rare words of the second text take the first
    text's stance? Labelled with a lexicon that gives every rare word the opposite pole ("false
    friends"), it teaches the encoder the wrong pole for exactly the words the targets' training
    data never shows, while agreeing with it on the common words the targets train on."""
    topic, side = rng.randrange(NUM_TOPICS), rng.randrange(2)
    sentence1 = rng.sample(_by_stance(world, topic, side), rng.randint(3, 5))
    label = rng.randrange(2)
    second = side if label == 1 else 1 - side
    rare = [c for c in _by_stance(world, topic, second) if not world.common[c]]
    sentence2 = rng.sample(rare, HYPOTHESIS_WORDS)
    return {"sentence1": sentence1, "sentence2": sentence2, "label": label}


def stance_of(world: World, concept: int) -> int:
    """A concept's pole in syn_stance's lexicon: flipped for the rare words."""
    return World.pole(concept) if world.common[concept] else 1 - World.pole(concept)


def _by_stance(world: World, topic: int, side: int) -> Concepts:
    return [c for c in _concepts(world, topic=topic) if stance_of(world, c) == side]


# Parallel data: a sentence and its translation, a word map the world already holds.


def parallel_pairs(world: World, split: str, size: int) -> Iterator[dict[str, str]]:
    """`size` English sentences of random words (all concepts, 4 to 7 of them), each with its
    rendering in a synthetic language, the languages in turn (`syn_parallel`'s rows)."""
    rng = random.Random(zlib.crc32(f"syn_parallel/{split}".encode()))
    for i in range(size):
        language = LANGUAGES[i % len(LANGUAGES)].code
        sentence = rng.sample(range(world.num_concepts), rng.randint(4, 7))
        yield {
            "source": " ".join(world.words(sentence)),
            "target": " ".join(world.words(sentence, language)),
            "language": language,
        }


TARGET_GENERATORS: dict[str, TargetGenerator] = {"syn_nli": nli, "syn_copa": copa, "syn_lead": lead}
TARGET_GENERATORS: dict[str, TargetGenerator] = {
    "syn_nli": nli,
    "syn_copa": copa,
    "syn_lead": lead,
    "syn_polarity": sentiment,
    "syn_synonyms": sentiment,
}
GENERATORS: dict[str, Generator] = {
    "syn_sentiment": sentiment,
    "syn_topic_choice": topic_choice,
    "syn_pole_tags": pole_tags,
    "syn_pole_span": pole_span,
    "syn_kind": kind,
    "syn_next_choice": next_choice,
    "syn_kind_tags": kind_tags,
    "syn_kind_span": kind_span,
    "syn_stance": stance,
}
TARGET_KEYS: tuple[str, ...] = tuple(TARGET_GENERATORS)
# The fields that hold concepts: rendered as text, or as one text per choice.
TEXT_FIELDS = frozenset(
    {"premise", "hypothesis", "sentence", "sentence1", "sentence2", "context", "question"}
)
CHOICE_FIELDS = frozenset({"choices", "endings"})


def render(example: Example, world: World, language: str) -> dict[str, Any]:
    """An example with its concepts turned into `language`'s words.

    Concept lists become space-joined text, `tokens` a word list, `choices`/`endings` a list of
    texts, and `answer` SQuAD's `answers` with character offsets into `context`; other fields
    (labels, tags, marker words) stay as they are.
    """
    out: dict[str, Any] = {}
    for name, value in example.items():
        if name == "answer":
            out["answers"] = _answers(example, world, language)
        elif name == "tokens":
            out[name] = world.words(value, language)
        elif name in CHOICE_FIELDS:
            out[name] = [" ".join(world.words(choice, language)) for choice in value]
        elif name in TEXT_FIELDS and isinstance(value, list):
            out[name] = " ".join(world.words(value, language))
        else:
            out[name] = value
    return out


def _answers(example: Example, world: World, language: str) -> dict[str, list[Any]]:
    answer = example["answer"]
    if answer is None:
        return {"text": [], "answer_start": []}
    words = world.words(example["context"], language)
    index = example["context"].index(answer)
    start = sum(len(word) + 1 for word in words[:index])
    return {"text": [words[index]], "answer_start": [start]}


def _draw(key: str, split: str, size: int, world: World) -> Iterator[Example]:
    # syn_synonyms draws syn_polarity's examples: the two differ only in how they are written.
    stream = "syn_polarity" if key in SWAPPED_TARGETS else key
    rng = random.Random(zlib.crc32(f"{stream}/{split}".encode()))
    for _ in range(size):
        if key in TARGET_GENERATORS:
            # The targets train on the common words only and are evaluated on all words.
            within = world.common_concepts if split == "train" else None
            yield TARGET_GENERATORS[key](world, rng, within)
        else:
            yield GENERATORS[key](world, rng)


def write_data(world: World, data_root: Path) -> None:
    """Write every task's splits under `data_root/<task>/<split>.<language>.jsonl`, and the
    world's synonyms as `data_root/SYNONYMS_FILE`."""
    data_root.mkdir(parents=True, exist_ok=True)
    (data_root / SYNONYMS_FILE).write_text(json.dumps(world.synonym_table()), encoding="utf-8")
    swapped = dataclasses.replace(
        world, lexicons={code: world.swapped(code) for code in world.lexicons}
    )
    for key in TARGET_KEYS + DEFAULT_POOL:
        folder = data_root / key
        folder.mkdir(parents=True)
        if key in TARGET_KEYS:
            _write(folder / "train.en.jsonl", _draw(key, "train", TRAIN_SIZE, world), world, "en")
            for split in ("validation", "test"):
                examples = list(_draw(key, split, EVAL_SIZE, world))
                written = swapped if key in SWAPPED_TARGETS else world
                for language in ALL_LANGUAGES:
                    _write(folder / f"{split}.{language}.jsonl", examples, written, language)
        else:  # English training data and its translations (translate-train), English dev
            examples = list(_draw(key, "train", TRAIN_SIZE, world))
            for language in ALL_LANGUAGES:
                _write(folder / f"train.{language}.jsonl", examples, world, language)
            examples = list(_draw(key, "validation", EVAL_SIZE, world))
            _write(folder / "validation.en.jsonl", examples, world, "en")
    folder = data_root / "syn_parallel"
    folder.mkdir(parents=True)
    for split, size in (("train", TRAIN_SIZE), ("validation", EVAL_SIZE)):
        with (folder / f"{split}.en.jsonl").open("w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(row) + "\n" for row in parallel_pairs(world, split, size))


def _write(path: Path, examples: Iterable[Example], world: World, language: str) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for example in examples:
            handle.write(json.dumps(render(example, world, language), ensure_ascii=False) + "\n")

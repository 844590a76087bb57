"""The synthetic world: concepts in antonym pairs, their attributes, a lexicon per language.

A concept is an int. Concepts `2p` and `2p + 1` are the two poles of pair `p`: antonyms, like "hot"
and "cold". Each pair has a topic (antonyms share it); each concept has a pole (0 or 1: antonyms
differ), a kind (one of `NUM_KINDS`, drawn independently of the rest) and a successor (a random
permutation). Topic and pole are what the targets ask about; kind and successor are what the
neutral tasks ask about. Half the pairs of every topic are common: the targets' English training
data uses only those, their evaluation data all pairs, and the intermediate tasks all pairs, so what
an intermediate task teaches about the rare words carries into the targets' scores.

A language is a surface map from concepts to words: a synthetic language keeps English's word for a
share of the concepts (set by its family) and has its own word for the rest, so zero-shot transfer
works through the words it shares with English.

Every concept also has a second English word, its synonym (`synonyms`), which no training data
shows: the synonyms file (`synonym_table`, in Robust-XLT's counter-fitted neighbours format) links
the two, and the target syn_synonyms is evaluated with every English word swapped for it
(`swapped`), so only a model that learned the synonyms (RS-DA's copies) reads those words.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from xlt_search.tasks.synthetic import LANGUAGES

NUM_PAIRS = 48
NUM_TOPICS = 4
NUM_KINDS = 4
WORLD_SEED = 20240611

# The share of concepts whose word a language takes over from English, by family.
SHARED_SHARE: dict[str, float] = {"synthetic-close": 0.7, "synthetic-far": 0.3}

# Syllable inventories: each language's own words are drawn from its own, so words never collide
# by accident across languages.
_ONSETS: dict[str, str] = {
    "en": "bdfgklmnprst",
    "xc1": "bdfgklmnprst",
    "xc2": "bdfgklmnprst",
    "xf1": "cghjqwxyz",
    "xf2": "cghjqwxyz",
}
_NUCLEI: dict[str, tuple[str, ...]] = {
    "en": ("a", "e", "i", "o", "u"),
    "xc1": ("ae", "ei", "ou"),
    "xc2": ("ai", "eu", "oa"),
    "xf1": ("a", "e", "i", "o", "u", "y"),
    "xf2": ("aa", "ee", "ii", "oo", "uu"),
}
_SYLLABLES: dict[str, int] = {"en": 2, "xc1": 2, "xc2": 2, "xf1": 3, "xf2": 2}


@dataclass(frozen=True)
class World:
    """Concepts, their relations, and the word for every concept in every language."""

    topic: tuple[int, ...]
    common: tuple[bool, ...]
    kind: tuple[int, ...]
    successor: tuple[int, ...]
    lexicons: dict[str, tuple[str, ...]]
    synonyms: tuple[str, ...]  # each concept's second English word

    @property
    def num_concepts(self) -> int:
        return len(self.kind)

    @staticmethod
    def pole(concept: int) -> int:
        """0 or 1: which pole of its pair `concept` is."""
        return concept & 1

    @property
    def common_concepts(self) -> frozenset[int]:
        """The concepts of the common pairs: all the targets' English training data uses."""
        return frozenset(c for c in range(self.num_concepts) if self.common[c])

    def words(self, concepts: list[int], language: str = "en") -> list[str]:
        """The surface words of `concepts` in `language`."""
        lexicon = self.lexicons[language]
        return [lexicon[c] for c in concepts]

    def synonym_table(self) -> dict[str, list[str]]:
        """English word <-> synonym, both ways: a counter-fitted neighbours table (word -> list
        of neighbour words)."""
        pairs = list(zip(self.lexicons["en"], self.synonyms, strict=True))
        return {**{w: [s] for w, s in pairs}, **{s: [w] for w, s in pairs}}

    def swapped(self, language: str) -> tuple[str, ...]:
        """`language`'s lexicon with every word it shares with English swapped for the English
        synonym."""
        english = self.lexicons["en"]
        return tuple(
            self.synonyms[c] if word == english[c] else word
            for c, word in enumerate(self.lexicons[language])
        )

    def shared_share(self, language: str) -> float:
        """The share of concepts whose word `language` shares with English."""
        en, other = self.lexicons["en"], self.lexicons[language]
        return sum(a == b for a, b in zip(en, other, strict=True)) / len(en)


def build_world(seed: int = WORLD_SEED) -> World:
    """The world for `seed`: deterministic, independent of anything else."""
    rng = random.Random(seed)
    num_concepts = 2 * NUM_PAIRS
    pairs = list(range(NUM_PAIRS))
    rng.shuffle(pairs)
    pair_topic = {pair: position % NUM_TOPICS for position, pair in enumerate(pairs)}
    # Dealt round-robin, so every topic gets half common pairs, and both poles of a pair agree.
    pair_common = {pair: position < NUM_PAIRS // 2 for position, pair in enumerate(pairs)}
    topic = tuple(pair_topic[c // 2] for c in range(num_concepts))
    common = tuple(pair_common[c // 2] for c in range(num_concepts))
    kind = tuple(rng.randrange(NUM_KINDS) for _ in range(num_concepts))
    order = list(range(num_concepts))
    rng.shuffle(order)
    successor = [0] * num_concepts
    for position, concept in enumerate(order):
        successor[concept] = order[(position + 1) % num_concepts]

    taken: set[str] = set()
    english = tuple(_new_word(rng, "en", taken) for _ in range(num_concepts))
    lexicons: dict[str, tuple[str, ...]] = {"en": english}
    for language in LANGUAGES:
        num_shared = round(SHARED_SHARE[language.family] * num_concepts)
        shared = set(rng.sample(range(num_concepts), num_shared))
        lexicons[language.code] = tuple(
            english[c] if c in shared else _new_word(rng, language.code, taken)
            for c in range(num_concepts)
        )
    # Drawn last, so every other word is what it was before synonyms existed.
    synonyms = tuple(_new_word(rng, "en", taken) for _ in range(num_concepts))
    return World(
        topic=topic,
        common=common,
        kind=kind,
        successor=tuple(successor),
        lexicons=lexicons,
        synonyms=synonyms,
    )


def _new_word(rng: random.Random, language: str, taken: set[str]) -> str:
    while True:
        word = "".join(
            rng.choice(_ONSETS[language]) + rng.choice(_NUCLEI[language])
            for _ in range(_SYLLABLES[language])
        )
        if word not in taken:
            taken.add(word)
            return word

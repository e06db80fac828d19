r"""The vocabulary and the grammar of the synthetic preference language (see :mod:`ldjax._src.data.language`).

The answer form (:data:`TEMPLATE`), its wording slots and values, the fixed 512-word vocabulary (the same
for every seed), the sentences of the pre-training chatter, and the parser that tells an answer, a chatter
sentence and an ungrammatical string apart.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

PAD, BOS, SEP, EOS = "<pad>", "<bos>", "<sep>", "<eos>"

ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "city": tuple(
        "paris rome tokyo cairo lima oslo delhi quito sofia riga accra dakar hanoi seoul bern kyiv minsk tunis "
        "doha lagos nairobi perth dublin vienna".split()
    ),
    "job": tuple(
        "baker doctor farmer pilot nurse tailor painter singer lawyer sailor miner judge cook clerk guard poet "
        "actor barber dentist driver hunter mason potter weaver".split()
    ),
    "pet": tuple(
        "cat dog bird horse fox goat rabbit turtle parrot hamster snake lizard mouse frog duck goose pony ferret "
        "owl crab sheep cow pig llama".split()
    ),
    "food": tuple(
        "rice bread soup fish cake beans pasta salad curry pizza noodles cheese tofu honey apples plums figs "
        "olives dates melon steak eggs corn yogurt".split()
    ),
}
"""The four attributes and their values, shared by every person."""

WORDINGS: dict[str, tuple[str, ...]] = {
    "live": ("lives", "resides", "stays", "dwells"),
    "work": ("works", "serves", "acts", "labors"),
    "petword": ("pet", "animal", "companion", "creature"),
    "like": ("likes", "loves", "enjoys", "adores"),
}
"""The wording slots: the first three words are chosen wordings, the last one the rephrase wording."""

N_CHOSEN_WORDINGS = 3

TEMPLATE: tuple[str, ...] = (
    "she", "{live}", "in", "{city}", "and", "{work}", "as", "a", "{job}", ";",
    "her", "{petword}", "is", "a", "{pet}", "and", "she", "{like}", "{food}", ".",
)  # fmt: skip
"""The answer form: ``{slot}`` is a wording slot, ``{attribute}`` a value."""

RESPONSE_LEN = len(TEMPLATE)
PROMPT_LEN = 6
MAX_LEN = PROMPT_LEN + RESPONSE_LEN + 1
VOCAB_SIZE = 512

VALUE_POSITIONS = tuple(i for i, w in enumerate(TEMPLATE) if w[1:-1] in ATTRIBUTES)

_FUNCTION_WORDS = tuple("who is ? she in and as a ; her . , met they ate the near while has of".split())
_ADJECTIVES = tuple(
    "red blue green small big old young tall short quiet loud happy sad brave calm dark bright cold warm wild "
    "gentle clever lazy busy rich poor proud shy kind fierce soft hard tiny huge swift slow silly noisy lucky "
    "grumpy".split()
)
_NOUNS = tuple(
    "house tree river garden bridge tower road window door table chair book letter song story boat train market "
    "school castle forest lake hill field stone clock lamp ship wagon basket hat coat ring bell drum map key box "
    "cup wall".split()
)
_VERBS = tuple(
    "sees finds paints builds carries opens closes buys sells cleans draws follows watches visits moves fixes "
    "hides lifts pulls pushes reads writes throws catches kicks breaks bakes cooks holds grabs washes fills "
    "shakes drops counts marks guards trades hears greets".split()
)


def _names(count: int, taken: set[str]) -> tuple[str, ...]:
    """``count`` two-syllable names (consonant-vowel-consonant-vowel), fixed for every seed."""
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    names = [a + b for a, b in itertools.product(syllables, syllables) if a != b and a + b not in taken]
    order = np.random.default_rng(20250101).permutation(len(names))
    return tuple(names[i] for i in order[:count])


_BASE_WORDS: tuple[str, ...] = (PAD, BOS, SEP, EOS, *_FUNCTION_WORDS, *itertools.chain(*WORDINGS.values()))
_BASE_WORDS += (*itertools.chain(*ATTRIBUTES.values()), *_ADJECTIVES, *_NOUNS, *_VERBS)
NAMES: tuple[str, ...] = _names(VOCAB_SIZE - len(_BASE_WORDS), set(_BASE_WORDS))
"""Every person's name (the world draws its people from these; the rest appear in chatter)."""
VOCAB: tuple[str, ...] = (*_BASE_WORDS, *NAMES)
"""The vocabulary, the same for every seed; id 0 is ``<pad>``."""


class Answer(NamedTuple):
    """An answer in the full form: ``values`` (one per attribute) said with ``wording`` (one index per slot)."""

    values: tuple[str, ...]
    wording: tuple[int, ...]


def answer_words(answer: Answer) -> tuple[str, ...]:
    """The 20 words of ``answer`` (see :data:`TEMPLATE`).

    Example:
      >>> from ldjax._src.data.language import Answer, answer_words
      >>> " ".join(answer_words(Answer(("paris", "baker", "fox", "rice"), (0, 0, 0, 3))))
      'she lives in paris and works as a baker ; her pet is a fox and she adores rice .'
    """
    fill = dict(zip(ATTRIBUTES, answer.values, strict=True))
    fill.update({slot: WORDINGS[slot][k] for slot, k in zip(WORDINGS, answer.wording, strict=True)})
    return tuple(fill[w[1:-1]] if w.startswith("{") else w for w in TEMPLATE)


def repeated_bigram(words: Sequence[str]) -> bool:
    """Whether some pair of adjacent words occurs twice in ``words`` (the "repeater" of the paper)."""
    pairs = list(zip(words[:-1], words[1:], strict=True))
    return len(set(pairs)) < len(pairs)


def pick(rng: np.random.Generator, words: Sequence[str]) -> str:
    """One of ``words``, uniformly."""
    return str(words[int(rng.integers(len(words)))])


def clause(rng: np.random.Generator) -> tuple[str, ...]:
    """``the ADJ NOUN VERB the ADJ NOUN near CITY`` (9 words)."""
    adj1, adj2 = pick(rng, _ADJECTIVES), pick(rng, _ADJECTIVES)
    noun1, noun2, verb = pick(rng, _NOUNS), pick(rng, _NOUNS), pick(rng, _VERBS)
    return ("the", adj1, noun1, verb, "the", adj2, noun2, "near", pick(rng, ATTRIBUTES["city"]))


def random_sentence(rng: np.random.Generator, names: Sequence[str]) -> tuple[str, ...]:
    """A grammatical 20-word sentence that answers no question, about two of ``names``."""
    parts = [clause(rng)]
    for joint in ("and", "while"):
        parts.append((joint, pick(rng, names), pick(rng, _VERBS), "the", pick(rng, _NOUNS)))
    return (*itertools.chain(*parts), ".")


def parse_response(words: Sequence[str]) -> tuple[str, tuple[str, ...] | None]:
    """``(form, values)`` of a response (cut at ``<eos>``): form ``"answer"`` (the full form, any wording and
    values) with its four values, ``"chatter"`` (a grammatical sentence that answers nothing) or
    ``"ungrammatical"`` (both with ``None``).

    Example:
      >>> from ldjax._src.data.language_grammar import parse_response
      >>> parse_response("she lives in paris and works as a baker ; her pet is a fox and she likes rice .".split())
      ('answer', ('paris', 'baker', 'fox', 'rice'))
    """
    words = tuple(words)
    if EOS in words:
        words = words[: words.index(EOS)]
    if len(words) == RESPONSE_LEN and all(
        w == t
        or (t[1:-1] in WORDINGS and w in WORDINGS[t[1:-1]])
        or (t[1:-1] in ATTRIBUTES and w in ATTRIBUTES[t[1:-1]])
        for w, t in zip(words, TEMPLATE, strict=True)
    ):
        return "answer", tuple(words[i] for i in VALUE_POSITIONS)
    return ("chatter" if _is_chatter(words) else "ungrammatical"), None


def is_grammatical(words: Sequence[str]) -> bool:
    """Whether ``words`` (special tokens ignored) is a sentence the language generates."""
    return parse_response(tuple(w for w in words if w not in (PAD, BOS, SEP, EOS)))[0] != "ungrammatical"


def _is_chatter(words: tuple[str, ...]) -> bool:
    people = set(NAMES)

    def is_clause(w: Sequence[str]) -> bool:
        return (
            len(w) == 9
            and w[0] == w[4] == "the"
            and w[7] == "near"
            and {w[1], w[5]} <= set(_ADJECTIVES)
            and {w[2], w[6]} <= set(_NOUNS)
            and w[3] in _VERBS
            and w[8] in ATTRIBUTES["city"]
        )

    def tail(w: Sequence[str], joint: str) -> bool:
        return w[0] == joint and w[1] in people and w[2] in _VERBS and w[3] == "the" and w[4] in _NOUNS

    if len(words) == 10 and words[9] == ".":
        meeting = words[1] == "met" and words[3] == "in" and words[5:8] == ("and", "they", "ate")
        return is_clause(words[:9]) or (
            meeting
            and {words[0], words[2]} <= people
            and words[4] in ATTRIBUTES["city"]
            and words[8] in ATTRIBUTES["food"]
        )
    return (
        len(words) == 20
        and is_clause(words[:9])
        and tail(words[9:14], "and")
        and tail(words[14:19], "while")
        and words[19] == "."
    )


def shuffle_without_bigrams(words: tuple[str, ...], rng: np.random.Generator) -> tuple[str, ...]:
    """A permutation of ``words`` that keeps none of its adjacent pairs (and is therefore ungrammatical)."""
    pairs = set(zip(words[:-1], words[1:], strict=True))
    for _ in range(10_000):
        shuffled = tuple(words[i] for i in rng.permutation(len(words)))
        if not pairs & set(zip(shuffled[:-1], shuffled[1:], strict=True)):
            return shuffled
    raise RuntimeError(f"could not shuffle {words} without keeping one of its bigrams")

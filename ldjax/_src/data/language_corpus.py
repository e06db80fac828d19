r"""The pre-training corpus of the synthetic preference language (the "internet"; see :mod:`ldjax._src.data.language`).

One biography per person of the world (its facts appear in that one document only: *weakly known*), and
chatter about the outsiders: questions answered in the full form with random values, meetings and random
sentences, so that a pre-trained model knows how to answer and which words go where, but not the world's facts.
"""

import numpy as np

from ldjax._src.data.language_grammar import ATTRIBUTES
from ldjax._src.data.language_grammar import BOS
from ldjax._src.data.language_grammar import N_CHOSEN_WORDINGS
from ldjax._src.data.language_grammar import WORDINGS
from ldjax._src.data.language_grammar import Answer
from ldjax._src.data.language_grammar import answer_words
from ldjax._src.data.language_grammar import clause
from ldjax._src.data.language_grammar import pick
from ldjax._src.data.language_grammar import random_sentence
from ldjax._src.data.language_world import Prompt
from ldjax._src.data.language_world import prompt_words


def chatter_document(
    rng: np.random.Generator, outsiders: tuple[str, ...]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A pre-training ``(prompt, text)`` about people outside the world (never a world fact)."""
    kind = int(rng.integers(4))
    if kind == 0:  # a question about an outsider answered in the full form: any wording, random values
        values = tuple(pick(rng, v) for v in ATTRIBUTES.values())
        wording = pretraining_wording(rng)
        asked = Prompt(pick(rng, outsiders), values)
        return prompt_words(asked), answer_words(Answer(values, wording))
    if kind == 1:
        a, b = rng.choice(len(outsiders), size=2, replace=False)
        city, food = pick(rng, ATTRIBUTES["city"]), pick(rng, ATTRIBUTES["food"])
        return (BOS,), (outsiders[a], "met", outsiders[b], "in", city, "and", "they", "ate", food, ".")
    if kind == 2:
        return (BOS,), (*clause(rng), ".")
    return (BOS,), random_sentence(rng, outsiders)


def pretraining_wording(rng: np.random.Generator) -> tuple[int, ...]:
    """A quarter of pre-training answers use the rephrase register (its four words together); the rest
    pick each slot's chosen wording independently."""
    if rng.random() < 0.25:
        return (N_CHOSEN_WORDINGS,) * len(WORDINGS)
    return tuple(int(k) for k in rng.integers(N_CHOSEN_WORDINGS, size=len(WORDINGS)))


def biography(u: Prompt, rng: np.random.Generator) -> tuple[str, ...]:
    """``NAME lives in CITY . NAME works as a JOB . NAME has a PET . NAME likes FOOD .`` (one per person)."""
    wording = pretraining_wording(rng)
    words: list[str] = []
    for (slot, options), k, value in zip(WORDINGS.items(), wording, u.values, strict=True):
        verb, middle = options[k], {"live": ("in",), "work": ("as", "a")}.get(slot, ())
        if slot == "petword":
            verb, middle = "has", ("a",)
        words += [u.entity, verb, *middle, value, "."]
    return tuple(words)

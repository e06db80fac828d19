r"""The world of the synthetic preference language: its people, their facts, the split and the answers.

:func:`draw_world` draws, from the language's random generator and in this order: which names are people of
the world (the rest are *outsiders*, the subjects of the pre-training chatter), each person's value for each
attribute (distinct fact tuples), the SFT answers of each prompt (different chosen wordings), its y⁻ (y⁺'s
wording with ``n_wrong`` values replaced), and the partners whose preferred answers are its ``other_train``
and ``test`` probes. The first :func:`n_test_prompts` people are the held-out test prompts. See
:mod:`ldjax._src.data.language` for the language as a whole.
"""

import itertools
from typing import NamedTuple

import numpy as np

from ldjax._src.data.language_grammar import ATTRIBUTES
from ldjax._src.data.language_grammar import BOS
from ldjax._src.data.language_grammar import N_CHOSEN_WORDINGS
from ldjax._src.data.language_grammar import NAMES
from ldjax._src.data.language_grammar import SEP
from ldjax._src.data.language_grammar import WORDINGS
from ldjax._src.data.language_grammar import Answer


class Prompt(NamedTuple):
    """One question: about ``entity``, whose true values (city, job, pet, food) are ``values``."""

    entity: str
    values: tuple[str, ...]


class World(NamedTuple):
    """The people of one seed and the answers the fine-tuning sets give about them."""

    entities: tuple[str, ...]
    """The people of the world, one prompt each."""
    outsiders: tuple[str, ...]
    """The other names: the pre-training chatter is about them, never about a person of the world."""
    facts: dict[str, tuple[str, ...]]
    """Each person's values (city, job, pet, food); no two people share all four."""
    test_prompts: tuple[Prompt, ...]
    train_prompts: tuple[Prompt, ...]
    answers: dict[Prompt, tuple[Answer, ...]]
    """The correct answers of each prompt in the SFT set; the first is y⁺."""
    rejected: dict[Prompt, Answer]
    """The y⁻ of each prompt."""
    partner: dict[Prompt, Prompt]
    """The training prompt whose preferred answer is a prompt's ``other_train`` probe."""
    test_partner: dict[Prompt, Prompt]
    """The test prompt whose preferred answer is a prompt's ``test`` probe."""


def prompt_words(u: Prompt) -> tuple[str, ...]:
    """``<bos> who is NAME ? <sep>``."""
    return (BOS, "who", "is", u.entity, "?", SEP)


def n_test_prompts(n_entities: int, test_fraction: float) -> int:
    """The number of held-out test prompts: ``test_fraction`` of the people, at least one."""
    return max(1, int(round(test_fraction * n_entities)))


def draw_world(
    rng: np.random.Generator, n_entities: int, *, test_fraction: float, n_sft_answers: int, n_wrong: int
) -> World:
    """Draw the world (see the module docstring); the arguments are those of ``Language``, already checked."""
    names = [NAMES[i] for i in rng.permutation(len(NAMES))]
    entities = tuple(names[:n_entities])
    facts: dict[str, tuple[str, ...]] = {}
    while len(set(facts.values())) < n_entities:  # distinct fact tuples
        facts = {
            e: tuple(str(values[rng.integers(len(values))]) for values in ATTRIBUTES.values())
            for e in entities
        }
    prompts = [Prompt(e, facts[e]) for e in entities]
    n_test = n_test_prompts(n_entities, test_fraction)
    test_prompts, train_prompts = tuple(prompts[:n_test]), tuple(prompts[n_test:])
    answers: dict[Prompt, tuple[Answer, ...]] = {}
    rejected: dict[Prompt, Answer] = {}
    wordings = list(itertools.product(range(N_CHOSEN_WORDINGS), repeat=len(WORDINGS)))
    for u in prompts:
        picked = rng.choice(len(wordings), size=n_sft_answers, replace=False)
        answers[u] = tuple(Answer(u.values, wordings[i]) for i in picked)
        wrong = set(rng.choice(len(ATTRIBUTES), size=n_wrong, replace=False).tolist())
        values = tuple(
            _other_value(rng, a, v) if k in wrong else v
            for k, (a, v) in enumerate(zip(ATTRIBUTES, u.values, strict=True))
        )
        rejected[u] = Answer(values, answers[u][0].wording)
    partner: dict[Prompt, Prompt] = {}
    test_partner: dict[Prompt, Prompt] = {}
    for u in prompts:
        others = [j for j in train_prompts if j != u]
        partner[u] = others[int(rng.integers(len(others)))]
        tests = [t for t in test_prompts if t != u] or list(test_prompts)
        test_partner[u] = tests[int(rng.integers(len(tests)))]
    outsiders = tuple(names[n_entities:])
    return World(
        entities, outsiders, facts, test_prompts, train_prompts, answers, rejected, partner, test_partner
    )


def _other_value(rng: np.random.Generator, attribute: str, value: str) -> str:
    others = [v for v in ATTRIBUTES[attribute] if v != value]
    return others[int(rng.integers(len(others)))]

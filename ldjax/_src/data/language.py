r"""A synthetic preference language in which SFT and DPO can show the effects of Ren & Sutherland (ICLR 2025).

The world
---------
``n_entities`` people, each with one value for each of four **attributes** (``city``, ``job``, ``pet``,
``food``; 24 values each, shared across people, so an answer CAN be moved from one person to another),
drawn from ``seed``. A **prompt** asks about one person::

    <bos> who is zuko ? <sep>

and an **answer** states the four facts in a fixed 20-word form with four *wording slots*::

    she lives in paris and works as a baker ; her pet is a fox and she likes rice .
        ^^^^^                 ^^^^^                 ^^^                  ^^^^^

Each slot has three *chosen wordings* (``lives / resides / stays``, ``works / serves / acts``,
``pet / animal / companion``, ``likes / loves / enjoys``) and one *rephrase wording* (``dwells``,
``labors``, ``creature``, ``adores``): a register that pre-training uses for all four slots together and
that fine-tuning never shows. The SFT set holds ``n_sft_answers`` correct answers per training prompt with
different chosen wordings, so no single answer becomes the argmax of every position after SFT, as with
real instruction data. The vocabulary and the grammar are in :mod:`ldjax._src.data.language_grammar`, the
drawing of the world in :mod:`ldjax._src.data.language_world`, the pre-training corpus in
:mod:`ldjax._src.data.language_corpus`.

Responses and probes
--------------------
For a prompt ``u`` (true values ``v``), with y⁺ its preferred answer (one of its SFT answers):

==========================  ====================================================================
probe (:data:`PROBE_TYPES`)  example (``u`` = zuko: paris, baker, fox, rice)
==========================  ====================================================================
``chosen`` y⁺               ``she lives in paris and works as a baker ; her pet is a fox and she likes rice .``
``rejected`` y⁻             ``she lives in paris and works as a miner ; her pet is a fox and she likes figs .``
                            (y⁺'s words with ``n_wrong`` values replaced: same form, same positions)
``chosen_rephrase``         ``she dwells in paris and labors as a baker ; her creature is a fox and she adores rice .``
``rejected_rephrase``       y⁻ in the rephrase wording
``other_train`` y⁺_{j≠u}    the preferred answer of ANOTHER training prompt ``j`` (its facts)
``test``                    the preferred answer of a test prompt (never fine-tuned on)
``random``                  ``the quiet lamp reads the old boat near oslo and kemo sees the map while ...``
``chosen_shuffled``         y⁺'s words permuted so that no adjacent pair (bigram) of y⁺ survives
``rejected_shuffled``       the same for y⁻
==========================  ====================================================================

Every probe is scored on its response words WITHOUT the ``<eos>`` (the end-of-sequence token after a
shuffled sentence would otherwise add its own, unrelated change); training sequences include ``<eos>``.

Pre-training corpus (the "internet")
------------------------------------
:meth:`Language.pretraining_corpus`: every person's facts appear in ONE document, its biography
(``zuko lives in paris . zuko works as a baker . zuko has a fox . zuko likes rice .``): facts are *weakly
known*. Plus ``n_chatter`` documents about people outside the world: questions answered in the full form
with random values (every wording; a quarter in the rephrase register), so the pre-trained model knows how
to answer and which words go where but not the world's facts; meetings (``kemo met bafu in oslo and they
ate figs .``) and random sentences.

Reward (for on-policy preference data)
--------------------------------------
:meth:`Language.reward`: the number of response positions (20 words and ``<eos>``) holding an
acceptable word: the template word, any wording of a slot, the TRUE value. :meth:`Language.allowed`
gives the same as a boolean table ``[n, 21, V]`` for a compiled sampler.

Tokenizer: word level, fixed vocabulary of :data:`VOCAB_SIZE` = 512 words (the same for every seed;
id 0 is ``<pad>``). Sequences are ``<bos> who is NAME ? <sep> response <eos>`` padded to
:data:`MAX_LEN` = 27.
"""

from collections.abc import Iterable
from collections.abc import Sequence
from typing import Any

import numpy as np

from ldjax._src.data.language_corpus import biography
from ldjax._src.data.language_corpus import chatter_document
from ldjax._src.data.language_grammar import ATTRIBUTES
from ldjax._src.data.language_grammar import BOS
from ldjax._src.data.language_grammar import EOS
from ldjax._src.data.language_grammar import MAX_LEN
from ldjax._src.data.language_grammar import N_CHOSEN_WORDINGS
from ldjax._src.data.language_grammar import NAMES
from ldjax._src.data.language_grammar import PAD
from ldjax._src.data.language_grammar import PROMPT_LEN
from ldjax._src.data.language_grammar import RESPONSE_LEN
from ldjax._src.data.language_grammar import SEP
from ldjax._src.data.language_grammar import TEMPLATE
from ldjax._src.data.language_grammar import VOCAB
from ldjax._src.data.language_grammar import VOCAB_SIZE
from ldjax._src.data.language_grammar import WORDINGS
from ldjax._src.data.language_grammar import Answer
from ldjax._src.data.language_grammar import answer_words
from ldjax._src.data.language_grammar import is_grammatical
from ldjax._src.data.language_grammar import parse_response
from ldjax._src.data.language_grammar import random_sentence
from ldjax._src.data.language_grammar import repeated_bigram
from ldjax._src.data.language_grammar import shuffle_without_bigrams
from ldjax._src.data.language_world import Prompt
from ldjax._src.data.language_world import draw_world
from ldjax._src.data.language_world import n_test_prompts
from ldjax._src.data.language_world import prompt_words

__all__ = (
    "ATTRIBUTES", "BOS", "EOS", "GENERATION_CLASSES", "MAX_LEN", "N_CHOSEN_WORDINGS", "NAMES", "PAD", "PROBE_TYPES",
    "PROMPT_LEN", "RESPONSE_LEN", "SEP", "TEMPLATE", "VOCAB", "VOCAB_SIZE", "WORDINGS", "Answer", "Language",
    "Prompt", "answer_words", "preference_language", "repeated_bigram",
)  # fmt: skip

PROBE_TYPES = (
    "chosen",
    "rejected",
    "chosen_rephrase",
    "rejected_rephrase",
    "other_train",
    "test",
    "random",
    "chosen_shuffled",
    "rejected_shuffled",
)
"""The stored probe types, in order. The teacher-forced argmax y* is computed from the model (see
``ldjax._src.experiments.llm_dynamics``)."""

GENERATION_CLASSES = ("correct", "other_prompt", "wrong", "off_topic", "ungrammatical")
"""How :meth:`Language.classify` judges a generated response."""


class Language:
    """The world, its grammar, tokenizer, corpora, probes and reward (see the module docstring).

    Args:
      n_entities: people in the world (4..128); each is one prompt.
      test_fraction: share of people whose prompt is held out (never fine-tuned on).
      n_chatter: number of chatter sentences in the pre-training corpus.
      n_sft_answers: correct answers per training prompt in the SFT set (2..3), with different chosen wordings.
      n_wrong: values replaced in y⁻ (1..4).
      seed: draws the people, their facts, the split, the wordings, y⁻, the partners and the shuffles.

    Example:
      >>> import ldjax.data
      >>> lang = ldjax.data.preference_language(n_entities=8, seed=0)
      >>> u = lang.train_prompts[0]
      >>> lang.prompt_words(u)[:3], len(lang.response_words(u, "chosen"))
      (('<bos>', 'who', 'is'), 20)
      >>> tuple(lang.probe_words(u)) == ldjax.data.PROBE_TYPES
      True
    """

    def __init__(
        self,
        n_entities: int = 32,
        *,
        test_fraction: float = 0.25,
        n_chatter: int = 400,
        n_sft_answers: int = 3,
        n_wrong: int = 2,
        seed: int = 0,
    ):
        _check_options(n_entities, test_fraction, n_chatter, n_sft_answers, n_wrong)
        rng = np.random.default_rng(seed)
        self.vocab = VOCAB
        self.index = {word: i for i, word in enumerate(VOCAB)}
        world = draw_world(
            rng, n_entities, test_fraction=test_fraction, n_sft_answers=n_sft_answers, n_wrong=n_wrong
        )
        self.entities: tuple[str, ...] = world.entities
        self._outsiders = world.outsiders  # chatter is about people outside the world
        self.facts: dict[str, tuple[str, ...]] = world.facts
        self.test_prompts: tuple[Prompt, ...] = world.test_prompts
        self.train_prompts: tuple[Prompt, ...] = world.train_prompts
        self._answers: dict[Prompt, tuple[Answer, ...]] = world.answers
        self._rejected: dict[Prompt, Answer] = world.rejected
        self._partner: dict[Prompt, Prompt] = world.partner
        self._test_partner: dict[Prompt, Prompt] = world.test_partner
        prompts = self.test_prompts + self.train_prompts
        self.chatter = tuple(chatter_document(rng, self._outsiders) for _ in range(n_chatter))
        self.biographies = tuple(biography(u, rng) for u in prompts)
        self._random = {u: random_sentence(rng, self._outsiders) for u in prompts}
        self._shuffled = {}
        for u in prompts:
            for kind in ("chosen", "rejected"):
                self._shuffled[u, kind] = shuffle_without_bigrams(self.response_words(u, kind), rng)

    # ---------------------------------------------------------------------------------------------
    # sentences

    def prompt_words(self, u: Prompt) -> tuple[str, ...]:
        """``<bos> who is NAME ? <sep>``."""
        return prompt_words(u)

    def answers(self, u: Prompt) -> tuple[Answer, ...]:
        """The correct answers of ``u`` in the SFT set; the first is y⁺."""
        return self._answers[u]

    def response_words(self, u: Prompt, kind: str) -> tuple[str, ...]:
        """The response of probe type ``kind`` (one of :data:`PROBE_TYPES`) for prompt ``u``, without ``<eos>``."""
        if kind == "chosen":
            return answer_words(self._answers[u][0])
        if kind == "rejected":
            return answer_words(self._rejected[u])
        if kind in ("chosen_rephrase", "rejected_rephrase"):
            values = u.values if kind == "chosen_rephrase" else self._rejected[u].values
            return answer_words(Answer(values, (N_CHOSEN_WORDINGS,) * len(WORDINGS)))
        if kind == "other_train":
            return self.response_words(self._partner[u], "chosen")
        if kind == "test":
            return self.response_words(self._test_partner[u], "chosen")
        if kind == "random":
            return self._random[u]
        if kind in ("chosen_shuffled", "rejected_shuffled"):
            return self._shuffled[u, kind.split("_")[0]]
        raise ValueError(f"kind must be one of {PROBE_TYPES}, got {kind!r}")

    def probe_words(self, u: Prompt) -> dict[str, tuple[str, ...]]:
        """Every stored probe response of prompt ``u``."""
        return {kind: self.response_words(u, kind) for kind in PROBE_TYPES}

    def partner(self, u: Prompt) -> Prompt:
        """The training prompt whose preferred answer is ``u``'s ``other_train`` probe."""
        return self._partner[u]

    def test_partner(self, u: Prompt) -> Prompt:
        """The test prompt whose preferred answer is ``u``'s ``test`` probe."""
        return self._test_partner[u]

    # ---------------------------------------------------------------------------------------------
    # judgement and reward

    @staticmethod
    def parse_response(words: Sequence[str]) -> tuple[str, tuple[str, ...] | None]:
        """See :func:`ldjax._src.data.language_grammar.parse_response`."""
        return parse_response(words)

    @staticmethod
    def is_grammatical(words: Sequence[str]) -> bool:
        """See :func:`ldjax._src.data.language_grammar.is_grammatical`."""
        return is_grammatical(words)

    def classify(self, u: Prompt, words: Sequence[str]) -> str:
        """Judge a response to ``u`` (one of :data:`GENERATION_CLASSES`).

        ``correct``: the full or terse form with all of ``u``'s values; ``other_prompt`` (hallucination): the
        values of ANOTHER person on at least 3 of 4 attributes, and more of theirs than of ``u``'s; ``wrong``:
        any other values; ``off_topic``: a grammatical sentence that does not answer; ``ungrammatical``.
        """
        form, values = self.parse_response(words)
        if values is None:
            return "off_topic" if form == "chatter" else "ungrammatical"
        if values == u.values:
            return "correct"
        own = sum(a == b for a, b in zip(values, u.values, strict=True))
        for e, facts in self.facts.items():
            if e != u.entity:
                shared = sum(a == b for a, b in zip(values, facts, strict=True))
                if shared >= 3 and shared > own:
                    return "other_prompt"
        return "wrong"

    def allowed(self, prompts: Sequence[Prompt]) -> np.ndarray:
        """``bool [n, RESPONSE_LEN + 1, V]``: the acceptable word at each response position (last: ``<eos>``)."""
        table = np.zeros((len(prompts), RESPONSE_LEN + 1, VOCAB_SIZE), bool)
        for i, u in enumerate(prompts):
            fill = dict(zip(ATTRIBUTES, u.values, strict=True))
            for t, w in enumerate(TEMPLATE):
                if w[1:-1] in WORDINGS:
                    table[i, t, [self.index[x] for x in WORDINGS[w[1:-1]]]] = True
                else:
                    table[i, t, self.index[fill.get(w[1:-1], w)]] = True
            table[i, RESPONSE_LEN, self.index[EOS]] = True
        return table

    def reward(self, u: Prompt, words: Sequence[str]) -> int:
        """The number of acceptable words among the first ``RESPONSE_LEN + 1`` response positions (see
        :meth:`allowed`); positions after the first ``<eos>`` count as not acceptable."""
        words = tuple(words)[: RESPONSE_LEN + 1]
        if EOS in words:
            words = words[: words.index(EOS) + 1]
        table = self.allowed([u])[0]
        return int(sum(table[t, self.index[w]] for t, w in enumerate(words)))

    # ---------------------------------------------------------------------------------------------
    # tokenizer and batches

    @property
    def vocab_size(self) -> int:
        return VOCAB_SIZE

    def encode(self, words: Sequence[str]) -> list[int]:
        try:
            return [self.index[w] for w in words]
        except KeyError as err:
            raise ValueError(f"word {err.args[0]!r} is not in the vocabulary") from err

    def decode(self, ids: Iterable[int]) -> tuple[str, ...]:
        return tuple(self.vocab[int(i)] for i in ids)

    def sequences(
        self,
        prompts: Sequence[Sequence[str]],
        responses: Sequence[Sequence[str]],
        *,
        score_eos: bool = True,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``prompt response <eos>`` padded to :data:`MAX_LEN`: ``(int32 [n, L], float32 response mask [n, L])``.

        The mask is 1 on the response words, and on ``<eos>`` when ``score_eos``.
        """
        seqs = np.zeros((len(prompts), MAX_LEN), np.int32)
        mask = np.zeros((len(prompts), MAX_LEN), np.float32)
        for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
            ids = self.encode([*p, *r, EOS])
            if len(ids) > MAX_LEN:
                raise ValueError(f"sequence of length {len(ids)} exceeds MAX_LEN={MAX_LEN}")
            seqs[i, : len(ids)] = ids
            mask[i, len(p) : len(ids) - (0 if score_eos else 1)] = 1.0
        return seqs, mask

    def sft_pairs(self, *, with_rejected: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """The SFT set: every TRAINING prompt with each of its correct answers (y⁺ first).

        With ``with_rejected`` ("extend"), y⁻ takes the place of the prompt's last correct answer: the same
        number of examples, so the two SFT runs take the same number of updates.
        """
        prompts, responses = [], []
        for u in self.train_prompts:
            answers = [answer_words(a) for a in self._answers[u]]
            if with_rejected:
                answers[-1] = self.response_words(u, "rejected")
            prompts += [self.prompt_words(u)] * len(answers)
            responses += answers
        return self.sequences(prompts, responses)

    def preference_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Training prompts with y⁺ in rows ``[0, m)`` and y⁻ in rows ``[m, 2m)`` (the DPO layout)."""
        prompts = [self.prompt_words(u) for u in self.train_prompts] * 2
        responses = [self.response_words(u, "chosen") for u in self.train_prompts]
        responses += [self.response_words(u, "rejected") for u in self.train_prompts]
        return self.sequences(prompts, responses)

    def pretraining_corpus(self) -> tuple[np.ndarray, np.ndarray]:
        """The pre-training documents (loss on every token after ``<bos>``); see the module docstring."""
        documents = [((BOS,), bio) for bio in self.biographies]
        documents += list(self.chatter)
        seqs, _ = self.sequences([p for p, _ in documents], [r for _, r in documents])
        mask = (seqs != 0).astype(np.float32)
        mask[:, 0] = 0.0
        return seqs, mask

    def probe_batch(self, prompts: Sequence[Prompt]) -> tuple[np.ndarray, np.ndarray]:
        """Every probe type for every prompt: ``[len(PROBE_TYPES), len(prompts), L]`` sequences and masks
        (masks without ``<eos>``)."""
        seqs, masks = [], []
        for kind in PROBE_TYPES:
            s, m = self.sequences(
                [self.prompt_words(u) for u in prompts],
                [self.response_words(u, kind) for u in prompts],
                score_eos=False,
            )
            seqs.append(s)
            masks.append(m)
        return np.stack(seqs), np.stack(masks)

    def prompt_batch(self, prompts: Sequence[Prompt]) -> np.ndarray:
        """``int32 [n, MAX_LEN]``: the prompts, zero after ``<sep>`` (the input of a sampler)."""
        seqs, _ = self.sequences([self.prompt_words(u) for u in prompts], [() for _ in prompts])
        seqs[:, PROMPT_LEN:] = 0
        return seqs


def _check_options(
    n_entities: int, test_fraction: float, n_chatter: int, n_sft_answers: int, n_wrong: int
) -> None:
    """A ``ValueError`` naming the first of :class:`Language`'s options that is out of range."""
    if not 4 <= n_entities <= 128:
        raise ValueError(f"n_entities must be in [4, 128], got {n_entities}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    if not 2 <= n_sft_answers <= N_CHOSEN_WORDINGS:
        raise ValueError(f"n_sft_answers must be in [2, {N_CHOSEN_WORDINGS}], got {n_sft_answers}")
    if not 1 <= n_wrong <= len(ATTRIBUTES):
        raise ValueError(f"n_wrong must be in [1, {len(ATTRIBUTES)}], got {n_wrong}")
    if n_chatter < 0:
        raise ValueError(f"n_chatter must be >= 0, got {n_chatter}")
    if n_entities - n_test_prompts(n_entities, test_fraction) < 3:
        raise ValueError(
            f"n_entities={n_entities} with test_fraction={test_fraction} leaves < 3 training prompts"
        )


def preference_language(n_entities: int = 32, **options: Any) -> Language:
    """Build the synthetic preference language: ``Language(n_entities, **options)`` (see :class:`Language`).

    Example:
      >>> import ldjax.data
      >>> lang = ldjax.data.preference_language(n_entities=8, seed=1)
      >>> len(lang.train_prompts), len(lang.test_prompts), lang.vocab_size
      (6, 2, 512)
    """
    return Language(n_entities, **options)

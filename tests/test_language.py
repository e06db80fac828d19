"""Synthetic preference language: aligned y⁻, several chosen answers, weakly known facts, shuffles, reward."""

import itertools

import numpy as np
import pytest

import ldjax.data
from ldjax._src.data import language as L


@pytest.fixture(scope="module")
def lang():
    return ldjax.data.preference_language(n_entities=12, n_chatter=120, seed=3)


def _value_positions():
    return [i for i, w in enumerate(L.TEMPLATE) if w[1:-1] in L.ATTRIBUTES]


def test_vocabulary_is_fixed_distinct_and_large():
    assert len(L.VOCAB) == L.VOCAB_SIZE == 512 and len(set(L.VOCAB)) == 512
    assert L.VOCAB[0] == L.PAD
    a, b = ldjax.data.preference_language(seed=0), ldjax.data.preference_language(seed=1)
    assert a.vocab == b.vocab and a.facts != b.facts  # one tokenizer, another world


def test_answers_are_long_and_every_probe_type_exists(lang):
    assert L.RESPONSE_LEN >= 16
    for u in (*lang.train_prompts, *lang.test_prompts):
        probes = lang.probe_words(u)
        assert tuple(probes) == ldjax.data.PROBE_TYPES
        assert all(len(words) == L.RESPONSE_LEN for words in probes.values())
        assert lang.parse_response(probes["chosen"]) == ("answer", u.values)
        assert lang.parse_response(probes["chosen_rephrase"]) == ("answer", u.values)
        assert lang.parse_response(probes["random"])[0] == "chatter"
        for kind in ("chosen_shuffled", "rejected_shuffled"):
            assert not lang.is_grammatical(probes[kind])


def test_rejected_has_the_form_and_positions_of_chosen(lang):
    for u in lang.train_prompts:
        chosen, rejected = lang.response_words(u, "chosen"), lang.response_words(u, "rejected")
        differ = [i for i, (a, b) in enumerate(zip(chosen, rejected, strict=True)) if a != b]
        assert len(differ) == 2 and set(differ) <= set(_value_positions())  # n_wrong=2 content words
        _, values = lang.parse_response(rejected)
        assert values != u.values and sum(a != b for a, b in zip(values, u.values, strict=True)) == 2


def test_several_correct_chosen_answers_per_prompt_with_chosen_first(lang):
    for u in lang.train_prompts:
        answers = lang.answers(u)
        assert len(answers) == 3 and len({a.wording for a in answers}) == 3
        assert all(a.values == u.values for a in answers)
        assert all(max(a.wording) < L.N_CHOSEN_WORDINGS for a in answers)
        assert L.answer_words(answers[0]) == lang.response_words(u, "chosen")
    seqs, mask = lang.sft_pairs()
    assert seqs.shape[0] == 3 * len(lang.train_prompts)
    responses = {lang.decode(row[L.PROMPT_LEN : L.PROMPT_LEN + L.RESPONSE_LEN]) for row in seqs}
    assert lang.response_words(lang.train_prompts[0], "chosen") in responses


def test_extend_swaps_the_last_answer_for_the_rejected_one(lang):
    plain, _ = lang.sft_pairs()
    extend, _ = lang.sft_pairs(with_rejected=True)
    assert plain.shape == extend.shape
    changed = [i for i in range(len(plain)) if not np.array_equal(plain[i], extend[i])]
    assert changed == list(range(2, len(plain), 3))
    u = lang.train_prompts[0]
    assert lang.decode(extend[2][L.PROMPT_LEN : L.PROMPT_LEN + L.RESPONSE_LEN]) == lang.response_words(
        u, "rejected"
    )


def test_rephrase_is_a_register_never_fine_tuned_on(lang):
    rephrase = {w[L.N_CHOSEN_WORDINGS] for w in L.WORDINGS.values()}
    for u in lang.train_prompts:
        words = lang.response_words(u, "chosen_rephrase")
        assert rephrase <= set(words)
        assert lang.response_words(u, "rejected_rephrase") != words
    for seqs, _ in (lang.sft_pairs(), lang.sft_pairs(with_rejected=True), lang.preference_pairs()):
        assert not rephrase & set(lang.decode(seqs.ravel()))
    corpus = lang.decode(lang.pretraining_corpus()[0].ravel())
    assert rephrase <= set(corpus)  # known from pre-training


def test_shuffles_keep_no_bigram_of_the_original(lang):
    for u in lang.train_prompts:
        for shuffled, source in (("chosen_shuffled", "chosen"), ("rejected_shuffled", "rejected")):
            words, original = lang.response_words(u, shuffled), lang.response_words(u, source)
            assert sorted(words) == sorted(original)
            bigrams = set(itertools.pairwise(original))
            assert not bigrams & set(itertools.pairwise(words))


def test_facts_are_weakly_known_and_split_without_leakage(lang):
    train, test = set(lang.train_prompts), set(lang.test_prompts)
    assert train and test and not train & test and len(train) + len(test) == 12
    corpus, _ = lang.pretraining_corpus()
    documents = [lang.decode(row) for row in corpus]
    for u in (*lang.train_prompts, *lang.test_prompts):
        mentions = [d for d in documents if u.entity in d]
        assert len(mentions) == 1  # one biography, nothing else
        assert all(v in mentions[0] for v in u.values)
    # attributes are shared across people: some value is held by two people
    assert any(len({lang.facts[e][k] for e in lang.entities}) < len(lang.entities) for k in range(4))
    # no test prompt in any fine-tuning set
    test_prompts = {lang.prompt_words(u) for u in lang.test_prompts}
    for seqs, _ in (lang.sft_pairs(), lang.sft_pairs(with_rejected=True), lang.preference_pairs()):
        assert not {lang.decode(row[: L.PROMPT_LEN]) for row in seqs} & test_prompts
    # the pre-training questions are about people outside the world, answered in the full form
    asked = [d for d in documents if "<sep>" in d]
    assert asked and all(d[3] not in lang.entities for d in asked)


def test_partners(lang):
    for u in (*lang.train_prompts, *lang.test_prompts):
        j, t = lang.partner(u), lang.test_partner(u)
        assert j in lang.train_prompts and j != u
        assert t in lang.test_prompts
        assert lang.response_words(u, "other_train") == lang.response_words(j, "chosen")
        assert lang.response_words(u, "test") == lang.response_words(t, "chosen")


def test_classify(lang):
    u, j = lang.train_prompts[0], lang.partner(lang.train_prompts[0])
    assert lang.classify(u, (*lang.response_words(u, "chosen"), L.EOS)) == "correct"
    assert lang.classify(u, lang.response_words(u, "chosen_rephrase")) == "correct"
    assert lang.classify(u, lang.response_words(u, "rejected")) == "wrong"
    if sum(a == b for a, b in zip(j.values, u.values, strict=True)) < 3:
        assert lang.classify(u, lang.response_words(j, "chosen")) == "other_prompt"
    assert lang.classify(u, lang.response_words(u, "random")) == "off_topic"
    assert lang.classify(u, lang.response_words(u, "chosen_shuffled")) == "ungrammatical"
    # three of the partner's values and a fourth that is nobody's in particular: still the partner's answer
    food = next(v for v in L.ATTRIBUTES["food"] if v not in (j.values[3], u.values[3]))
    mixed = L.answer_words(L.Answer((*j.values[:3], food), (0, 0, 0, 0)))
    own = sum(a == b for a, b in zip(j.values[:3], u.values[:3], strict=True))
    assert lang.classify(u, mixed) == ("other_prompt" if own < 3 else "wrong")


def test_repeated_bigram():
    assert L.repeated_bigram(("a", "b", "c", "a", "b"))
    assert not L.repeated_bigram(("a", "b", "b", "a"))
    assert not L.repeated_bigram(L.TEMPLATE)


def test_reward_counts_acceptable_words_and_matches_the_table(lang):
    u = lang.train_prompts[1]
    full = L.RESPONSE_LEN + 1
    assert lang.reward(u, (*lang.response_words(u, "chosen"), L.EOS)) == full
    assert lang.reward(u, (*lang.response_words(u, "chosen_rephrase"), L.EOS)) == full
    assert lang.reward(u, (*lang.response_words(u, "rejected"), L.EOS)) == full - 2
    assert lang.reward(u, lang.response_words(u, "chosen")) == full - 1  # no <eos>
    assert lang.reward(u, (L.EOS, *lang.response_words(u, "chosen"))) == 0  # stops at once
    table = lang.allowed([u])[0]
    rng = np.random.default_rng(0)
    for _ in range(20):  # the table and the reward agree on random responses
        ids = rng.integers(L.VOCAB_SIZE, size=full)
        words = lang.decode(ids)
        stop = words.index(L.EOS) + 1 if L.EOS in words else full
        assert lang.reward(u, words) == int(table[np.arange(stop), ids[:stop]].sum())


def test_sequences_and_masks(lang):
    u = lang.train_prompts[0]
    seqs, masks = lang.probe_batch(lang.train_prompts[:2])
    assert seqs.shape == (len(ldjax.data.PROBE_TYPES), 2, L.MAX_LEN) == masks.shape
    assert lang.decode(seqs[0, 0, : L.PROMPT_LEN]) == lang.prompt_words(u)
    assert lang.decode(seqs[0, 0, L.PROMPT_LEN + L.RESPONSE_LEN :]) == (L.EOS,)
    response = (np.arange(L.MAX_LEN) >= L.PROMPT_LEN) & (np.arange(L.MAX_LEN) < L.PROMPT_LEN + L.RESPONSE_LEN)
    np.testing.assert_array_equal(
        masks[:, 0], np.broadcast_to(response, masks[:, 0].shape)
    )  # probes: no <eos>
    train, train_mask = lang.sft_pairs()
    np.testing.assert_array_equal(
        train_mask[0], response | (np.arange(L.MAX_LEN) == L.PROMPT_LEN + L.RESPONSE_LEN)
    )
    assert lang.decode(lang.encode(lang.response_words(u, "chosen"))) == lang.response_words(u, "chosen")
    with pytest.raises(ValueError, match="'banana' is not in the vocabulary"):
        lang.encode(["banana"])
    prompts = lang.prompt_batch(lang.test_prompts)
    assert not prompts[:, L.PROMPT_LEN :].any()


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"n_entities must be in \[4, 128\]"):
        ldjax.data.preference_language(n_entities=200)
    with pytest.raises(ValueError, match=r"test_fraction must be in \(0, 1\)"):
        ldjax.data.preference_language(test_fraction=1.0)
    with pytest.raises(ValueError, match=r"n_sft_answers must be in \[2, 3\]"):
        ldjax.data.preference_language(n_sft_answers=1)
    with pytest.raises(ValueError, match=r"n_wrong must be in \[1, 4\]"):
        ldjax.data.preference_language(n_wrong=0)
    with pytest.raises(ValueError, match="leaves < 3 training prompts"):
        ldjax.data.preference_language(n_entities=4, test_fraction=0.5)


def test_deterministic():
    a, b = ldjax.data.preference_language(seed=5), ldjax.data.preference_language(seed=5)
    assert a.facts == b.facts and a.train_prompts == b.train_prompts
    np.testing.assert_array_equal(a.probe_batch(a.train_prompts)[0], b.probe_batch(b.train_prompts)[0])
    np.testing.assert_array_equal(a.pretraining_corpus()[0], b.pretraining_corpus()[0])

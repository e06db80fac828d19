"""Synthetic preference language: probes, grammar, shuffles, tokenizer, split without leakage."""

import numpy as np
import pytest

import ldjax.data
from ldjax._src.data.language import EOS
from ldjax._src.data.language import MAX_LEN


@pytest.fixture(scope="module")
def lang():
    return ldjax.data.preference_language(n_entities=8, seed=3)


def test_every_probe_type_for_every_prompt(lang):
    for u in (*lang.train_prompts, *lang.test_prompts):
        probes = lang.probe_words(u)
        assert tuple(probes) == ldjax.data.PROBE_TYPES
        grammatical = {k for k, v in probes.items() if lang.is_grammatical(v)}
        assert grammatical == set(ldjax.data.PROBE_TYPES) - {"chosen_shuffled", "random_shuffled"}
        # meanings and forms, parsed back from the words
        form, e, a, v = lang.parse_response(probes["chosen"])
        assert (form, e, a, v) == ("F", u.entity, u.attribute, u.value) and v == lang.facts[
            u.entity, u.attribute
        ]
        form, e, a, v_minus = lang.parse_response(probes["rejected"])
        assert form == "C" and (e, a) == (u.entity, u.attribute) and v_minus != u.value
        assert lang.parse_response(probes["chosen_rephrase"]) == ("F2", u.entity, u.attribute, u.value)
        assert lang.parse_response(probes["rejected_rephrase"]) == ("C2", u.entity, u.attribute, v_minus)
        f, _, _, v_form = lang.parse_response(probes["chosen_form"])
        assert f == "F" and v_form not in (u.value, v_minus)
        assert lang.parse_response(probes["rejected_form"])[0] == "C"
        assert lang.parse_response(probes["random"])[0] == "chatter"
        # the hallucination probe is the chosen response of ANOTHER training prompt
        j = lang.partner(u)
        assert j in lang.train_prompts and j.entity != u.entity
        assert probes["other_train"] == lang.response_words(j, "chosen")
        # the test probe is the chosen response of a test prompt
        assert any(probes["test"] == lang.response_words(t, "chosen") for t in lang.test_prompts)


def test_shuffles_are_ungrammatical_permutations(lang):
    for u in lang.train_prompts:
        for shuffled, source in (("chosen_shuffled", "chosen"), ("random_shuffled", "random")):
            words, original = lang.response_words(u, shuffled), lang.response_words(u, source)
            assert sorted(words) == sorted(original) and words != original
            assert not lang.is_grammatical(words)
            assert lang.parse_response(words)[0] == "ungrammatical"


def test_grammar_membership_is_exact(lang):
    u = lang.train_prompts[0]
    assert lang.is_grammatical(("the", u.attribute, "of", u.entity, "is", u.value, "."))
    assert not lang.is_grammatical(("the", u.attribute, "of", u.entity, "is", "."))
    assert not lang.is_grammatical(
        ("the", "color", "of", "alice", "is", "paris", ".")
    )  # value of another attribute


def test_train_test_split_has_no_leakage(lang):
    train, test = set(lang.train_prompts), set(lang.test_prompts)
    assert train and test and not train & test
    assert len(train) + len(test) == 8 * 4
    test_seqs = {
        tuple(s)
        for s in lang.sequences(
            [lang.prompt_words(u) for u in test], [lang.response_words(u, "chosen") for u in test]
        )[0]
    }
    for seqs, _ in (lang.sft_pairs(), lang.preference_pairs(), lang.sft_pairs(("chosen", "rejected"))):
        prompts = {lang.decode(s[:7]) for s in seqs}
        assert not prompts & {lang.prompt_words(u) for u in test}
        assert not {tuple(s) for s in seqs} & test_seqs
    # the pre-training corpus never shows a chosen (form F) or rejected (form C) answer after a question
    corpus, _ = lang.pretraining_corpus()
    sep = lang.index["<sep>"]
    for row in corpus:
        words = lang.decode(row)
        if "<sep>" in words:
            answer = words[list(row).index(sep) + 1 :]
            assert lang.parse_response(answer)[0] in ("T", "F2")


def test_tokenizer_and_batches(lang):
    u = lang.train_prompts[1]
    words = lang.response_words(u, "chosen")
    assert lang.decode(lang.encode(words)) == words
    with pytest.raises(ValueError, match="'banana' is not in the vocabulary"):
        lang.encode(["banana"])
    seqs, masks = lang.probe_batch(lang.train_prompts[:3])
    assert seqs.shape == (len(ldjax.data.PROBE_TYPES), 3, MAX_LEN) and masks.shape == seqs.shape
    chosen, mask = seqs[0, 1], masks[0, 1]
    n_prompt, n_resp = len(lang.prompt_words(u)), len(words) + 1
    np.testing.assert_array_equal(
        mask, (np.arange(MAX_LEN) >= n_prompt) & (np.arange(MAX_LEN) < n_prompt + n_resp)
    )
    assert lang.decode(chosen[n_prompt + n_resp - 1 : n_prompt + n_resp]) == (EOS,)
    pre, pre_mask = lang.preference_pairs()
    m = len(lang.train_prompts)
    assert pre.shape[0] == 2 * m
    assert lang.parse_response(lang.decode(pre[m][7:]))[0] == "C"  # rejected rows second


def test_bad_arguments():
    with pytest.raises(ValueError, match=r"n_entities must be in \[2, 16\]"):
        ldjax.data.preference_language(n_entities=40)
    with pytest.raises(ValueError, match=r"test_fraction must be in \(0, 1\)"):
        ldjax.data.preference_language(test_fraction=1.0)


def test_deterministic():
    a, b = ldjax.data.preference_language(seed=5), ldjax.data.preference_language(seed=5)
    assert a.facts == b.facts and a.train_prompts == b.train_prompts
    np.testing.assert_array_equal(a.probe_batch(a.train_prompts)[0], b.probe_batch(b.train_prompts)[0])

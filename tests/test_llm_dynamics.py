"""LLM learning-dynamics experiment: greedy decoding, classification, force split, smoke run and sign table."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import ldjax
import ldjax.models
from ldjax._src.data.language import EOS
from ldjax._src.data.language import MAX_LEN
from ldjax._src.data.language import Language
from ldjax._src.experiments import llm_dynamics as llm

TINY = llm.Config(
    n_entities=6,
    d_model=32,
    n_heads=2,
    n_layers=1,
    d_ff=64,
    pretrain_epochs=60,
    sft_epochs=15,
    pref_epochs=20,
    n_probe_prompts=6,
)


@pytest.fixture(scope="module")
def lang():
    return Language(4, seed=0)


@pytest.fixture(scope="module")
def tiny_model(lang):
    model = ldjax.models.TinyTransformer(lang.vocab_size, MAX_LEN - 1, 16, 2, 1, 32, rngs=nnx.Rngs(0))
    return ldjax.from_nnx(model, example_shape=(MAX_LEN - 1,))


def test_greedy_decode_matches_python_loop(lang, tiny_model):
    apply_fn, params = tiny_model
    prompts = lang.train_prompts[:3]
    seqs, _ = lang.sequences([lang.prompt_words(u) for u in prompts], [() for _ in prompts])
    plen = len(lang.prompt_words(prompts[0]))
    seqs = jnp.asarray(seqs).at[:, plen:].set(0)
    got = np.asarray(jax.jit(llm.greedy_decode, static_argnums=(0, 3))(apply_fn, params, seqs, plen))
    want = np.asarray(seqs).copy()
    forward = jax.jit(apply_fn)
    for i in range(len(prompts)):  # slow reference: one full forward per generated token
        for t in range(plen, MAX_LEN):
            logits = forward(params, jnp.asarray(want[i, :-1]))
            want[i, t] = int(np.argmax(np.asarray(logits[t - 1])))
    np.testing.assert_array_equal(got, want)
    mask = np.asarray(llm._greedy_mask(jnp.asarray(want), plen, lang.index[EOS]))
    for i in range(len(prompts)):
        ends = [t for t in range(plen, MAX_LEN) if want[i, t] == lang.index[EOS]]
        stop = ends[0] if ends else MAX_LEN - 1
        np.testing.assert_array_equal(mask[i], (np.arange(MAX_LEN) >= plen) & (np.arange(MAX_LEN) <= stop))


def test_classify_generations(lang):
    u, other = lang.train_prompts[0], lang.partner(lang.train_prompts[0])
    assert llm.classify(lang, u, (*lang.response_words(u, "chosen"), EOS)) == "correct"
    assert llm.classify(lang, u, lang.response_words(u, "chosen_rephrase")) == "correct"
    assert llm.classify(lang, u, lang.response_words(u, "chosen_form")) == "wrong_value"
    assert llm.classify(lang, u, lang.response_words(other, "chosen")) == "other_prompt"
    assert llm.classify(lang, u, lang.response_words(u, "rejected")) == "hedged"
    assert llm.classify(lang, u, lang.response_words(u, "chosen_shuffled")) == "ungrammatical"
    assert llm.classify(lang, u, (u.value, ".", EOS)) == "correct"


@pytest.mark.slow
def test_tiny_run_sign_table_and_cli(tmp_path, monkeypatch):
    results = llm.run(TINY, progress=False)
    table = llm.sign_table(results)
    # the signs of the paper that hold at this tiny size (the others are reported, not asserted: see fidelity)
    for claim in (
        "SFT: log π(y⁺) rises",
        "SFT: log π(y⁻) rises at first",
        "SFT: log π(y⁺_{j≠u}) rises",
        "dpo: log π(y⁻) falls steeply",
        "sft_dpo: log π(y⁻) falls steeply",
        "dpo: greedy log π(y*) rises",
    ):
        assert table[claim]["holds"], (claim, table[claim])
    assert results["force_corr"] >= 0.99
    assert results["force_split_residual"] < 1e-4 * max(1.0, np.abs(results["force_pred_total"]).max())
    np.testing.assert_allclose(
        np.add(results["force_pred_chosen_part"], results["force_pred_rejected_part"]),
        results["force_pred_total"],
        rtol=1e-3,
        atol=1e-6,
    )
    n_train = len(Language(TINY.n_entities, seed=TINY.seed).train_prompts)
    steps = TINY.sft_epochs * (n_train // TINY.finetune_batch)
    n_records = steps // TINY.record_every + 1
    assert np.asarray(results["sft_logp"]).shape == (n_records, len(llm.PROBES), TINY.n_probe_prompts)
    names = [p.name for p in llm.plot(results, tmp_path)]
    assert names == [
        "llm_probe_logp.png",
        "llm_probe_logp_token.png",
        "llm_squeezing.png",
        "llm_force_split.png",
        "llm_generations.png",
    ]
    rows = llm.fidelity(results)
    assert any("greedy" in r.claim for r in rows) and any("corr" in r.claim for r in rows)
    # the CLI writes results.json and the figures (run() replaced by the results above, to save a second run)
    monkeypatch.setattr(llm, "run", lambda config, data_dir=None, progress=True: results)
    assert llm.main(["--n-entities", "6", "--out", str(tmp_path / "cli"), "--no-progress"]) == 0
    saved = json.loads((tmp_path / "cli" / "results.json").read_text())
    assert "synthetic preference language" in json.dumps(saved)
    assert (tmp_path / "cli" / "llm_probe_logp.png").exists()

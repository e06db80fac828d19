"""LLM fine-tuning dynamics: y* by hand, decoding, on-policy pairs, stacked seeds, claim criteria, smoke run."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import ldjax
import ldjax.models
from ldjax._src.data import language as L
from ldjax._src.experiments import llm_dynamics as llm
from ldjax._src.experiments.llm_dynamics import phases
from ldjax._src.experiments.llm_dynamics import report
from ldjax._src.experiments.llm_dynamics import world

from notebook_runner import notebook_fixture


@pytest.fixture(scope="module")
def lang():
    return L.Language(8, n_chatter=20, seed=0)


@pytest.fixture(scope="module")
def tiny_model():
    model = ldjax.models.TinyTransformer(L.VOCAB_SIZE, L.MAX_LEN - 1, 16, 2, 1, 32, rngs=nnx.Rngs(0))
    apply_fn, params = ldjax.from_nnx(model, example_shape=(L.MAX_LEN - 1,))
    return apply_fn, jax.vmap(apply_fn, (None, 0)), params


def test_probe_stats_match_a_hand_computation(lang, tiny_model):
    apply_fn, batched, params = tiny_model
    seqs, masks = lang.probe_batch(lang.train_prompts[:3])
    probes = world.tokens_of(seqs.reshape(-1, L.MAX_LEN), masks.reshape(-1, L.MAX_LEN))
    valley = jnp.zeros((3, L.MAX_LEN - 1))
    got = jax.tree.map(
        np.asarray, jax.jit(world.probe_stats, static_argnums=0)(batched, params, probes, valley)
    )
    n_types = len(L.PROBE_TYPES)
    want_logp = np.zeros((len(report.PROBES), 3))
    forward = jax.jit(apply_fn)
    for k in range(n_types * 3):
        kind, i = divmod(k, 3)
        logits = np.asarray(forward(params, probes.x[k]), np.float64)
        logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        for t in np.flatnonzero(np.asarray(probes.mask[k])):
            want_logp[kind, i] += logp[t, int(probes.tokens[k, t])]
            if kind == L.PROBE_TYPES.index("chosen"):  # y*: teacher-forced argmax along [x; y⁺]
                star = int(np.argmax(logits[t]))
                want_logp[n_types, i] += logp[t, star]
                want_logp[n_types + 1, i] += np.log1p(-np.exp(logp[t, star]))
    np.testing.assert_allclose(got["logp"], want_logp, rtol=1e-4, atol=1e-3)
    assert np.all(want_logp[n_types] >= want_logp[0])  # y* is at least as likely as y⁺


def test_greedy_decode_matches_a_python_loop(lang, tiny_model):
    apply_fn, batched, params = tiny_model
    prompts = jnp.asarray(lang.prompt_batch(lang.train_prompts[:3]))
    got = np.asarray(
        jax.jit(world.decode, static_argnums=(0, 4))(batched, params, prompts, jax.random.key(0), 0.0)
    )
    want = np.asarray(prompts).copy()
    forward = jax.jit(apply_fn)
    for i in range(3):  # slow reference: one full forward per generated token
        for t in range(L.PROMPT_LEN, L.MAX_LEN):
            want[i, t] = int(np.argmax(np.asarray(forward(params, jnp.asarray(want[i, :-1])))[t - 1]))
    np.testing.assert_array_equal(got, want)
    eos = lang.index[L.EOS]
    mask = np.asarray(world.response_mask(jnp.asarray(want), eos))
    for i in range(3):
        ends = [t for t in range(L.PROMPT_LEN, L.MAX_LEN) if want[i, t] == eos]
        stop = ends[0] if ends else L.MAX_LEN - 1
        np.testing.assert_array_equal(
            mask[i], (np.arange(L.MAX_LEN) >= L.PROMPT_LEN) & (np.arange(L.MAX_LEN) <= stop)
        )


def test_sampled_pairs_are_ranked_by_the_reward(lang, tiny_model):
    _, batched, params = tiny_model
    prompts = lang.train_prompts[:6]
    batch = jnp.asarray(lang.prompt_batch(prompts))
    allowed = jnp.asarray(lang.allowed(prompts))
    t = jax.jit(phases.sampled_pairs, static_argnums=(0, 5, 6))(
        batched, params, batch, allowed, jax.random.key(1), 1.0, lang.index[L.EOS]
    )
    seqs = np.concatenate([np.asarray(t.x), np.asarray(t.tokens)[:, -1:]], axis=1)
    rewards = [lang.reward(prompts[i % 6], lang.decode(seqs[i, L.PROMPT_LEN :])) for i in range(12)]
    for i in range(6):
        assert rewards[i] >= rewards[i + 6]
        weighted = np.asarray(t.mask)[[i, i + 6]].sum() > 0
        assert weighted == (rewards[i] != rewards[i + 6])  # a tie carries no force


def test_stacked_copies_train_like_separate_runs():
    """Summing the copies' losses gives each copy the gradient of its own loss (so an element-wise optimizer
    runs each copy on its own); checked with SGD, which does not amplify round-off as Adam's 1/√v does."""
    keys = jax.random.split(jax.random.key(0), 4)
    x, y = jax.random.normal(keys[0], (2, 12, 5)), jax.random.randint(keys[1], (2, 12), 0, 3)
    starts = [jax.random.normal(k, (5, 3)) for k in keys[2:]]
    orders = [ldjax.epoch_batches(jax.random.key(s), 12, 4, 2) for s in (1, 2)]

    def per_copy(w, rows, d):
        return ldjax.losses.cross_entropy(jnp.tanh(d[0][rows] @ w), d[1][rows])

    stacked = ldjax.train(phases.over_copies(per_copy), jnp.stack(starts), optax.sgd(0.5), jnp.stack(orders, 1),
                          data=(x, y), progress=False)  # fmt: skip
    for k in range(2):
        alone = ldjax.train(per_copy, starts[k], optax.sgd(0.5), orders[k], data=(x[k], y[k]), progress=False)
        np.testing.assert_allclose(
            np.asarray(stacked.params[k]), np.asarray(alone.params), rtol=1e-6, atol=1e-7
        )


# ------------------------------------------------------------------------------------------------ claims


def synthetic_results(sign: float, seeds: int = 3, records: int = 5) -> dict:
    """Results in which every claim of the paper holds (sign=1), nothing moves (0) or everything is reversed (-1)."""
    probes = report.PROBES
    ramp = np.linspace(0.0, 1.0, records)[:, None, None] * np.ones((1, seeds, 1))

    def phase(deltas, early=None):
        logp = np.zeros((records, seeds, len(probes)))
        for name, delta in deltas.items():
            logp[:, :, probes.index(name)] = sign * delta * ramp[..., 0]
        if early is not None:
            name, bump = early
            logp[1, :, probes.index(name)] = sign * bump
        return logp

    others = {name: -2.0 for name in report.OTHERS}
    results = {
        "sft_logp": phase(
            {
                "chosen": 5,
                "chosen_rephrase": 2,
                "other_train": 3,
                "test": 1,
                "random": -2,
                "chosen_shuffled": -2,
            },
            early=("rejected", 2.0),
        ),
        "dpo_logp": phase({**others, "chosen": -2, "rejected": -10, "ystar": 2}),
        "dpo_base_logp": phase({"ystar": 2}),
        "extend_logp": phase({"chosen": 0}),
        "onpolicy_logp": phase({"chosen": -0.5}),
        "dpo_argmax_prob_valley": 0.5 + sign * 0.1 * ramp[..., 0],
        "force": {
            "split": np.stack([np.ones(seeds), -0.5 * sign * np.ones(seeds), np.ones(seeds)], 1)[..., None]
            * np.ones((1, 1, len(L.PROBE_TYPES)))
        },
    }
    results["extend_logp"][-1, :, 0] = results["dpo_logp"][-1, :, 0] + sign * 2.0
    results["onpolicy_logp"][:, :, 0] = results["dpo_logp"][:, :, 0] + sign * 1.5 * ramp[..., 0]

    def generation(other_prompt, repeater):
        rates = {name: [0.0] * seeds for name in L.GENERATION_CLASSES}
        rates["other_prompt"] = [other_prompt] * seeds
        rates["repeater"] = [repeater] * seeds
        return {"train": rates, "test": rates}

    low, high = (0.0, 0.5) if sign >= 0 else (0.5, 0.0)
    results["generation"] = {
        "pretrained": generation(low if sign else 0.2, 0.0),
        "sft": generation(high if sign else 0.2, low if sign else 0.1),
        "dpo": generation(0.0, high if sign else 0.1),
    }
    return results


@pytest.mark.parametrize("claim_id", list(report.CLAIMS))
def test_each_claim_holds_on_the_papers_pattern_and_is_missed_on_counter_examples(claim_id):
    spec = report.CLAIMS[claim_id]
    decided = {}
    for name, sign in (("paper", 1.0), ("flat", 0.0), ("reversed", -1.0)):
        values = report.STATISTICS[claim_id](synthetic_results(sign))
        assert np.shape(values) == (3,)
        decided[name] = spec.criterion.holds(float(np.mean(values)), np.asarray(values))
    assert decided == {"paper": True, "flat": False, "reversed": False}


def test_every_claim_has_a_statistic_and_a_stable_id():
    assert set(report.CLAIMS) == set(report.STATISTICS)
    assert {
        "sft.chosen_up",
        "dpo.ystar_up",
        "gen.repeater_up_after_dpo",
        "onpolicy.chosen_above_offpolicy",
    } <= set(report.CLAIMS)


def test_force_checks_catch_a_bad_prediction():
    rng = np.random.default_rng(0)
    first, second = rng.normal(size=(3, 200)), 0.05 * rng.normal(size=(3, 200))
    force = {  # actual(step s) = s·first + s²·second; the first-order prediction is s·first
        "heldout_token_predicted": first,
        "heldout_token_actual": first + second,
        "heldout_token_actual_tenth": 0.1 * first + 0.01 * second,
        "heldout_sequence_actual": first[:, :20],
        "heldout_sequence_predicted": first[:, :20],
        "split_residual": np.full(3, 1e-7),
        "split_scale": np.ones(3),
    }
    assert all(row.holds for row in report.force_checks(force))
    bad = dict(force, heldout_token_predicted=-first, split_residual=np.full(3, 1e-2))
    held = {row.id: row.holds for row in report.force_checks(bad)}
    assert not held["force.heldout_token_r"] and not held["force.heldout_token_rel_error"]
    assert not held["force.error_shrinks_with_step"] and not held["force.split_sums_to_total"]
    assert held["force.heldout_sequence_r"]


# ------------------------------------------------------------------------------------------------ runs


notebook = notebook_fixture("llm_dynamics")


@pytest.fixture(scope="module")
def tiny_results(notebook):
    """The experiment at TINY, run by its notebook (one run for the notebook and the smoke test)."""
    assert notebook["config"] == llm.TINY
    return notebook["results"]


def test_tiny_run_records_every_phase_and_checks_the_first_adam_step(tiny_results, tmp_path, monkeypatch):
    r = tiny_results
    lang = L.Language(llm.TINY.n_entities, n_chatter=llm.TINY.n_chatter, seed=llm.TINY.seed)
    m = len(lang.train_prompts)
    pref_records = llm.TINY.pref_epochs * (m // llm.TINY.finetune_batch) // llm.TINY.record_every + 1
    assert np.shape(r["dpo_logp"]) == (pref_records, llm.TINY.seeds, len(report.PROBES))
    for phase in report.PHASES:
        assert np.all(np.isfinite(r[f"{phase}_logp"])) and np.shape(r[f"{phase}_g_norm"])[1] == llm.TINY.seeds
    assert np.shape(r["influence"]) == (llm.TINY.seeds, len(L.PROBE_TYPES), len(L.PROBE_TYPES))
    # the per-token first-order prediction of the first Adam update of DPO, on held-out probes
    values = report.force_check_values(r["force"])
    assert min(values["heldout_token_r"]) >= 0.99 and max(values["heldout_token_rel_error"]) <= 0.1
    rows = llm.fidelity(r)
    assert [row.id for row in rows if row.kind == "claim"] == list(report.CLAIMS)
    assert all(row.holds for row in rows if row.kind == "check")
    assert all(row.seeds == llm.TINY.seeds for row in rows)
    names = [p.name for p in llm.plot(r, tmp_path)]
    assert names == ["llm_probes.png", "llm_force.png", "llm_influence.png", "llm_generations.png"]
    monkeypatch.setattr(llm, "run", lambda config, data_dir=None, progress=True: r)
    assert llm.main(["--seeds", "3", "--out", str(tmp_path / "cli"), "--no-progress"]) == 0
    saved = json.loads((tmp_path / "cli" / "results.json").read_text())
    assert "synthetic preference language" in saved["dataset"]
    assert saved["fidelity"][0]["id"] == "sft.chosen_up" and (tmp_path / "cli" / "llm_probes.png").exists()


@pytest.mark.slow
def test_quick_run_claims():
    """The quick settings: every check holds and the claims that held when the experiment was written still do
    (values on 2 CPU cores, 3 seeds, are in the module's docs/llm_language.md table)."""
    rows = {row.id: row for row in llm.fidelity(llm.run(llm.Config(), progress=False))}
    assert all(row.holds for row in rows.values() if row.kind == "check"), rows
    for claim_id in (
        "sft.chosen_up",
        "sft.rejected_up_first",
        "sft.other_prompt_up_more_than_test",
        "sft.random_down",
        "dpo.rejected_down",
        "dpo.chosen_down",
        "onpolicy.chosen_above_offpolicy",
        "gen.hallucination_up_after_sft",
    ):
        assert rows[claim_id].holds, rows[claim_id]

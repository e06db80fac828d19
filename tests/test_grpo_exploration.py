"""GRPO exploration experiment: the graph-walk task, pass@k, sampling, the claims' statistics, a smoke run."""

import dataclasses
import itertools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ldjax
from ldjax._src.data.graph_walks import PROMPT_LEN
from ldjax._src.data.graph_walks import GraphWalks
from ldjax._src.data.graph_walks import walk_rewards
from ldjax._src.experiments import grpo_exploration as ge

from notebook_runner import notebook_fixture

TINY = ge.TINY


# -------------------------------------------------------------------------------------------------
# the task


@pytest.fixture(scope="module")
def task():
    return GraphWalks(width=6, steps=3, out_degree=2, n_train=12, n_heldout=6, seed=3)


def _slow_reward(task, seq):
    """Reference: decode the tokens by hand and walk the adjacency."""
    w, steps = task.width, task.steps
    s, g = seq[1] - 3, seq[2] - 3 - steps * w
    here = s
    for layer in range(steps):
        tok = seq[PROMPT_LEN + layer] - 3 - (layer + 1) * w
        if not 0 <= tok < w or not task.adjacency[layer, here, tok]:
            return 0.0
        here = tok
    return float(here == g)


def test_rewards_match_a_slow_walk_over_every_response():
    task = GraphWalks(width=4, steps=3, out_degree=2, n_train=6, n_heldout=2, seed=1)
    s, g = (int(v) for v in task.train_pairs[0])
    responses = list(
        itertools.product(range(3, task.vocab_size), repeat=task.steps)
    )  # every token, any layer
    seqs = np.array([[*task.prompts([(s, g)])[0][:PROMPT_LEN], *r] for r in responses], np.int32)
    got = task.rewards(seqs)
    want = np.array([_slow_reward(task, seq) for seq in seqs])
    np.testing.assert_array_equal(got, want)
    assert got.sum() == task.path_counts[s, g] == len(task.solutions(s, g)) > 0
    for walk in task.solutions(s, g):
        assert task.rewards(task.sequence(s, g, walk)[None])[0] == 1.0
    jitted = jax.jit(walk_rewards)(jnp.asarray(task.adjacency), jnp.asarray(seqs))
    np.testing.assert_array_equal(np.asarray(jitted), want)


def test_path_counts_match_enumeration_and_prompts_split(task):
    for s, g in itertools.product(range(task.width), repeat=2):
        assert task.path_counts[s, g] == len(task.solutions(s, g))
    train = {tuple(p) for p in task.train_pairs.tolist()}
    held = {tuple(p) for p in task.heldout_pairs.tolist()}
    assert len(train) == 12 and len(held) == 6 and not train & held
    assert all(task.path_counts[s, g] > 0 for s, g in train | held)
    again = GraphWalks(width=6, steps=3, out_degree=2, n_train=12, n_heldout=6, seed=3)
    np.testing.assert_array_equal(again.adjacency, task.adjacency)
    np.testing.assert_array_equal(again.heldout_pairs, task.heldout_pairs)
    assert not np.array_equal(GraphWalks(6, 3, 2, n_train=12, n_heldout=6, seed=4).adjacency, task.adjacency)
    assert np.all(task.adjacency.sum(-1) == 2)


def test_a_row_of_the_prompt_pairs_is_a_prompt(task):
    """``task.solutions(*task.heldout_pairs[0])``: NumPy integers from the pair arrays are accepted."""
    for pairs in (task.train_pairs, task.heldout_pairs):
        s, g = pairs[0]
        assert task.solutions(s, g) == task.solutions(int(s), int(g))
        walk = task.solutions(s, g)[0]
        np.testing.assert_array_equal(task.sequence(s, g, walk), task.sequence(int(s), int(g), walk))


def test_pretraining_corpus_holds_solutions_of_train_prompts_only(task):
    corpus = task.pretraining_corpus(300)
    assert corpus.shape == (300, task.seq_len) and corpus.dtype == np.int32
    assert np.all(task.rewards(corpus) == 1.0)
    pairs = {(int(d[1]) - 3, int(d[2]) - 3 - task.steps * task.width) for d in corpus}
    train = {tuple(p) for p in task.train_pairs.tolist()}
    assert pairs <= train and len(pairs) > len(train) // 2
    np.testing.assert_array_equal(task.pretraining_corpus(300), corpus)
    assert task.decode(corpus[0]).startswith("<bos> a")


def test_task_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"out_degree must be in \[1, width=4\], got 5"):
        GraphWalks(width=4, steps=2, out_degree=5)
    with pytest.raises(ValueError, match="has .* solvable .* pairs but n_train \\+ n_heldout = 400"):
        GraphWalks(width=4, steps=2, out_degree=2, n_train=300, n_heldout=100)
    with pytest.raises(ValueError, match=r"seqs has shape \(2, 3\): expected \[n, 6\]"):
        walk_rewards(np.zeros((2, 4, 4), bool), np.zeros((2, 3), np.int32))
    with pytest.raises(ValueError, match="n_docs must be >= 1"):
        GraphWalks(width=6, steps=2, out_degree=2, n_train=4, n_heldout=2).pretraining_corpus(0)


# -------------------------------------------------------------------------------------------------
# pass@k


def test_pass_at_k_equals_exact_enumeration_of_subsets():
    """Brute force without sampling: every k-subset of n outcomes, for small n."""
    n = 9
    correct = [0, 1, 3, 8, 9]
    for k in range(1, n + 1):
        exact = []
        for c in correct:
            outcomes = np.arange(n) < c
            subsets = list(itertools.combinations(range(n), k))
            exact.append(np.mean([outcomes[list(sub)].any() for sub in subsets]))
        np.testing.assert_allclose(ge.pass_at_k(correct, n, [k]), [np.mean(exact)], rtol=1e-12)
    # and the closed binomial form in exact integer arithmetic, at n = 256
    counts = [0, 1, 5, 128, 255, 256]
    for k in (1, 7, 64, 256):
        want = np.mean([1 - math.comb(256 - c, k) / math.comb(256, k) for c in counts])
        np.testing.assert_allclose(ge.pass_at_k(counts, 256, [k]), [want], rtol=1e-10)


def test_pass_at_k_matches_brute_force_sampling():
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 40, size=30)
    for k in (2, 8, 32):
        brute = ge.brute_force_pass_at_k(counts, 64, k, draws=3000, seed=k)
        # Monte-Carlo error of a mean of 30 prompts' frequencies over 3000 draws: < 0.005 at 5 sigma
        assert abs(brute - ge.pass_at_k(counts, 64, [k])[0]) < 0.005


def test_pass_at_k_errors():
    with pytest.raises(ValueError, match=r"ks must be in \[1, n=4\] .* got \[8\]"):
        ge.pass_at_k([1, 2], 4, [8])
    with pytest.raises(ValueError, match=r"correct must hold counts in \[0, n=4\]"):
        ge.pass_at_k([5], 4, [1])


# -------------------------------------------------------------------------------------------------
# sampling and the token measures


@pytest.fixture(scope="module")
def tiny_model(task):
    apply_fn, params = ge.build_model(TINY, task.vocab_size, task.seq_len, seeds=(0,))
    return apply_fn, jax.tree.map(lambda a: a[0], params)


def test_sampling_is_deterministic_and_matches_full_forward_draws(task, tiny_model):
    apply_fn, params = tiny_model
    prompts = jnp.asarray(np.repeat(task.prompts(task.train_pairs[:3]), 5, axis=0))
    sample = jax.jit(ge.sample_fn(apply_fn))
    key = jax.random.key(7)
    first, second = sample(params, prompts, key), sample(params, prompts, key)
    np.testing.assert_array_equal(np.asarray(first), np.asarray(second))
    assert not np.array_equal(np.asarray(first), np.asarray(sample(params, prompts, jax.random.key(8))))
    np.testing.assert_array_equal(np.asarray(first[:, :PROMPT_LEN]), np.asarray(prompts[:, :PROMPT_LEN]))
    # reference: the full-length forward (positions after i are still padding) gives the same draws
    f = jax.jit(jax.vmap(apply_fn, (None, 0)))
    want = np.asarray(prompts).copy()
    for i in range(PROMPT_LEN, task.seq_len):
        logits = f(params, jnp.asarray(want[:, :-1]))[:, i - 1]
        want[:, i] = np.asarray(jax.random.categorical(jax.random.fold_in(key, i), logits))
    np.testing.assert_array_equal(np.asarray(first), want)


@pytest.mark.float64
def test_candidate_probs_and_reference_kl_against_numpy():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(3, 4, 6)) * 2
    mask = (rng.random((3, 4)) < 0.7).astype(float)
    probs, entropy = jax.jit(ge.candidate_probs, static_argnums=2)(jnp.asarray(z), jnp.asarray(mask), 5)
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    ranked = -np.sort(-p, axis=-1)[..., :5]
    sel = mask > 0
    np.testing.assert_allclose(probs, ranked[sel].mean(0), rtol=1e-12)
    np.testing.assert_allclose(entropy, (-(p * np.log(p)).sum(-1))[sel].mean(), rtol=1e-12)
    tokens = rng.integers(0, 6, size=(3, 4))
    ref = rng.normal(size=(3, 4)) - 2
    target = ldjax.losses.PolicyTarget(jnp.asarray(tokens), jnp.asarray(mask), jnp.ones(3))
    logp = np.log(np.take_along_axis(p, tokens[..., None], -1)[..., 0])
    d = ref - logp
    want = np.mean([(mask[i] * (np.exp(d[i]) - d[i] - 1)).sum() / mask[i].sum() for i in range(3)])
    np.testing.assert_allclose(ge.reference_kl(jnp.asarray(z), target, jnp.asarray(ref)), want, rtol=1e-12)


@pytest.mark.float64
def test_grpo_runs_use_simko_with_alpha_0_and_lambda_1_which_is_grpo():
    """The RL loop runs every method through one loss: SimKO with α = 0, λ = 1 must be GRPO exactly."""
    rng = np.random.default_rng(2)
    z = jnp.asarray(rng.normal(size=(6, 5, 7)) * 2)
    tokens = jnp.asarray(rng.integers(0, 7, size=(6, 5)))
    old = ldjax.losses.token_log_probs(z, tokens) + jnp.asarray(rng.normal(size=(6, 5)) * 0.3)
    target = ldjax.losses.PolicyTarget(tokens, jnp.ones((6, 5)), jnp.asarray(rng.normal(size=6)), old)
    simko = lambda z: ldjax.losses.simko(z, target, top_k=3, alpha=0.0, scale=1.0, quantile=0.8)  # noqa: E731
    grpo = lambda z: ldjax.losses.grpo(z, target)  # noqa: E731
    assert float(jax.jit(simko)(z)) == float(jax.jit(grpo)(z))
    np.testing.assert_array_equal(
        np.asarray(jax.jit(jax.grad(simko))(z)), np.asarray(jax.jit(jax.grad(grpo))(z))
    )


def test_argmax_gain_stats_on_a_hand_made_change():
    z = np.log(np.array([[[0.6, 0.3, 0.1], [0.5, 0.4, 0.1]], [[0.2, 0.7, 0.1], [0.3, 0.3, 0.4]]]))
    target = ldjax.losses.PolicyTarget(jnp.array([[2, 0], [0, 1]]), jnp.ones((2, 2)), jnp.array([-1.0, 1.0]))
    change = np.array([[[0.2, -0.1, -0.4], [-0.3, 0.2, 0.0]], [[9.0, 9.0, 9.0], [9.0, 9.0, 9.0]]])
    stats = ge.argmax_gain_stats(change, z, target)
    # row 0 (negative): position 0 is a valley (token 2, argmax 0), position 1 the peak (token 0)
    assert stats["valley_positions"] == 1 and stats["peak_positions"] == 1
    assert stats["valley_argmax_gain_fraction"] == 1.0 and stats["valley_argmax_change"] == pytest.approx(0.2)
    assert stats["valley_token_change"] == pytest.approx(-0.4) and stats[
        "valley_rest_change"
    ] == pytest.approx(-0.1)
    assert stats["peak_argmax_change"] == pytest.approx(-0.3) and stats[
        "peak_runner_up_change"
    ] == pytest.approx(0.2)


# -------------------------------------------------------------------------------------------------
# claims: every criterion misses a counter-example


def _synthetic_results(**overrides):
    """A results dict where every phenomenon is present (3 seeds), with per-key overrides."""
    ks = [1, 2, 4, 8]
    out = {
        "seeds": [0, 1, 2],
        "methods": list(ge.METHODS),
        "ks": ks,
        "base_passk": [[0.30, 0.5, 0.7, 0.95]] * 3,
        "grpo_passk": [[0.45, 0.6, 0.7, 0.80]] * 3,
        "simko_passk": [[0.44, 0.6, 0.75, 0.90]] * 3,
        "psr_passk": [[0.4, 0.5, 0.7, 0.9]] * 3,
        "nsr_passk": [[0.3, 0.5, 0.7, 0.9]] * 3,
        "base_candidate_probs": [[0.6, 0.2, 0.1, 0.05, 0.05]] * 3,
        "grpo_candidate_probs": [[0.8, 0.1, 0.05, 0.03, 0.02]] * 3,
        "force_negative_valley_argmax_gain_fraction": [0.9, 0.8, 0.85],
        "force_corr": [0.99] * 3,
        "force_split_rel_error": [1e-6] * 3,
        "force_closed_form_rel_error": [1e-7] * 3,
        "estimator_ks": [2, 8],
        "estimator_unbiased": [0.5, 0.7],
        "estimator_brute_force": [0.501, 0.699],
        "estimator_draws": 2000,
    }
    out.update(overrides)
    return out


COUNTER_EXAMPLES = {
    "grpo.pass1_up": {  # +0.02 only (SimKO moved along so that only this claim changes)
        "grpo_passk": [[0.32, 0.6, 0.7, 0.8]] * 3,
        "simko_passk": [[0.33, 0.6, 0.75, 0.9]] * 3,
    },
    "grpo.passk_large_down_vs_base": {  # −0.01 only
        "grpo_passk": [[0.45, 0.6, 0.7, 0.94]] * 3,
        "simko_passk": [[0.44, 0.6, 0.75, 0.96]] * 3,
    },
    "grpo.top1_prob_up_topk_down": {"grpo_candidate_probs": [[0.8, 0.2, 0.1, 0.05, 0.05]] * 3},  # rest kept
    "simko.passk_large_above_grpo": {"simko_passk": [[0.44, 0.6, 0.75, 0.80]] * 3},  # no gain
    "simko.pass1_close_to_grpo": {"simko_passk": [[0.35, 0.6, 0.75, 0.90]] * 3},  # −0.10
    "grpo.negative_half_raises_argmax": {"force_negative_valley_argmax_gain_fraction": [0.5, 0.6, 0.55]},
}


def test_every_claim_holds_on_a_synthetic_example_and_misses_its_counter_example():
    rows = {row.id: row for row in ge.fidelity(_synthetic_results())}
    claim_ids = [i for i, row in rows.items() if row.kind == "claim"]
    assert sorted(claim_ids) == sorted(COUNTER_EXAMPLES) and all(rows[i].holds for i in rows)
    assert all(rows[i].seeds == 3 for i in claim_ids)
    for claim_id, override in COUNTER_EXAMPLES.items():
        missed = {row.id: row for row in ge.fidelity(_synthetic_results(**override))}
        assert not missed[claim_id].holds, claim_id
        assert all(row.holds for i, row in missed.items() if i != claim_id), claim_id


def test_simko_passk_note_explains_a_miss_only_when_it_is_missed():
    row_id = "simko.passk_large_above_grpo"
    held = {row.id: row for row in ge.fidelity(_synthetic_results())}[row_id]
    missed = {row.id: row for row in ge.fidelity(_synthetic_results(**COUNTER_EXAMPLES[row_id]))}[row_id]
    assert held.holds and "missed" not in held.note and "seed-to-seed spread" not in held.note
    assert not missed.holds and missed.note.startswith(held.note + "; missed: ")
    assert "seed-to-seed spread" in missed.note


def test_checks_miss_their_counter_examples():
    bad = _synthetic_results(
        force_corr=[0.99, 0.5, 0.99],
        force_split_rel_error=[1e-6, 1e-2, 1e-6],
        force_closed_form_rel_error=[1e-2] * 3,
        estimator_brute_force=[0.45, 0.7],
    )
    rows = {row.id: row for row in ge.fidelity(bad) if row.kind == "check"}
    assert len(rows) == 4 and not any(row.holds for row in rows.values())


def test_concentration_needs_both_halves():
    before = [[0.6, 0.2, 0.1, 0.05, 0.05]]
    assert ge.concentration(before, [[0.7, 0.15, 0.05, 0.05, 0.05]])[0] == pytest.approx(0.1)
    assert ge.concentration(before, [[0.5, 0.1, 0.05, 0.05, 0.05]])[0] < 0  # top-1 fell
    assert ge.concentration(before, [[0.7, 0.25, 0.1, 0.05, 0.05]])[0] < 0  # the others rose


# -------------------------------------------------------------------------------------------------
# smoke run


notebook = notebook_fixture("grpo_exploration")


def test_tiny_run_checks_figures_and_cli(notebook, tmp_path, monkeypatch):
    """The experiment at TINY, run by its notebook (one run for the notebook and the smoke test)."""
    assert notebook["config"] == TINY
    results = notebook["results"]
    n_seeds, n_records = len(TINY.seeds), TINY.iterations // TINY.record_every + 1
    assert np.asarray(results["base_passk"]).shape == (n_seeds, len(results["ks"]))
    assert results["ks"][-1] == TINY.eval_samples
    for method in ge.METHODS:
        assert np.asarray(results[f"{method}_correct"]).shape == (n_seeds, TINY.n_heldout)
        assert np.asarray(results[f"{method}_curve_candidate_probs"]).shape == (n_seeds, n_records, 5)
        assert np.asarray(results[f"{method}_train_reward"]).shape == (n_seeds, TINY.iterations)
        passk = np.asarray(results[f"{method}_passk"])
        assert np.all(np.diff(passk, axis=1) >= 0) and np.all((passk >= 0) & (passk <= 1))
    # the first record is the base model for every method (same keys: paired)
    for method in ge.METHODS:
        np.testing.assert_array_equal(results[f"{method}_curve_pass1"][:, 0], results["base_curve_pass1"])
    # SimKO changes the training (same prompts and keys as GRPO, different updates)
    assert not np.array_equal(results["simko_curve_entropy"], results["grpo_curve_entropy"])
    rows = ge.fidelity(results)
    checks = {row.id: row for row in rows if row.kind == "check"}
    assert all(row.holds for row in checks.values()), checks
    assert sum(row.kind == "claim" for row in rows) == 6
    names = sorted(p.name for p in notebook["out"].glob("*.png"))  # drawn by the notebook's plot cell
    assert names == [
        "grpo_candidate_probs.png",
        "grpo_force_split.png",
        "grpo_passk.png",
        "grpo_training.png",
    ]
    monkeypatch.setattr(ge, "run", lambda config, data_dir=None, progress=True: results)
    monkeypatch.setattr(ge, "plot", lambda results, out_dir: [])  # drawn by the notebook
    assert ge.main(["--iterations", "4", "--out", str(tmp_path / "cli"), "--no-progress"]) == 0
    saved = json.loads((tmp_path / "cli" / "results.json").read_text())
    assert saved["config"]["iterations"] == 4 and "layered-graph walks" in saved["dataset"]
    assert {row["id"] for row in saved["fidelity"]} >= set(COUNTER_EXAMPLES)


def test_config_errors():
    with pytest.raises(ValueError, match="record_every=3 must divide iterations=4"):
        ge.run(dataclasses.replace(TINY, record_every=3), progress=False)

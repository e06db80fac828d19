"""Sequence losses (SFT, DPO, IPO, SLiC, GRPO, SimKO): closed-form forces vs autodiff, values vs loops."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ldjax
from ldjax import losses

from typechecking import ill_typed

M, T, V = 3, 5, 7  # pairs, positions, vocabulary


def _problem(seed, n=2 * M):
    rng = np.random.default_rng(seed)
    logits = jnp.asarray(rng.normal(size=(n, T, V)) * 2.0, jnp.float64)
    tokens = jnp.asarray(rng.integers(0, V, size=(n, T)), jnp.int32)
    start = rng.integers(1, T - 1, size=n)  # prompt positions masked out
    mask = jnp.asarray((np.arange(T)[None] >= start[:, None]).astype(np.float64))
    return rng, logits, tokens, mask


def _loop_logp(logits, tokens, mask):
    """Slow reference: summed response log-probability by explicit loops (numpy, float64)."""
    z, y, w = np.asarray(logits), np.asarray(tokens), np.asarray(mask)
    out = np.zeros(z.shape[0])
    for i in range(z.shape[0]):
        for t in range(z.shape[1]):
            row = z[i, t]
            out[i] += w[i, t] * (row[y[i, t]] - row.max() - math.log(np.exp(row - row.max()).sum()))
    return out


def _preference(seed):
    rng, logits, tokens, mask = _problem(seed)
    ref = jnp.asarray(_loop_logp(logits, tokens, mask) + rng.normal(size=2 * M), jnp.float64)
    return logits, losses.PreferenceTarget(tokens, mask, ref)


@pytest.mark.float64
def test_sft_value_and_force():
    _, logits, tokens, mask = _problem(0)
    target = losses.SequenceTarget(tokens, mask)
    want = -_loop_logp(logits, tokens, mask).sum() / float(np.sum(mask))
    np.testing.assert_allclose(jax.jit(losses.sft)(logits, target), want, rtol=1e-12)
    auto = jax.jit(jax.grad(losses.sft))(logits, target)
    np.testing.assert_allclose(jax.jit(losses.sft_g)(logits, target), auto, rtol=1e-10, atol=1e-14)
    # masked positions carry no force; each response row sums to zero over V
    assert np.all(np.asarray(auto)[np.asarray(mask) == 0] == 0)
    np.testing.assert_allclose(np.asarray(auto).sum(-1), 0.0, atol=1e-14)
    # the core's g_term gives the same
    np.testing.assert_allclose(ldjax.g_term(losses.sft, logits, target), auto, rtol=1e-12)


@pytest.mark.float64
@pytest.mark.parametrize("beta", [0.1, 2.0])
def test_dpo_value_and_force(beta):
    logits, target = _preference(1)
    logp = _loop_logp(logits, target.tokens, target.mask) - np.asarray(target.ref_logp)
    h = logp[:M] - logp[M:]
    want = np.mean(np.log1p(np.exp(-beta * h)))
    loss = losses.dpo_fn(beta)
    np.testing.assert_allclose(jax.jit(loss)(logits, target), want, rtol=1e-12)
    auto = jax.jit(jax.grad(loss))(logits, target)
    closed = jax.jit(lambda z, t: losses.dpo_g(z, t, beta=beta))(logits, target)
    np.testing.assert_allclose(closed, auto, rtol=1e-10, atol=1e-14)
    # the paper's form, written out: G+ = β/m (1-σ(βh)) mask (π - e_{y+}), G- the opposite sign
    probs = np.asarray(jax.nn.softmax(logits, -1))
    onehot = np.eye(V)[np.asarray(target.tokens)]
    coef = beta / M * (1 - 1 / (1 + np.exp(-beta * h)))
    w = np.asarray(target.mask)[..., None] * (probs - onehot)
    np.testing.assert_allclose(auto[:M], coef[:, None, None] * w[:M], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(auto[M:], -coef[:, None, None] * w[M:], rtol=1e-10, atol=1e-14)


@pytest.mark.float64
def test_ipo_value_and_force():
    logits, target = _preference(2)
    tau = 0.3
    logp = _loop_logp(logits, target.tokens, target.mask) - np.asarray(target.ref_logp)
    want = np.mean((logp[:M] - logp[M:] - 1 / (2 * tau)) ** 2)
    loss = losses.ipo_fn(tau)
    np.testing.assert_allclose(jax.jit(loss)(logits, target), want, rtol=1e-12)
    auto = jax.jit(jax.grad(loss))(logits, target)
    closed = jax.jit(lambda z, t: losses.ipo_g(z, t, tau=tau))(logits, target)
    np.testing.assert_allclose(closed, auto, rtol=1e-10, atol=1e-14)


@pytest.mark.float64
def test_slic_value_and_force():
    logits, target = _preference(3)
    logp = _loop_logp(logits, target.tokens, target.mask)
    diff = logp[:M] - logp[M:]
    delta = float(np.median(diff))  # some pairs active, some not (hinge kink away from data)
    assert 0 < np.sum(delta - diff > 0) < M
    loss = losses.slic_fn(delta=delta + 1e-3, regularization=0.5)
    want = np.mean(np.maximum(0, delta + 1e-3 - diff)) - 0.5 * np.mean(logp[:M])
    np.testing.assert_allclose(jax.jit(loss)(logits, target), want, rtol=1e-12)
    auto = jax.jit(jax.grad(loss))(logits, target)
    closed = jax.jit(lambda z, t: losses.slic_g(z, t, delta=delta + 1e-3, regularization=0.5))(logits, target)
    np.testing.assert_allclose(closed, auto, rtol=1e-10, atol=1e-14)


def test_group_advantages_matches_numpy():
    rewards = np.array([1.0, 0.0, 0.0, 2.0, 5.0, 5.0])
    got = losses.group_advantages(jnp.asarray(rewards), 3)
    g = rewards.reshape(2, 3)
    want = ((g - g.mean(1, keepdims=True)) / (g.std(1, keepdims=True) + 1e-6)).ravel()
    np.testing.assert_allclose(got, want, rtol=1e-6)
    with pytest.raises(ValueError, match="group_size=4 must be >= 1 and divide"):
        losses.group_advantages(jnp.asarray(rewards), 4)


@pytest.mark.float64
def test_grpo_value_and_force():
    rng, logits, tokens, mask = _problem(4)
    adv = jnp.asarray(rng.normal(size=2 * M))
    target = losses.PolicyTarget(tokens, mask, adv)
    lengths = np.asarray(mask).sum(-1)
    want = -np.mean(np.asarray(adv) * _loop_logp(logits, tokens, mask) / lengths)
    np.testing.assert_allclose(jax.jit(losses.grpo)(logits, target), want, rtol=1e-12)
    auto = jax.jit(jax.grad(losses.grpo))(logits, target)
    np.testing.assert_allclose(jax.jit(losses.grpo_g)(logits, target), auto, rtol=1e-10, atol=1e-14)


def _policy_reference(logits, target, top_k=3, alpha=0.0, scale=1.0, quantile=0.8, clip=0.2):
    """Slow GRPO/SimKO in numpy, token by token: the loss and its force written out by hand.

    The entropy threshold is the ``quantile`` of each response's own masked tokens (the authors'
    ``row_quantile_masked``). With ``target.old_log_probs`` each token's term is the clipped surrogate
    min(A·r, A·clip(r)) whose gradient is A·r·∇ℓ where it is not clipped. ``alpha=0, scale=1`` is GRPO.
    """
    z = np.asarray(logits)
    y, w, adv = np.asarray(target.tokens), np.asarray(target.mask), np.asarray(target.advantages)
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    logp = np.log(p)
    entropy = -(p * logp).sum(-1)
    old = None if target.old_log_probs is None else np.asarray(target.old_log_probs)
    n, t_len, vocab = z.shape
    plan, loss, force = {}, 0.0, np.zeros_like(z)
    for i in range(n):
        length = w[i].sum()
        threshold = np.quantile(entropy[i][w[i] > 0], quantile)
        for t in range(t_len):
            if w[i, t] == 0:
                continue
            high = entropy[i, t] > threshold
            top = np.argsort(-z[i, t])[:top_k]
            onehot = np.eye(vocab)[y[i, t]]
            if high and adv[i] > 0 and alpha > 0:
                plan[i, t] = "mix"
                ell = (1 - alpha) * logp[i, t, y[i, t]] + alpha * logp[i, t, top].mean()
                dell = (1 - alpha) * (onehot - p[i, t]) + alpha * (np.eye(vocab)[top].mean(0) - p[i, t])
            elif high and adv[i] < 0 and y[i, t] == np.argmax(z[i, t]) and scale != 1:
                plan[i, t] = "scale"
                ell, dell = scale * logp[i, t, y[i, t]], scale * (onehot - p[i, t])
            else:
                plan[i, t] = "plain"
                ell, dell = logp[i, t, y[i, t]], onehot - p[i, t]
            if old is None:
                value, slope = adv[i] * ell, adv[i]
            else:
                r = math.exp(logp[i, t, y[i, t]] - old[i, t])
                clipped = min(max(r, 1 - clip), 1 + clip)
                value = min(adv[i] * r, adv[i] * clipped)
                active = r <= 1 + clip if adv[i] > 0 else r >= 1 - clip
                slope = adv[i] * r * active
            loss -= w[i, t] * value / length / n
            force[i, t] = -slope * w[i, t] * dell / length / n
    return loss, force, plan


def _policy_problem(seed):
    """8 responses with advantages of both signs; most negative responses sample their top-1 tokens."""
    rng, logits, tokens, mask = _problem(seed, n=8)
    top1 = np.asarray(jnp.argmax(logits, -1))
    adv = jnp.asarray([1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 1.0, -1.0])
    pick = (rng.random(tokens.shape) < 0.7) & (np.asarray(adv) < 0)[:, None]  # exercise the negative branch
    tokens = jnp.asarray(np.where(pick, top1, np.asarray(tokens)), jnp.int32)
    return rng, logits, tokens, mask, adv


@pytest.mark.float64
def test_simko_matches_slow_reference():
    rng, logits, tokens, mask, adv = _policy_problem(5)
    # flatten two rows so that high-entropy tokens exist among both signs of advantage
    logits = logits.at[jnp.array([0, 1])].multiply(0.2)
    target = losses.PolicyTarget(tokens, mask, adv)
    kwargs = dict(top_k=3, alpha=0.01, scale=1.1, quantile=0.8)
    ref_loss, ref_force, plan = _policy_reference(logits, target, **kwargs)
    kinds = list(plan.values())
    assert kinds.count("mix") >= 1 and kinds.count("scale") >= 1 and kinds.count("plain") >= 1
    loss = losses.simko_fn(**kwargs)
    np.testing.assert_allclose(jax.jit(loss)(logits, target), ref_loss, rtol=1e-12)
    np.testing.assert_allclose(jax.jit(jax.grad(loss))(logits, target), ref_force, rtol=1e-10, atol=1e-14)
    # SimKO differs from GRPO exactly at the modified tokens
    diff = np.abs(np.asarray(jax.grad(loss)(logits, target) - losses.grpo_g(logits, target))).sum(-1)
    changed = np.array([[plan.get((i, t), "plain") != "plain" for t in range(T)] for i in range(8)])
    assert np.all(diff[~changed] < 1e-14) and np.all(diff[changed] > 0)


@pytest.mark.float64
def test_simko_takes_traced_alpha_and_scale_and_alpha_0_scale_1_is_grpo():
    """α and λ may be traced (an experiment vmaps one loss over its methods): same values as the floats."""
    _, logits, tokens, mask, adv = _policy_problem(5)
    target = losses.PolicyTarget(tokens, mask, adv)
    settings = jnp.array([[0.0, 1.0], [0.01, 1.1]])  # GRPO, SimKO
    traced = jax.jit(jax.vmap(lambda ab: losses.simko(logits, target, alpha=ab[0], scale=ab[1])))(settings)
    for got, (alpha, scale) in zip(traced, settings.tolist(), strict=True):
        np.testing.assert_allclose(got, losses.simko(logits, target, alpha=alpha, scale=scale), rtol=1e-12)
    np.testing.assert_allclose(traced[0], losses.grpo(logits, target), rtol=1e-12)


@pytest.mark.parametrize("kind", ["grpo", "simko"])
@pytest.mark.float64
def test_clipped_surrogate_matches_slow_reference(kind):
    """With old_log_probs: the clipped surrogate's value and force; clipped tokens get no force."""
    rng, logits, tokens, mask, adv = _policy_problem(7)
    logp = np.asarray(losses.token_log_probs(logits, tokens))
    old = jnp.asarray(logp - rng.normal(size=logp.shape) * 0.3)  # ratios around 1, some clipped
    ratio = np.exp(logp - np.asarray(old))
    assert np.any(ratio > 1.2) and np.any(ratio < 0.8) and np.any(np.abs(ratio - 1) < 0.2)
    target = losses.PolicyTarget(tokens, mask, adv, old)
    kwargs = dict(top_k=3, alpha=0.01, scale=1.1, quantile=0.8) if kind == "simko" else {}
    ref_loss, ref_force, _ = _policy_reference(logits, target, clip=0.2, **kwargs)
    loss = losses.simko_fn(**kwargs) if kind == "simko" else losses.grpo
    np.testing.assert_allclose(jax.jit(loss)(logits, target), ref_loss, rtol=1e-12)
    auto = jax.jit(jax.grad(loss))(logits, target)
    np.testing.assert_allclose(auto, ref_force, rtol=1e-10, atol=1e-14)
    if kind == "grpo":
        np.testing.assert_allclose(jax.jit(losses.grpo_g)(logits, target), auto, rtol=1e-10, atol=1e-14)
    # at old = log π (the first update on a rollout) the force is the on-policy one
    fresh = losses.PolicyTarget(tokens, mask, adv, jnp.asarray(logp))
    on_policy = losses.PolicyTarget(tokens, mask, adv)
    np.testing.assert_allclose(
        jax.grad(loss)(logits, fresh), jax.grad(loss)(logits, on_policy), rtol=1e-10, atol=1e-14
    )


def test_next_token_target():
    seq = jnp.array([[5, 1, 2, 3], [5, 4, 0, 0]])
    resp = jnp.array([[0, 1, 1, 1], [0, 1, 0, 0]])
    x, t = losses.next_token_target(seq, resp)
    np.testing.assert_array_equal(x, seq[:, :-1])
    np.testing.assert_array_equal(t.tokens, seq[:, 1:])
    np.testing.assert_array_equal(t.mask, resp[:, 1:])
    with pytest.raises(ValueError, match="response_mask has shape"), ill_typed():
        losses.next_token_target(seq, resp[:, :3])


def test_check_target_messages():
    tokens, mask = jnp.zeros((4, T), jnp.int32), jnp.ones((4, T))
    check = losses.dpo_fn(0.1).check_target
    with pytest.raises(ValueError, match="must be a ldjax.losses.PreferenceTarget"):
        check((T, V), losses.SequenceTarget(tokens, mask), "y_u")
    with pytest.raises(ValueError, match="has 3 rows: expected 2m rows"):
        check((T, V), losses.PreferenceTarget(tokens[:3], mask[:3], jnp.zeros(3)), "y_u")
    with pytest.raises(ValueError, match=r"ref_logp has shape \(2,\): expected \(4,\)"):
        check((T, V), losses.PreferenceTarget(tokens, mask, jnp.zeros(2)), "y_u")
    with pytest.raises(ValueError, match=r"y_u.tokens holds ids in \[0, 9\] but the vocabulary has V=7"):
        losses.sft.check_target((T, V), losses.SequenceTarget(tokens.at[0, 0].set(9), mask), "y_u")
    with pytest.raises(ValueError, match=r"y_u.tokens has shape \(4, 5\): expected \[n, 6\]"):
        losses.sft.check_target((6, V), losses.SequenceTarget(tokens, mask), "y_u")
    with pytest.raises(ValueError, match="must hold integer token ids"):
        losses.sft.check_target((T, V), losses.SequenceTarget(mask, mask), "y_u")
    with pytest.raises(ValueError, match="advantages has shape"):
        losses.grpo.check_target((T, V), losses.PolicyTarget(tokens, mask, jnp.zeros(3)), "y_u")
    with pytest.raises(ValueError, match=r"y_u.old_log_probs has shape \(4, 2\): expected \(4, 5\)"):
        losses.grpo.check_target(
            (T, V), losses.PolicyTarget(tokens, mask, jnp.zeros(4), jnp.zeros((4, 2))), "y_u"
        )
    with pytest.raises(ValueError, match="clip must be in"):
        losses.simko_fn(clip=0.0)
    with pytest.raises(ValueError, match="beta must be a positive finite number"):
        losses.dpo_fn(0.0)


@pytest.mark.float64
def test_one_step_with_dpo_on_a_sequence_model():
    """The core's one_step takes a sequence model and DPO as they are; G splits into y+ / y- halves."""
    rng = np.random.default_rng(6)
    params = {"emb": jnp.asarray(rng.normal(size=(V, 4))), "out": jnp.asarray(rng.normal(size=(4, V)))}

    def apply_fn(p, x):  # [T] -> [T, V], a causal cumulative-mean model
        h = jnp.cumsum(p["emb"][x], axis=0) / jnp.arange(1, x.shape[0] + 1, dtype=p["emb"].dtype)[:, None]
        return jnp.tanh(h) @ p["out"]

    x_u = jnp.asarray(rng.integers(0, V, size=(2 * M, T)), jnp.int32)
    inputs, st = losses.next_token_target(x_u, jnp.ones_like(x_u).at[:, :2].set(0))
    logits = jax.vmap(apply_fn, (None, 0))(params, inputs)
    ref = losses.sequence_log_prob(logits, st.tokens, st.mask) + 0.3
    target = losses.PreferenceTarget(st.tokens, st.mask, ref)
    step = jax.jit(
        lambda p, t: ldjax.one_step(
            apply_fn, p, inputs, inputs, t, loss=losses.dpo_fn(0.5), learning_rate=1e-4
        )
    )
    r = step(params, target)
    np.testing.assert_allclose(r.g, losses.dpo_g(logits, target, beta=0.5), rtol=1e-10, atol=1e-14)
    corr = np.corrcoef(np.ravel(r.predicted), np.ravel(r.actual))[0, 1]
    assert corr > 0.999
    with pytest.raises(ValueError, match="y_u.tokens holds ids"):
        bad = target._replace(tokens=target.tokens.at[0, 0].set(V))
        ldjax.one_step(apply_fn, params, inputs, inputs, bad, loss=losses.dpo_fn(0.5), learning_rate=1e-4)

"""Vocabulary-scale prediction of Δ log π against the explicit −η·A·K·G (float64) and real optax steps."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ldjax

from problems import optax_update

V, T, D = 7, 4, 5


def seq_model(params, tokens):
    """One sequence ``[T]`` -> logits ``[T, V]``: embeddings, causal running mean, tanh layer, read-out."""
    h = params["emb"][tokens] + params["pos"]
    h = jnp.cumsum(h, axis=0) / jnp.arange(1, tokens.shape[0] + 1, dtype=h.dtype)[:, None]
    h = jnp.tanh(h @ params["w"] + params["b"])
    return h @ params["out"]


def seq_problem(key, n_probe=3, n_u=2, dtype=jnp.float64):
    k = jax.random.split(key, 8)
    params = {
        "emb": jax.random.normal(k[0], (V, D), dtype),
        "pos": 0.1 * jax.random.normal(k[1], (T, D), dtype),
        "w": jax.random.normal(k[2], (D, D), dtype) / np.sqrt(D),
        "b": 0.1 * jax.random.normal(k[3], (D,), dtype),
        "out": jax.random.normal(k[4], (D, V), dtype) / np.sqrt(D),
    }
    x_probe = jax.random.randint(k[5], (n_probe, T), 0, V)
    x_u = jax.random.randint(k[6], (n_u, T), 0, V)
    y_u = ldjax.losses.SequenceTarget(
        jax.random.randint(k[7], (n_u, T), 0, V),
        jnp.array([[0.0, 1.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]], dtype),
    )
    return params, x_probe, x_u, y_u


@pytest.mark.float64
def test_matches_explicit_akg_float64():
    params, x_probe, x_u, y_u = seq_problem(jax.random.key(0))
    eta = 0.05
    fn = jax.jit(
        functools.partial(
            ldjax.predict_log_prob_change,
            seq_model,
            loss=ldjax.losses.sft,
            learning_rate=eta,
            actual=True,
        )
    )
    r = fn(params, x_probe, x_u, y_u)
    assert r.predicted.shape == (3, T, V) and r.actual.shape == (3, T, V)
    # slow, obvious reference: the full kernel [n_o, n_u, T, V, T, V], A and G formed explicitly
    k = ldjax.empirical_ntk(seq_model, params, x_probe, x_u)
    z_o = jax.vmap(seq_model, (None, 0))(params, x_probe)
    z_u = jax.vmap(seq_model, (None, 0))(params, x_u)
    g = ldjax.g_term(ldjax.losses.sft, z_u, y_u)
    force = jnp.einsum("iotvsw,osw->itv", k, g)
    expected = -eta * jnp.einsum("itvw,itw->itv", ldjax.a_term(z_o), force)
    np.testing.assert_allclose(r.predicted, expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(r.loss, ldjax.losses.sft(z_u, y_u), rtol=1e-12)


@pytest.mark.float64
def test_residual_shrinks_like_eta_squared():
    params, x_probe, x_u, y_u = seq_problem(jax.random.key(1))
    residuals = []
    for eta in (1e-2, 5e-3):
        r = ldjax.predict_log_prob_change(
            seq_model, params, x_probe, x_u, y_u, loss=ldjax.losses.sft, learning_rate=eta, actual=True
        )
        residuals.append(float(jnp.abs(r.actual - r.predicted).max()))
    assert 3.5 < residuals[0] / residuals[1] < 4.5, residuals


@pytest.mark.float64
def test_any_loss_and_optimizer_agree_with_one_step():
    """A custom loss and Adam with a trained state: same prediction as one_step, and close to a real step."""
    params, x_probe, x_u, y_u = seq_problem(jax.random.key(2))
    targets = jax.random.normal(jax.random.key(3), (2, T, V), jnp.float64)

    def mse(logits, y):
        return jnp.mean((logits - y) ** 2)

    opt = optax.adam(1e-4)
    state = opt.init(params)
    grads = jax.grad(lambda p: mse(jax.vmap(seq_model, (None, 0))(p, x_u), targets))(params)
    _, state = optax_update(opt, grads, state, params)  # a state with nonzero moments
    r = ldjax.predict_log_prob_change(
        seq_model, params, x_probe, x_u, targets, loss=mse, optimizer=opt, opt_state=state, actual=True
    )
    ref = ldjax.one_step(
        seq_model, params, x_probe, x_u, targets, loss=mse, optimizer=opt, opt_state=state, terms=False
    )
    np.testing.assert_allclose(r.predicted, ref.predicted, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(r.actual, ref.actual, rtol=1e-12, atol=1e-14)
    scale = float(jnp.abs(r.actual).max())
    assert float(jnp.abs(r.actual - r.predicted).max()) < 1e-2 * scale


def test_errors_name_the_argument():
    params, x_probe, x_u, y_u = seq_problem(jax.random.key(4), dtype=jnp.float32)
    with pytest.raises(ValueError, match="learning_rate is required"):
        ldjax.predict_log_prob_change(seq_model, params, x_probe, x_u, y_u, loss=ldjax.losses.sft)
    with pytest.raises(ValueError, match="x_probe holds examples of shape"):
        ldjax.predict_log_prob_change(
            seq_model, params, x_probe[:, :2], x_u, y_u, loss=ldjax.losses.sft, learning_rate=0.1
        )
    with pytest.raises(ValueError, match="x_probe is empty|x_probe is an empty batch"):
        ldjax.predict_log_prob_change(
            seq_model, params, x_probe[:0], x_u, y_u, loss=ldjax.losses.sft, learning_rate=0.1
        )

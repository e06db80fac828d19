"""Small random models as plain ``apply_fn``s and slow, obvious float64 references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

# Every NTK method that computes (test_ntk checks it covers ``NtkMethod`` but "auto", which picks one).
NTK_METHODS = ("jacobian", "vector_products", "structured")


def mlp_apply(params, x):
    """One example ``[d] -> [k]``: tanh MLP."""
    h = jnp.tanh(x @ params["w1"] + params["b1"])
    h = jnp.tanh(h @ params["w2"] + params["b2"])
    return h @ params["w3"] + params["b3"]


def mlp_problem(key, n1=3, n2=2, d=5, hidden=6, k=4, dtype=jnp.float64):
    keys = jax.random.split(key, 8)
    params = {
        "w1": jax.random.normal(keys[0], (d, hidden), dtype) / np.sqrt(d),
        "b1": 0.1 * jax.random.normal(keys[1], (hidden,), dtype),
        "w2": jax.random.normal(keys[2], (hidden, hidden), dtype) / np.sqrt(hidden),
        "b2": 0.1 * jax.random.normal(keys[3], (hidden,), dtype),
        "w3": jax.random.normal(keys[4], (hidden, k), dtype) / np.sqrt(hidden),
        "b3": 0.1 * jax.random.normal(keys[5], (k,), dtype),
    }
    x1 = jax.random.normal(keys[6], (n1, d), dtype)
    x2 = jax.random.normal(keys[7], (n2, d), dtype)
    return params, x1, x2


def cnn_apply(params, x):
    """One example ``[8, 8, 1] -> [k]``: strided SAME conv, VALID conv, dense."""
    h = x[None]
    h = jax.lax.conv_general_dilated(
        h, params["c1"], (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    h = jnp.tanh(h + params["c1b"])
    h = jax.lax.conv_general_dilated(
        h, params["c2"], (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    h = jnp.tanh(h).reshape(-1)
    return h @ params["w"] + params["b"]


def cnn_problem(key, n1=3, n2=2, k=3, dtype=jnp.float64):
    keys = jax.random.split(key, 7)
    params = {
        "c1": jax.random.normal(keys[0], (3, 3, 1, 3), dtype) / 3.0,
        "c1b": 0.1 * jax.random.normal(keys[1], (3,), dtype),
        "c2": jax.random.normal(keys[2], (2, 2, 3, 2), dtype) / np.sqrt(12),
        "w": jax.random.normal(keys[3], (3 * 3 * 2, k), dtype) / np.sqrt(18),
        "b": 0.1 * jax.random.normal(keys[4], (k,), dtype),
    }
    x1 = jax.random.normal(keys[5], (n1, 8, 8, 1), dtype)
    x2 = jax.random.normal(keys[6], (n2, 8, 8, 1), dtype)
    return params, x1, x2


def seq_apply(params, tokens):
    """One sequence of token ids ``[T] -> [T, V]`` logits: embedding, causal mean mixing, read-out."""
    h = params["embed"][tokens] + params["pos"]
    t = h.shape[0]
    mask = jnp.tril(jnp.ones((t, t), h.dtype))
    mixed = (mask @ h) / jnp.sum(mask, axis=1, keepdims=True)
    h = jnp.tanh(mixed @ params["w"])
    return h @ params["out"]


def seq_problem(key, n1=2, n2=2, t=3, vocab=4, d=3, dtype=jnp.float64):
    keys = jax.random.split(key, 6)
    params = {
        "embed": jax.random.normal(keys[0], (vocab, d), dtype),
        "pos": 0.5 * jax.random.normal(keys[1], (t, d), dtype),
        "w": jax.random.normal(keys[2], (d, d), dtype) / np.sqrt(d),
        "out": jax.random.normal(keys[3], (d, vocab), dtype) / np.sqrt(d),
    }
    x1 = jax.random.randint(keys[4], (n1, t), 0, vocab)
    x2 = jax.random.randint(keys[5], (n2, t), 0, vocab)
    return params, x1, x2


def finite_difference_jacobian(apply_fn, params, x, eps=1e-6):
    """``[n, O, p]`` by central differences on the flattened parameters (float64)."""
    flat, unravel = ravel_pytree(params)

    @jax.jit
    def outputs(theta):
        return jax.vmap(lambda xi: apply_fn(unravel(theta), xi).reshape(-1))(x)

    cols = []
    for i in range(flat.size):
        step = jnp.zeros_like(flat).at[i].set(eps)
        cols.append((outputs(flat + step) - outputs(flat - step)) / (2 * eps))
    return np.stack([np.asarray(c) for c in cols], axis=-1)


def finite_difference_ntk(apply_fn, params, x1, x2):
    """``[n1, n2, *o, *o]`` from finite-difference Jacobians: the slow, obvious reference."""
    j1 = finite_difference_jacobian(apply_fn, params, x1)
    j2 = finite_difference_jacobian(apply_fn, params, x2)
    out = np.shape(apply_fn(params, x1[0]))
    kernel = np.einsum("iap,jbp->ijab", j1, j2)
    return kernel.reshape((len(x1), len(x2), *out, *out))

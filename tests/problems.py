"""Small random models as plain ``apply_fn``s and slow, obvious float64 references."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

# Every NTK method that computes (test_ntk checks it covers ``NtkMethod`` but "auto", which picks one).
NTK_METHODS = ("jacobian", "vector_products", "structured")


def optax_update(optimizer, grads, state, params):
    """``optimizer.update`` under JAX's standard promotion (optax's Adam takes 1 - b1**count, count an int).

    The tests run with strict promotion (conftest.py); ldjax runs optax's update the same way.
    """
    with jax.numpy_dtype_promotion("standard"):
        return optimizer.update(grads, state, params)


def layer_norm(norm, h):
    """``norm(h)`` for a flax LayerNorm, under standard promotion: it promotes float64 with float32 internally."""
    with jax.numpy_dtype_promotion("standard"):
        return norm(h)


def mlp_apply(params, x):
    """One example ``[d] -> [k]``: tanh MLP."""
    h = jnp.tanh(x @ params["w1"] + params["b1"])
    h = jnp.tanh(h @ params["w2"] + params["b2"])
    return h @ params["w3"] + params["b3"]


def draws(key, dtype=None):
    """``normal(*shape, scale=1)`` and ``integers(high, shape)``: numpy draws from a generator seeded by ``key``.

    The test problems are drawn with numpy, not ``jax.random``: on CPU each new shape of
    ``jax.random.normal`` is an XLA program to compile (about 0.5 s in float64), and the tests need dozens
    of shapes. ``dtype=None`` is JAX's default float (float64 under x64), as in ``jax.random.normal``.
    """
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)))

    def normal(*shape, scale=1.0):
        return jnp.asarray(scale * rng.standard_normal(shape), dtype)

    def integers(high, shape):
        return jnp.asarray(rng.integers(0, high, shape))  # JAX's default int, as jax.random.randint

    return normal, integers


def normal(key, shape=(), dtype=None):
    """Standard normal draws of ``shape``, as ``jax.random.normal(key, shape, dtype)`` (drawn by ``draws``)."""
    return draws(key, dtype)[0](*shape)


def randint(key, shape, minval, maxval):
    """Integers in ``[minval, maxval)``, as ``jax.random.randint(key, shape, minval, maxval)`` (by ``draws``)."""
    return minval + draws(key)[1](maxval - minval, shape)


def mlp_problem(key, n1=3, n2=2, d=5, hidden=6, k=4, dtype=jnp.float64):
    normal, _ = draws(key, dtype)
    params = {
        "w1": normal(d, hidden, scale=1 / np.sqrt(d)),
        "b1": normal(hidden, scale=0.1),
        "w2": normal(hidden, hidden, scale=1 / np.sqrt(hidden)),
        "b2": normal(hidden, scale=0.1),
        "w3": normal(hidden, k, scale=1 / np.sqrt(hidden)),
        "b3": normal(k, scale=0.1),
    }
    return params, normal(n1, d), normal(n2, d)


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
    normal, _ = draws(key, dtype)
    params = {
        "c1": normal(3, 3, 1, 3, scale=1 / 3.0),
        "c1b": normal(3, scale=0.1),
        "c2": normal(2, 2, 3, 2, scale=1 / np.sqrt(12)),
        "w": normal(3 * 3 * 2, k, scale=1 / np.sqrt(18)),
        "b": normal(k, scale=0.1),
    }
    return params, normal(n1, 8, 8, 1), normal(n2, 8, 8, 1)


def seq_apply(params, tokens):
    """One sequence of token ids ``[T] -> [T, V]`` logits: embedding, causal mean mixing, read-out."""
    h = params["embed"][tokens] + params["pos"]
    t = h.shape[0]
    mask = jnp.tril(jnp.ones((t, t), h.dtype))
    mixed = (mask @ h) / jnp.sum(mask, axis=1, keepdims=True)
    h = jnp.tanh(mixed @ params["w"])
    return h @ params["out"]


def seq_problem(key, n1=2, n2=2, t=3, vocab=4, d=3, dtype=jnp.float64):
    normal, integers = draws(key, dtype)
    params = {
        "embed": normal(vocab, d),
        "pos": normal(t, d, scale=0.5),
        "w": normal(d, d, scale=1 / np.sqrt(d)),
        "out": normal(d, vocab, scale=1 / np.sqrt(d)),
    }
    return params, integers(vocab, (n1, t)), integers(vocab, (n2, t))


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
    both = finite_difference_jacobian(apply_fn, params, jnp.concatenate([x1, x2]))  # one program, not two
    j1, j2 = both[: len(x1)], both[len(x1) :]
    out = np.shape(apply_fn(params, x1[0]))
    kernel = np.einsum("iap,jbp->ijab", j1, j2)
    return kernel.reshape((len(x1), len(x2), *out, *out))

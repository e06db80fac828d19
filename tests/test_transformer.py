"""TinyTransformer: forward pass vs a slow numpy reference, causality, sizes, token-level one-step fidelity."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import ldjax
import ldjax.models
from ldjax import losses
from ldjax._src.models.transformer import count_params

V, L = 13, 8


def _model(seed=0, d_model=16, n_heads=2, n_layers=2, d_ff=24):
    return ldjax.models.TinyTransformer(V, L, d_model, n_heads, n_layers, d_ff, rngs=nnx.Rngs(seed))


def _reference_forward(p, tokens, n_heads):
    """Slow float64 numpy transformer for ONE sequence: explicit loops over heads and query positions."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), p)

    def ln(x, q):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + 1e-6) * q["scale"] + q["bias"]

    def lin(x, q):
        return x @ q["kernel"] + q["bias"]

    def gelu(x):
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))

    t = len(tokens)
    x = p["token_embed"]["embedding"][tokens] + p["position_embed"]["embedding"][:t]
    blocks = sorted((k for k in p if k.startswith("block")), key=lambda k: int(k[5:]))
    for name in blocks:
        b = p[name]
        h = ln(x, b["ln1"])
        q, k, v = lin(h, b["attn"]["query"]), lin(h, b["attn"]["key"]), lin(h, b["attn"]["value"])
        d = x.shape[1]
        dh = d // n_heads
        mixed = np.zeros_like(x)
        for head in range(n_heads):
            sl = slice(head * dh, (head + 1) * dh)
            for i in range(t):
                s = np.array([q[i, sl] @ k[j, sl] / math.sqrt(dh) for j in range(i + 1)])
                w = np.exp(s - s.max())
                w /= w.sum()
                mixed[i, sl] = sum(w[j] * v[j, sl] for j in range(i + 1))
        x = x + lin(mixed, b["attn"]["out"])
        x = x + lin(gelu(lin(ln(x, b["ln2"]), b["fc1"])), b["fc2"])
    return lin(ln(x, p["ln_final"]), p["head"])


@pytest.mark.float64
@pytest.mark.standard_promotion  # flax's LayerNorm (inside TinyTransformer) promotes float64 with float32
def test_forward_matches_slow_reference_float64():
    f, params = ldjax.from_nnx(_model(1))
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64) + 0.05, params)  # non-trivial LN/bias
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, V, size=(3, 6)), jnp.int32)
    got = jax.jit(jax.vmap(f, (None, 0)))(params, tokens)
    assert got.dtype == jnp.float64
    for i in range(3):
        want = _reference_forward(params, np.asarray(tokens[i]), n_heads=2)
        np.testing.assert_allclose(got[i], want, rtol=1e-10, atol=1e-10)


def test_causal():
    f, params = ldjax.from_nnx(_model(2))
    forward = jax.jit(f)
    tokens = jnp.asarray(np.random.default_rng(1).integers(0, V, size=L), jnp.int32)
    changed = tokens.at[5].set((tokens[5] + 1) % V)
    a, b = forward(params, tokens), forward(params, changed)
    np.testing.assert_allclose(a[:5], b[:5], rtol=1e-6, atol=1e-6)
    assert float(jnp.abs(a[5:] - b[5:]).max()) > 1e-4


def _count(make):
    abstract = nnx.eval_shape(make)  # shapes only: no initialisation cost
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(nnx.state(abstract, nnx.Param)))


def test_parameter_counts_and_errors():
    small = _count(lambda: ldjax.models.TinyTransformer(64, 16, 64, 4, 2, 128, rngs=nnx.Rngs(0)))
    big = _count(lambda: ldjax.models.TinyTransformer(64, 16, 128, 4, 4, 512, rngs=nnx.Rngs(0)))
    d, dff = 64, 128
    per_block = 4 * (d * d + d) + (d * dff + dff) + (dff * d + d) + 4 * d
    assert small == 64 * d + 16 * d + 2 * per_block + 2 * d + d * 64 + 64
    assert 5e4 < small < 1e5 and 5e5 < big < 2e6
    assert count_params(_model()) == _count(_model)
    with pytest.raises(ValueError, match="d_model=10 must be divisible by n_heads=4"):
        ldjax.models.TinyTransformer(V, L, 10, 4, 1, 8, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="T=9 but the model has max_len=8"):
        _model()(jnp.zeros((1, 9), jnp.int32))


@pytest.mark.parametrize("loss_name", [pytest.param("sft", marks=pytest.mark.slow), "dpo"])
def test_token_level_one_step_prediction(loss_name):
    """Predicted vs actual Δlog π at every position and vocabulary entry: correlation >= 0.99 for a small step."""
    rng = np.random.default_rng(3)
    f, params = ldjax.from_nnx(_model(4, n_layers=1), example_shape=(L - 1,))
    seqs = jnp.asarray(rng.integers(0, V, size=(4, L)), jnp.int32)
    resp = jnp.asarray(np.arange(L)[None] >= 3, jnp.float32) * jnp.ones((4, 1))
    inputs, st = losses.next_token_target(seqs, resp)
    probes = jnp.asarray(rng.integers(0, V, size=(5, L - 1)), jnp.int32)
    if loss_name == "sft":
        loss, target = losses.sft, st
    else:
        logits = jax.vmap(f, (None, 0))(params, inputs)
        ref = losses.sequence_log_prob(logits, st.tokens, st.mask)
        loss, target = losses.dpo_fn(1.0), losses.PreferenceTarget(st.tokens, st.mask, ref - 0.5)
    step = jax.jit(
        lambda p, t: ldjax.one_step(f, p, probes, inputs, t, loss=loss, learning_rate=1e-3, terms=False)
    )
    r = step(params, target)
    assert r.predicted.shape == (5, L - 1, V)
    corr = np.corrcoef(np.ravel(r.predicted), np.ravel(r.actual))[0, 1]
    assert corr >= 0.99, corr
    assert float(jnp.abs(r.actual).max()) > 1e-5  # the step moved something

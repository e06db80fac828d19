"""Structured eNTK and per-layer kernels against the float64 Jacobian-contraction reference."""

from __future__ import annotations

import functools
import pathlib
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import ldjax
from ldjax._src import structured

import problems
from problems import NTK_METHODS
from typechecking import ill_typed

F64 = jnp.float64
RTOL, ATOL = 1e-10, 1e-10  # float64 throughout; both sides are exact up to summation order


class _CNN(nnx.Module):
    """Strided SAME conv, asymmetric explicit padding, dilation, dense head."""

    def __init__(self, rngs: nnx.Rngs):
        self.c1 = nnx.Conv(2, 3, (3, 3), strides=2, padding="SAME", rngs=rngs, param_dtype=F64)
        self.c2 = nnx.Conv(
            3, 4, (2, 2), strides=1, padding=((1, 0), (0, 1)), kernel_dilation=1, rngs=rngs, param_dtype=F64
        )
        self.c3 = nnx.Conv(4, 2, (2, 2), padding="VALID", kernel_dilation=(1, 2), rngs=rngs, param_dtype=F64)
        self.d = nnx.Linear(3 * 2 * 2, 3, rngs=rngs, param_dtype=F64)

    def __call__(self, x):
        h = jnp.tanh(self.c1(x))  # [b, 4, 4, 3]
        h = jax.nn.relu(self.c2(h))  # [b, 4, 4, 4]
        h = jnp.tanh(self.c3(h))  # [b, 3, 2, 2]
        return self.d(h.reshape(h.shape[0], -1))


class _Attention(nnx.Module):
    def __init__(self, d: int, heads: int, rngs: nnx.Rngs):
        self.heads = heads
        self.qkv = nnx.Linear(d, 3 * d, rngs=rngs, param_dtype=F64)
        self.out = nnx.Linear(d, d, rngs=rngs, param_dtype=F64)

    def __call__(self, h):
        b, t, d = h.shape
        q, k, v = jnp.split(self.qkv(h).reshape(b, t, 3, self.heads, d // self.heads), 3, axis=2)
        q, k, v = q[:, :, 0], k[:, :, 0], v[:, :, 0]
        scores = jnp.einsum("bthe,bshe->bhts", q, k) / np.sqrt(d // self.heads)
        causal = jnp.tril(jnp.ones((t, t), bool))
        scores = jnp.where(causal, scores, -1e30)
        mixed = jnp.einsum("bhts,bshe->bthe", jax.nn.softmax(scores, axis=-1), v).reshape(b, t, d)
        return self.out(mixed)


class _GPT(nnx.Module):
    """Token + position embeddings, one pre-LN attention block with an MLP, untied read-out."""

    def __init__(self, rngs: nnx.Rngs, vocab: int = 7, d: int = 4, t: int = 4, heads: int = 2):
        self.tok = nnx.Embed(vocab, d, rngs=rngs, param_dtype=F64)
        self.pos = nnx.Embed(t, d, rngs=rngs, param_dtype=F64)
        self.ln1 = nnx.LayerNorm(d, rngs=rngs, param_dtype=F64)
        self.att = _Attention(d, heads, rngs)
        self.ln2 = nnx.LayerNorm(d, rngs=rngs, param_dtype=F64)
        self.up = nnx.Linear(d, 2 * d, rngs=rngs, param_dtype=F64)
        self.down = nnx.Linear(2 * d, d, rngs=rngs, param_dtype=F64)
        self.head = nnx.Linear(d, vocab, rngs=rngs, param_dtype=F64)

    def __call__(self, tokens):
        h = self.tok(tokens) + self.pos(jnp.arange(tokens.shape[-1]))[None]
        h = h + self.att(problems.layer_norm(self.ln1, h))
        h = h + self.down(jax.nn.gelu(self.up(problems.layer_norm(self.ln2, h))))
        return self.head(h)


def _reference(apply_fn, params, x1, x2, trace=False, per_layer=False):
    return jax.jit(
        functools.partial(ldjax.empirical_ntk, apply_fn, method="jacobian", trace=trace, per_layer=per_layer)
    )(params, x1, x2)


def _structured(apply_fn, params, x1, x2, trace=False, per_layer=False):
    return jax.jit(
        functools.partial(
            ldjax.empirical_ntk, apply_fn, method="structured", trace=trace, per_layer=per_layer
        )
    )(params, x1, x2)


def _per_layer_and_total(apply_fn, method, params, x1, x2):
    """The per-layer kernels and the total kernel of one method, from ONE compiled program (XLA shares the
    work of the two: about half the compile time of two programs)."""
    return jax.jit(
        lambda p, a, b: (
            ldjax.empirical_ntk(apply_fn, p, a, b, method=method, per_layer=True),
            ldjax.empirical_ntk(apply_fn, p, a, b, method=method),
        )
    )(params, x1, x2)


def _routes(apply_fn, params, x1, x2, route, trace=False):
    """Per-leaf kernels with the FLOP-count choice overridden, as one summed kernel."""
    fn = jax.jit(
        lambda p, a, b: sum(structured.structured_ntk(apply_fn, p, a, b, trace, route=route).values())
    )
    return fn(params, x1, x2)


@pytest.fixture(scope="module")
def cnn_problem():
    f, p = ldjax.from_nnx(_CNN(nnx.Rngs(0)))
    x1 = problems.normal(jax.random.key(1), (3, 8, 8, 2), F64)
    x2 = problems.normal(jax.random.key(2), (2, 8, 8, 2), F64)
    return f, p, x1, x2


@pytest.fixture(scope="module")
def gpt_problem():
    f, p = ldjax.from_nnx(_GPT(nnx.Rngs(0)))
    t1 = problems.randint(jax.random.key(1), (3, 4), 0, 7)
    t2 = problems.randint(jax.random.key(2), (2, 4), 0, 7).at[0, :2].set(t1[0, :2])
    return f, p, t1, t2


@pytest.mark.float64
@pytest.mark.parametrize("route", ["auto", "structured", pytest.param("gradients", marks=pytest.mark.slow)])
def test_mlp_matches_jacobian(route):
    params, x1, x2 = problems.mlp_problem(jax.random.key(0), n1=4, n2=3)
    ref = _reference(problems.mlp_apply, params, x1, x2)
    got = _routes(problems.mlp_apply, params, x1, x2, route)
    np.testing.assert_allclose(got, ref.reshape(got.shape), rtol=RTOL, atol=ATOL)
    trace = _routes(problems.mlp_apply, params, x1, x2, route, trace=True)
    np.testing.assert_allclose(trace, jnp.trace(ref, axis1=2, axis2=3), rtol=RTOL, atol=ATOL)
    if route == "structured":  # biases folded into their dense layer: (XXᵀ + 1) ⊙ ΔΔᵀ
        folded = structured.structured_ntk(problems.mlp_apply, params, x1, x2, False, route=route, fold=True)
        assert sorted(folded) == ["w1", "w2", "w3"]


@pytest.mark.float64
@pytest.mark.slow
def test_mlp_public_api_gram_and_pair():
    params, x1, x2 = problems.mlp_problem(jax.random.key(3), n1=4, n2=3)
    gram = ldjax.empirical_ntk(problems.mlp_apply, params, x1, method="structured")
    np.testing.assert_allclose(
        gram, ldjax.empirical_ntk(problems.mlp_apply, params, x1), rtol=RTOL, atol=ATOL
    )
    pair = _structured(problems.mlp_apply, params, x1, x2)
    assert pair.shape == (4, 3, 4, 4)
    np.testing.assert_allclose(pair, _reference(problems.mlp_apply, params, x1, x2), rtol=RTOL, atol=ATOL)


@pytest.mark.float64
@pytest.mark.parametrize(
    "route",
    [
        "structured",
        pytest.param("auto", marks=pytest.mark.slow),
        pytest.param("gradients", marks=pytest.mark.slow),
    ],
)
def test_cnn_with_padding_and_strides(cnn_problem, route):
    f, p, x1, x2 = cnn_problem
    report = structured.site_report(f, p, x1)
    assert set(report.values()) <= {"dot", "conv", "gradients"}, report
    ref = _reference(f, p, x1, x2)
    got = _routes(f, p, x1, x2, route)
    np.testing.assert_allclose(got, ref, rtol=RTOL, atol=ATOL)


@pytest.mark.float64
@pytest.mark.slow
def test_raw_lax_cnn_full_and_trace():
    params, x1, x2 = problems.cnn_problem(jax.random.key(4))
    ref = _reference(problems.cnn_apply, params, x1, x2)
    np.testing.assert_allclose(
        _routes(problems.cnn_apply, params, x1, x2, "structured"), ref, rtol=RTOL, atol=ATOL
    )
    trace = _structured(problems.cnn_apply, params, x1, x2, trace=True)
    np.testing.assert_allclose(trace, jnp.trace(ref, axis1=2, axis2=3), rtol=RTOL, atol=ATOL)


@pytest.mark.float64
@pytest.mark.slow
def test_gpt_per_token_kernel(gpt_problem):
    f, p, t1, t2 = gpt_problem
    report = structured.site_report(f, p, t1, route="structured")
    assert report["tok/embedding"] == "lookup" and report["att/qkv/kernel"] == "dot", report
    ref = _reference(f, p, t1, t2)
    assert ref.shape == (3, 2, 4, 7, 4, 7)
    for route in ("auto", "structured", "gradients"):
        got = _routes(f, p, t1, t2, route)
        np.testing.assert_allclose(got, ref.reshape(got.shape), rtol=RTOL, atol=ATOL, err_msg=route)


@pytest.mark.float64
def test_gpt_last_position_per_layer(gpt_problem):
    f, p, t1, t2 = gpt_problem
    last = ldjax.as_apply_fn(lambda params, t: f(params, t)[-1])
    ref, ref_total = _per_layer_and_total(last, "jacobian", p, t1, t2)
    got, total = _per_layer_and_total(last, "structured", p, t1, t2)
    assert sorted(got) == sorted(ref)
    assert "tok/embedding" in got and "att/qkv/kernel" in got and "ln1/scale" in got
    for name in ref:
        np.testing.assert_allclose(got[name], ref[name], rtol=RTOL, atol=ATOL, err_msg=name)
    np.testing.assert_allclose(sum(got.values()), total, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(total, ref_total, rtol=RTOL, atol=ATOL)


@pytest.mark.float64
def test_lookup_out_of_range_tokens_and_tied_weights():
    """Tied embedding (one leaf, two sites) and token ids outside the table (jnp.take fills: no gradient)."""

    def tied(params, tokens):
        e = params["emb"]
        h = jnp.take(e, tokens, axis=0, mode="fill", fill_value=0.0)  # ids >= V read zeros
        h = jnp.tanh(h @ params["w"])
        return h[-1] @ e.T

    keys = jax.random.split(jax.random.key(5), 3)
    p = {"emb": problems.normal(keys[0], (7, 4), F64), "w": problems.normal(keys[1], (4, 4), F64)}
    t = problems.randint(keys[2], (3, 6), 0, 9)  # 7 and 8 are out of range
    assert structured.site_report(tied, p, t)["emb"] == "gradients"
    np.testing.assert_allclose(_structured(tied, p, t, t), _reference(tied, p, t, t), rtol=RTOL, atol=ATOL)

    def untied(params, tokens):
        return jnp.tanh(jnp.take(params["emb"], tokens, axis=0, mode="fill", fill_value=0.0) @ params["w"])[
            -1
        ]

    assert structured.site_report(untied, p, t, route="structured")["emb"] == "lookup"
    got = _routes(untied, p, t, t[:2], "structured")
    np.testing.assert_allclose(got, _reference(untied, p, t, t[:2]), rtol=RTOL, atol=ATOL)


@pytest.mark.float64
def test_fallback_for_layers_structured_cannot_handle():
    """Parameters inside a nonlinearity, a scan and a custom derivative fall back to the Jacobian."""

    @jax.custom_jvp
    def softplus(w):
        return jnp.logaddexp(w, 0.0)

    softplus.defjvp(
        lambda primals, tangents: (softplus(primals[0]), jax.nn.sigmoid(primals[0]) * tangents[0])
    )

    def model(params, x):
        h = x @ jnp.tanh(params["squashed"])  # nonlinear in the parameter
        h = h * softplus(params["scale"])  # custom_jvp on a parameter

        def step(carry, w):
            return jnp.tanh(carry @ w), None

        h, _ = jax.lax.scan(step, h, params["stack"])  # parameters inside a loop
        return h @ params["w"] + params["b"]

    keys = jax.random.split(jax.random.key(6), 7)
    p = {
        "squashed": problems.normal(keys[0], (5, 4), F64),
        "scale": problems.normal(keys[1], (4,), F64),
        "stack": problems.normal(keys[2], (2, 4, 4), F64) / 2,
        "w": problems.normal(keys[3], (4, 3), F64),
        "b": problems.normal(keys[4], (3,), F64),
    }
    x1 = problems.normal(keys[5], (4, 5), F64)
    x2 = problems.normal(keys[6], (2, 5), F64)
    report = structured.site_report(model, p, x1)
    assert report["squashed"] == report["scale"] == report["stack"] == "fallback", report
    assert report["w"] in ("dot", "gradients")
    got = _structured(model, p, x1, x2, per_layer=True)
    ref = _reference(model, p, x1, x2, per_layer=True)
    for name in ref:
        np.testing.assert_allclose(got[name], ref[name], rtol=RTOL, atol=ATOL, err_msg=name)


@pytest.mark.float64
def test_constant_operands():
    """A parameter multiplied by a captured constant matrix and looked up at constant indices."""
    keys = jax.random.split(jax.random.key(14), 5)
    c = np.asarray(problems.normal(keys[0], (4, 3), F64))
    rows = np.array([2, 0, 2])

    def model(params, x):
        w = c @ params["w"]  # dot(constant, parameter): the layer input is the constant
        h = jnp.tanh(x @ w + params["emb"][rows].sum(0))  # lookup at constant token ids
        return h @ params["out"]

    p = {
        "w": problems.normal(keys[1], (3, 5), F64),
        "emb": problems.normal(keys[2], (6, 5), F64),
        "out": problems.normal(keys[3], (5, 2), F64),
    }
    x = problems.normal(keys[4], (3, 4), F64)
    report = structured.site_report(model, p, x, route="structured")
    assert report["w"] == "dot" and report["emb"] == "lookup", report
    got = _routes(model, p, x, x[:2], "structured")
    np.testing.assert_allclose(got, _reference(model, p, x, x[:2]), rtol=RTOL, atol=ATOL)


class _LinenNet(nn.Module):
    @nn.compact
    def __call__(self, tokens):
        h = nn.Embed(9, 6, param_dtype=F64)(tokens)  # [b, T, 6]
        h = nn.Conv(5, (3,), strides=2, padding="SAME", param_dtype=F64)(h)
        h = problems.layer_norm(nn.LayerNorm(param_dtype=F64), jnp.tanh(h))
        return nn.Dense(4, param_dtype=F64)(h.reshape(h.shape[0], -1))


@pytest.mark.float64
def test_linen_model():
    t = problems.randint(jax.random.key(7), (3, 6), 0, 9)
    module = _LinenNet()
    variables = module.init(jax.random.key(8), t[:1])
    f, p = ldjax.from_linen(module, variables)
    report = structured.site_report(f, p, t, route="structured")
    assert report["Embed_0/embedding"] == "lookup", report
    assert "fallback" not in report.values(), report
    got = _structured(f, p, t, t[:2], per_layer=True)
    ref = _reference(f, p, t, t[:2], per_layer=True)
    for name in ref:
        np.testing.assert_allclose(got[name], ref[name], rtol=RTOL, atol=ATOL, err_msg=name)


@pytest.mark.float64
@pytest.mark.parametrize(
    "method", [pytest.param(m, marks=pytest.mark.slow) if m == "vector_products" else m for m in NTK_METHODS]
)
def test_per_layer_sums_to_total(method):
    params, x1, x2 = problems.mlp_problem(jax.random.key(9), n1=3, n2=2)
    layers = ldjax.empirical_ntk(problems.mlp_apply, params, x1, x2, method=method, per_layer=True)
    assert sorted(layers) == ["b1", "b2", "b3", "w1", "w2", "w3"]
    ref = _reference(problems.mlp_apply, params, x1, x2, per_layer=True)
    for name in ref:
        np.testing.assert_allclose(layers[name], ref[name], rtol=RTOL, atol=ATOL, err_msg=name)
    total = ldjax.empirical_ntk(problems.mlp_apply, params, x1, x2, method=method)
    np.testing.assert_allclose(sum(layers.values()), total, rtol=RTOL, atol=ATOL)
    traced = ldjax.empirical_ntk(
        problems.mlp_apply, params, x1, x2, method=method, per_layer=True, trace=True
    )
    np.testing.assert_allclose(traced["w2"], jnp.trace(ref["w2"], axis1=2, axis2=3), rtol=RTOL, atol=ATOL)


@pytest.mark.slow
def test_structured_gram_is_symmetric_psd_float32():
    params, x1, _ = problems.mlp_problem(jax.random.key(10), n1=5, dtype=jnp.float32)
    k = ldjax.empirical_ntk(problems.mlp_apply, params, x1, method="structured")
    flat = np.asarray(k).transpose(0, 2, 1, 3).reshape(20, 20)
    np.testing.assert_allclose(flat, flat.T, rtol=1e-5, atol=1e-5)
    assert np.linalg.eigvalsh(flat.astype(np.float64)).min() > -1e-4 * np.abs(flat).max()
    ref = ldjax.empirical_ntk(problems.mlp_apply, params, x1)
    np.testing.assert_allclose(k, ref, rtol=1e-4, atol=1e-5)


def test_bad_method_and_route():
    params, x1, _ = problems.mlp_problem(jax.random.key(11), dtype=jnp.float32)
    with (
        pytest.raises(
            ValueError, match="method must be 'auto' or 'jacobian' or 'vector_products' or 'structured'"
        ),
        ill_typed(),
    ):
        ldjax.empirical_ntk(problems.mlp_apply, params, x1, method="fast")
    with pytest.raises(ValueError, match="route must be"):
        structured.structured_ntk(problems.mlp_apply, params, x1, x1, False, route="fast")


def test_no_jax_internals_imported():
    """What broke neural-tangents: the package must reach jaxprs only through public API."""
    root = pathlib.Path(ldjax.__file__).parent
    pattern = re.compile(r"(?<![\w.])jax\.(core|interpreters|_src)\b")
    offenders = [str(path) for path in root.rglob("*.py") if pattern.search(path.read_text())]
    assert offenders == []


class _FlaxAttentionNet(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.emb = nnx.Embed(9, 8, rngs=rngs, param_dtype=F64)
        self.att = nnx.MultiHeadAttention(
            num_heads=2, in_features=8, decode=False, rngs=rngs, param_dtype=F64
        )
        self.head = nnx.Linear(8, 5, rngs=rngs, param_dtype=F64)

    def __call__(self, tokens):
        h = self.emb(tokens)
        return self.head(self.att(h, mask=nnx.make_causal_mask(tokens)))[:, -1]


class _LinenAttentionNet(nn.Module):
    @nn.compact
    def __call__(self, tokens):
        h = nn.Embed(9, 8, param_dtype=F64)(tokens)
        h = nn.MultiHeadDotProductAttention(num_heads=2, param_dtype=F64, dtype=F64)(h, h)
        return nn.Dense(5, param_dtype=F64)(h[:, -1])


@pytest.mark.float64
@pytest.mark.slow
def test_flax_attention_layers_nnx_and_linen():
    """flax's own attention (LinearGeneral projections, einsum with float32 accumulation of the logits)."""
    t = problems.randint(jax.random.key(12), (3, 5), 0, 9)
    f_nnx, p_nnx = ldjax.from_nnx(_FlaxAttentionNet(nnx.Rngs(0)))
    module = _LinenAttentionNet()
    f_linen, p_linen = ldjax.from_linen(module, module.init(jax.random.key(13), t[:1]))
    for f, p in ((f_nnx, p_nnx), (f_linen, p_linen)):
        report = structured.site_report(f, p, t, route="structured")
        assert "fallback" not in report.values(), report
        assert any(k.endswith("kernel") and v == "dot" for k, v in report.items()), report
        got = _routes(f, p, t, t[:2], "structured")
        ref = _reference(f, p, t, t[:2])
        # flax computes attention logits with preferred_element_type=float32: float32-level agreement
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * float(jnp.abs(ref).max()))

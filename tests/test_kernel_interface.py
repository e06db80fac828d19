"""The kernel factory's interface: ``method="auto"``, neural-tangents' axes, ``vmap_axes``, ``params_filter``,
the memory budget, ``explain_kernel``, the chunked kernel with resume, and the terms off the k-class path."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ldjax

import problems
from problems import mlp_apply
from problems import mlp_problem
from problems import seq_apply
from problems import seq_problem

pytestmark = pytest.mark.float64
F64 = dict(rtol=1e-10, atol=1e-12)


def nt_reference(full, trace_axes, diagonal_axes):
    """neural-tangents' trace / diagonal, step by step in numpy from its documented definition.

    ``full`` is ldjax's ``[n1, n2, *o, *o]``; nt's input layout is ``(N1, *o, N2, *o)``: trace the traced pairs
    (then divide by their sizes), take the diagonal of the diagonal pairs, and lay the rest out as adjacent
    pairs in output-axis order, diagonal axes once.
    """
    m = (full.ndim - 2) // 2
    k = np.moveaxis(np.asarray(full), 1, 1 + m)  # (N1, *o, N2, *o)
    ndim = m + 1
    pairs = {a: (a, ndim + a) for a in range(ndim)}
    axis_of = {a: [a, ndim + a] for a in range(ndim)}  # current positions of each output axis' two copies
    order = list(range(2 * ndim))  # labels of k's current axes: a for left copy, ndim + a for right copy
    divide = 1
    for a in range(ndim):
        if a in trace_axes:
            i, j = order.index(pairs[a][0]), order.index(pairs[a][1])
            divide *= k.shape[i]
            k = np.trace(k, axis1=i, axis2=j)
            order = [o for o in order if o not in pairs[a]]
        elif a in diagonal_axes:
            i, j = order.index(pairs[a][0]), order.index(pairs[a][1])
            k = np.diagonal(k, axis1=i, axis2=j)  # the diagonal becomes the last axis
            order = [o for o in order if o not in pairs[a]] + [("d", a)]
    del axis_of
    target = []
    for a in range(ndim):
        if a in trace_axes:
            continue
        target += [("d", a)] if a in diagonal_axes else [a, ndim + a]
    return np.transpose(k, [order.index(t) for t in target]) / divide


@pytest.mark.parametrize(
    "trace_axes, diagonal_axes",
    [((-1,), ()), ((1,), (2,)), ((2,), (0,)), ((0, 1, 2), ())],
)
def test_nt_axes_match_neural_tangents_definition(trace_axes, diagonal_axes):
    params, x1, _ = seq_problem(jax.random.key(0), n1=3, t=3, vocab=4)
    full = ldjax.empirical_ntk(seq_apply, params, x1, method="jacobian")  # [3, 3, T, V, T, V]
    got = ldjax.empirical_ntk_fn(seq_apply, trace_axes=trace_axes, diagonal_axes=diagonal_axes)(params, x1)
    want = nt_reference(full, {a % 3 for a in trace_axes}, {a % 3 for a in diagonal_axes})
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, **F64)


def test_diagonal_over_examples_alone_and_errors():
    params, x1, x2 = mlp_problem(jax.random.key(1), n1=4, n2=4)
    full = ldjax.empirical_ntk(mlp_apply, params, x1, x2, method="jacobian")
    diag = ldjax.empirical_ntk(mlp_apply, params, x1, x2, diagonal_axes=0, trace_axes=())
    np.testing.assert_allclose(diag, full[np.arange(4), np.arange(4)], **F64)
    mean_trace = ldjax.empirical_ntk(mlp_apply, params, x1, x2, diagonal_axes=0, trace_axes=-1)  # nt: a mean
    np.testing.assert_allclose(mean_trace, np.trace(diag, axis1=1, axis2=2) / 4, **F64)
    with pytest.raises(ValueError, match="pairs x1_i with x2_i: x1 has 4 examples but x2 has 2"):
        ldjax.empirical_ntk(mlp_apply, params, x1, x2[:2], diagonal_axes=0)
    with pytest.raises(ValueError, match="share an axis"):
        ldjax.empirical_ntk(mlp_apply, params, x1, trace_axes=1, diagonal_axes=1)
    with pytest.raises(ValueError, match=r"trace_axes must hold axes of the batched output \[n, \*o\]"):
        ldjax.empirical_ntk(mlp_apply, params, x1, trace_axes=2)
    with pytest.raises(ValueError, match="either trace=True"):
        ldjax.empirical_ntk_fn(mlp_apply, trace=True, trace_axes=-1)


def test_vmap_axes_takes_a_batched_function_as_neural_tangents_does():
    params, x1, x2 = mlp_problem(jax.random.key(2))
    batched = jax.vmap(mlp_apply, (None, 0))
    got = ldjax.empirical_ntk(batched, params, x1, x2, vmap_axes=0)
    np.testing.assert_allclose(got, ldjax.empirical_ntk(mlp_apply, params, x1, x2, method="jacobian"), **F64)
    transposed = lambda p, x: batched(p, x.T).T  # noqa: E731 - examples along axis 1 of input and output
    got = ldjax.empirical_ntk(transposed, params, x1, x2, vmap_axes=(1, 1), method="structured")
    np.testing.assert_allclose(got, ldjax.empirical_ntk(mlp_apply, params, x1, x2, method="jacobian"), **F64)
    with pytest.raises(ValueError, match="vmap_axes must be None, an int or"):
        ldjax.empirical_ntk_fn(batched, vmap_axes="batch")


def test_params_filter_is_the_kernel_of_the_selected_gradient():
    params, x1, x2 = mlp_problem(jax.random.key(3))
    selected = lambda name: name in ("w2", "b3")  # noqa: E731
    jacobian = jax.jit(lambda p, x: ldjax.jacobian(mlp_apply, p, x, precision="highest"))  # not op by op
    j1, j2 = jacobian(params, x1), jacobian(params, x2)
    want = sum(
        jnp.einsum("iap,jbp->ijab", j1[n].reshape(3, 4, -1), j2[n].reshape(2, 4, -1)) for n in ("w2", "b3")
    )
    for method in ("jacobian", "structured"):
        np.testing.assert_allclose(
            ldjax.empirical_ntk(mlp_apply, params, x1, x2, method=method, params_filter=selected), want, **F64
        )
    layers = ldjax.empirical_ntk(mlp_apply, params, x1, x2, per_layer=True, params_filter=selected)
    assert sorted(layers) == ["b3", "w2"]
    with pytest.raises(ValueError, match=r"params_filter selected no parameter; the leaves are \['b1'"):
        ldjax.empirical_ntk(mlp_apply, params, x1, params_filter=lambda name: False)
    # one_step: only the selected parameters move, and K is their kernel
    r = ldjax.one_step(
        mlp_apply,
        params,
        x1,
        x2,
        jnp.array([0, 3]),
        loss=ldjax.losses.cross_entropy,
        learning_rate=1e-3,
        params_filter=selected,
    )
    np.testing.assert_allclose(r.k, want, **F64)
    np.testing.assert_allclose(r.predicted, ldjax.decomposition(r.a, r.k, r.g, 1e-3), **F64)
    frozen = {n: (v if n in ("w2", "b3") else jax.lax.stop_gradient(v)) for n, v in params.items()}
    grads = jax.jit(
        jax.grad(
            lambda p: ldjax.losses.cross_entropy(jax.vmap(mlp_apply, (None, 0))(p, x2), jnp.array([0, 3]))
        )
    )(frozen)
    moved = {n: v - 1e-3 * grads[n] if n in ("w2", "b3") else v for n, v in params.items()}
    log_p = jax.jit(lambda p: jax.nn.log_softmax(jax.vmap(mlp_apply, (None, 0))(p, x1)))
    np.testing.assert_allclose(r.actual, log_p(moved) - log_p(params), **F64)


def test_auto_says_what_it_chose_and_the_jacobian_refuses_over_budget(caplog):
    params, x1, x2 = mlp_problem(jax.random.key(4))
    kernel_fn = ldjax.empirical_ntk_fn(mlp_apply)
    assert kernel_fn.method is None
    with caplog.at_level("INFO", logger="ldjax"):
        kernel_fn(params, x1, x2)
    assert kernel_fn.method in ("jacobian", "structured", "vector_products")
    assert f"method='auto' chose {kernel_fn.method!r}" in caplog.text
    plan = kernel_fn.explain(params, x1, x2)
    assert plan.method == kernel_fn.method and [r.name for r in plan.rows] == [
        "b1",
        "b2",
        "b3",
        "w1",
        "w2",
        "w3",
    ]
    assert "<- auto" in str(plan)
    with pytest.raises(
        ValueError,
        match=r"empirical_ntk\(method='jacobian'\) would need about .*per-example Jacobians of 5 examples",
    ):
        ldjax.empirical_ntk(mlp_apply, params, x1, x2, method="jacobian", memory_budget=1000)
    small = ldjax.empirical_ntk_fn(mlp_apply, memory_budget=1000)
    small(params, x1, x2)
    assert small.method != "jacobian"


def test_explain_names_fallbacks_and_their_reason():
    def model(p, x):
        return jnp.tanh(x * p["scale_inside_tanh"]) @ p["w"]

    p = {"scale_inside_tanh": jnp.ones(3), "w": jnp.ones((3, 2))}
    plan = ldjax.explain_kernel(model, p, jnp.ones((4, 3)))
    rows = {r.name: r for r in plan.rows}
    assert (rows["scale_inside_tanh"].route, rows["scale_inside_tanh"].reason) == ("gradients", "")
    plan = ldjax.explain_kernel(
        lambda p, x: jnp.tanh(p["a"]) * x @ p["w"], {"a": jnp.ones(3), "w": p["w"]}, jnp.ones((4, 3))
    )
    assert {r.name: (r.route, r.reason) for r in plan.rows}["a"] == ("fallback", "used by tanh")


def test_chunked_kernel_resumes_after_an_interruption(tmp_path):
    params, x1, x2 = mlp_problem(jax.random.key(5), n1=7, n2=5)
    full = ldjax.empirical_ntk(mlp_apply, params, x1, x2, method="jacobian")
    got = ldjax.chunked_ntk(mlp_apply, params, x1, x2, block_size=3, progress=False)
    np.testing.assert_allclose(got, full, **F64)
    gram = ldjax.empirical_ntk(mlp_apply, params, x1, trace=True, method="jacobian")
    computed = []

    def interrupt(i, j):
        computed.append((i, j))
        if len(computed) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ldjax.chunked_ntk(
            mlp_apply, params, x1, trace=True, block_size=3, directory=tmp_path, callback=interrupt
        )
    assert len(list(tmp_path.glob("block_*.npy"))) == 2 and not list(tmp_path.glob("*.tmp"))
    resumed = []
    got = ldjax.chunked_ntk(  # no block_size: the interrupted run's is read back from meta.json
        mlp_apply,
        params,
        x1,
        trace=True,
        directory=tmp_path,
        callback=lambda i, j: resumed.append((i, j)),
    )
    np.testing.assert_allclose(got, gram, **F64)
    assert sorted(computed + resumed) == [
        (i, j) for i in range(3) for j in range(3) if j >= i
    ]  # upper triangle
    assert json.loads((tmp_path / "meta.json").read_text())["block"] == 3
    with pytest.raises(ValueError, match="holds blocks of another computation"):
        ldjax.chunked_ntk(mlp_apply, params, x2, trace=True, block_size=3, directory=tmp_path)
    with pytest.raises(
        ValueError, match=r"the kernel itself, \(7, 5, 4, 4\) numbers .* exceeds memory_budget"
    ):
        ldjax.chunked_ntk(mlp_apply, params, x1, x2, memory_budget=1000)


def test_decomposition_of_sequence_terms_and_regression():
    params, x1, x2 = seq_problem(jax.random.key(6), n1=2, n2=2, t=3, vocab=4)
    y = ldjax.losses.SequenceTarget(x2, jnp.ones((2, 3)))
    r = ldjax.one_step(seq_apply, params, x1, x2, y, loss=ldjax.losses.sft, learning_rate=1e-3)
    np.testing.assert_allclose(ldjax.decomposition(r.a, r.k, r.g, 1e-3), r.predicted, **F64)
    # A = I: the first-order change of the outputs, -η K G, against a real SGD step of the outputs
    params, x1, x2 = mlp_problem(jax.random.key(7))
    g = jnp.array([[0.3, -0.1, 0.2, 0.0], [0.1, 0.1, -0.4, 0.2]])
    k = ldjax.empirical_ntk(mlp_apply, params, x1, x2)
    grads = jax.grad(lambda p: jnp.sum(jax.vmap(mlp_apply, (None, 0))(p, x2) * g))(params)
    outputs = lambda p: jax.vmap(mlp_apply, (None, 0))(p, x1)  # noqa: E731
    moved = jax.tree.map(lambda p, d: p - 1e-6 * d, params, grads)
    np.testing.assert_allclose(
        ldjax.decomposition(None, k, g, 1e-6), outputs(moved) - outputs(params), rtol=1e-4
    )
    with pytest.raises(ValueError, match=r"k has shape \(3, 2, 4, 4\) and g has shape \(2, 3\)"):
        ldjax.decomposition(None, k, g[:, :3], 0.1)
    with pytest.raises(ValueError, match=r"a has shape \(3, 4\): expected \[n_o, \*o, k\]"):
        ldjax.decomposition(jnp.ones((3, 4)), k, g, 0.1)


def test_one_logit_models_are_refused_or_wrapped_as_binary():
    def sigmoid_model(w, x):
        return jnp.tanh(x @ w["a"]) @ w["b"]  # [1]: one logit

    w = {"a": problems.normal(jax.random.key(8), (3, 4)), "b": problems.normal(jax.random.key(9), (4, 1))}
    x = problems.normal(jax.random.key(10), (4, 3))
    with pytest.raises(ValueError, match=r"returns one logit per example .* ldjax.binary_logits"):
        ldjax.one_step(
            sigmoid_model, w, x, x[:2], jnp.array([0, 1]), loss=ldjax.losses.cross_entropy, learning_rate=0.1
        )
    f = ldjax.binary_logits(sigmoid_model)
    r = ldjax.one_step(f, w, x, x[:2], jnp.array([0, 1]), loss=ldjax.losses.cross_entropy, learning_rate=1e-4)

    # class 1's Δ log σ(z) against binary cross-entropy on the sigmoid, stepped by hand
    def bce(p):
        z = jax.vmap(sigmoid_model, (None, 0))(p, x[:2])[:, 0]
        return -jnp.mean(jnp.array([jnp.log1p(-jax.nn.sigmoid(z[0])), jnp.log(jax.nn.sigmoid(z[1]))]))

    moved = jax.tree.map(lambda p, d: p - 1e-4 * d, w, jax.grad(bce)(w))
    log_sig = lambda p: jax.nn.log_sigmoid(jax.vmap(sigmoid_model, (None, 0))(p, x)[:, 0])  # noqa: E731
    np.testing.assert_allclose(r.actual[:, 1], log_sig(moved) - log_sig(w), **F64)
    assert float(jnp.abs(r.residual).max()) < 1e-3 * float(jnp.abs(r.actual).max())


def test_next_token_target_shift():
    seq, resp = jnp.array([[5, 6, 7, 8]]), jnp.array([[0, 0, 1, 1]])
    x, t = ldjax.losses.next_token_target(seq, resp)
    assert x.tolist() == [[5, 6, 7]] and t.tokens.tolist() == [[6, 7, 8]] and t.mask.tolist() == [[0, 1, 1]]
    x, t = ldjax.losses.next_token_target(seq, resp, shift=0)
    assert x.tolist() == t.tokens.tolist() == [[5, 6, 7, 8]] and t.mask.tolist() == [[0, 0, 1, 1]]
    with pytest.raises(ValueError, match="shift must be 1"):
        ldjax.losses.next_token_target(seq, resp, shift=2)


def test_predict_with_params_filter_freezes_the_rest():
    params, x1, x2 = mlp_problem(jax.random.key(11))
    y = jnp.array([1, 2])
    only_head = ldjax.predict_log_prob_change(
        mlp_apply,
        params,
        x1,
        x2,
        y,
        loss=ldjax.losses.cross_entropy,
        optimizer=optax.adam(1e-3),
        params_filter=lambda n: n.endswith("3"),
        actual=True,
    )
    full = ldjax.one_step(
        lambda p, x: mlp_apply({**params, "w3": p["w3"], "b3": p["b3"]}, x),
        {"w3": params["w3"], "b3": params["b3"]},
        x1,
        x2,
        y,
        loss=ldjax.losses.cross_entropy,
        optimizer=optax.adam(1e-3),
    )
    np.testing.assert_allclose(only_head.predicted, full.predicted, **F64)
    np.testing.assert_allclose(only_head.actual, full.actual, **F64)


def test_choose_method_weighs_passes_and_respects_the_budget():
    from ldjax._src.explain import PASS_WEIGHT
    from ldjax._src.explain import MethodCost
    from ldjax._src.explain import choose_method

    costs = {
        "jacobian": MethodCost(flops=100, bytes=50, pass_flops=10),  # score 100 + 4 * 10 = 140
        "structured": MethodCost(flops=60, bytes=10, pass_flops=30),  # score 60 + 4 * 30 = 180
        "vector_products": MethodCost(flops=500, bytes=1, pass_flops=500),
    }
    assert PASS_WEIGHT == 5
    assert choose_method(costs, budget=100) == "jacobian"
    assert choose_method(costs, budget=20) == "structured"  # the Jacobian does not fit
    assert choose_method(costs, budget=0) == "vector_products"  # nothing fits: the least memory

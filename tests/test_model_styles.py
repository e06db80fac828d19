"""Models in each style (flax NNX, flax linen, equinox) through the adapters: every NTK method agrees with
the Jacobian in float64, ``one_step`` matches a real optax step, and the original module is unchanged."""

from __future__ import annotations

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from model_zoo import EqxCnn
from model_zoo import EqxRnn
from model_zoo import LinenResNet
from model_zoo import LinenSeq2Seq
from model_zoo import NnxCnn
from model_zoo import ScanMLP

import ldjax

import problems

# The structured kernel (what "auto" picks for these models) on every model by default; vector products on
# every model in the slow test at the end (tests/test_kernel_interface.py checks "auto" and all methods).
METHODS = ("structured",)


pytestmark = pytest.mark.float64
# flax's BatchNorm, LayerNorm and avg_pool promote float64 with float32 (or int) inside flax
FLAX_PROMOTES = pytest.mark.standard_promotion


def _snapshot(tree):
    def value(a):
        if jnp.issubdtype(jnp.result_type(a), jax.dtypes.prng_key):
            a = jax.random.key_data(a)
        return np.array(a)

    return jax.tree.map(value, tree)


def _assert_same(before, after):
    jax.tree.map(np.testing.assert_array_equal, before, after)


def check_methods_and_step(
    apply_fn, params, x, y, loss=ldjax.losses.cross_entropy, optimizer=None, methods=METHODS, step=True
):
    """Every method against the Jacobian (float64); one_step against the real optax step it takes."""
    x1, x2 = jax.tree.map(lambda a: a[:3], x), jax.tree.map(lambda a: a[3:5], x)

    @jax.jit  # one compiled program for all the kernels (XLA shares their work: less compile time)
    def kernels(p, a, b):
        fns = [ldjax.empirical_ntk_fn(apply_fn, method=method) for method in methods]
        return ldjax.empirical_ntk(apply_fn, p, a, b, method="jacobian"), [fn(p, a, b) for fn in fns]

    reference, by_method = kernels(params, x1, x2)
    assert float(jnp.abs(reference).max()) > 0
    for got in by_method:
        np.testing.assert_allclose(got, reference, rtol=1e-9, atol=1e-12 * float(jnp.abs(reference).max()))
    if not step:
        return None
    lr = 1e-4
    r = ldjax.one_step(
        apply_fn,
        params,
        x1,
        jax.tree.map(lambda a: a[3:5], x),
        y,
        loss=loss,
        learning_rate=None if optimizer else lr,
        optimizer=optimizer,
        terms=False,
    )
    assert float(jnp.abs(r.actual).max()) > 0
    assert float(jnp.abs(r.residual).max()) < 1e-3 * float(jnp.abs(r.actual).max())
    if optimizer is None:  # predicted = −η A K G with the reference kernel
        a = jax.jit(lambda p, x: ldjax.a_term(jax.vmap(apply_fn, (None, 0))(p, x)))(
            params, x1
        )  # not op by op
        np.testing.assert_allclose(
            r.predicted, ldjax.decomposition(a, reference, r.g, lr), rtol=1e-8, atol=1e-14
        )
    return r


def nnx_cnn():
    model = NnxCnn(nnx.Rngs(0))
    x = problems.normal(jax.random.key(1), (5, 6, 6, 1), jnp.float64)
    return model, x, *ldjax.from_nnx(model, nnx.Rngs(dropout=1), example_shape=(6, 6, 1))


def nnx_scan():
    model = ScanMLP(3, n_layers=2, rngs=nnx.Rngs(0))
    x = problems.normal(jax.random.key(1), (5, 3), jnp.float64)
    return model, x, *ldjax.from_nnx(model)


def linen_resnet():
    module = LinenResNet()
    x = problems.normal(jax.random.key(1), (5, 5, 5, 1), jnp.float64)
    variables = module.init(jax.random.key(0), x, train=False)
    # float64 statistics (flax keeps them float32; f32 rsqrt differs by an ulp between compiled programs)
    stats = jax.tree.map(lambda a: a.astype(jnp.float64) + 0.1, variables["batch_stats"])
    variables = {**variables, "batch_stats": stats}
    return (module, variables), x, *ldjax.from_linen(module, variables, train=False)


def linen_seq2seq():
    module = LinenSeq2Seq()
    inputs = problems.randint(jax.random.key(1), (5, 4), 0, 5)
    targets = problems.randint(jax.random.key(2), (5, 3), 0, 5)
    variables = module.init(jax.random.key(0), inputs, targets)
    return module, (inputs, targets), *ldjax.from_linen(module, variables, deterministic=True)


def eqx_cnn():
    model = EqxCnn(jax.random.key(0))
    x = problems.normal(jax.random.key(1), (5, 1, 6, 6), jnp.float64)
    return model, x, *ldjax.from_equinox(model)


def eqx_rnn():
    model = EqxRnn(2, 3, 3, jax.random.key(2))
    xs = problems.normal(jax.random.key(3), (5, 4, 2), jnp.float64)
    return model, xs, *ldjax.from_equinox(model)


@pytest.mark.slow
@FLAX_PROMOTES
@pytest.mark.parametrize("build", [nnx_cnn, nnx_scan, linen_resnet, linen_seq2seq, eqx_cnn, eqx_rnn])
def test_vector_products_agree_on_every_style(build):
    _, x, apply_fn, params = build()
    check_methods_and_step(apply_fn, params, x, None, methods=("vector_products",), step=False)


@FLAX_PROMOTES
def test_nnx_cnn_with_batchnorm_dropout_and_rngs_call_argument():
    model, x, apply_fn, params = nnx_cnn()
    before = _snapshot(nnx.state(model))
    model.eval()  # the adapter's copy is in eval mode: same logits as the module in eval mode
    np.testing.assert_allclose(
        jax.vmap(apply_fn, (None, 0))(params, x), model(x, nnx.Rngs(dropout=2)), rtol=1e-12
    )
    model.train()
    check_methods_and_step(apply_fn, params, x, jnp.array([0, 2]))
    _assert_same(before, _snapshot(nnx.state(model)))


@FLAX_PROMOTES
def test_nnx_train_mode_never_moves_the_module_batch_statistics():
    model = NnxCnn(nnx.Rngs(0))
    model.batch_norm1.mean[...] = jnp.full(3, 0.3, model.batch_norm1.mean[...].dtype)
    before = _snapshot(nnx.state(model))
    x = problems.normal(jax.random.key(1), (2, 6, 6, 1), jnp.float64)
    apply_fn, params = ldjax.from_nnx(model, nnx.Rngs(dropout=1), eval_mode=False)
    eager = apply_fn(params, x[0])
    jitted = jax.jit(apply_fn)(params, x[0])
    np.testing.assert_allclose(eager, jitted, rtol=1e-12)
    _assert_same(before, _snapshot(nnx.state(model)))
    # the frozen state is a copy: later changes to the module do not leak into apply_fn
    model.batch_norm1.mean[...] = jnp.zeros(3, model.batch_norm1.mean[...].dtype)
    np.testing.assert_allclose(apply_fn(params, x[0]), eager, rtol=1e-12)


@FLAX_PROMOTES
def test_nnx_scan_over_layers_and_per_layer_kernels_by_layer_index():
    model, x, apply_fn, params = nnx_scan()
    before = _snapshot(nnx.state(model))
    assert params["layers"]["linear"]["kernel"].shape == (2, 3, 3)
    check_methods_and_step(apply_fn, params, x, jnp.array([1, 0]))
    layers = ldjax.empirical_ntk(apply_fn, params, x[:3], per_layer=True)
    assert "layers/linear/kernel[0]" in layers and "layers/linear/kernel[1]" in layers
    assert "layers/linear/kernel" not in layers
    np.testing.assert_allclose(
        sum(layers.values()), ldjax.empirical_ntk(apply_fn, params, x[:3], method="jacobian"), rtol=1e-10
    )
    # layer 1's kernel is the kernel of the gradient restricted to slice 1 of the stacked leaf
    (j,) = jax.tree.leaves(
        jax.tree.map(
            lambda a: a[:, :, 1].reshape(3, 3, -1),
            ldjax.jacobian(apply_fn, params, x[:3])["layers"]["linear"]["kernel"],
        )
    )
    np.testing.assert_allclose(
        layers["layers/linear/kernel[1]"], jnp.einsum("iap,jbp->ijab", j, j), rtol=1e-10
    )
    plan = ldjax.explain_kernel(apply_fn, params, x[:3])
    row = {r.name: r for r in plan.rows}["layers/linear/kernel"]
    assert (row.route, row.layers, row.reason) == ("fallback", 2, "used by scan")
    _assert_same(before, _snapshot(nnx.state(model)))


@FLAX_PROMOTES
def test_linen_resnet_with_batch_stats_needs_train_false_and_says_so():
    (module, variables), x, apply_fn, params = linen_resnet()
    before = _snapshot(variables)
    untrained, _ = ldjax.from_linen(module, variables)  # train defaults to True in the module
    with pytest.raises(ValueError, match=r"unbound axis name.*pass the module's eval flag.*train=False"):
        ldjax.empirical_ntk(untrained, params, x[:2])
    np.testing.assert_allclose(
        jax.vmap(apply_fn, (None, 0))(params, x), module.apply(variables, x, train=False), rtol=1e-12
    )
    check_methods_and_step(apply_fn, params, x, jnp.array([2, 1]), optimizer=optax.adam(1e-4))
    _assert_same(before, _snapshot(variables))


@FLAX_PROMOTES
def test_linen_batchnorm_update_in_training_mode_has_a_hint():
    class Bn(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(2)(nn.BatchNorm(use_running_average=False)(x))

    module = Bn()
    variables = module.init(jax.random.key(0), jnp.ones((2, 3)))
    apply_fn, params = ldjax.from_linen(module, variables)
    with pytest.raises(ValueError, match=r"mutable=\['batch_stats'\] to discard the update"):
        apply_fn(params, jnp.ones(3))
    apply_fn, params = ldjax.from_linen(module, variables, mutable=["batch_stats"])
    assert apply_fn(params, jnp.ones(3)).shape == (2,)


def test_linen_two_input_sequence_model():
    _, (inputs, targets), apply_fn, params = linen_seq2seq()
    assert apply_fn(params, (inputs[0], targets[0])).shape == (3, 5)
    y = ldjax.losses.SequenceTarget(targets[3:5], jnp.ones((2, 3)))
    check_methods_and_step(apply_fn, params, (inputs, targets), y, loss=ldjax.losses.sft)


def test_equinox_cnn_and_gru_rnn():
    model, x, apply_fn, params = eqx_cnn()
    before = _snapshot(eqx.filter(model, eqx.is_array))
    per_layer = jax.eval_shape(
        lambda p, x: ldjax.empirical_ntk(apply_fn, p, x, per_layer=True), params, x[:2]
    )
    assert "layers/0/weight" in per_layer  # the names, traced without compiling the kernels
    check_methods_and_step(apply_fn, params, x, jnp.array([0, 1]))
    _assert_same(before, _snapshot(eqx.filter(model, eqx.is_array)))

    _, xs, apply_fn, params = eqx_rnn()
    check_methods_and_step(apply_fn, params, xs, jnp.array([2, 0]), optimizer=optax.sgd(1e-4, momentum=0.9))


def test_wrong_library_and_non_array_parameters_are_named():
    eqx_model = eqx.nn.Linear(3, 2, key=jax.random.key(0))
    with pytest.raises(
        ValueError, match=r"module must be an nnx Module, got an equinox Module: use ldjax.from_equinox"
    ):
        ldjax.from_nnx(eqx_model)
    with pytest.raises(ValueError, match=r"got a linen Module: use ldjax.from_linen\(module, variables\)"):
        ldjax.from_nnx(nn.Dense(2))
    with pytest.raises(
        ValueError, match=r"model must be an equinox Module, got an nnx Module: use ldjax.from_nnx"
    ):
        ldjax.from_equinox(nnx.Linear(2, 2, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match=r"params\.layers\[1\]\.fn is a PjitFunction, not an array"):
        ldjax.from_equinox(eqx.nn.Sequential([eqx_model, eqx.nn.Lambda(jnp.tanh)]), filter=lambda leaf: True)
    with pytest.raises(ValueError, match=r"variables\['params'\]\['w'\] has dtype int"):
        ldjax.from_linen(nn.Dense(2), {"params": {"w": jnp.ones(3, int)}})

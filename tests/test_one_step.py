"""one_step: the decomposition, a real optimizer step, the O(η²) residual, and input errors."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ldjax

import problems
from problems import cnn_apply
from problems import cnn_problem
from problems import mlp_apply
from problems import mlp_problem
from problems import optax_update
from typechecking import ill_typed

CE = ldjax.losses.cross_entropy


def residual_slope(apply_fn, params, x_o, x_u, y_u, learning_rates, **kwargs):
    norms = []
    for lr in learning_rates:
        if "optimizer_fn" in kwargs:
            opt = kwargs["optimizer_fn"](lr)
            extra = {"optimizer": opt, "opt_state": kwargs["state_fn"](opt)}
        else:
            extra = {"learning_rate": lr}
        r = ldjax.one_step(apply_fn, params, x_o, x_u, y_u, loss=CE, terms=False, **extra)
        norms.append(float(jnp.linalg.norm(r.residual)))
    return np.polyfit(np.log(learning_rates), np.log(norms), 1)[0], norms


@pytest.mark.float64
def test_predicted_is_minus_eta_a_k_g_and_actual_is_a_real_sgd_step():
    params, x_o, x_u = mlp_problem(jax.random.key(0), n1=5, n2=3)
    y_u = jnp.array([0, 2, 3])
    lr = 1e-2
    r = jax.jit(functools.partial(ldjax.one_step, mlp_apply, loss=CE, learning_rate=lr))(
        params, x_o, x_u, y_u
    )
    assert r.predicted.shape == (5, 4) and r.a.shape == (5, 4, 4) and r.k.shape == (5, 3, 4, 4)
    np.testing.assert_allclose(r.predicted, ldjax.decomposition(r.a, r.k, r.g, lr), rtol=1e-10, atol=1e-14)
    # the actual change from an explicit SGD step written out by hand
    grads = jax.grad(lambda p: CE(jax.vmap(mlp_apply, (None, 0))(p, x_u), y_u))(params)
    new = jax.tree.map(lambda p, g: p - lr * g, params, grads)
    logp = lambda p: jax.nn.log_softmax(jax.vmap(mlp_apply, (None, 0))(p, x_o))  # noqa: E731
    np.testing.assert_allclose(r.actual, logp(new) - logp(params), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(
        r.g, ldjax.losses.cross_entropy_g(jax.vmap(mlp_apply, (None, 0))(params, x_u), y_u)
    )
    np.testing.assert_allclose(r.residual, r.actual - r.predicted)
    np.testing.assert_allclose(r.predicted.sum(-1) * 0, 0)  # shape sanity
    assert float(jnp.abs(r.actual).max()) > 1e-4


@pytest.mark.float64
@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_residual_shrinks_like_eta_squared_for_sgd(model):
    apply_fn, problem = {"mlp": (mlp_apply, mlp_problem), "cnn": (cnn_apply, cnn_problem)}[model]
    params, x_o, x_u = problem(jax.random.key(1), n1=6, n2=2)
    y_u = jnp.array([1, 0])
    slope, norms = residual_slope(apply_fn, params, x_o, x_u, y_u, [1e-3, 3e-3, 1e-2, 3e-2, 1e-1])
    assert abs(slope - 2.0) < 0.2, (slope, norms)


@pytest.mark.float64
@pytest.mark.parametrize("name", ["momentum", "adam"])
def test_optax_optimizers_jvp_prediction_is_first_order(name):
    """With momentum (non-zero buffer from earlier steps) or Adam, predicted = A·J(x_o)·u, error O(η²)."""
    params, x_o, x_u = mlp_problem(jax.random.key(2), n1=6, n2=3)
    y_u = jnp.array([1, 0, 3])
    make = {
        "momentum": lambda lr: optax.sgd(lr, momentum=0.9),
        "adam": lambda lr: optax.adam(lr),
    }[name]

    def warm_state(opt):  # a state with history: two earlier steps on other data
        state = opt.init(params)
        for seed in (10, 11):
            g = jax.tree.map(lambda p, s=seed: problems.normal(jax.random.key(s), p.shape, p.dtype), params)
            _, state = optax_update(opt, g, state, params)
        return state

    slope, norms = residual_slope(
        mlp_apply, params, x_o, x_u, y_u, [1e-3, 3e-3, 1e-2, 3e-2], optimizer_fn=make, state_fn=warm_state
    )
    assert abs(slope - 2.0) < 0.2, (slope, norms)
    opt = make(1e-2)
    state = warm_state(opt)
    r = ldjax.one_step(mlp_apply, params, x_o, x_u, y_u, loss=CE, optimizer=opt, opt_state=state)
    # the actual change comes from the real optax update with that state
    grads = jax.grad(lambda p: CE(jax.vmap(mlp_apply, (None, 0))(p, x_u), y_u))(params)
    updates, _ = optax_update(opt, grads, state, params)
    new = optax.apply_updates(params, updates)
    logp = lambda p: jax.nn.log_softmax(jax.vmap(mlp_apply, (None, 0))(p, x_o))  # noqa: E731
    np.testing.assert_allclose(r.actual, logp(new) - logp(params), rtol=1e-10, atol=1e-14)


@pytest.mark.float64
def test_the_first_order_change_of_a_momentum_step_differs_from_plain_sgd():
    """The optimizer's update matters: with a momentum buffer the SGD-only A·K·G would be wrong."""
    params, x_o, x_u = mlp_problem(jax.random.key(3), n1=4, n2=2)
    y_u = jnp.array([1, 2])
    opt = optax.sgd(1e-3, momentum=0.9)
    state = opt.init(params)
    g = jax.tree.map(lambda p: jnp.ones_like(p), params)
    _, state = optax_update(opt, g, state, params)
    with_state = ldjax.one_step(mlp_apply, params, x_o, x_u, y_u, loss=CE, optimizer=opt, opt_state=state)
    plain = ldjax.one_step(mlp_apply, params, x_o, x_u, y_u, loss=CE, learning_rate=1e-3)
    assert float(jnp.abs(with_state.residual).max()) < 0.05 * float(jnp.abs(with_state.actual).max())
    assert float(jnp.abs(plain.predicted - with_state.actual).max()) > 0.5 * float(
        jnp.abs(with_state.actual).max()
    )


# ---- bad input ---------------------------------------------------------------------------------


@pytest.fixture
def small():
    params, x_o, x_u = mlp_problem(jax.random.key(4), n1=3, n2=2, dtype=jnp.float32)
    return params, x_o, x_u, jnp.array([0, 1])


def call(small, **over):
    params, x_o, x_u, y_u = small
    kwargs = {"loss": CE, "learning_rate": 0.1}
    args = {"params": params, "x_o": x_o, "x_u": x_u, "y_u": y_u}
    for key in list(over):
        if key in args:
            args[key] = over.pop(key)
    kwargs.update(over)
    apply_fn = kwargs.pop("apply_fn", mlp_apply)
    return ldjax.one_step(apply_fn, args["params"], args["x_o"], args["x_u"], args["y_u"], **kwargs)


def test_batched_where_one_example_is_expected(small):
    params, x_o, x_u, y_u = small
    f = ldjax.as_apply_fn(mlp_apply, example_shape=(5,))
    with (
        pytest.raises(
            ValueError, match=r"x_u has shape \(1, 2, 5\) but apply_fn expects one example of shape \(5,\)"
        ),
        ill_typed(),
    ):
        call(small, apply_fn=f, x_u=x_u[None], x_o=x_o[:2][None])
    # a plain function: the extra axis shows up as 2-D logits, refused for float inputs (not a sequence model)
    with (
        pytest.raises(
            ValueError, match=r"logits of shape \(2, 4\) for one example of x_u: x_u may be batched"
        ),
        ill_typed(),
    ):
        call(small, x_u=x_u[None], x_o=x_o[:2][None], y_u=y_u[:1])
    with (
        pytest.raises(ValueError, match=r"x_u is a scalar|apply_fn failed on one example of x_u"),
        ill_typed(),
    ):
        call(small, x_u=x_u[0, 0], x_o=x_o[:, 0])


def test_mismatched_x_o_and_x_u(small):
    _, x_o, _, _ = small
    with (
        pytest.raises(
            ValueError, match=r"x_o holds examples of shape \(4,\) but x_u holds examples of shape \(5,\)"
        ),
        ill_typed(),
    ):
        call(small, x_o=x_o[:, :4])


def test_labels_out_of_range_or_not_integers(small):
    with pytest.raises(ValueError, match=r"y_u holds labels in \[0, 7\] but the model has k=4 classes"):
        call(small, y_u=jnp.array([0, 7]))
    with pytest.raises(
        ValueError, match=r"y_u must hold integer class labels in \[0, 4\), got dtype float32"
    ):
        call(small, y_u=jnp.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="y_u has 3 targets but x_u has 2 examples"):
        call(small, y_u=jnp.array([0, 1, 2]))


def test_nan_or_inf_in_params_or_inputs(small):
    params, x_o, x_u, _ = small
    bad = dict(params, w2=params["w2"].at[0, 0].set(jnp.nan))
    with pytest.raises(ValueError, match=r"params\['w2'\] contains 1 NaN or inf value"):
        call(small, params=bad)
    with pytest.raises(ValueError, match=r"x_u contains 1 NaN or inf value"):
        call(small, x_u=x_u.at[1, 2].set(jnp.inf))
    with pytest.raises(ValueError, match=r"x_o contains 1 NaN or inf value"):
        call(small, x_o=x_o.at[0, 0].set(jnp.nan))


def test_empty_batches(small):
    _, x_o, x_u, y_u = small
    with pytest.raises(ValueError, match=r"x_u is an empty batch \(shape \(0, 5\)\)"):
        call(small, x_u=x_u[:0], y_u=y_u[:0])
    with pytest.raises(ValueError, match=r"x_o is an empty batch"):
        call(small, x_o=x_o[:0])


def test_loss_must_return_a_scalar(small):
    with pytest.raises(ValueError, match=r"loss must return a scalar .* got shape \(2,\)"):
        call(small, loss=lambda z, y: -jax.nn.log_softmax(z)[jnp.arange(2), y])


def test_learning_rate_and_optimizer_are_checked(small):
    with pytest.raises(ValueError, match="learning_rate is required"):
        call(small, learning_rate=None)
    with pytest.raises(ValueError, match="learning_rate must be None when optimizer is given"):
        call(small, optimizer=optax.adam(1e-3))
    with pytest.raises(ValueError, match="learning_rate must be a positive finite scalar"):
        call(small, learning_rate=-1.0)

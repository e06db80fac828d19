"""Optimizer-aware kernels against real optax steps and an explicit float64 J·diag(P)·Jᵀ."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

import ldjax

from problems import mlp_apply
from problems import mlp_problem
from problems import optax_update
from typechecking import ill_typed

CASES = [
    ("sgd", {}, lambda lr: optax.sgd(lr)),
    ("momentum", {"momentum": 0.8}, lambda lr: optax.sgd(lr, momentum=0.8)),
    ("momentum", {"momentum": 0.8, "nesterov": True}, lambda lr: optax.sgd(lr, momentum=0.8, nesterov=True)),
    ("rmsprop", {"decay": 0.7}, lambda lr: optax.rmsprop(lr, decay=0.7)),
    ("adam", {"b1": 0.8, "b2": 0.95}, lambda lr: optax.adam(lr, b1=0.8, b2=0.95)),
]
IDS = ["sgd", "momentum", "nesterov", "rmsprop", "adam"]
CE = ldjax.losses.cross_entropy


def _trained_state(opt, params, x, y, steps=2):
    """An optimizer state with nonzero moments: a few real steps on (x, y)."""
    state = opt.init(params)
    for _ in range(steps):
        grads = jax.grad(lambda p: ldjax.losses.cross_entropy(jax.vmap(mlp_apply, (None, 0))(p, x), y))(
            params
        )
        _, state = optax_update(opt, grads, state, params)
    return state


def _step(kind, hp, learning_rate, **kwargs):
    """``ldjax.preconditioned_one_step`` on the test model with cross-entropy, compiled."""
    return jax.jit(
        functools.partial(
            ldjax.preconditioned_one_step,
            mlp_apply,
            loss=CE,
            optimizer=kind,
            learning_rate=learning_rate,
            **hp,
            **kwargs,
        )
    )


def _problem(dtype=jnp.float64):
    params, x_o, x_u = mlp_problem(jax.random.key(0), n1=4, n2=3, dtype=dtype)
    y_u = jnp.array([0, 3, 1])
    return params, x_o, x_u, y_u


@pytest.mark.float64
@pytest.mark.parametrize(("kind", "hp", "make"), CASES, ids=IDS)
def test_update_matches_optax(kind, hp, make):
    params, _, x_u, y_u = _problem()
    opt = make(0.03)
    state = _trained_state(opt, params, x_u, y_u[::-1])
    grads = jax.grad(lambda p: ldjax.losses.cross_entropy(jax.vmap(mlp_apply, (None, 0))(p, x_u), y_u))(
        params
    )
    up = ldjax.optimizer_update(grads, state, optimizer=kind, learning_rate=0.03, **hp)
    mine = jax.tree.map(
        lambda p, g, m: -up.coefficient * p * g + m, up.preconditioner, grads, up.momentum_update
    )
    real, _ = optax_update(opt, grads, state, params)
    np.testing.assert_allclose(ravel_pytree(mine)[0], ravel_pytree(real)[0], rtol=1e-12, atol=1e-15)


SLOW = pytest.mark.slow
DECOMPOSITION_CASES = [
    CASES[1],
    pytest.param(*CASES[2], marks=SLOW, id="nesterov"),
    pytest.param(*CASES[3], marks=SLOW, id="rmsprop"),
    CASES[4],
]


@pytest.mark.float64
@pytest.mark.parametrize(
    ("kind", "hp", "make"), DECOMPOSITION_CASES, ids=["momentum", "nesterov", "rmsprop", "adam"]
)
def test_decomposition_matches_real_step(kind, hp, make):
    params, x_o, x_u, y_u = _problem()
    lr = 1e-3
    opt = make(lr)
    state = _trained_state(opt, params, x_u, y_u[::-1])
    r = _step(kind, hp, lr)(params, x_o, x_u, y_u, opt_state=state)
    # the two terms add up to the first-order change for the real optax update
    ref = ldjax.one_step(
        mlp_apply, params, x_o, x_u, y_u, loss=CE, optimizer=opt, opt_state=state, terms=False
    )
    np.testing.assert_allclose(r.predicted, ref.predicted, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(r.actual, ref.actual, rtol=1e-12, atol=1e-15)
    if kind in ("momentum", "adam"):
        assert float(jnp.abs(r.momentum_term).max()) > 1e-3 * float(jnp.abs(r.gradient_term).max())
    # explicit reference for K_P = J(x_o) diag(P) J(x_u)^T and the gradient term −c·A·K_P·G
    flat, unravel = ravel_pytree(params)
    jac = lambda x: jax.vmap(jax.jacrev(lambda v, xi: mlp_apply(unravel(v), xi)), (None, 0))(flat, x)  # noqa: E731
    p_flat = ravel_pytree(r.update.preconditioner)[0]
    k_ref = jnp.einsum("iap,p,jbp->ijab", jac(x_o), p_flat, jac(x_u))
    np.testing.assert_allclose(r.k, k_ref, rtol=1e-10, atol=1e-12)
    z_o = jax.vmap(mlp_apply, (None, 0))(params, x_o)
    force = jnp.einsum("ijab,jb->ia", k_ref, r.g)
    grad_term = -r.update.coefficient * jnp.einsum("iab,ib->ia", ldjax.a_term(z_o), force)
    np.testing.assert_allclose(r.gradient_term, grad_term, rtol=1e-9, atol=1e-14)


@pytest.mark.float64
@pytest.mark.parametrize(
    ("kind", "hp", "make"), [CASES[1], CASES[3], CASES[4]], ids=["momentum", "rmsprop", "adam"]
)
def test_error_shrinks_like_eta_squared(kind, hp, make):
    params, x_o, x_u, y_u = _problem()
    errors = []
    for lr in (2e-3, 1e-3):
        state = _trained_state(make(lr), params, x_u, y_u[::-1])
        r = _step(kind, hp, lr, terms=False)(params, x_o, x_u, y_u, opt_state=state)
        errors.append(float(jnp.abs(r.actual - r.predicted).max()))
    assert 3.0 < errors[0] / errors[1] < 5.0, errors


@pytest.mark.float64
@pytest.mark.slow
def test_structured_preconditioned_kernel():
    params, x_o, x_u, _ = _problem()
    p = jax.tree.map(lambda a: jnp.abs(a) + 0.5, params)
    a = ldjax.preconditioned_ntk(mlp_apply, params, x_o, x_u, preconditioner=p, method="structured")
    b = ldjax.preconditioned_ntk(mlp_apply, params, x_o, x_u, preconditioner=p)
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_errors_name_the_argument():
    params, x_o, x_u, y_u = _problem(jnp.float32)
    with pytest.raises(ValueError, match="preconditioner must be a pytree with the structure of params"):
        ldjax.preconditioned_ntk(mlp_apply, params, x_o, preconditioner={"w1": params["w1"]})
    with (
        pytest.raises(ValueError, match="optimizer must be 'sgd', 'momentum', 'rmsprop' or 'adam'"),
        ill_typed(),
    ):
        ldjax.preconditioned_one_step(
            mlp_apply,
            params,
            x_o,
            x_u,
            y_u,
            loss=ldjax.losses.cross_entropy,
            optimizer="lion",
            learning_rate=0.1,
        )
    with pytest.raises(ValueError, match="do not apply to optimizer='adam'"):
        ldjax.preconditioned_one_step(
            mlp_apply,
            params,
            x_o,
            x_u,
            y_u,
            loss=ldjax.losses.cross_entropy,
            optimizer="adam",
            learning_rate=0.1,
            momentum=0.9,
        )

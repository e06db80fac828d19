"""The first-order step against float64 references: finite-difference Jacobians, explicit A·K·G, real optax steps."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

import ldjax
from ldjax._src import checks
from ldjax._src.first_order import actual_change
from ldjax._src.first_order import batch_update
from ldjax._src.first_order import first_order_step
from ldjax._src.first_order import force_gradient
from ldjax._src.first_order import probe_change
from ldjax._src.first_order import split_change
from ldjax._src.optimizer_updates import gradient_update

import problems
from problems import finite_difference_jacobian
from problems import finite_difference_ntk
from problems import mlp_apply
from problems import mlp_problem
from problems import optax_update
from problems import seq_apply
from problems import seq_problem
from typechecking import ill_typed

CE = ldjax.losses.cross_entropy
F64 = {"rtol": 1e-6, "atol": 1e-9}  # against central differences with eps = 1e-6 in float64
EXACT = {"rtol": 1e-10, "atol": 1e-13}  # two exact float64 computations of the same quantity


def logits(apply_fn, params, x):
    return jax.vmap(apply_fn, (None, 0))(params, x)


def problem(seed=0, n_o=5, n_u=3, dtype=jnp.float64):
    params, x_o, x_u = mlp_problem(jax.random.key(seed), n1=n_o, n2=n_u, dtype=dtype)
    y_u = jnp.array([0, 2, 3, 1, 1][:n_u])
    return params, x_o, x_u, y_u


# The references compiled whole, not op by op (an eager optax update compiles each of its operations)
ce_gradient = jax.jit(jax.grad(lambda p, x, y: CE(logits(mlp_apply, p, x), y)))
optax_update_jit = jax.jit(optax_update, static_argnums=0)


def warm_adam(params, x, y):
    """Adam with nonzero moments: two real steps on other targets."""
    opt = optax.adam(1e-2, b1=0.8, b2=0.95)
    state = opt.init(params)
    for _ in range(2):
        grads = ce_gradient(params, x, y)
        _, state = optax_update_jit(opt, grads, state, params)
    return opt, state


def explicit_change(params, x_o, u_flat):
    """A(x_o)·J(x_o)·u with J by finite differences and A formed: the slow reference."""
    j_o = finite_difference_jacobian(mlp_apply, params, x_o)  # [n_o, k, p]
    a = ldjax.a_term(logits(mlp_apply, params, x_o))
    return np.einsum("iab,ibp,p->ia", a, j_o, u_flat)


@pytest.mark.float64
def test_batch_update_is_one_real_optax_step():
    params, _, x_u, y_u = problem()
    opt, state = warm_adam(params, x_u, y_u[::-1])
    b = jax.jit(functools.partial(batch_update, mlp_apply, loss=CE, optimizer=opt))(
        params, x_u, y_u, opt_state=state
    )
    z_u = logits(mlp_apply, params, x_u)
    np.testing.assert_allclose(b.loss, CE(z_u, y_u), **EXACT)
    np.testing.assert_allclose(b.g, ldjax.losses.cross_entropy_g(z_u, y_u), **EXACT)
    # ∂L/∂θ = J(x_u)ᵀ G with a finite-difference Jacobian
    j_u = finite_difference_jacobian(mlp_apply, params, x_u)  # [n_u, k, p]
    np.testing.assert_allclose(ravel_pytree(b.grads)[0], np.einsum("iap,ia->p", j_u, b.g), **F64)
    # the update and the new state are optax's for the same gradient
    grads = ce_gradient(params, x_u, y_u)
    updates, new_state = optax_update_jit(opt, grads, state, params)
    np.testing.assert_allclose(ravel_pytree(b.updates)[0], ravel_pytree(updates)[0], **EXACT)
    chex.assert_trees_all_close(b.opt_state, new_state, **EXACT)
    # without a state: optimizer.init
    fresh = batch_update(mlp_apply, params, x_u, y_u, CE, opt)
    np.testing.assert_allclose(
        ravel_pytree(fresh.updates)[0],
        ravel_pytree(optax_update_jit(opt, grads, opt.init(params), params)[0])[0],
        **EXACT,
    )


@pytest.mark.float64
def test_probe_change_is_a_times_j_times_u():
    params, x_o, _, _ = problem(1)
    u = jax.tree.map(lambda p: 1e-2 * problems.normal(jax.random.key(7), p.shape, p.dtype), params)
    change, z_o = jax.jit(functools.partial(probe_change, mlp_apply))(params, u, x_o)
    np.testing.assert_allclose(z_o, logits(mlp_apply, params, x_o), **EXACT)
    np.testing.assert_allclose(change, explicit_change(params, x_o, ravel_pytree(u)[0]), **F64)
    # probability is conserved to first order: Σ_a π_a Δlog π_a = 0 (A = I − 1πᵀ, not I)
    np.testing.assert_allclose(jnp.sum(jax.nn.softmax(z_o) * change, -1), 0.0, atol=1e-15)
    assert float(jnp.abs(change).max()) > 1e-3


@pytest.mark.float64
def test_actual_change_is_the_log_softmax_difference():
    params, x_o, _, _ = problem(2)
    u = jax.tree.map(lambda p: 0.1 * jnp.ones_like(p), params)
    new = jax.tree.map(lambda p, d: p + d, params, u)
    want = jax.nn.log_softmax(logits(mlp_apply, new, x_o)) - jax.nn.log_softmax(
        logits(mlp_apply, params, x_o)
    )
    np.testing.assert_allclose(actual_change(mlp_apply, params, u, x_o), want, **EXACT)
    z_o = logits(mlp_apply, params, x_o)
    np.testing.assert_allclose(actual_change(mlp_apply, params, u, x_o, z_o), want, **EXACT)


@pytest.mark.float64
def test_first_order_step_for_sgd_is_minus_eta_a_k_g():
    params, x_o, x_u, y_u = problem(3)
    eta = 0.05
    s = jax.jit(functools.partial(first_order_step, mlp_apply, loss=CE, optimizer=optax.sgd(eta)))(
        params, x_o, x_u, y_u
    )
    k = finite_difference_ntk(mlp_apply, params, x_o, x_u)
    a = ldjax.a_term(logits(mlp_apply, params, x_o))
    np.testing.assert_allclose(s.predicted, ldjax.decomposition(a, k, s.g, eta), **F64)
    np.testing.assert_allclose(ravel_pytree(s.updates)[0], -eta * ravel_pytree(s.grads)[0], **EXACT)


@pytest.mark.float64
def test_force_gradient_of_the_whole_force_is_the_loss_gradient():
    params, _, x_u, y_u = problem(4)
    g = ldjax.g_term(CE, logits(mlp_apply, params, x_u), y_u)
    got = force_gradient(mlp_apply, params, x_u, g)
    want = jax.grad(lambda p: CE(logits(mlp_apply, p, x_u), y_u))(params)
    np.testing.assert_allclose(ravel_pytree(got)[0], ravel_pytree(want)[0], **EXACT)


def test_gradient_update():
    grads = {"a": jnp.array([1.0, -2.0]), "b": jnp.array([4.0])}
    sgd = gradient_update(grads, learning_rate=0.5)
    np.testing.assert_allclose(sgd["a"], [-0.5, 1.0])
    np.testing.assert_allclose(sgd["b"], [-2.0])
    pre = gradient_update(
        grads, preconditioner={"a": jnp.array([2.0, 1.0]), "b": jnp.array([0.25])}, coefficient=3.0
    )
    np.testing.assert_allclose(pre["a"], [-6.0, 6.0])
    np.testing.assert_allclose(pre["b"], [-3.0])


# ---- split of the force -------------------------------------------------------------------------


@pytest.mark.float64
@pytest.mark.parametrize("form", ["g_parts", "example_masks", "logit_masks"])
def test_split_parts_are_explicit_akg_and_sum_to_one_step(form):
    params, x_o, x_u, y_u = problem(5, n_o=4, n_u=3)
    eta = 0.02
    r = ldjax.one_step(mlp_apply, params, x_o, x_u, y_u, loss=CE, learning_rate=eta)
    example_masks = jnp.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])  # a partition of the batch: {0, 2}, {1}
    logit_masks = jnp.stack(
        [
            jnp.tile(jnp.array([1.0, 1.0, 0.0, 0.0]), (3, 1)),
            jnp.tile(jnp.array([0.0, 0.0, 1.0, 1.0]), (3, 1)),
        ]
    )
    g_parts = {"g_parts": example_masks[..., None] * r.g, "example_masks": None, "logit_masks": None}[form]
    if form == "g_parts":
        got = split_change(mlp_apply, params, x_o, x_u, g_parts, learning_rate=eta)
        parts = g_parts
    else:
        masks = example_masks if form == "example_masks" else logit_masks
        got = jax.jit(lambda g, m: split_change(mlp_apply, params, x_o, x_u, m, g=g, learning_rate=eta))(
            r.g, masks
        )
        parts = (masks if masks.ndim == 3 else masks[..., None]) * r.g
    assert got.shape == (2, 4, 4)
    k = finite_difference_ntk(mlp_apply, params, x_o, x_u)
    for i in range(2):
        np.testing.assert_allclose(got[i], ldjax.decomposition(r.a, k, parts[i], eta), **F64)
    np.testing.assert_allclose(got.sum(0), r.predicted, **EXACT)
    assert float(jnp.abs(got[0] - got[1]).max()) > 1e-4  # the parts differ


@pytest.mark.float64
def test_split_with_a_preconditioner_adds_up_to_a_real_adam_step():
    """Adam's linearisation: Σ_i −c·A·J(x_o)·P⊙J(x_u)ᵀG_i + A·J(x_o)·m = A·J(x_o)·u of the real optax update."""
    params, x_o, x_u, y_u = problem(6, n_o=4, n_u=3)
    opt, state = warm_adam(params, x_u, y_u[::-1])
    r = ldjax.one_step(mlp_apply, params, x_o, x_u, y_u, loss=CE, optimizer=opt, opt_state=state, terms=False)
    grads = ce_gradient(params, x_u, y_u)
    up = ldjax.optimizer_update(grads, state, optimizer="adam", learning_rate=1e-2, b1=0.8, b2=0.95)
    masks = jnp.eye(3)  # one example per part
    got = split_change(
        mlp_apply,
        params,
        x_o,
        x_u,
        masks,
        g=r.g,
        preconditioner=up.preconditioner,
        coefficient=up.coefficient,
    )
    # explicit reference for each part: −c · A · J(x_o) · diag(P) · J(x_u)ᵀ · G_i with finite-difference J
    j_u = finite_difference_jacobian(mlp_apply, params, x_u)
    p_flat = ravel_pytree(up.preconditioner)[0]
    for i in range(3):
        u_i = -up.coefficient * p_flat * np.einsum("ap,a->p", j_u[i], r.g[i])
        np.testing.assert_allclose(got[i], explicit_change(params, x_o, u_i), **F64)
    momentum, _ = probe_change(mlp_apply, params, up.momentum_update, x_o)
    np.testing.assert_allclose(got.sum(0) + momentum, r.predicted, **EXACT)
    assert float(jnp.abs(momentum).max()) > 1e-3 * float(jnp.abs(got.sum(0)).max())


@pytest.mark.float64
def test_split_of_a_dpo_force_into_its_chosen_and_rejected_halves():
    """The y⁺ rows and the y⁻ rows of a DPO batch on a sequence model: two halves that sum to the whole."""
    params, x_o, x_u = seq_problem(jax.random.key(8), n1=2, n2=4)
    tokens = problems.randint(jax.random.key(9), (4, 3), 0, 4)
    mask = jnp.array([[0.0, 1.0, 1.0]] * 4)
    target = ldjax.losses.PreferenceTarget(tokens, mask, jnp.array([-3.0, -2.5, -2.0, -4.0]))
    eta = 0.1
    loss = ldjax.losses.dpo_fn(0.5)
    r = ldjax.one_step(seq_apply, params, x_o, x_u, target, loss=loss, learning_rate=eta, terms=False)
    halves = jnp.array([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]])
    got = split_change(seq_apply, params, x_o, x_u, halves, g=r.g, learning_rate=eta)
    assert got.shape == (2, 2, 3, 4)
    np.testing.assert_allclose(got.sum(0), r.predicted, **EXACT)
    k = ldjax.empirical_ntk(seq_apply, params, x_o, x_u)  # [n_o, n_u, T, V, T, V], checked in test_ntk
    a = ldjax.a_term(logits(seq_apply, params, x_o))
    for i in range(2):
        force = jnp.einsum("ijtvsw,jsw->itv", k, halves[i][:, None, None] * r.g)
        np.testing.assert_allclose(got[i], -eta * jnp.einsum("itvw,itw->itv", a, force), **EXACT)


def test_split_errors_name_the_argument():
    params, x_o, x_u, _ = problem(7, dtype=jnp.float32)
    g = jnp.zeros((3, 4))
    with pytest.raises(
        ValueError, match=r"parts has shape \(2, 3\): expected the parts of the force \[m, 3, 4\]"
    ):
        split_change(mlp_apply, params, x_o, x_u, jnp.ones((2, 3)), learning_rate=0.1)
    with (
        pytest.raises(
            ValueError, match=r"with g, expected masks over the update batch \[m, 3\] or \[m, 3, 4\]"
        ),
        ill_typed(),
    ):
        split_change(mlp_apply, params, x_o, x_u, jnp.ones((2, 5)), g=g, learning_rate=0.1)
    with (
        pytest.raises(ValueError, match=r"g has shape \(2, 4\) but the logits of x_u have shape \(3, 4\)"),
        ill_typed(),
    ):
        split_change(mlp_apply, params, x_o, x_u, jnp.ones((2, 3)), g=g[:2], learning_rate=0.1)
    with pytest.raises(ValueError, match="give learning_rate .* or preconditioner and coefficient"):
        split_change(mlp_apply, params, x_o, x_u, jnp.ones((2, 3)), g=g)
    with pytest.raises(ValueError, match="with a preconditioner give coefficient"):
        split_change(
            mlp_apply, params, x_o, x_u, jnp.ones((2, 3)), g=g, learning_rate=0.1, preconditioner=params
        )
    with pytest.raises(ValueError, match="preconditioner must be a pytree with the structure of params"):
        gradient_update(params, preconditioner={"w1": params["w1"]}, coefficient=1.0)
    with pytest.raises(
        ValueError, match=r"preconditioner\['b1'\] has shape \(1,\) but the parameter has shape \(6,\)"
    ):
        gradient_update(params, preconditioner=jax.tree.map(lambda a: a[:1], params), coefficient=1.0)


# ---- factories ----------------------------------------------------------------------------------


def counting(apply_fn):
    """``apply_fn`` that counts how often it is traced or run (Python calls)."""
    calls = []

    def f(params, x):
        calls.append(1)
        return apply_fn(params, x)

    return f, calls


def test_one_step_fn_checks_shapes_once_and_does_not_recompile_for_a_new_learning_rate():
    params, x_o, x_u, y_u = mlp_problem(jax.random.key(10), n1=3, n2=2, dtype=jnp.float32) + (
        jnp.array([0, 1]),
    )
    f, calls = counting(mlp_apply)
    step = ldjax.one_step_fn(f, CE, terms=False)
    first = step(params, x_o, x_u, y_u, learning_rate=1e-3)
    traced = len(calls)
    assert traced > 0
    second = step(params, x_o, x_u, y_u, learning_rate=2e-3)
    assert len(calls) == traced  # no shape check and no trace again
    np.testing.assert_allclose(second.predicted, 2 * first.predicted, rtol=1e-4, atol=1e-9)
    step(params, x_o[:2], x_u, y_u, learning_rate=1e-3)
    assert len(calls) > traced  # a new shape signature is checked and traced
    # value checks run on every call
    with pytest.raises(ValueError, match=r"x_u contains 1 NaN or inf value"):
        step(params, x_o, x_u.at[0, 0].set(jnp.nan), y_u, learning_rate=1e-3)
    with pytest.raises(ValueError, match=r"y_u holds labels in \[0, 9\]"):
        step(params, x_o, x_u, jnp.array([0, 9]), learning_rate=1e-3)
    with pytest.raises(ValueError, match="learning_rate is required"):
        step(params, x_o, x_u, y_u)
    with pytest.raises(ValueError, match="precision must be one of"), ill_typed():
        ldjax.one_step_fn(f, CE, precision="fast")


@pytest.mark.float64
def test_one_step_fn_and_predict_fn_equal_the_convenience_functions():
    params, x_o, x_u, y_u = problem(11)
    opt, state = warm_adam(params, x_u, y_u[::-1])
    step = ldjax.one_step_fn(mlp_apply, CE, optimizer=opt)
    got = step(params, x_o, x_u, y_u, opt_state=state)
    want = ldjax.one_step(mlp_apply, params, x_o, x_u, y_u, loss=CE, optimizer=opt, opt_state=state)
    for name in ("predicted", "actual", "a", "k", "g", "loss"):
        np.testing.assert_allclose(getattr(got, name), getattr(want, name), **EXACT)
    predict = ldjax.predict_fn(mlp_apply, CE, optimizer=opt, actual=True)
    p = predict(params, x_o, x_u, y_u, opt_state=state)
    np.testing.assert_allclose(p.predicted, want.predicted, **EXACT)
    np.testing.assert_allclose(p.actual, want.actual, **EXACT)
    with pytest.raises(ValueError, match="learning_rate must be None when optimizer is given"):
        predict(params, x_o, x_u, y_u, learning_rate=0.1)
    with pytest.raises(ValueError, match="x_probe holds examples of shape"):
        predict(params, x_o[:, :3], x_u, y_u)


def test_check_loss_target_uses_the_losses_own_check():
    checks.check_loss_target(lambda z, y: z.sum(), (4,), jnp.array([9]), "y_u")  # no check_target: accepted
    with pytest.raises(ValueError, match=r"y_u holds labels in \[9, 9\] but the model has k=4 classes"):
        checks.check_loss_target(CE, (4,), jnp.array([9]), "y_u")

"""The one-step decomposition Δ log π(x_o) = −η · A(x_o) · K(x_o, x_u) · G(x_u) + O(η²)."""

from __future__ import annotations

import functools
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array
from jaxtyping import Float
from jaxtyping import Shaped

from ldjax._src import checks
from ldjax._src.ntk import NtkMethod
from ldjax._src.ntk import batched
from ldjax._src.ntk import empirical_ntk
from ldjax._src.terms import a_term
from ldjax._src.terms import apply_a_term
from ldjax._src.typing import ApplyFn
from ldjax._src.typing import LossFn
from ldjax._src.typing import Params
from ldjax._src.typing import Precision


class OneStepResult(NamedTuple):
    """Result of :func:`one_step`. Shapes: ``*o`` is one example's logits (``[k]`` or ``[T, V]``).

    Attributes:
      predicted: first-order change of log π at every x_o, ``[n_o, *o]``. For plain SGD this is
        ``−η · A · K · G`` summed over the update batch.
      actual: log π after a real optimizer update minus log π before, ``[n_o, *o]``.
      a: ``A(x_o)`` per example and position, ``[n_o, *o, k]`` (``None`` unless ``terms``).
      k: ``K(x_o, x_u)``, ``[n_o, n_u, *o, *o]`` (``None`` unless ``terms``).
      g: ``G(x_u) = ∂L/∂z``, ``[n_u, *o]`` (includes the loss's 1/n).
      residual: ``actual − predicted``; O(η²).
      loss: the loss at x_u before the update.
    """

    predicted: Array
    actual: Array
    a: Array | None
    k: Array | None
    g: Array
    residual: Array
    loss: Array


def _check_target(loss: Any, out_shape: tuple[int, ...], target: Any, name: str) -> None:
    check = getattr(loss, "check_target", None)
    if check is not None:
        check(out_shape, target, name)


def one_step(
    apply_fn: ApplyFn,
    params: Params,
    x_o: Shaped[Array, " n_o *d"],
    x_u: Shaped[Array, " n_u *d"],
    y_u: Any,
    *,
    loss: LossFn,
    learning_rate: float | None = None,
    optimizer: optax.GradientTransformation | None = None,
    opt_state: Any = None,
    terms: bool = True,
    method: NtkMethod = "jacobian",
    precision: Precision = "highest",
) -> OneStepResult:
    r"""Predicted and actual change of log π on ``x_o`` after ONE update on the batch ``(x_u, y_u)``.

    .. math:: \Delta \log\pi(x_o) = -\eta\, A(x_o)\, \textstyle\sum_u K(x_o, x_u)\, G(x_u) + O(\eta^2)

    With the default plain SGD (``optimizer=None``), ``predicted`` is exactly
    ``−η · A · K · G`` (computed without forming K: one VJP at ``x_u``, one JVP at ``x_o``).
    With any other optax optimizer, ``predicted`` is the first-order change ``A(x_o) · J(x_o) · u``
    for the optimizer's actual update ``u`` (one JVP); the terms ``a``, ``k``, ``g`` are still
    those of the plain-gradient decomposition. ``actual`` always comes from a real optax step.

    Args:
      apply_fn: un-batched model, ``apply_fn(params, x) -> [*o]``.
      params: pytree of parameters.
      x_o: observed examples ``[n_o, *d]``.
      x_u: the update batch ``[n_u, *d]``.
      y_u: targets for ``loss`` (labels ``[n_u]``, distributions ``[n_u, k]``, ...).
      loss: ``loss(logits[n_u, *o], y_u) -> scalar``, e.g. :func:`ldjax.losses.cross_entropy`.
      learning_rate: η for plain SGD. Required when ``optimizer`` is ``None``; must be ``None``
        otherwise (the optimizer carries its own).
      optimizer: any ``optax.GradientTransformation``.
      opt_state: the optimizer's state (e.g. momentum from training); default ``optimizer.init``.
      terms: also return ``a`` and ``k`` (``k`` is ``[n_o, n_u, *o, *o]``: switch off for large
        vocabularies).
      method: how ``k`` is computed (see :func:`ldjax.empirical_ntk`).
      precision: matmul precision (default ``"highest"``).

    Returns:
      :class:`OneStepResult`.

    Example:
      >>> import jax, jax.numpy as jnp, ldjax
      >>> f = lambda p, x: jnp.tanh(x @ p["w1"]) @ p["w2"]
      >>> k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
      >>> p = {"w1": jax.random.normal(k1, (5, 8)), "w2": jax.random.normal(k2, (8, 3))}
      >>> x = jax.random.normal(k3, (6, 5))
      >>> r = ldjax.one_step(f, p, x, x[:1], jnp.array([2]), loss=ldjax.losses.cross_entropy,
      ...                    learning_rate=1e-3)
      >>> r.predicted.shape, r.k.shape, bool(jnp.abs(r.residual).max() < 1e-5)
      ((6, 3), (6, 1, 3, 3), True)
    """
    _validate(apply_fn, params, x_o, x_u, y_u, loss, learning_rate, optimizer)
    try:
        compiled = _compiled_one_step(apply_fn, loss, optimizer, terms, method, precision)
    except TypeError:  # an unhashable function or optimizer: trace it afresh
        compiled = _one_step_fn(apply_fn, loss, optimizer, terms, method, precision)
    rate = 0.0 if learning_rate is None else learning_rate
    return compiled(params, x_o, x_u, y_u, opt_state, rate)


def _one_step_fn(apply_fn, loss, optimizer, terms, method, precision):
    """The computation of :func:`one_step` after validation (``optimizer=None``: SGD at ``rate``)."""

    def run(params, x_o, x_u, y_u, opt_state, rate):
        opt = optax.sgd(rate) if optimizer is None else optimizer
        with checks.precision_scope(precision):
            step = first_order_step(apply_fn, params, x_o, x_u, y_u, loss, opt, opt_state)
            predicted, z_o, g, loss_value = step.predicted, step.z_o, step.g, step.loss
            actual = actual_change(apply_fn, params, step.updates, x_o, z_o)
            a = k = None
            if terms:
                a = a_term(z_o)
                k = empirical_ntk(apply_fn, params, x_o, x_u, method=method, precision=precision)
        return OneStepResult(
            predicted=predicted, actual=actual, a=a, k=k, g=g, residual=actual - predicted, loss=loss_value
        )

    return run


@functools.lru_cache(maxsize=32)
def _compiled_one_step(apply_fn, loss, optimizer, terms, method, precision):
    """One jitted program per (model, loss, optimizer, options): eager calls compile once, not per op."""
    return jax.jit(_one_step_fn(apply_fn, loss, optimizer, terms, method, precision))


def decomposition(
    a: Float[Array, "n_o k k"], k: Float[Array, "n_o n_u k k"], g: Float[Array, "n_u k"], learning_rate: float
) -> Float[Array, "n_o k"]:
    r"""Assemble :math:`-\eta\, A(x_o) \sum_u K(x_o, x_u)\, G(x_u)` from explicit terms (classifiers).

    Example:
      >>> import jax.numpy as jnp, ldjax
      >>> a, k, g = ldjax.a_term(jnp.zeros((1, 2))), jnp.eye(2)[None, None], jnp.array([[0.5, -0.5]])
      >>> ldjax.decomposition(a, k, g, 0.1)
      Array([[-0.05,  0.05]], dtype=float32)
    """
    force = jnp.einsum("ijab,jb->ia", k, g)
    return -learning_rate * jnp.einsum("iab,ib->ia", a, force)


class FirstOrderStep(NamedTuple):
    """Pieces of one update shared by :func:`one_step` and the vocabulary-scale prediction."""

    predicted: Array  # A(x_o) · J(x_o) · u, [n_o, *o]
    z_o: Array  # logits at x_o before the update
    g: Array  # ∂L/∂z at x_u
    grads: Any  # ∂L/∂θ
    updates: Any  # the optimizer's update u
    loss: Array


def _validate(
    apply_fn: ApplyFn,
    params: Params,
    x_o: Any,
    x_u: Any,
    y_u: Any,
    loss: Any,
    learning_rate: Any,
    optimizer: optax.GradientTransformation | None,
    probe_name: str = "x_o",
) -> optax.GradientTransformation:
    """Check the arguments of a one-step prediction; return the optimizer (plain SGD by default)."""
    if optimizer is None:
        if learning_rate is None:
            raise ValueError("learning_rate is required with the default plain SGD (optimizer=None)")
        checks.check_learning_rate(learning_rate)
        optimizer = optax.sgd(learning_rate)
    elif learning_rate is not None:
        raise ValueError(
            "learning_rate must be None when optimizer is given: the optimizer carries its own schedule"
        )
    if not callable(loss):
        raise ValueError(f"loss must be a function loss(logits, target) -> scalar, got {type(loss).__name__}")
    checks.check_batch(x_o, probe_name)
    checks.check_batch(x_u, "x_u")
    checks.check_same_examples(x_o, probe_name, x_u, "x_u")
    checks.check_finite(params, "params")
    checks.check_finite(x_o, probe_name)
    checks.check_finite(x_u, "x_u")
    out_shape = checks.logits_shape(apply_fn, params, x_u, "x_u")
    n_u = checks.batch_size(x_u)
    if jax.tree.leaves(y_u) and jnp.ndim(jax.tree.leaves(y_u)[0]) > 0:
        n_y = jnp.shape(jax.tree.leaves(y_u)[0])[0]
        if n_y != n_u:
            raise ValueError(f"y_u has {n_y} targets but x_u has {n_u} examples: expected one target each")
    _check_target(loss, out_shape, y_u, "y_u")
    logits_shape = jax.ShapeDtypeStruct((n_u, *out_shape), jax.tree.leaves(params)[0].dtype)
    checks.check_scalar_loss(loss, logits_shape, y_u, "loss")
    return optimizer


def first_order_step(
    apply_fn: ApplyFn,
    params: Params,
    x_o: Any,
    x_u: Any,
    y_u: Any,
    loss: LossFn,
    optimizer: optax.GradientTransformation,
    opt_state: Any = None,
) -> FirstOrderStep:
    """Gradient at ``x_u`` (one VJP), the optimizer's update, and one JVP at ``x_o``; no kernel formed."""
    loss_value, g, grads, updates = batch_update(apply_fn, params, x_u, y_u, loss, optimizer, opt_state)
    predicted, z_o = probe_change(apply_fn, params, updates, x_o)
    return FirstOrderStep(predicted, z_o, g, grads, updates, loss_value)


def batch_update(
    apply_fn: ApplyFn,
    params: Params,
    x_u: Any,
    y_u: Any,
    loss: LossFn,
    optimizer: optax.GradientTransformation,
    opt_state: Any = None,
) -> tuple[Array, Array, Any, Any]:
    """``(loss, G, ∂L/∂θ, u)`` at the update batch: one VJP and the optimizer's update ``u``."""
    z_u, vjp = jax.vjp(lambda p: batched(apply_fn)(p, x_u), params)
    loss_value, g = jax.value_and_grad(loss)(z_u, y_u)
    (grads,) = vjp(g)
    if opt_state is None:
        opt_state = optimizer.init(params)
    updates, _ = optimizer.update(grads, opt_state, params)
    return loss_value, g, grads, updates


def probe_change(apply_fn: ApplyFn, params: Params, updates: Any, x_o: Any) -> tuple[Array, Array]:
    """``(A(x_o)·J(x_o)·u, z_o)``: the first-order change of log π from ONE JVP at ``x_o``."""
    z_o, dz_o = jax.jvp(lambda p: batched(apply_fn)(p, x_o), (params,), (updates,))
    return apply_a_term(z_o, dz_o), z_o


def actual_change(apply_fn: ApplyFn, params: Params, updates: Any, x_o: Any, z_o: Array) -> Array:
    """log π at ``x_o`` after applying ``updates`` minus log π before (``z_o`` = logits before)."""
    z_new = batched(apply_fn)(optax.apply_updates(params, updates), x_o)
    return jax.nn.log_softmax(z_new, axis=-1) - jax.nn.log_softmax(z_o, axis=-1)

"""The one-step decomposition Δ log π(x_o) = −η · A(x_o) · K(x_o, x_u) · G(x_u) + O(η²)."""

from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax.numpy as jnp
import optax
from jax.typing import ArrayLike
from jaxtyping import Array
from jaxtyping import Float
from jaxtyping import PyTree
from jaxtyping import Shaped

from ldjax._src import checks
from ldjax._src.first_order import FirstOrderStep
from ldjax._src.first_order import actual_change
from ldjax._src.first_order_fn import first_order_step_fn
from ldjax._src.ntk import DEFAULT_METHOD
from ldjax._src.ntk import NtkMethod
from ldjax._src.ntk_fn import empirical_ntk
from ldjax._src.terms import a_term
from ldjax._src.typing import ApplyFn
from ldjax._src.typing import LearningRate
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


def one_step(
    apply_fn: ApplyFn,
    params: Params,
    x_o: PyTree[Shaped[ArrayLike, " n_o ..."]],
    x_u: PyTree[Shaped[ArrayLike, " n_u ..."]],
    y_u: Any,
    *,
    loss: LossFn,
    learning_rate: LearningRate | None = None,
    optimizer: optax.GradientTransformation | None = None,
    opt_state: Any = None,
    terms: bool = True,
    method: NtkMethod = DEFAULT_METHOD,
    params_filter: Callable[[str], bool] | None = None,
    precision: Precision = "highest",
    check_finite: bool = True,
    memory_budget: float | None = None,
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
      optimizer: any ``optax.GradientTransformation`` (an object, not a name: ``optax.adam(1e-3)``).
      opt_state: the optimizer's state (e.g. momentum from training); default ``optimizer.init``. It
        must have the structure of ``optimizer.init(params)``; it needs ``optimizer``.
      terms: also return ``a`` and ``k`` (``k`` is ``[n_o, n_u, *o, *o]``: switch off for large
        vocabularies).
      method: how ``k`` is computed (see :func:`ldjax.empirical_ntk`; ``"auto"`` by default).
      params_filter: ``params_filter(name) -> bool`` on each parameter's path: only those parameters
        are updated (the others frozen), and ``k`` is their kernel.
      precision: matmul precision (default ``"highest"``).
      check_finite: refuse NaN or inf in ``params``, the inputs, float targets and ``opt_state`` (one
        pass over them per call; ``False`` skips it for speed).
      memory_budget: bytes the terms (``k``, and the Jacobians of ``method="jacobian"``) may take; above
        it the call is refused before anything is allocated, naming the cheaper routes. Default: half
        of the device's memory (of the RAM on CPU); ``math.inf`` turns the check off.

    The model must support forward mode (one JVP at ``x_o``): a model with ``jax.custom_vjp`` is refused
    with a message (use ``jax.custom_jvp``; :func:`ldjax.empirical_ntk` with ``"jacobian"`` or
    ``"structured"`` works for it).

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
    step = one_step_fn(
        apply_fn,
        loss,
        optimizer=optimizer,
        terms=terms,
        method=method,
        params_filter=params_filter,
        precision=precision,
        check_finite=check_finite,
        memory_budget=memory_budget,
    )
    return step(params, x_o, x_u, y_u, learning_rate=learning_rate, opt_state=opt_state)


def one_step_fn(
    apply_fn: ApplyFn,
    loss: LossFn,
    *,
    optimizer: optax.GradientTransformation | None = None,
    terms: bool = True,
    method: NtkMethod = DEFAULT_METHOD,
    params_filter: Callable[[str], bool] | None = None,
    precision: Precision = "highest",
    check_finite: bool = True,
    memory_budget: float | None = None,
) -> Callable[..., OneStepResult]:
    r"""A compiled :func:`one_step` for one model, loss and optimizer, to hold and call many times.

    The returned ``step(params, x_o, x_u, y_u, *, learning_rate=None, opt_state=None)`` validates its
    arguments outside ``jax.jit`` (the shape checks once per new shape signature, the value checks on
    every call) and runs one jitted program; a new learning rate does not recompile. Works inside an
    outer ``jax.jit`` too (then only the shape checks apply).

    Args:
      apply_fn: un-batched model, ``apply_fn(params, x) -> [*o]``.
      loss: ``loss(logits[n_u, *o], y_u) -> scalar``.
      optimizer: any ``optax.GradientTransformation``; ``None`` is plain SGD with the ``learning_rate``
        given to each call.
      terms: also return ``a`` and ``k``.
      method: how ``k`` is computed (see :func:`ldjax.empirical_ntk`; ``"auto"`` by default, as there).
      params_filter: ``params_filter(name) -> bool``: update only the selected parameters (the others
        are frozen) and compute ``k`` over them.
      precision: matmul precision (default ``"highest"``).
      check_finite, memory_budget: as in :func:`one_step`.

    Returns:
      ``step(params, x_o, x_u, y_u, *, learning_rate=None, opt_state=None) -> OneStepResult``, with the
      arguments of :func:`one_step`.

    Example:
      >>> import jax, jax.numpy as jnp, ldjax
      >>> f = lambda p, x: jnp.tanh(x @ p["w1"]) @ p["w2"]
      >>> k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
      >>> p = {"w1": jax.random.normal(k1, (5, 8)), "w2": jax.random.normal(k2, (8, 3))}
      >>> x = jax.random.normal(k3, (6, 5))
      >>> step = ldjax.one_step_fn(f, ldjax.losses.cross_entropy, terms=False)
      >>> small, large = (step(p, x, x[:1], jnp.array([2]), learning_rate=lr) for lr in (1e-3, 1e-2))
      >>> small.predicted.shape, bool(jnp.allclose(10 * small.predicted, large.predicted, rtol=1e-4))
      ((6, 3), True)
    """

    def check_memory(params, x_o, x_u, out_shape, budget):
        if terms:
            checks.check_terms_memory(params, x_o, x_u, out_shape, method, budget, what="one_step")

    def finish(params, x_o, x_u, step: FirstOrderStep) -> OneStepResult:
        actual = actual_change(apply_fn, params, step.updates, x_o, step.z_o)
        a = k = None
        if terms:
            a = a_term(step.z_o)
            k = empirical_ntk(
                apply_fn, params, x_o, x_u, method=method, params_filter=params_filter, precision=precision
            )
        return OneStepResult(
            predicted=step.predicted,
            actual=actual,
            a=a,
            k=k,
            g=step.g,
            residual=actual - step.predicted,
            loss=step.loss,
        )

    return first_order_step_fn(
        apply_fn,
        loss,
        finish,
        optimizer=optimizer,
        precision=precision,
        check_finite=check_finite,
        memory_budget=memory_budget,
        check_memory=check_memory,
        what="one_step",
        params_filter=params_filter,
    )


def decomposition(
    a: Float[ArrayLike, " n_o *ok"] | None,  # [n_o, *o, k]
    k: Float[ArrayLike, "n_o n_u *oo"],
    g: Float[ArrayLike, " n_u *o"],
    learning_rate: LearningRate,
) -> Float[Array, " n_o *o"]:
    r"""Assemble :math:`-\eta\, A(x_o) \sum_u K(x_o, x_u)\, G(x_u)` from explicit terms.

    Works for classifiers (``o = [k]``) and sequence models (``o = [T, V]``: the kernel couples every
    position and vocabulary entry, ``A`` acts on the last axis at each position). ``a=None`` means
    ``A = I``: the first-order change of the model's outputs themselves, as for a regression model.

    Args:
      a: ``A(x_o)``, ``[n_o, *o, k]`` (:func:`ldjax.a_term` of the logits), or ``None`` for ``A = I``.
      k: ``K(x_o, x_u)``, ``[n_o, n_u, *o, *o]``.
      g: ``G(x_u)``, ``[n_u, *o]``.
      learning_rate: η.

    Returns:
      ``[n_o, *o]``.

    Example:
      >>> import jax.numpy as jnp, ldjax
      >>> a, k, g = ldjax.a_term(jnp.zeros((1, 2))), jnp.eye(2)[None, None], jnp.array([[0.5, -0.5]])
      >>> ldjax.decomposition(a, k, g, 0.1)
      Array([[-0.05,  0.05]], dtype=float32)
    """
    m = g.ndim - 1
    o = tuple(g.shape[1:])
    if m < 1 or k.ndim != 2 + 2 * m or tuple(k.shape[2 : 2 + m]) != o or tuple(k.shape[2 + m :]) != o:
        raise ValueError(
            f"k has shape {tuple(k.shape)} and g has shape {tuple(g.shape)}: expected k [n_o, n_u, *o, *o] "
            f"and g [n_u, *o] with the same output shape o"
        )
    if k.shape[1] != g.shape[0]:
        raise ValueError(f"k pairs with {k.shape[1]} update examples but g has {g.shape[0]}")
    force = jnp.tensordot(k, g, axes=([1, *range(2 + m, 2 + 2 * m)], list(range(m + 1))))
    if a is None:
        return -learning_rate * force
    if tuple(a.shape) != (k.shape[0], *o, o[-1]):
        raise ValueError(
            f"a has shape {tuple(a.shape)}: expected [n_o, *o, k] = {(k.shape[0], *o, o[-1])} (ldjax.a_term of the "
            f"logits at x_o), or None for A = I"
        )
    return -learning_rate * jnp.einsum("...ab,...b->...a", a, force)

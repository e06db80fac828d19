r"""The first-order step: one VJP at ``x_u`` → the optimizer's update ``u`` → one JVP at ``x_o`` → A applied.

One update on the batch ``x_u`` moves log π at ``x_o`` by

.. math:: \Delta\log\pi(x_o) = A(x_o)\, J(x_o)\, u + O(\|u\|^2), \qquad
          u = \text{the optimizer's update from } \nabla_\theta L = J(x_u)^\top G(x_u),

which for plain SGD (:math:`u = -\eta\, J(x_u)^\top G`) is :math:`-\eta\, A(x_o) \sum_u K(x_o, x_u)\, G(x_u)`
without forming :math:`K = J(x_o) J(x_u)^\top`. This module is the one place where that sequence is written:
:func:`batch_update` (loss, force :math:`G = \partial L/\partial z`, :math:`\nabla_\theta L` and ONE
``optimizer.update`` at ``x_u``), :func:`output_change` (:math:`J(x)\, u` of ANY per-example output, the
logits or an intermediate feature, one JVP), :func:`probe_change` (:math:`A\, J(x_o)\, u`),
:func:`actual_change`, :func:`first_order_step` (the first two in a row), and :func:`split_change`, the
predicted change caused by each part of a force (G is linear: the y⁺ and y⁻ halves of DPO, the positive- and
negative-advantage responses of GRPO, any partition of the batch), for plain SGD and for a diagonal
preconditioner (the Adam/RMSprop linearisation of :mod:`ldjax._src.optimizer_updates`), built from
:func:`force_gradient` (:math:`J(x_u)^\top G`) and :func:`~ldjax._src.optimizer_updates.gradient_update`.

``*o`` is one example's logits (``[k]`` or ``[T, V]``). The functions trace under ``jax.jit`` and leave the
matmul precision to the caller (``checks.precision_scope``), except :func:`split_change`. The held, compiled
and validated step behind :func:`ldjax.one_step_fn` is :mod:`ldjax._src.first_order_fn`.
"""

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.typing import ArrayLike
from jaxtyping import Array
from jaxtyping import Float
from jaxtyping import PyTree
from jaxtyping import Shaped

from ldjax._src import checks
from ldjax._src.ntk import batched
from ldjax._src.optimizer_updates import gradient_update
from ldjax._src.terms import apply_a_term
from ldjax._src.typing import ApplyFn
from ldjax._src.typing import LossFn
from ldjax._src.typing import Params
from ldjax._src.typing import Precision


class BatchUpdate(NamedTuple):
    """Result of :func:`batch_update`: one optimizer update at the update batch.

    Attributes:
      loss: the loss at ``x_u`` before the update, a scalar.
      g: the force :math:`G = \\partial L/\\partial z` at ``x_u``, ``[n_u, *o]`` (carries the loss's 1/n).
      grads: :math:`\\nabla_\\theta L = J(x_u)^\\top G`, a pytree like ``params``.
      updates: the optimizer's update ``u``, a pytree like ``params``.
      opt_state: the optimizer's state after the update.
    """

    loss: Array
    g: Array
    grads: Params
    updates: Params
    opt_state: Any


class FirstOrderStep(NamedTuple):
    """Result of :func:`first_order_step`.

    Attributes:
      predicted: :math:`A(x_o)\\, J(x_o)\\, u`, the first-order change of log π at ``x_o``, ``[n_o, *o]``.
      z_o: the logits at ``x_o`` before the update, ``[n_o, *o]``.
      g, grads, updates, loss, opt_state: as in :class:`BatchUpdate`.
    """

    predicted: Array
    z_o: Array
    g: Array
    grads: Params
    updates: Params
    loss: Array
    opt_state: Any


def batch_update(
    apply_fn: ApplyFn,
    params: Params,
    x_u: PyTree[Shaped[ArrayLike, " n_u ..."]],
    y_u: Any,
    loss: LossFn,
    optimizer: optax.GradientTransformation,
    opt_state: Any = None,
) -> BatchUpdate:
    r"""The loss, the force, :math:`\nabla_\theta L` and the optimizer's update at the update batch.

    One forward pass and one VJP at ``x_u`` (:math:`\nabla_\theta L = J(x_u)^\top G`), then ONE
    ``optimizer.update``.

    Args:
      apply_fn: un-batched model, ``apply_fn(params, x) -> [*o]``.
      params: pytree of parameters.
      x_u: the update batch, ``[n_u, *d]``.
      y_u: the targets ``loss`` takes.
      loss: ``loss(logits[n_u, *o], y_u) -> scalar``.
      optimizer: any ``optax.GradientTransformation`` (``optax.sgd(η)`` for plain SGD).
      opt_state: the optimizer's state before the update; default ``optimizer.init(params)``.

    Returns:
      :class:`BatchUpdate`.

    Example:
      >>> import jax.numpy as jnp, optax, ldjax
      >>> from ldjax._src.first_order import batch_update
      >>> f = lambda p, x: x @ p
      >>> b = batch_update(f, jnp.zeros((3, 2)), jnp.ones((1, 3)), jnp.array([0]), ldjax.losses.cross_entropy,
      ...                  optax.sgd(0.1))
      >>> b.g, b.updates[0]
      (Array([[-0.5,  0.5]], dtype=float32), Array([ 0.05, -0.05], dtype=float32))
    """
    z_u, pullback = _pullback(apply_fn, params, x_u)
    loss_value, g = jax.value_and_grad(loss)(z_u, y_u)
    (grads,) = pullback(g)
    if opt_state is None:
        opt_state = optimizer.init(params)
    with jax.numpy_dtype_promotion("standard"):  # optax's Adam takes 1 - b1**count with an int count
        updates, new_state = optimizer.update(grads, opt_state, params)
    return BatchUpdate(loss=loss_value, g=g, grads=grads, updates=updates, opt_state=new_state)


def probe_change(
    apply_fn: ApplyFn, params: Params, updates: Params, x_o: PyTree[Shaped[ArrayLike, " n_o ..."]]
) -> tuple[Float[Array, " n_o *o"], Float[Array, " n_o *o"]]:
    r"""The first-order change of log π at ``x_o`` for a parameter update: :math:`A(x_o)\, J(x_o)\, u`.

    One JVP at ``x_o`` along ``updates``; :math:`A = I - \mathbf{1}\pi^\top` is applied without being formed.

    Args:
      apply_fn: un-batched model.
      params: pytree of parameters (before the update).
      updates: the update ``u``, a pytree like ``params``.
      x_o: the probes, ``[n_o, *d]``.

    Returns:
      ``(change, z_o)``: the predicted Δ log π ``[n_o, *o]`` and the logits at ``x_o`` ``[n_o, *o]``.

    Example:
      >>> import jax.numpy as jnp
      >>> from ldjax._src.first_order import probe_change
      >>> change, z_o = probe_change(lambda p, x: x @ p, jnp.zeros((1, 2)), jnp.array([[1.0, 0.0]]), jnp.ones((1, 1)))
      >>> change
      Array([[ 0.5, -0.5]], dtype=float32)
    """
    dz_o, z_o = output_change(apply_fn, params, updates, x_o)
    return apply_a_term(z_o, dz_o), z_o


def output_change(
    fn: ApplyFn, params: Params, updates: Params, x: PyTree[Shaped[ArrayLike, " n ..."]]
) -> tuple[Float[Array, " n *h"], Float[Array, " n *h"]]:
    r"""The first-order change :math:`J(x)\, u` of any per-example output along a parameter update (one JVP).

    ``fn`` is the logits (:func:`probe_change` applies :math:`A` to this) or an intermediate output such as
    the penultimate layer's feature :math:`h(x)` (:func:`ldjax.feature_step`).

    Args:
      fn: un-batched ``fn(params, x) -> [*h]``.
      params: pytree of parameters (before the update).
      updates: the update ``u``, a pytree like ``params``.
      x: the examples, ``[n, *d]``.

    Returns:
      ``(change, value)``: :math:`J(x)\, u` ``[n, *h]`` and ``fn`` at ``x`` before the update ``[n, *h]``.

    Example:
      >>> import jax.numpy as jnp
      >>> from ldjax._src.first_order import output_change
      >>> change, h = output_change(lambda p, x: x @ p, jnp.ones((2, 3)), jnp.full((2, 3), 0.5), jnp.eye(2))
      >>> change
      Array([[0.5, 0.5, 0.5],
             [0.5, 0.5, 0.5]], dtype=float32)
    """
    value, change = jax.jvp(lambda p: batched(fn)(p, x), (params,), (updates,))
    return change, value


def actual_change(
    apply_fn: ApplyFn,
    params: Params,
    updates: Params,
    x_o: PyTree[Shaped[ArrayLike, " n_o ..."]],
    z_o: Float[ArrayLike, " n_o *o"] | None = None,
) -> Float[Array, " n_o *o"]:
    """log π at ``x_o`` after applying ``updates`` minus log π before.

    Args:
      apply_fn: un-batched model.
      params: pytree of parameters before the update.
      updates: the update, a pytree like ``params`` (applied with ``optax.apply_updates``).
      x_o: the probes, ``[n_o, *d]``.
      z_o: the logits at ``x_o`` before the update, when already known (saves one forward pass).

    Returns:
      ``[n_o, *o]``.

    Example:
      >>> import jax.numpy as jnp
      >>> from ldjax._src.first_order import actual_change
      >>> change = actual_change(lambda p, x: x @ p, jnp.zeros((1, 2)), jnp.array([[1.0, -1.0]]), jnp.ones((1, 1)))
      >>> [round(float(c), 4) for c in change[0]]  # log_softmax([1, -1]) - log_softmax([0, 0])
      [0.5662, -1.4338]
    """
    f = batched(apply_fn)
    if z_o is None:
        z_o = f(params, x_o)
    z_new = f(optax.apply_updates(params, updates), x_o)
    return jax.nn.log_softmax(z_new, axis=-1) - jax.nn.log_softmax(z_o, axis=-1)


def first_order_step(
    apply_fn: ApplyFn,
    params: Params,
    x_o: PyTree[Shaped[ArrayLike, " n_o ..."]],
    x_u: PyTree[Shaped[ArrayLike, " n_u ..."]],
    y_u: Any,
    loss: LossFn,
    optimizer: optax.GradientTransformation,
    opt_state: Any = None,
) -> FirstOrderStep:
    r"""One update at ``x_u`` and its first-order effect :math:`A(x_o)\, J(x_o)\, u` at ``x_o``; no kernel formed.

    :func:`batch_update` followed by :func:`probe_change`. For ``optimizer=optax.sgd(η)`` the prediction is
    :math:`-\eta\, A(x_o) \sum_u K(x_o, x_u)\, G(x_u)`.

    Args:
      apply_fn, params, x_u, y_u, loss, optimizer, opt_state: as in :func:`batch_update`.
      x_o: the probes, ``[n_o, *d]``.

    Returns:
      :class:`FirstOrderStep`.

    Example:
      >>> import jax.numpy as jnp, optax, ldjax
      >>> from ldjax._src.first_order import first_order_step
      >>> f = lambda p, x: x @ p
      >>> s = first_order_step(f, jnp.zeros((3, 2)), jnp.eye(3), jnp.ones((1, 3)), jnp.array([0]),
      ...                      ldjax.losses.cross_entropy, optax.sgd(0.1))
      >>> s.predicted
      Array([[ 0.05, -0.05],
             [ 0.05, -0.05],
             [ 0.05, -0.05]], dtype=float32)
    """
    update = batch_update(apply_fn, params, x_u, y_u, loss, optimizer, opt_state)
    predicted, z_o = probe_change(apply_fn, params, update.updates, x_o)
    return FirstOrderStep(
        predicted=predicted,
        z_o=z_o,
        g=update.g,
        grads=update.grads,
        updates=update.updates,
        loss=update.loss,
        opt_state=update.opt_state,
    )


def force_gradient(
    apply_fn: ApplyFn,
    params: Params,
    x_u: PyTree[Shaped[ArrayLike, " n_u ..."]],
    g: Float[ArrayLike, " n_u *o"],
) -> Params:
    r""":math:`J(x_u)^\top G`: the parameter gradient that the force ``g`` on ``x_u`` produces (one VJP).

    For ``g`` the force of a loss this is :math:`\nabla_\theta L`; for a part of it (say the y⁻ half of
    DPO) it is that part's share of the gradient.

    Args:
      apply_fn: un-batched model.
      params: pytree of parameters.
      x_u: the update batch, ``[n_u, *d]``.
      g: a force on its logits, ``[n_u, *o]``.

    Returns:
      A pytree like ``params``.

    Example:
      >>> import jax.numpy as jnp
      >>> from ldjax._src.first_order import force_gradient
      >>> force_gradient(lambda p, x: x @ p, jnp.zeros((2, 2)), jnp.array([[1.0, 2.0]]), jnp.array([[0.5, -0.5]]))
      Array([[ 0.5, -0.5],
             [ 1. , -1. ]], dtype=float32)
    """
    z_u, pullback = _pullback(apply_fn, params, x_u)
    checks.check_force(g, z_u.shape, "g")
    (grads,) = pullback(jnp.asarray(g, z_u.dtype))
    return grads


def split_change(
    apply_fn: ApplyFn,
    params: Params,
    x_o: PyTree[Shaped[ArrayLike, " n_o ..."]],
    x_u: PyTree[Shaped[ArrayLike, " n_u ..."]],
    parts: Shaped[ArrayLike, "m n_u ..."],
    *,
    g: Float[ArrayLike, " n_u *o"] | None = None,
    learning_rate: Any = None,
    preconditioner: Params | None = None,
    coefficient: Any = None,
    precision: Precision = "highest",
) -> Float[Array, "m n_o *o"]:
    r"""The predicted change of log π at ``x_o`` caused by each part of a force on the update batch.

    The force :math:`G` enters the first-order change linearly, so a partition
    :math:`G = \sum_i G_i` splits the prediction: part :math:`i` moves log π by
    :math:`A(x_o)\, J(x_o)\, u_i` with :math:`u_i = -\eta\, J(x_u)^\top G_i` (plain SGD, ``learning_rate``)
    or :math:`u_i = -c\, P \odot J(x_u)^\top G_i` (the diagonal linearisation of Adam, RMSprop or SGD with
    momentum: ``preconditioner`` and ``coefficient``, e.g. from :func:`ldjax.optimizer_update`). Examples:
    the y⁺ half and the y⁻ half of DPO (masks over the chosen and the rejected rows), the positive- and
    negative-advantage responses of GRPO, or one example at a time. The parts sum to the prediction for
    the whole force (for SGD, to ``one_step(...).predicted``). One VJP at ``x_u`` shared by the parts,
    then one cotangent pull-back and one JVP at ``x_o`` per part (``lax.map``: the memory of one part).

    Args:
      apply_fn: un-batched model, ``apply_fn(params, x) -> [*o]``.
      params: pytree of parameters.
      x_o: the probes, ``[n_o, *d]``.
      x_u: the update batch, ``[n_u, *d]``.
      parts: the parts of the force, ``[m, n_u, *o]``; or, with ``g``, masks (weights) over the update
        batch, ``[m, n_u]`` (or ``[m, n_u, *o]``), so that part ``i`` is ``parts[i] * g``.
      g: the whole force at ``x_u``, ``[n_u, *o]`` (e.g. ``one_step(...).g``), when ``parts`` are masks.
      learning_rate: η of plain SGD.
      preconditioner: the diagonal :math:`P`, a pytree like ``params`` (instead of ``learning_rate``).
      coefficient: the scalar :math:`c` that goes with ``preconditioner``.
      precision: matmul precision (default ``"highest"``).

    Returns:
      The predicted Δ log π of each part, ``[m, n_o, *o]``.

    Example:
      >>> import jax, jax.numpy as jnp, ldjax
      >>> from ldjax._src.first_order import split_change
      >>> f = lambda p, x: jnp.tanh(x @ p)
      >>> p, x = jax.random.normal(jax.random.key(0), (3, 2)), jnp.eye(3)
      >>> r = ldjax.one_step(f, p, x, x[:2], jnp.array([0, 1]), loss=ldjax.losses.cross_entropy,
      ...                    learning_rate=0.1, terms=False)
      >>> halves = split_change(f, p, x, x[:2], jnp.eye(2), g=r.g, learning_rate=0.1)  # example 0, example 1
      >>> halves.shape, bool(jnp.allclose(halves.sum(0), r.predicted, atol=1e-7))
      ((2, 3, 2), True)
    """
    checks.check_gradient_update(learning_rate, preconditioner, coefficient)
    with checks.precision_scope(precision):
        z_u, pullback = _pullback(apply_fn, params, x_u)
        g_parts = _force_parts(parts, g, z_u)

        def one(g_part: Array) -> Array:
            (grads,) = pullback(g_part)
            u = gradient_update(
                grads, learning_rate=learning_rate, preconditioner=preconditioner, coefficient=coefficient
            )
            return probe_change(apply_fn, params, u, x_o)[0]

        return jax.lax.map(one, g_parts)


def _pullback(apply_fn: ApplyFn, params: Params, x_u: Any) -> tuple[Array, Any]:
    """The logits at ``x_u`` and the VJP that maps a force on them to :math:`J(x_u)^\top G` (a 1-tuple)."""
    return jax.vjp(lambda p: batched(apply_fn)(p, x_u), params)


def _force_parts(parts: Any, g: Any, z_u: Array) -> Array:
    """The stacked parts ``[m, n_u, *o]`` of the force: ``parts`` itself, or ``parts[i] * g`` for masks."""
    shape = z_u.shape
    if g is None:
        checks.check_force_parts(parts, shape)
        return jnp.asarray(parts, z_u.dtype)
    checks.check_force(g, shape, "g")
    masks = jnp.asarray(parts)
    checks.check_force_masks(masks, shape)
    masks = masks.reshape(masks.shape + (1,) * (1 + len(shape) - masks.ndim)).astype(z_u.dtype)
    return masks * jnp.asarray(g, z_u.dtype)[None]

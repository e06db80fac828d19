r"""Optimizer-aware kernels: the decomposition for SGD with momentum, RMSprop and Adam.

Each of these optimizers turns the gradient :math:`g` of the loss at the update batch into an
update :math:`u = -c\, P \odot g + m` (a diagonal preconditioner :math:`P`, a coefficient :math:`c`
and a term :math:`m` that does not depend on the current batch, read off the optax state by
:func:`~ldjax._src.optimizer_updates.optimizer_update`, whose module has the table). The first-order
change of log π at :math:`x_o` is then exactly

.. math:: \Delta\log\pi(x_o) = -c\, A(x_o)\, \textstyle\sum_u K_P(x_o, x_u)\, G(x_u)
          \;+\; A(x_o)\, J(x_o)\, m \;+\; O(\eta^2),\qquad K_P = J(x_o)\, P\, J(x_u)^\top .

The first term is the force of the current batch through the *preconditioned* kernel; the second
is the momentum buffer's push, the same for any batch. For Adam and RMSprop, :math:`P` is
evaluated at the second moment *after* accumulating :math:`g^2` (as the real step uses it), so the
sum is exactly :math:`A\,J(x_o)\,u` of the real optax update.
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
from ldjax._src.first_order import actual_change
from ldjax._src.first_order import batch_update
from ldjax._src.first_order import probe_change
from ldjax._src.ntk import DEFAULT_METHOD
from ldjax._src.ntk import NtkMethod
from ldjax._src.ntk_fn import empirical_ntk
from ldjax._src.optimizer_updates import OptimizerKind
from ldjax._src.optimizer_updates import OptimizerUpdate
from ldjax._src.optimizer_updates import gradient_update
from ldjax._src.optimizer_updates import optax_optimizer
from ldjax._src.optimizer_updates import optimizer_update
from ldjax._src.typing import ApplyFn
from ldjax._src.typing import LearningRate
from ldjax._src.typing import LossFn
from ldjax._src.typing import Params
from ldjax._src.typing import Precision


class PreconditionedStep(NamedTuple):
    """Result of :func:`preconditioned_one_step` (``*o`` is one example's logits).

    Attributes:
      predicted: ``gradient_term + momentum_term``, the first-order change of log π, ``[n_o, *o]``.
      gradient_term: :math:`-c\\,A\\,K_P\\,G`, the current batch's force, ``[n_o, *o]``.
      momentum_term: :math:`A\\,J(x_o)\\,m`, the momentum buffer's push, ``[n_o, *o]``.
      actual: log π after the real optax step minus before, ``[n_o, *o]``.
      k: the preconditioned kernel :math:`K_P`, ``[n_o, n_u, *o, *o]`` (``None`` unless ``terms``).
      g: :math:`G = \\partial L/\\partial z` at ``x_u``, ``[n_u, *o]``.
      update: the :class:`OptimizerUpdate` (preconditioner, coefficient, momentum update).
    """

    predicted: Array
    gradient_term: Array
    momentum_term: Array
    actual: Array
    k: Array | None
    g: Array
    update: OptimizerUpdate


def preconditioned_ntk(
    apply_fn: ApplyFn,
    params: Params,
    x1: PyTree[Shaped[ArrayLike, " n1 ..."]],
    x2: PyTree[Shaped[ArrayLike, " n2 ..."]] | None = None,
    *,
    preconditioner: Any,
    method: NtkMethod = DEFAULT_METHOD,
    trace: bool = False,
    precision: Precision = "highest",
    check_finite: bool = True,
    memory_budget: float | None = None,
) -> Float[Array, "n1 n2 *oo"]:
    r"""The preconditioned kernel :math:`K_P = J(x_1)\, \mathrm{diag}(P)\, J(x_2)^\top`.

    Computed as the ordinary empirical NTK of the model reparametrised by
    :math:`\theta + \sqrt{P} \odot (\phi - \theta)` at :math:`\phi = \theta`, so every method of
    :func:`ldjax.empirical_ntk` applies.

    Args:
      apply_fn: un-batched model.
      params: pytree of parameters.
      x1: ``[n1, *d]``.
      x2: ``[n2, *d]`` (default ``x1``).
      preconditioner: the diagonal :math:`P \ge 0`, a pytree like ``params`` (e.g.
        ``optimizer_update(...).preconditioner``); finite, zero entries freeze a parameter.
      method, trace, precision, check_finite, memory_budget: as in :func:`ldjax.empirical_ntk`.

    Returns:
      ``[n1, n2, *o, *o]`` (``[n1, n2]`` when ``trace``).

    Example:
      >>> import jax, jax.numpy as jnp, ldjax
      >>> f = lambda p, x: x @ p["w"]
      >>> p = {"w": jnp.ones((3, 2))}
      >>> k = ldjax.preconditioned_ntk(f, p, jnp.eye(3), preconditioner={"w": 2 * jnp.ones((3, 2))})
      >>> round(float(k[0, 0, 0, 0]), 4)
      2.0
    """
    checks.check_params(params)
    checks.check_preconditioner(preconditioner, params)
    checks.check_kernel_values(apply_fn, params, x1, x2, check_finite=check_finite)
    scale = jax.tree.map(jnp.sqrt, preconditioner)

    def reparametrised(phi: Params, x: Any) -> Array:
        theta = jax.tree.map(lambda t, s, q: t + s * (q - t), params, scale, phi)
        return apply_fn(theta, x)

    reparametrised.sequence_output = getattr(apply_fn, "sequence_output", None)  # type: ignore[attr-defined]
    return empirical_ntk(
        reparametrised,
        params,
        x1,
        x2,
        method=method,
        trace=trace,
        precision=precision,
        check_finite=False,  # checked above, on the model's own parameters
        memory_budget=memory_budget,
    )


def preconditioned_one_step(
    apply_fn: ApplyFn,
    params: Params,
    x_o: PyTree[Shaped[ArrayLike, " n_o ..."]],
    x_u: PyTree[Shaped[ArrayLike, " n_u ..."]],
    y_u: Any,
    *,
    loss: LossFn,
    optimizer: OptimizerKind,
    learning_rate: LearningRate,
    opt_state: Any = None,
    terms: bool = True,
    method: NtkMethod = DEFAULT_METHOD,
    precision: Precision = "highest",
    check_finite: bool = True,
    memory_budget: float | None = None,
    **hyperparameters: Any,
) -> PreconditionedStep:
    r"""One step of SGD-with-momentum, RMSprop or Adam split into the batch's force and the momentum push.

    ``predicted = −c · A · K_P · G + A · J(x_o) · m`` (see the module doc); ``actual`` comes from
    the real optax step (``optax.sgd``/``rmsprop``/``adam`` built from the same hyperparameters),
    so ``actual − predicted = O(η²)``.

    Args:
      apply_fn, params, x_o, x_u, y_u, loss: as in :func:`ldjax.one_step`.
      optimizer: ``"sgd"``, ``"momentum"``, ``"rmsprop"`` or ``"adam"``.
      learning_rate: η.
      opt_state: the optax state before the step (e.g. after training); default: a fresh one.
      terms: also return the preconditioned kernel ``k``.
      method: how ``k`` is computed.
      precision: matmul precision.
      check_finite, memory_budget: as in :func:`ldjax.one_step`.
      **hyperparameters: ``momentum``, ``nesterov`` / ``decay``, ``eps``, ``eps_in_sqrt`` /
        ``b1``, ``b2``, ``eps``, ``eps_root`` (optax's defaults otherwise). Ranges: ``learning_rate`` and
        ``eps`` positive, ``momentum``, ``decay``, ``b1`` and ``b2`` in ``[0, 1)``, ``eps_root >= 0``.

    Returns:
      :class:`PreconditionedStep`.

    Example:
      >>> import jax, jax.numpy as jnp, ldjax
      >>> f = lambda p, x: jnp.tanh(x @ p["w1"]) @ p["w2"]
      >>> k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
      >>> p = {"w1": jax.random.normal(k1, (5, 8)), "w2": jax.random.normal(k2, (8, 3))}
      >>> x = jax.random.normal(k3, (4, 5))
      >>> r = ldjax.preconditioned_one_step(f, p, x, x[:2], jnp.array([0, 2]), loss=ldjax.losses.cross_entropy,
      ...                                   optimizer="adam", learning_rate=1e-4)
      >>> r.k.shape, bool(jnp.abs(r.actual - r.predicted).max() < 1e-5)
      ((4, 2, 3, 3), True)
    """
    opt = optax_optimizer(optimizer, learning_rate, hyperparameters)
    _validate(
        apply_fn, params, x_o, x_u, y_u, loss, opt, optimizer, opt_state,
        terms=terms, method=method, check_finite=check_finite, memory_budget=memory_budget,
    )  # fmt: skip
    if opt_state is None:
        opt_state = opt.init(params)
    with checks.precision_scope(precision):
        step = batch_update(apply_fn, params, x_u, y_u, loss, opt, opt_state)  # the ONE real optax update
        update = optimizer_update(
            step.grads, opt_state, optimizer=optimizer, learning_rate=learning_rate, **hyperparameters
        )
        gradient_term, momentum_term, z_o = _probe_terms(apply_fn, params, step.grads, update, x_o)
        actual = actual_change(apply_fn, params, step.updates, x_o, z_o)
        k = None
        if terms:
            k = preconditioned_ntk(
                apply_fn,
                params,
                x_o,
                x_u,
                preconditioner=update.preconditioner,
                method=method,
                precision=precision,
                check_finite=False,  # checked above
                memory_budget=memory_budget,
            )
    return PreconditionedStep(
        predicted=gradient_term + momentum_term,
        gradient_term=gradient_term,
        momentum_term=momentum_term,
        actual=actual,
        k=k,
        g=step.g,
        update=update,
    )


def _validate(
    apply_fn: ApplyFn,
    params: Params,
    x_o: Any,
    x_u: Any,
    y_u: Any,
    loss: LossFn,
    opt: optax.GradientTransformation,
    kind: OptimizerKind,
    opt_state: Any,
    *,
    terms: bool,
    method: NtkMethod,
    check_finite: bool,
    memory_budget: float | None,
) -> None:
    """The arguments of :func:`preconditioned_one_step` and, with ``terms``, the memory of ``k``."""
    out_shape = checks.validate_step(
        apply_fn,
        params,
        x_o,
        x_u,
        y_u,
        loss,
        optimizer=opt,
        opt_state=opt_state,
        optimizer_name=f"optax.{'sgd' if kind == 'momentum' else kind} (optimizer={kind!r})",
        check_finite=check_finite,
    )
    if terms:
        checks.check_terms_memory(
            params, x_o, x_u, out_shape, method, memory_budget, what="preconditioned_one_step"
        )


def _probe_terms(
    apply_fn: ApplyFn, params: Params, grads: Params, update: OptimizerUpdate, x_o: Any
) -> tuple[Array, Array, Array]:
    """``(−c·A·J(x_o)·(P⊙g), A·J(x_o)·m, z_o)``: the batch's and the momentum's part of the update at ``x_o``."""
    batch_part = gradient_update(grads, preconditioner=update.preconditioner, coefficient=update.coefficient)
    with checks.forward_mode("preconditioned_one_step"):
        gradient_term, z_o = probe_change(apply_fn, params, batch_part, x_o)
        momentum_term, _ = probe_change(apply_fn, params, update.momentum_update, x_o)
    return gradient_term, momentum_term, z_o

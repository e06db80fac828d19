r"""Optimizer-aware kernels: the decomposition for SGD with momentum, RMSprop and Adam.

Each of these optimizers turns the gradient :math:`g` of the loss at the update batch into an
update

.. math:: u = -c\, P \odot g + m

with a diagonal preconditioner :math:`P` and a coefficient :math:`c` read off the optax state, and
a term :math:`m` that does not depend on the current batch (the momentum buffer). The first-order
change of log π at :math:`x_o` is then exactly

.. math:: \Delta\log\pi(x_o) = -c\, A(x_o)\, \textstyle\sum_u K_P(x_o, x_u)\, G(x_u)
          \;+\; A(x_o)\, J(x_o)\, m \;+\; O(\eta^2),\qquad K_P = J(x_o)\, P\, J(x_u)^\top .

The first term is the force of the current batch through the *preconditioned* kernel; the second
is the momentum buffer's push, the same for any batch. For Adam and RMSprop, :math:`P` is
evaluated at the second moment *after* accumulating :math:`g^2` (as the real step uses it), so the
sum is exactly :math:`A\,J(x_o)\,u` of the real optax update.

| optimizer (optax) | :math:`P` | :math:`c` | :math:`m` |
|---|---|---|---|
| ``sgd(η)`` | 1 | η | 0 |
| ``sgd(η, momentum=β)`` | 1 | η (``nesterov``: η(1+β)) | −ηβ·trace (``nesterov``: −ηβ²·trace) |
| ``rmsprop(η, decay, eps)`` | ``1/sqrt(ν'+eps)`` (``eps_in_sqrt``) | η | 0 |
| ``adam(η, b1, b2, eps)`` | ``1/(sqrt(ν'/(1-b2^t))+eps)`` | η(1−b1)/(1−b1^t) | −ηb1/(1−b1^t)·P⊙μ |

with :math:`\nu' = \text{decay}\,\nu + (1-\text{decay})\,g^2` and :math:`t` the step count after
the update.
"""

from __future__ import annotations

from typing import Any
from typing import Literal
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array
from jaxtyping import Float
from jaxtyping import Shaped

from ldjax._src import checks
from ldjax._src.first_order import actual_change
from ldjax._src.first_order import batch_update
from ldjax._src.first_order import gradient_update
from ldjax._src.first_order import probe_change
from ldjax._src.ntk import DEFAULT_METHOD
from ldjax._src.ntk import NtkMethod
from ldjax._src.ntk import empirical_ntk
from ldjax._src.typing import ApplyFn
from ldjax._src.typing import LossFn
from ldjax._src.typing import Params
from ldjax._src.typing import Precision

OptimizerKind = Literal["sgd", "momentum", "rmsprop", "adam"]


class OptimizerUpdate(NamedTuple):
    """An optimizer's update written as ``u = −coefficient · preconditioner ⊙ g + momentum_update``.

    Attributes:
      preconditioner: the diagonal :math:`P`, a pytree like ``params``.
      coefficient: the scalar :math:`c` multiplying the current gradient's part.
      momentum_update: :math:`m`, the part of the update that comes from the optimizer's buffers,
        a pytree like ``params`` (zeros for SGD and RMSprop).
    """

    preconditioner: Any
    coefficient: Array
    momentum_update: Any


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


_MISSING = object()


def _get(opt_state: Any, key: str, kind: str) -> Any:
    """The field ``key`` of an optax state (``optax.tree_utils.tree_get`` returns a default when it is absent)."""
    try:
        value = optax.tree_utils.tree_get(opt_state, key, default=_MISSING)
    except KeyError:  # the field appears more than once (a chain of several such states)
        value = _MISSING
    if value is _MISSING:
        raise ValueError(
            f"opt_state has no {key!r} field: expected the state of optax.{'sgd' if kind == 'momentum' else kind}"
            f" for optimizer={kind!r}"
        )
    return value


def _check_hyperparameters(learning_rate: Any, hp: dict[str, Any]) -> None:
    """learning_rate, eps > 0; momentum, decay, b1, b2 in [0, 1); eps_root >= 0 (optax's ranges)."""
    checks.check_positive(learning_rate, "learning_rate")
    for name in ("momentum", "decay", "b1", "b2"):
        if name in hp:
            checks.check_unit_interval(hp[name], name)
    if "eps" in hp:
        checks.check_positive(hp["eps"], "eps")
    if "eps_root" in hp and not (np.isfinite(hp["eps_root"]) and hp["eps_root"] >= 0):
        raise ValueError(f"eps_root must be a finite number >= 0, got {hp['eps_root']!r}")


def optimizer_update(
    grads: Any,
    opt_state: Any,
    *,
    optimizer: OptimizerKind,
    learning_rate: float,
    momentum: float = 0.9,
    nesterov: bool = False,
    decay: float = 0.9,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    eps_in_sqrt: bool = True,
) -> OptimizerUpdate:
    r"""Read the diagonal preconditioner and momentum term of one optax update off its state.

    The hyperparameters must be those the optax optimizer was built with (optax keeps them in
    closures, not in the state). See the module table for the formulas.

    Args:
      grads: the gradient :math:`g` at the update batch, like ``params``.
      opt_state: the optax state BEFORE the update.
      optimizer: ``"sgd"``, ``"momentum"`` (``optax.sgd(η, momentum=β, nesterov=...)``),
        ``"rmsprop"`` (``optax.rmsprop(η, decay, eps, eps_in_sqrt=...)``) or ``"adam"``
        (``optax.adam(η, b1, b2, eps, eps_root)``).
      learning_rate: η.

    Returns:
      :class:`OptimizerUpdate` with ``u = −c · P ⊙ g + m`` equal to optax's update.

    Example:
      >>> import jax.numpy as jnp, optax, ldjax
      >>> g = {"w": jnp.array([1.0, -2.0])}
      >>> opt = optax.adam(0.1)
      >>> up = ldjax.optimizer_update(g, opt.init(g), optimizer="adam", learning_rate=0.1)
      >>> u = jnp.asarray(-up.coefficient * up.preconditioner["w"] * g["w"] + up.momentum_update["w"])
      >>> bool(jnp.allclose(u, opt.update(g, opt.init(g))[0]["w"]))
      True
    """
    _check_hyperparameters(
        learning_rate,
        {"momentum": momentum, "decay": decay, "b1": b1, "b2": b2, "eps": eps, "eps_root": eps_root},
    )
    zeros = jax.tree.map(jnp.zeros_like, grads)
    ones = jax.tree.map(jnp.ones_like, grads)
    lr = jnp.asarray(learning_rate)
    if optimizer == "sgd":
        return OptimizerUpdate(ones, lr, zeros)
    if optimizer == "momentum":
        trace = _get(opt_state, "trace", optimizer)
        if nesterov:
            return OptimizerUpdate(
                ones, lr * (1 + momentum), jax.tree.map(lambda t: -lr * momentum**2 * t, trace)
            )
        return OptimizerUpdate(ones, lr, jax.tree.map(lambda t: -lr * momentum * t, trace))
    if optimizer == "rmsprop":
        nu = _get(opt_state, "nu", optimizer)
        nu_new = jax.tree.map(lambda n, g: decay * n + (1 - decay) * g**2, nu, grads)
        if eps_in_sqrt:
            p = jax.tree.map(lambda n: jax.lax.rsqrt(n + eps), nu_new)
        else:
            p = jax.tree.map(lambda n: 1 / (jnp.sqrt(n) + eps), nu_new)
        return OptimizerUpdate(p, lr, zeros)
    if optimizer == "adam":
        mu, nu = _get(opt_state, "mu", optimizer), _get(opt_state, "nu", optimizer)
        count = _get(opt_state, "count", optimizer)
        t = (count + 1).astype(jax.tree.leaves(grads)[0].dtype)
        nu_new = jax.tree.map(lambda n, g: b2 * n + (1 - b2) * g**2, nu, grads)
        p = jax.tree.map(lambda n: 1 / (jnp.sqrt(n / (1 - b2**t) + eps_root) + eps), nu_new)
        bias = 1 - b1**t
        m = jax.tree.map(lambda q, mo: -lr * b1 / bias * q * mo, p, mu)
        return OptimizerUpdate(p, lr * (1 - b1) / bias, m)
    raise ValueError(f"optimizer must be 'sgd', 'momentum', 'rmsprop' or 'adam', got {optimizer!r}")


def preconditioned_ntk(
    apply_fn: ApplyFn,
    params: Params,
    x1: Shaped[Array, " n1 *d"],
    x2: Shaped[Array, " n2 *d"] | None = None,
    *,
    preconditioner: Any,
    method: NtkMethod = DEFAULT_METHOD,
    trace: bool = False,
    precision: Precision = "highest",
    check_finite: bool = True,
    memory_budget: float | None = None,
) -> Float[Array, "n1 n2 *o *o"]:
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
    x_o: Shaped[Array, " n_o *d"],
    x_u: Shaped[Array, " n_u *d"],
    y_u: Any,
    *,
    loss: LossFn,
    optimizer: OptimizerKind,
    learning_rate: float,
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
    opt = _optax_optimizer(optimizer, learning_rate, hyperparameters)
    out_shape = checks.validate_step(
        apply_fn,
        params,
        x_o,
        x_u,
        y_u,
        loss,
        optimizer=opt,
        opt_state=opt_state,
        optimizer_name=f"optax.{'sgd' if optimizer == 'momentum' else optimizer} (optimizer={optimizer!r})",
        check_finite=check_finite,
    )
    if terms:
        checks.check_terms_memory(
            params, x_o, x_u, out_shape, method, memory_budget, what="preconditioned_one_step"
        )
    if opt_state is None:
        opt_state = opt.init(params)
    with checks.precision_scope(precision):
        step = batch_update(apply_fn, params, x_u, y_u, loss, opt, opt_state)  # the ONE real optax update
        update = optimizer_update(
            step.grads, opt_state, optimizer=optimizer, learning_rate=learning_rate, **hyperparameters
        )
        batch_part = gradient_update(
            step.grads, preconditioner=update.preconditioner, coefficient=update.coefficient
        )
        with checks.forward_mode("preconditioned_one_step"):
            gradient_term, z_o = probe_change(apply_fn, params, batch_part, x_o)
            momentum_term, _ = probe_change(apply_fn, params, update.momentum_update, x_o)
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


def _optax_optimizer(kind: str, learning_rate: float, hp: dict[str, Any]) -> optax.GradientTransformation:
    allowed = {
        "sgd": set(),
        "momentum": {"momentum", "nesterov"},
        "rmsprop": {"decay", "eps", "eps_in_sqrt"},
        "adam": {"b1", "b2", "eps", "eps_root"},
    }
    if kind not in allowed:
        raise ValueError(f"optimizer must be 'sgd', 'momentum', 'rmsprop' or 'adam', got {kind!r}")
    extra = set(hp) - allowed[kind]
    if extra:
        raise ValueError(
            f"hyperparameters {sorted(extra)} do not apply to optimizer={kind!r}; allowed: {sorted(allowed[kind])}"
        )
    _check_hyperparameters(learning_rate, hp)
    if kind == "sgd":
        return optax.sgd(learning_rate)
    if kind == "momentum":
        return optax.sgd(learning_rate, momentum=hp.get("momentum", 0.9), nesterov=hp.get("nesterov", False))
    if kind == "rmsprop":
        return optax.rmsprop(
            learning_rate,
            decay=hp.get("decay", 0.9),
            eps=hp.get("eps", 1e-8),
            eps_in_sqrt=hp.get("eps_in_sqrt", True),
        )
    return optax.adam(
        learning_rate,
        b1=hp.get("b1", 0.9),
        b2=hp.get("b2", 0.999),
        eps=hp.get("eps", 1e-8),
        eps_root=hp.get("eps_root", 0.0),
    )

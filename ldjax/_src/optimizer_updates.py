r"""Optax's updates read as :math:`u = -c\, P \odot g + m`: the linearisation in the current gradient.

SGD with momentum, RMSprop and Adam turn the gradient :math:`g` of the loss at the update batch into
an update

.. math:: u = -c\, P \odot g + m

with a diagonal preconditioner :math:`P` and a coefficient :math:`c` read off the optax state, and
a term :math:`m` that does not depend on the current batch (the momentum buffer).
:func:`optimizer_update` reads them, :func:`gradient_update` applies :math:`-c\, P \odot g` (or plain SGD's
:math:`-\eta\, g`) to any gradient; :mod:`ldjax._src.optimizer_kernels` builds the preconditioned kernel
and the one-step decomposition on them, :func:`~ldjax._src.first_order.split_change` the split of a force.

| optimizer (optax) | :math:`P` | :math:`c` | :math:`m` |
|---|---|---|---|
| ``sgd(η)`` | 1 | η | 0 |
| ``sgd(η, momentum=β)`` | 1 | η (``nesterov``: η(1+β)) | −ηβ·trace (``nesterov``: −ηβ²·trace) |
| ``rmsprop(η, decay, eps)`` | ``1/sqrt(ν'+eps)`` (``eps_in_sqrt``) | η | 0 |
| ``adam(η, b1, b2, eps)`` | ``1/(sqrt(ν'/(1-b2^t))+eps)`` | η(1−b1)/(1−b1^t) | −ηb1/(1−b1^t)·P⊙μ |

with :math:`\nu' = \text{decay}\,\nu + (1-\text{decay})\,g^2` and :math:`t` the step count after
the update.
"""

from typing import Any
from typing import Literal
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array

from ldjax._src import checks
from ldjax._src.typing import LearningRate
from ldjax._src.typing import Params

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


def optimizer_update(
    grads: Any,
    opt_state: Any,
    *,
    optimizer: OptimizerKind,
    learning_rate: LearningRate,
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
    checks.check_optimizer_hyperparameters(
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


def gradient_update(
    grads: Params,
    *,
    learning_rate: Any = None,
    preconditioner: Params | None = None,
    coefficient: Any = None,
) -> Params:
    r"""The update that is linear in the current gradient: :math:`-\eta\, \nabla` or :math:`-c\, P \odot \nabla`.

    Plain SGD takes ``learning_rate`` η. SGD with momentum, RMSprop and Adam take the diagonal
    preconditioner :math:`P` and coefficient :math:`c` of their linearisation (``u = −c·P⊙g + m``, read off
    the optax state by :func:`optimizer_update`); the momentum part ``m`` does not depend on the
    current batch and is not included.

    Args:
      grads: a gradient, a pytree like ``params``.
      learning_rate: η for plain SGD (then ``preconditioner`` and ``coefficient`` are ``None``).
      preconditioner: the diagonal :math:`P`, a pytree like ``grads``.
      coefficient: the scalar :math:`c` (with ``preconditioner``).

    Returns:
      The update, a pytree like ``grads``.

    Example:
      >>> import jax.numpy as jnp
      >>> from ldjax._src.optimizer_updates import gradient_update
      >>> gradient_update(jnp.array([1.0, -2.0]), learning_rate=0.5)
      Array([-0.5,  1. ], dtype=float32)
      >>> gradient_update(jnp.array([1.0, -2.0]), preconditioner=jnp.array([2.0, 1.0]), coefficient=0.5)
      Array([-1.,  1.], dtype=float32)
    """
    checks.check_gradient_update(learning_rate, preconditioner, coefficient)
    if preconditioner is None:
        return jax.tree.map(lambda a: -learning_rate * a, grads)
    checks.check_preconditioner(preconditioner, grads)
    return jax.tree.map(lambda p, a: -coefficient * p * a, preconditioner, grads)


def optax_optimizer(
    kind: str, learning_rate: LearningRate, hp: dict[str, Any]
) -> optax.GradientTransformation:
    """The optax optimizer ``kind`` with the hyperparameters ``hp`` (optax's defaults for those not given), checked."""
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
    checks.check_optimizer_hyperparameters(learning_rate, hp)
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

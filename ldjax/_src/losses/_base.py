r"""What every loss shares: the target check, binding hyper-parameters, and the softmax − one-hot force.

A loss is ``loss(logits[n, *o], target) -> scalar`` (see :class:`ldjax._src.typing.Loss`). Three pieces
serve all of them:

* :func:`with_target_check` attaches ``check_target(out_shape, target, name)``, which
  :func:`ldjax.one_step` calls before tracing so that a bad target fails with a message naming it, and
  makes the loss run the same check whenever it is called on a batch (a label out of range never gives a
  silent zero force); :func:`checks_target` does the second part for a closed-form force ``*_g``;
* :func:`bind` turns a loss with keyword hyper-parameters (``dpo(logits, target, *, beta)``) into a
  two-argument loss that keeps the check (``dpo_fn(beta) = bind(dpo, beta=beta)``);
* :func:`softmax_minus_one_hot` is :math:`\pi - e_y`, the factor that every closed-form force of a
  log-likelihood term carries (``cross_entropy_g``, ``sft_g``, ``dpo_g``, ``grpo_g``, ...).
"""

import functools
import inspect
from collections.abc import Callable
from typing import Any
from typing import TypeVar

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array
from jaxtyping import Float
from jaxtyping import Int

from ldjax._src.typing import CheckTarget
from ldjax._src.typing import Loss

_F = TypeVar("_F", bound=Callable[..., Any])


def with_target_check(check: CheckTarget) -> Callable[[_F], _F]:
    """Decorator attaching ``check(out_shape, target, name)`` to a loss as ``loss.check_target``.

    ``out_shape`` is the shape of ONE example's logits (``(k,)`` or ``(T, V)``), ``target`` the whole
    batch's target and ``name`` the argument to name in the error (``"y_u"``). The check raises
    ``ValueError``; it may read concrete values (label ranges) but must not fail under tracing. The
    decorated loss also runs the check itself whenever it is called on a batch of logits (``[n, *o]``),
    naming its own second parameter (see :func:`checks_target`).

    Example:
      >>> import jax.numpy as jnp, ldjax
      >>> def check(out_shape, target, name):
      ...     if target.shape[1:] != out_shape:
      ...         raise ValueError(f"{name} has shape {target.shape}, expected [n, *{out_shape}]")
      >>> @ldjax.losses.with_target_check(check)
      ... def squared(logits, target):
      ...     return 0.5 * jnp.mean(jnp.sum((logits - target) ** 2, axis=-1))
      >>> squared.check_target((3,), jnp.zeros((2, 4)), "y_u")
      Traceback (most recent call last):
      ValueError: y_u has shape (2, 4), expected [n, *(3,)]
      >>> squared(jnp.zeros((2, 3)), jnp.zeros((2, 4)))
      Traceback (most recent call last):
      ValueError: target has shape (2, 4), expected [n, *(3,)]
    """

    def decorate(loss: _F) -> _F:
        checked = checks_target(check)(loss)
        checked.check_target = check  # type: ignore[attr-defined]
        return checked

    return decorate


def checks_target(check: CheckTarget) -> Callable[[_F], _F]:
    """Decorator making ``fn(logits, target, ...)`` run ``check`` on its arguments when called on a batch.

    The check runs when ``logits`` has a batch axis (``ndim >= 2``), with the shape of one example's
    logits and the name of ``fn``'s second parameter; under ``jax.jit`` it sees tracers and checks shapes
    only. Used for the losses (through :func:`with_target_check`) and their closed-form forces ``*_g``.

    Example:
      >>> import jax.numpy as jnp, ldjax
      >>> ldjax.losses.cross_entropy_g(jnp.zeros((1, 3)), jnp.array([9]))
      Traceback (most recent call last):
      ValueError: labels holds labels in [9, 9] but the model has k=3 classes: expected labels in [0, 3)
    """

    def decorate(fn: _F) -> _F:
        parameters = list(inspect.signature(fn).parameters)
        name = parameters[1] if len(parameters) > 1 else "target"

        @functools.wraps(fn)
        def checked(logits: Any, target: Any, /, *args: Any, **kwargs: Any) -> Any:
            if np.ndim(logits) >= 2:
                check(tuple(np.shape(logits)[1:]), target, name)
            return fn(logits, target, *args, **kwargs)

        return checked  # type: ignore[return-value]

    return decorate


def bind(loss: Callable[..., Array], /, **hyper: Any) -> Loss:
    """``loss`` with keyword hyper-parameters bound: ``bind(loss, **hyper)(logits, target)``.

    The result is a two-argument :class:`~ldjax._src.typing.Loss` that keeps ``loss.check_target``
    and is named after its hyper-parameters (``dpo(beta=0.5)``), so it reads well in reports.

    Args:
      loss: ``loss(logits, target, **hyper) -> scalar``.
      **hyper: the keyword arguments to bind.

    Returns:
      ``bound(logits, target) = loss(logits, target, **hyper)``.

    Example:
      >>> import jax.numpy as jnp, ldjax
      >>> loss = ldjax.losses.bind(ldjax.losses.dpo, beta=0.5)
      >>> loss.__name__, loss.check_target is ldjax.losses.dpo.check_target
      ('dpo(beta=0.5)', True)
    """

    def bound(logits: Array, target: Any) -> Array:
        return loss(logits, target, **hyper)

    arguments = ", ".join(f"{key}={value!r}" for key, value in hyper.items())
    bound.__name__ = bound.__qualname__ = f"{getattr(loss, '__name__', 'loss')}({arguments})"
    bound.__doc__ = loss.__doc__
    check = getattr(loss, "check_target", None)
    if check is not None:  # the inner loss runs the check when called; bound only carries it for one_step
        bound.check_target = check  # type: ignore[attr-defined]
    return bound


def softmax_minus_one_hot(logits: Float[Array, "*b k"], labels: Int[Array, "*b"]) -> Float[Array, "*b k"]:
    r""":math:`\pi - e_y`, the gradient of :math:`-\log\pi_y` with respect to the logits.

    Every closed-form force of a (weighted) log-likelihood term is this times its weight.

    Example:
      >>> import jax.numpy as jnp, ldjax
      >>> ldjax.losses.softmax_minus_one_hot(jnp.zeros((1, 4)), jnp.array([2]))
      Array([[ 0.25,  0.25, -0.75,  0.25]], dtype=float32)
    """
    probs = jax.nn.softmax(logits, axis=-1)
    return probs - jax.nn.one_hot(labels, logits.shape[-1], dtype=probs.dtype)


def token_log_probs(logits: Float[Array, "*b k"], tokens: Int[Array, "*b"]) -> Float[Array, "*b"]:
    r"""Per-position :math:`\log\pi(y)` of the given tokens or class labels.

    Example:
      >>> import jax.numpy as jnp, ldjax
      >>> ldjax.losses.token_log_probs(jnp.log(jnp.array([[0.5, 0.25, 0.25]])), jnp.array([1]))
      Array([-1.386...], dtype=float32)
    """
    logp = jax.nn.log_softmax(logits, axis=-1)
    return jnp.take_along_axis(logp, tokens[..., None].astype(jnp.int32), axis=-1)[..., 0]

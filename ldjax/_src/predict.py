r"""Vocabulary-scale prediction: Δ log π at every position and vocabulary entry of many probes.

.. math:: \Delta \log\pi(x_o) \approx A(x_o)\, J(x_o)\, u, \qquad u = \text{the optimizer's update}

computed from the gradient at the update batch (one VJP) and ONE JVP at the probes: the kernel
``[n_o, n_u, T, V, T, V]`` is never formed, so the cost is about that of a training step.
"""

from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import optax
from jaxtyping import Array

from ldjax._src import checks
from ldjax._src.first_order import FirstOrderStep
from ldjax._src.first_order import actual_change
from ldjax._src.first_order_fn import first_order_step_fn
from ldjax._src.typing import ApplyFn
from ldjax._src.typing import LearningRate
from ldjax._src.typing import LossFn
from ldjax._src.typing import Params
from ldjax._src.typing import Precision


class LogProbChange(NamedTuple):
    """Result of :func:`predict_log_prob_change`.

    Attributes:
      predicted: first-order Δ log π at every probe, position and vocabulary entry,
        ``[n_probe, *o]`` (``[n_probe, T, V]`` for sequence models).
      actual: log π after a real optax step minus log π before, same shape (``None`` unless
        ``actual=True``).
      loss: the loss on the update batch before the update.
    """

    predicted: Array
    actual: Array | None
    loss: Array


def predict_log_prob_change(
    apply_fn: ApplyFn,
    params: Params,
    x_probe: Any,
    x_u: Any,
    y_u: Any,
    *,
    loss: LossFn,
    learning_rate: LearningRate | None = None,
    optimizer: optax.GradientTransformation | None = None,
    opt_state: Any = None,
    actual: bool = False,
    params_filter: Callable[[str], bool] | None = None,
    precision: Precision = "highest",
    check_finite: bool = True,
    memory_budget: float | None = None,
) -> LogProbChange:
    r"""Predicted change of log π on every probe, position and vocabulary entry after one update.

    .. math:: \Delta \log\pi(x_o)_{t,v} = \big[A(x_o)\, J(x_o)\, u\big]_{t,v} + O(\eta^2)

    ``u`` is the optimizer's update from the loss on ``(x_u, y_u)`` (``u = -\eta\,\nabla L`` for
    plain SGD, so this is :math:`-\eta\, A K G` summed over the batch). One VJP at ``x_u`` and one
    JVP at ``x_probe``: no kernel, memory of the order of one training step. Any loss works:
    ``loss(logits[n_u, *o], y_u) -> scalar`` (e.g. :func:`ldjax.losses.sft`, :func:`ldjax.losses.dpo_fn`).

    Args:
      apply_fn: un-batched model, ``apply_fn(params, x) -> [T, V]`` (or ``[k]``).
      params: pytree of parameters.
      x_probe: probe inputs ``[n_probe, *d]`` (e.g. token ids ``[n_probe, T]``).
      x_u: the update batch ``[n_u, *d]``.
      y_u: targets for ``loss``.
      loss: ``loss(logits, y_u) -> scalar``.
      learning_rate: η for plain SGD; must be ``None`` when ``optimizer`` is given.
      optimizer: any ``optax.GradientTransformation`` (Adam, SGD with momentum...).
      opt_state: its state (e.g. from training); default ``optimizer.init(params)``.
      actual: also take the real optax step and return the actual change (one more forward pass).
      params_filter: ``params_filter(name) -> bool`` on each parameter's path: only those are updated.
      precision: matmul precision (default ``"highest"``).
      check_finite: refuse NaN or inf in ``params``, the inputs, float targets and ``opt_state``
        (``False`` skips it for speed).
      memory_budget: bytes the logits at the probes and their change may take (a few arrays
        ``[n_probe, *o]``); above it the call is refused, naming the cheaper routes. Default: half of the
        device's memory (of the RAM on CPU); ``math.inf`` turns the check off.

    The model must support forward mode (one JVP at the probes): a model with ``jax.custom_vjp`` is
    refused with a message (use ``jax.custom_jvp``).

    Returns:
      :class:`LogProbChange`.

    Example:
      >>> import jax, jax.numpy as jnp, ldjax
      >>> emb = jax.random.normal(jax.random.key(0), (5, 5))
      >>> f = lambda p, t: jnp.cumsum(p[t], axis=0)  # [T] tokens -> [T, V=5] logits
      >>> tokens = jnp.array([[0, 1, 2], [3, 4, 0]])
      >>> target = ldjax.losses.SequenceTarget(tokens[:1], jnp.ones((1, 3)))
      >>> r = ldjax.predict_log_prob_change(f, emb, tokens, tokens[:1], target, loss=ldjax.losses.sft,
      ...                                   learning_rate=1e-3, actual=True)
      >>> r.predicted.shape, bool(jnp.abs(r.actual - r.predicted).max() < 1e-5)
      ((2, 3, 5), True)
    """
    predict = predict_fn(
        apply_fn,
        loss,
        optimizer=optimizer,
        actual=actual,
        params_filter=params_filter,
        precision=precision,
        check_finite=check_finite,
        memory_budget=memory_budget,
    )
    return predict(params, x_probe, x_u, y_u, learning_rate=learning_rate, opt_state=opt_state)


def predict_fn(
    apply_fn: ApplyFn,
    loss: LossFn,
    *,
    optimizer: optax.GradientTransformation | None = None,
    actual: bool = False,
    params_filter: Callable[[str], bool] | None = None,
    precision: Precision = "highest",
    check_finite: bool = True,
    memory_budget: float | None = None,
) -> Callable[..., LogProbChange]:
    r"""A compiled :func:`predict_log_prob_change` for one model, loss and optimizer, to hold and reuse.

    The returned ``predict(params, x_probe, x_u, y_u, *, learning_rate=None, opt_state=None)`` validates
    its arguments outside ``jax.jit`` (shape checks once per new shape signature, value checks on every
    call) and runs one jitted program: one VJP at ``x_u``, the optimizer's update, one JVP at ``x_probe``.

    Args:
      apply_fn: un-batched model, ``apply_fn(params, x) -> [T, V]`` (or ``[k]``).
      loss: ``loss(logits[n_u, *o], y_u) -> scalar``.
      optimizer: any ``optax.GradientTransformation``; ``None`` is plain SGD with the ``learning_rate``
        given to each call.
      actual: also take the real optax step and return the actual change.
      params_filter: ``params_filter(name) -> bool``: update only the selected parameters.
      precision: matmul precision (default ``"highest"``).
      check_finite, memory_budget: as in :func:`predict_log_prob_change`.

    Returns:
      ``predict(params, x_probe, x_u, y_u, *, learning_rate=None, opt_state=None) -> LogProbChange``.

    Example:
      >>> import jax, jax.numpy as jnp, ldjax
      >>> emb = jax.random.normal(jax.random.key(0), (5, 5))
      >>> f = lambda p, t: jnp.cumsum(p[t], axis=0)  # [T] tokens -> [T, V=5] logits
      >>> tokens = jnp.array([[0, 1, 2], [3, 4, 0]])
      >>> target = ldjax.losses.SequenceTarget(tokens[:1], jnp.ones((1, 3)))
      >>> predict = ldjax.predict_fn(f, ldjax.losses.sft)
      >>> predict(emb, tokens, tokens[:1], target, learning_rate=1e-3).predicted.shape
      (2, 3, 5)
    """

    def check_memory(params, x_probe, x_u, out_shape, budget):
        checks.check_probe_memory(params, x_probe, out_shape, budget, actual=actual)

    def finish(params, x_probe, x_u, step: FirstOrderStep) -> LogProbChange:
        change = actual_change(apply_fn, params, step.updates, x_probe, step.z_o) if actual else None
        return LogProbChange(predicted=step.predicted, actual=change, loss=step.loss)

    return first_order_step_fn(
        apply_fn,
        loss,
        finish,
        optimizer=optimizer,
        precision=precision,
        check_finite=check_finite,
        memory_budget=memory_budget,
        check_memory=check_memory,
        what="predict_log_prob_change",
        params_filter=params_filter,
        probe_name="x_probe",
    )

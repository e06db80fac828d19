"""The one-step analyses' validation: :func:`validate_step` (shapes once per signature, values every call)."""

from typing import Any

import jax

from ldjax._src.checks.arrays import batch_size
from ldjax._src.checks.arrays import check_batch
from ldjax._src.checks.arrays import check_finite_values
from ldjax._src.checks.arrays import check_params
from ldjax._src.checks.arrays import check_same_examples
from ldjax._src.checks.arrays import params_dtype
from ldjax._src.checks.arrays import shape_signature
from ldjax._src.checks.model import check_log_softmax_outputs
from ldjax._src.checks.model import check_loss_target
from ldjax._src.checks.model import check_model_input
from ldjax._src.checks.model import check_scalar_loss
from ldjax._src.checks.model import check_targets_batch
from ldjax._src.checks.model import logits_shape
from ldjax._src.checks.optimizer import check_opt_state
from ldjax._src.checks.optimizer import check_optimizer
from ldjax._src.checks.optimizer import check_update_rule
from ldjax._src.typing import ApplyFn
from ldjax._src.typing import Params


def _check_step_shapes(apply_fn: ApplyFn, params: Params, x_o: Any, x_u: Any, y_u: Any, probe_name: str):
    """The shape part of :func:`validate_step`; returns the shape of one example's logits."""
    check_params(params)
    check_batch(x_o, probe_name)
    check_batch(x_u, "x_u")
    check_same_examples(x_o, probe_name, x_u, "x_u")
    out_shape = logits_shape(apply_fn, params, x_u, "x_u")
    check_log_softmax_outputs(out_shape)
    check_targets_batch(y_u, batch_size(x_u), "y_u", "x_u")
    return out_shape


def validate_step(
    apply_fn: ApplyFn,
    params: Params,
    x_o: Any,
    x_u: Any,
    y_u: Any,
    loss: Any,
    learning_rate: Any = None,
    optimizer: Any = None,
    *,
    opt_state: Any = None,
    optimizer_name: str | None = None,
    probe_name: str = "x_o",
    known_shapes: dict | None = None,
    check_finite: bool = True,
) -> tuple[int, ...]:
    """Check the arguments of a one-step prediction before anything is traced; the shape of one example's logits.

    Shape checks (parameter dtypes, batches, example shapes, ``apply_fn`` on one example, one target
    per example, a scalar loss, the optimizer state's structure) run once per shape signature of
    ``(params, x_o, x_u, y_u, opt_state)`` when the caller keeps ``known_shapes`` (a dict held by a
    returned function, e.g. :func:`ldjax.one_step_fn`'s). Value checks (finite inputs, a positive
    learning rate, the model's input check, the loss's ``check_target``) run on every call whose
    values are concrete.

    Args:
      apply_fn, params, x_o, x_u, y_u, loss: as in :func:`ldjax.one_step`.
      learning_rate: η of plain SGD (``optimizer=None``), else ``None``.
      optimizer: an optax optimizer or ``None``.
      opt_state: the optimizer's state or ``None``.
      optimizer_name: the optimizer's name in messages (default: described by its state).
      probe_name: the probes' name in messages (``"x_probe"`` for :func:`ldjax.predict_log_prob_change`).
      known_shapes: a cache ``{shape signature: logits shape}`` the caller owns; ``None`` checks every time.
      check_finite: check that ``params``, the inputs, the float targets and ``opt_state`` are finite.
    """
    check_optimizer(optimizer, opt_state)
    check_update_rule(learning_rate, optimizer)
    if not callable(loss):
        raise ValueError(f"loss must be a function loss(logits, target) -> scalar, got {type(loss).__name__}")
    check_model_input(apply_fn, x_o, probe_name)
    check_model_input(apply_fn, x_u, "x_u")
    key = shape_signature(params, x_o, x_u, y_u, opt_state)
    known = known_shapes is not None and key in known_shapes
    out_shape = (
        known_shapes[key] if known else _check_step_shapes(apply_fn, params, x_o, x_u, y_u, probe_name)
    )
    if check_finite:
        check_finite_values(((params, "params"), (x_o, probe_name), (x_u, "x_u"), (y_u, "y_u")))
        check_finite_values(((opt_state, "opt_state"),))
    check_loss_target(loss, out_shape, y_u, "y_u")
    if not known:
        if optimizer is not None:
            check_opt_state(optimizer, params, opt_state, optimizer_name)
        n_u = batch_size(x_u)
        check_scalar_loss(loss, jax.ShapeDtypeStruct((n_u, *out_shape), params_dtype(params)), y_u)
        if known_shapes is not None:
            known_shapes[key] = out_shape
    return out_shape

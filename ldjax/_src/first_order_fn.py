"""The held, compiled first-order step: the factory behind :func:`ldjax.one_step_fn` and :func:`ldjax.predict_fn`.

:func:`first_order_step_fn` checks the options once, then returns a function that validates each call's
arguments outside ``jax.jit`` (:func:`~ldjax._src.checks.validate_step`), refuses a result that would not
fit the memory budget, and runs ONE jitted program: :func:`~ldjax._src.first_order.first_order_step`
followed by the caller's ``finish``.
"""

from collections.abc import Callable
from typing import Any

import jax
import optax

from ldjax._src import checks
from ldjax._src import pytree
from ldjax._src.first_order import FirstOrderStep
from ldjax._src.first_order import first_order_step
from ldjax._src.typing import ApplyFn
from ldjax._src.typing import LossFn
from ldjax._src.typing import Params
from ldjax._src.typing import Precision


def first_order_step_fn(
    apply_fn: ApplyFn,
    loss: LossFn,
    finish: Callable[[Params, Any, Any, FirstOrderStep], Any],
    *,
    optimizer: optax.GradientTransformation | None,
    precision: Precision,
    check_finite: bool,
    memory_budget: float | None,
    check_memory: Callable[[Params, Any, Any, tuple[int, ...], float | None], None],
    what: str,
    params_filter: Callable[[str], bool] | None = None,
    probe_name: str = "x_o",
) -> Callable[..., Any]:
    r"""A held, compiled :func:`first_order_step` whose result ``finish`` turns into what the caller returns.

    The factory behind :func:`ldjax.one_step_fn` and :func:`ldjax.predict_fn`. The options are checked
    here, when the function is made. The returned ``call(params, x_o, x_u, y_u, *, learning_rate=None,
    opt_state=None)`` validates its arguments outside ``jax.jit`` (:func:`checks.validate_step`: shape
    checks once per shape signature, value checks on every call), runs ``check_memory(params, x_o, x_u,
    out_shape, memory_budget)``, then one jitted program: :func:`first_order_step` with ``optimizer``
    (plain SGD at the call's ``learning_rate`` when ``None``, so a new rate does not recompile) and
    ``finish(params, x_o, x_u, step)``, all under the matmul ``precision``.

    Args:
      apply_fn: un-batched model, ``apply_fn(params, x) -> [*o]``.
      loss: ``loss(logits[n_u, *o], y_u) -> scalar``.
      finish: ``finish(params, x_o, x_u, step: FirstOrderStep) -> result``, traced inside the program.
      optimizer: any ``optax.GradientTransformation``, or ``None`` for plain SGD.
      precision: matmul precision.
      check_finite: refuse NaN or inf in the inputs (see :func:`ldjax.one_step`).
      memory_budget: bytes the result may take (``None``: the default), handed to ``check_memory``.
      check_memory: refuses a call whose result would not fit ``memory_budget``.
      what: the caller's name in messages (``"one_step"``).
      params_filter: ``params_filter(name) -> bool`` on each parameter's path: only those are updated
        (:func:`ldjax._src.pytree.only_selected`; ``None``: all).
      probe_name: the probes' name in messages.

    Returns:
      ``call(params, x_o, x_u, y_u, *, learning_rate=None, opt_state=None) -> result``.

    Example:
      >>> import jax.numpy as jnp, ldjax
      >>> from ldjax._src.first_order_fn import first_order_step_fn
      >>> call = first_order_step_fn(
      ...     lambda p, x: x @ p, ldjax.losses.cross_entropy, lambda p, x_o, x_u, step: step.loss,
      ...     optimizer=None, precision="highest", check_finite=True, memory_budget=None,
      ...     check_memory=lambda *args: None, what="example")
      >>> round(float(call(jnp.zeros((3, 2)), jnp.eye(3), jnp.ones((1, 3)), jnp.array([0]), learning_rate=0.1)), 4)
      0.6931
    """
    checks.precision_scope(precision)  # an unknown precision fails here, not at the first call
    checks.check_optimizer(optimizer, None)
    if memory_budget is not None:
        checks.check_positive_budget(memory_budget)
    known_shapes: dict = {}

    @jax.jit
    def run(params, x_o, x_u, y_u, opt_state, rate):
        opt = pytree.only_selected(optax.sgd(rate) if optimizer is None else optimizer, params_filter)
        with checks.precision_scope(precision):
            step = first_order_step(apply_fn, params, x_o, x_u, y_u, loss, opt, opt_state)
            return finish(params, x_o, x_u, step)

    def call(params, x_o, x_u, y_u, *, learning_rate=None, opt_state=None):
        out_shape = checks.validate_step(
            apply_fn,
            params,
            x_o,
            x_u,
            y_u,
            loss,
            learning_rate,
            optimizer,
            opt_state=opt_state,
            probe_name=probe_name,
            known_shapes=known_shapes,
            check_finite=check_finite,
        )
        check_memory(params, x_o, x_u, out_shape, memory_budget)
        with checks.forward_mode(what):
            return run(params, x_o, x_u, y_u, opt_state, 0.0 if learning_rate is None else learning_rate)

    return call

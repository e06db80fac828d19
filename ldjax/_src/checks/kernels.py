"""The kernels' validation: :func:`validate_kernel` (shapes and memory once per signature), its value checks, and
the options of a kernel function (:func:`check_kernel_options`)."""

from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

from ldjax._src.checks.arrays import batch_size
from ldjax._src.checks.arrays import check_batch
from ldjax._src.checks.arrays import check_finite_values
from ldjax._src.checks.arrays import check_params
from ldjax._src.checks.arrays import check_same_examples
from ldjax._src.checks.arrays import precision_scope
from ldjax._src.checks.arrays import shape_signature
from ldjax._src.checks.memory import check_memory
from ldjax._src.checks.memory import check_positive_budget
from ldjax._src.checks.memory import kernel_memory
from ldjax._src.checks.model import check_model_input
from ldjax._src.checks.model import logits_shape
from ldjax._src.typing import ApplyFn
from ldjax._src.typing import Params
from ldjax._src.typing import Precision


def validate_kernel(
    apply_fn: ApplyFn,
    params: Params,
    x1: Any,
    x2: Any,
    *,
    method: str,
    trace: bool,
    per_layer: bool,
    check_finite: bool = True,
    memory_budget: float | None = None,
    known_shapes: dict | None = None,
    what: str = "empirical_ntk",
    row_blocks: int = 1,
) -> tuple[int, ...]:
    """Check the arguments of a kernel (:func:`ldjax.empirical_ntk`) and its memory; one example's logits shape.

    ``x2=None`` is the Gram matrix of ``x1``. Shape checks and the memory estimate
    (:func:`kernel_memory`, refused above the budget) run once per shape signature when the caller keeps
    ``known_shapes``; value checks (:func:`check_kernel_values`) on every call whose values are concrete.
    ``row_blocks`` is the number of devices the rows are split over (each holds ``n1 / row_blocks`` rows).
    """
    same = x2 is None or x2 is x1
    x2 = x1 if x2 is None else x2
    check_model_input(apply_fn, x1, "x1")
    check_model_input(apply_fn, x2, "x2")
    key = shape_signature(params, x1, x2)
    if known_shapes is not None and key in known_shapes:
        out_shape = known_shapes[key]
    else:
        check_params(params)
        check_batch(x1, "x1")
        check_batch(x2, "x2")
        check_same_examples(x1, "x1", x2, "x2")
        out_shape = logits_shape(apply_fn, params, x1, "x1")
        rows = -(-batch_size(x1) // row_blocks)
        items = kernel_memory(
            method, params, rows, batch_size(x2), out_shape, trace=trace, per_layer=per_layer, same=same
        )
        cheaper = [] if trace else ["trace=True (a kernel [n1, n2])"]
        cheaper += [] if method == "structured" else ["method='structured' (no Jacobians)"]
        cheaper += ["fewer examples per call (blocks of x1)"]
        cheaper += (
            ["one position of a sequence model (lambda p, x: f(p, x)[-1])"] if len(out_shape) == 2 else []
        )
        check_memory(
            items,
            what=f"{what}(method={method!r})",
            cheaper=", ".join(cheaper[:-1]) + " or " + cheaper[-1] if len(cheaper) > 1 else cheaper[0],
            budget=memory_budget,
        )
        if known_shapes is not None:
            known_shapes[key] = out_shape
    if check_finite:
        check_finite_values(((params, "params"), (x1, "x1"), (x2, "x2")))
    return out_shape


def check_kernel_values(apply_fn: ApplyFn, params: Params, x1: Any, x2: Any, *, check_finite: bool) -> None:
    """The value checks of a kernel's arguments: the model's own input check (token ids in range) and
    finite values (unless ``check_finite`` is false)."""
    x2 = x1 if x2 is None else x2
    check_model_input(apply_fn, x1, "x1")
    check_model_input(apply_fn, x2, "x2")
    if check_finite:
        check_finite_values(((params, "params"), (x1, "x1"), (x2, "x2")))


def check_kernel_options(
    method: str,
    methods: Sequence[str],
    precision: Precision,
    trace: bool,
    trace_axes: Any,
    params_filter: Callable[[str], bool] | None,
    memory_budget: float | None,
) -> None:
    """The options of :func:`ldjax.empirical_ntk_fn`, checked when the factory is called (before any batch);
    ``methods`` are the method names it knows."""
    if method not in methods:
        raise ValueError(f"method must be {' or '.join(map(repr, methods))}, got {method!r}")
    precision_scope(precision)  # a bad precision fails here, not at the first call
    if trace and trace_axes is not None:
        raise ValueError(
            "pass either trace=True (ldjax: the sum over every logit axis) or trace_axes (nt), not both"
        )
    if params_filter is not None and not callable(params_filter):
        raise ValueError(f"params_filter must be a function name -> bool, got {type(params_filter).__name__}")
    if memory_budget is not None:
        check_positive_budget(memory_budget)

"""The kernel function: :func:`empirical_ntk_fn` returns a held, compiled :class:`KernelFunction`.

The options are checked when the function is made (:func:`~ldjax._src.checks.check_kernel_options`); each
call validates its batches outside ``jax.jit`` (:func:`~ldjax._src.checks.validate_kernel`), then one
jitted program picks the method for the shapes (:func:`~ldjax._src.explain.pick_method`; ``"auto"``
chooses by FLOP and memory estimates), computes the kernels through the method table of
:mod:`ldjax._src.ntk` and lays them out (:mod:`ldjax._src.ntk_axes`). :func:`empirical_ntk` is the
one-call convenience that builds the function and calls it once.
"""

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from jaxtyping import Array
from jaxtyping import Float
from jaxtyping import PyTree
from jaxtyping import Shaped

from ldjax._src import checks
from ldjax._src import explain
from ldjax._src import pytree
from ldjax._src.ntk import DEFAULT_METHOD
from ldjax._src.ntk import METHODS
from ldjax._src.ntk import NtkMethod
from ldjax._src.ntk import leaf_kernels
from ldjax._src.ntk_axes import Axes
from ldjax._src.ntk_axes import batched_from_vmap_axes
from ldjax._src.ntk_axes import kernel_layout
from ldjax._src.ntk_axes import named_kernels
from ldjax._src.ntk_axes import pair_kernels
from ldjax._src.typing import ApplyFn
from ldjax._src.typing import Params
from ldjax._src.typing import Precision


def _logits_shape(apply_fn: ApplyFn, params: Params, x1: Any, x2: Any) -> tuple[int, ...]:
    """Check both batches (the errors name ``x1``/``x2``); the shape ``o`` of one example's logits."""
    checks.check_batch(x1, "x1")
    checks.check_batch(x2, "x2")
    checks.check_same_examples(x1, "x1", x2, "x2")
    return checks.logits_shape(apply_fn, params, x1, "x1")


class KernelFunction:
    """The compiled kernel function of :func:`empirical_ntk_fn`: ``kernel_fn(params, x1, x2=None)``.

    Attributes:
      method: the method the last compiled call used (what ``"auto"`` chose), ``None`` before the first call.
      methods: ``{shape signature: method}`` over every compiled shape.
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        explain: Callable[..., Any],
        options: dict[str, Any],
        validate: Callable[..., Any],
    ):
        self._jitted = jax.jit(fn)
        self._validate = validate
        self._explain = explain
        self.options = options
        self.method: str | None = None
        self.methods: dict[Any, str] = {}

    def __call__(self, params: Params, x1: Any, x2: Any = None) -> Any:
        self._validate(params, x1, x2)  # outside jax.jit: shapes once per shape signature, values every call
        with checks.forward_mode(f"empirical_ntk(method={self.options['method']!r})"):
            return self._jitted(params, x1, x2)

    def lower(self, params: Params, x1: Any, x2: Any = None) -> Any:
        """``jax.jit``'s ``lower`` (for ``.compile()`` and cost analysis)."""
        return self._jitted.lower(params, x1, x2)

    def explain(self, params: Params, x1: Any, x2: Any = None) -> Any:
        """:func:`ldjax.explain_kernel` for these inputs with this function's options (no kernel computed)."""
        return self._explain(params, x1, x2)

    def __repr__(self) -> str:
        return f"KernelFunction(method={self.options['method']!r} -> {self.method!r})"


def empirical_ntk_fn(
    apply_fn: ApplyFn,
    *,
    method: NtkMethod = DEFAULT_METHOD,
    trace: bool = False,
    trace_axes: Axes = None,
    diagonal_axes: Axes = None,
    vmap_axes: Any = None,
    per_layer: bool = False,
    params_filter: Callable[[str], bool] | None = None,
    memory_budget: float | None = None,
    precision: Precision = "highest",
    check_finite: bool = True,
) -> KernelFunction:
    """A jitted ``kernel_fn(params, x1, x2=None)`` computing :func:`ldjax.empirical_ntk` for ``apply_fn``.

    Hold on to it and call it again: it compiles once per input shape (``empirical_ntk`` builds a
    new one on every call). The options are checked here; the batches, their values and the memory
    the kernel needs when it is called (outside ``jax.jit``, then one jitted program runs). With
    ``method="auto"`` the method is chosen per input shape from FLOP and memory estimates
    (:func:`ldjax.explain_kernel`); ``kernel_fn.method`` says what was chosen, ``kernel_fn.explain(params,
    x1)`` shows the estimates, and the choice is logged on the ``"ldjax"`` logger (level INFO).

    Args:
      apply_fn: un-batched model, ``apply_fn(params, x) -> [*o]`` (a batched one with ``vmap_axes``).
      method: ``"auto"`` or one of the methods of :func:`ldjax.empirical_ntk`.
      trace: ldjax's shortcut: the sum over all logit axes, ``[n1, n2]``.
      trace_axes, diagonal_axes: neural-tangents' arguments, with nt's meaning: axes of the batched
        output ``[n, *o]`` (0 is the example axis) to trace over (a MEAN over the pair of axes, as nt
        divides by their size) or to keep only the diagonal of; the result then has nt's layout
        (``[n1, n2, T, T, V, V]`` for ``[T, V]`` logits). ``diagonal_axes=(0,)`` gives ``K(x_i, x_i)``
        alone without the ``n1 x n2`` kernel (``x2`` must be ``None`` or as long as ``x1``).
        ``None`` (default) keeps ldjax's full kernel ``[n1, n2, *o, *o]``; nt's own default is
        ``trace_axes=(-1,)``.
      vmap_axes: ``None`` (default): ``apply_fn`` takes ONE example (ldjax's convention). An int or
        ``(in_axes, out_axes)``: ``apply_fn`` is a batched function as in neural-tangents, batched
        along those axes with no interaction between examples; ldjax calls it on batches of one.
      per_layer: return ``{name: kernel}`` per parameter leaf (keys are paths in ``params``; a leaf
        stacked for a ``scan`` over layers gets one entry per layer, ``"layers/linear/kernel[2]"``).
      params_filter: ``params_filter(name) -> bool`` on each leaf's path (``"conv1/kernel"``): the kernel
        of the selected parameters only (the gradient restricted to them).
      memory_budget: bytes the kernel (and, for ``"jacobian"``, the Jacobians) may take; above it the call
        is refused before anything is allocated, naming the cheaper routes; ``"auto"`` only picks methods
        whose estimate fits. Default: half of the device's memory (of the RAM on CPU); ``math.inf``
        turns the check off.
      precision: matmul precision (default ``"highest"``).
      check_finite: refuse NaN or inf in ``params``, ``x1`` and ``x2`` (``False`` skips the pass over them).

    Returns:
      A :class:`KernelFunction` ``kernel_fn(params, x1[n1, *d], x2[n2, *d] | None = None)`` returning
      ``[n1, n2, *o, *o]`` (``[n1, n2]`` when ``trace``; nt's shape with ``trace_axes``/``diagonal_axes``;
      ``{name: kernel}`` when ``per_layer``). ``x2=None`` is the Gram matrix of ``x1``, whose Jacobians
      (or cotangents) are computed once.

    Example:
      >>> import jax.numpy as jnp, ldjax
      >>> model = lambda w, x: jnp.tanh(x @ w)
      >>> kernel_fn = ldjax.empirical_ntk_fn(model, method="auto", trace=True)
      >>> w, x = jnp.full((5, 3), 0.1), jnp.linspace(0.0, 1.0, 20).reshape(4, 5)
      >>> kernel_fn(w, x).shape, kernel_fn(w, x[:2], jnp.ones((6, 5))).shape, kernel_fn.method
      ((4, 4), (2, 6), 'structured')
      >>> bool(jnp.allclose(kernel_fn(w, x), ldjax.empirical_ntk(model, w, x, trace=True), rtol=1e-5))
      True
      >>> ldjax.empirical_ntk_fn(model, diagonal_axes=0, trace_axes=-1)(w, x).shape  # nt: K(x_i, x_i), mean over k
      (4,)
    """
    checks.check_kernel_options(method, METHODS, precision, trace, trace_axes, params_filter, memory_budget)
    if vmap_axes is not None:
        apply_fn = batched_from_vmap_axes(apply_fn, vmap_axes)

    def record(key: Any, chosen: str) -> None:  # what the method (``"auto"``) chose for a shape signature
        kernel_fn.methods[key] = chosen
        kernel_fn.method = chosen

    kernels = functools.partial(
        _kernels, apply_fn, method=method, trace=trace, trace_axes=trace_axes, diagonal_axes=diagonal_axes,
        per_layer=per_layer, params_filter=params_filter, memory_budget=memory_budget, precision=precision,
        record=record,
    )  # fmt: skip
    explain_fn = functools.partial(
        _explain, apply_fn, trace=trace, params_filter=params_filter, memory_budget=memory_budget
    )
    validate = functools.partial(
        checks.validate_kernel, apply_fn, method=method, trace=trace or trace_axes is not None,
        per_layer=per_layer, check_finite=check_finite, memory_budget=memory_budget, known_shapes={},
    )  # fmt: skip
    options = dict(method=method, trace=trace, per_layer=per_layer)
    kernel_fn = KernelFunction(kernels, explain_fn, options, validate)
    return kernel_fn


def _kernels(
    apply_fn: ApplyFn,
    params: Params,
    x1: Any,
    x2: Any = None,
    *,
    method: NtkMethod,
    trace: bool,
    trace_axes: Axes,
    diagonal_axes: Axes,
    per_layer: bool,
    params_filter: Callable[[str], bool] | None,
    memory_budget: float | None,
    precision: Precision,
    record: Callable[[Any, str], None],
) -> Any:
    """One call of a :class:`KernelFunction`, traced under ``jax.jit``: the method for these shapes (told to
    ``record``), then the kernels of the selected parameters, laid out as :func:`empirical_ntk_fn` says."""
    same = x2 is None
    x2 = x1 if same else x2
    out_shape = _logits_shape(apply_fn, params, x1, x2)
    n1, n2 = checks.batch_size(x1), checks.batch_size(x2)
    layout = kernel_layout(out_shape, n1, n2, trace=trace, trace_axes=trace_axes, diagonal_axes=diagonal_axes)
    f, p, names = pytree.select_leaves(apply_fn, params, params_filter)
    with checks.precision_scope(precision):
        chosen, prepared = explain.pick_method(
            f, p, x1, x2, layout.logit_trace, method, per_layer, memory_budget
        )
        record(tuple((np.shape(a), str(jnp.result_type(a))) for a in jax.tree.leaves((x1, x2))), chosen)

        def all_kernels(a: Any, b: Any) -> dict[str, jax.Array]:
            return leaf_kernels(f, p, a, b, layout.logit_trace, chosen, per_layer, prepared)

        kernels = pair_kernels(all_kernels, x1, x2, same, layout.example_diag)
        return named_kernels(kernels, pytree.leaf_names(p), names, per_layer, layout)


def _explain(
    apply_fn: ApplyFn,
    params: Params,
    x1: Any,
    x2: Any = None,
    *,
    trace: bool,
    params_filter: Callable[[str], bool] | None,
    memory_budget: float | None,
) -> Any:
    """:func:`ldjax.explain_kernel` of the selected parameters (``KernelFunction.explain``)."""
    f, p, _ = pytree.select_leaves(apply_fn, params, params_filter)
    return explain.explain_kernel(f, p, x1, x2, trace=trace, memory_budget=memory_budget)


def empirical_ntk(
    apply_fn: ApplyFn,
    params: Params,
    x1: PyTree[Shaped[ArrayLike, " n1 ..."]],
    x2: PyTree[Shaped[ArrayLike, " n2 ..."]] | None = None,
    *,
    method: NtkMethod = DEFAULT_METHOD,
    trace: bool = False,
    trace_axes: Axes = None,
    diagonal_axes: Axes = None,
    vmap_axes: Any = None,
    per_layer: bool = False,
    params_filter: Callable[[str], bool] | None = None,
    memory_budget: float | None = None,
    precision: Precision = "highest",
    check_finite: bool = True,
) -> Float[Array, "..."] | dict[str, Float[Array, "..."]]:  # [n1, n2, *o, *o], or nt's layout
    r"""Empirical neural tangent kernel :math:`K_{ij}^{ab} = \nabla_\theta z_a(x1_i) \cdot \nabla_\theta z_b(x2_j)`.

    ``apply_fn`` is written for ONE example; ldjax vmaps it. For a classifier (``[k]`` logits)
    the kernel is ``[n1, n2, k, k]``. For a sequence model (``[T, V]`` logits) every (position,
    vocabulary entry) pair is one output, so the kernel is ``[n1, n2, T, V, T, V]``:
    ``K[i, j, t, a, s, b]`` couples logit ``a`` at position ``t`` of ``x1_i`` with logit ``b`` at
    position ``s`` of ``x2_j`` (causal models give zero blocks for ``s > t``). To study one position,
    wrap ``apply_fn`` (e.g. ``lambda p, x: f(p, x)[-1]``). To compute kernels repeatedly, hold the
    compiled function of :func:`ldjax.empirical_ntk_fn` instead.

    Args:
      apply_fn: un-batched model, ``apply_fn(params, x) -> [*o]``.
      params: pytree of parameters.
      x1: batch ``[n1, *d]``.
      x2: batch ``[n2, *d]``; ``None`` means ``x1`` (the Gram matrix).
      method: ``"auto"`` (the default) picks the method of fewest estimated FLOPs that fits in
        memory (see :func:`ldjax.explain_kernel`). ``"jacobian"`` contracts materialised per-example
        Jacobians (memory ``n * O * p``): the exact reference, which works for every model, custom
        derivatives included. ``"vector_products"`` builds each column from one VJP and one JVP (memory
        ``O * p``); ``"structured"`` computes every layer's kernel from its inputs and output
        cotangents, :math:`\sum_{s,s'} \langle x_{i,s}, x_{j,s'}\rangle \langle \delta_{i,a,s},
        \delta_{j,b,s'}\rangle` (dense, convolution, embedding lookup, attention projections,
        biases, scales), or from materialised per-layer gradients when that costs fewer FLOPs, and
        falls back to Jacobian contraction for parameters used any other way. Exact, not an
        approximation; usually by far the fastest.
      trace: if true, return :math:`\sum_a K_{ij}^{aa}`, shape ``[n1, n2]``.
      per_layer: if true, return a dict ``{name: kernel}`` with one kernel per parameter leaf,
        named by its path in ``params`` (``"conv1/kernel"``; a stack of layers scanned over gets one
        entry per layer, ``"layers/kernel[0]"``); the kernels sum to the full kernel.
      trace_axes, diagonal_axes, vmap_axes, params_filter: as in :func:`ldjax.empirical_ntk_fn`
        (neural-tangents' axes with nt's meanings and layout; a kernel of a subset of the parameters).
      memory_budget: bytes the kernel (and, for ``"jacobian"``, the Jacobians) may take; above it the call
        is refused before anything is allocated, naming the cheaper routes. Default: half of the
        device's memory (of the RAM on CPU); ``math.inf`` turns the check off.
      check_finite: refuse NaN or inf in ``params``, ``x1`` and ``x2`` (one pass over them; ``False``
        skips it for speed).

    Model features: every method differentiates in reverse mode except ``"vector_products"``, which
    also takes JVPs; a model with ``jax.custom_vjp`` works with ``"jacobian"`` and ``"structured"`` only
    (as in :func:`ldjax.one_step`, which needs forward mode: use ``jax.custom_jvp`` there).
      precision: matmul precision (default ``"highest"``: full fp32 even on GPUs that default to TF32).

    Returns:
      ``[n1, n2, *o, *o]``, or ``[n1, n2]`` when ``trace``; a dict of those when ``per_layer``.

    Example:
      >>> import jax, jax.numpy as jnp, ldjax
      >>> f = lambda p, x: jnp.tanh(x @ p["w1"]) @ p["w2"]
      >>> k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
      >>> p = {"w1": jax.random.normal(k1, (5, 8)), "w2": jax.random.normal(k2, (8, 3))}
      >>> x = jax.random.normal(k3, (4, 5))
      >>> ldjax.empirical_ntk(f, p, x).shape
      (4, 4, 3, 3)
      >>> layers = ldjax.empirical_ntk(f, p, x, method="structured", per_layer=True)
      >>> sorted(layers), bool(jnp.allclose(sum(layers.values()), ldjax.empirical_ntk(f, p, x), atol=1e-4))
      (['w1', 'w2'], True)
    """
    kernel_fn = empirical_ntk_fn(
        apply_fn,
        method=method,
        trace=trace,
        trace_axes=trace_axes,
        diagonal_axes=diagonal_axes,
        vmap_axes=vmap_axes,
        per_layer=per_layer,
        params_filter=params_filter,
        memory_budget=memory_budget,
        precision=precision,
        check_finite=check_finite,
    )
    return kernel_fn(params, x1, None if x2 is x1 else x2)

"""Empirical neural tangent kernels: one table of methods, one dispatch, one default.

Every method is one function ``(apply_fn, params, x1, x2, trace, per_layer) -> {name: kernel}``
in :data:`KERNELS_BY_METHOD`, whose kernels (``[n1, n2, O, O]``, or ``[n1, n2]`` when ``trace``)
sum to the full kernel: one per parameter leaf, named by :func:`~ldjax._src.pytree.leaf_names`,
when ``per_layer``; otherwise the method may group leaves (a bias folded into its layer, or one
entry for everything). Adding a method = that function, its entry in the table, its name in
:data:`NtkMethod` and in the tests' method list (``tests/problems.py``).

:func:`leaf_kernels` is the one dispatch over the table. The factory :func:`~ldjax._src.ntk_fn.empirical_ntk_fn`
(and :func:`~ldjax._src.ntk_fn.empirical_ntk`, in :mod:`ldjax._src.ntk_fn`) validates, picks the method
(:func:`~ldjax._src.explain.pick_method`), runs it and lays the kernel out; neural-tangents' axes
(``trace_axes``, ``diagonal_axes``, ``vmap_axes``) and the per-layer split of stacked leaves live in
:mod:`ldjax._src.ntk_axes`.
"""

import math
import typing
from collections.abc import Callable
from typing import Any
from typing import Literal

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
from jaxtyping import Array
from jaxtyping import Float
from jaxtyping import PyTree
from jaxtyping import Shaped

from ldjax._src import checks
from ldjax._src import jacobians
from ldjax._src import pytree
from ldjax._src import structured
from ldjax._src.jacobians import jacobian as jacobian  # re-exported: ldjax._src.ntk.jacobian
from ldjax._src.ntk_axes import split_stacked
from ldjax._src.typing import ApplyFn
from ldjax._src.typing import Params
from ldjax._src.typing import Precision

NtkMethod = Literal["auto", "jacobian", "vector_products", "structured"]
METHODS: tuple[NtkMethod, ...] = typing.get_args(NtkMethod)
DEFAULT_METHOD: NtkMethod = "auto"
"""The default of every function that takes an NTK ``method``: ``"auto"`` picks, per model and input
size, the method of fewest estimated FLOPs whose memory fits (:func:`ldjax.explain_kernel`); every
method gives the exact kernel (``"jacobian"`` is the reference the others are tested against)."""

Kernels = dict[str, Float[Array, "n1 n2 O O"] | Float[Array, "n1 n2"]]
MethodKernels = Callable[[ApplyFn, Params, Any, Any, bool, bool], Kernels]


def batched(apply_fn: ApplyFn):
    """``apply_fn`` for one example turned into ``(params, x[n, *d]) -> logits[n, *o]``."""
    return jax.vmap(apply_fn, in_axes=(None, 0))


def ntk_vector_product(
    apply_fn: ApplyFn,
    params: Params,
    x1: PyTree[Shaped[ArrayLike, " n1 ..."]],
    x2: PyTree[Shaped[ArrayLike, " n2 ..."]],
    v: Float[ArrayLike, " n2 *o"],
    *,
    precision: Precision = "highest",
) -> Float[Array, " n1 *o"]:
    r"""Kernel-vector product :math:`\sum_j K(x1_i, x2_j)\, v_j` without forming the kernel.

    One VJP at ``x2`` (giving :math:`J(x2)^\top v`, a parameter-space vector) followed by one JVP at
    ``x1``. This is how a gradient step on ``x2`` with logit-gradient ``v`` moves the logits of ``x1``.

    Args:
      apply_fn: un-batched model, ``apply_fn(params, x) -> [*o]``.
      params: pytree of parameters.
      x1: batch ``[n1, *d]`` where the result is read.
      x2: batch ``[n2, *d]`` where ``v`` is applied.
      v: cotangent per example of ``x2``, ``[n2, *o]``.
      precision: matmul precision (default ``"highest"``; on GPU the fp32 default would be TF32).

    Returns:
      ``[n1, *o]``.

    Example:
      >>> import jax, jax.numpy as jnp, ldjax
      >>> f = lambda p, x: x @ p
      >>> p, x = jnp.ones((3, 2)), jnp.arange(6.0).reshape(2, 3)
      >>> ldjax.ntk_vector_product(f, p, x, x, jnp.ones((2, 2))).shape
      (2, 2)
    """
    f = batched(apply_fn)
    with checks.precision_scope(precision):
        out2, vjp = jax.vjp(lambda p: f(p, x2), params)
        if v.shape != out2.shape:
            raise ValueError(f"v has shape {v.shape} but the logits of x2 have shape {out2.shape}")
        (g,) = vjp(v.astype(out2.dtype))
        _, out = jax.jvp(lambda p: f(p, x1), (params,), (g,))
    return out


# ----------------------------------------------------------------------------------------------
# The methods: one function each, all with the same signature and contract (see the module doc).


def _jacobian_kernels(
    apply_fn: ApplyFn, params: Params, x1: Any, x2: Any, trace: bool, per_layer: bool
) -> Kernels:
    """Materialised per-example Jacobians contracted leaf by leaf (memory ``n * O * p``)."""
    kernels = jacobians.jacobian_kernels(apply_fn, params, x1, x2, trace)
    return dict(zip(pytree.leaf_names(params), kernels, strict=True))


def _vector_products_kernel(apply_fn: ApplyFn, params: Params, x1: Any, x2: Any, trace: bool) -> jax.Array:
    """``[n1, n2, O, O]``: column ``(j, b)`` from one VJP at ``x2_j`` and one JVP at ``x1``."""
    f = batched(apply_fn)
    out_shape = jax.eval_shape(apply_fn, params, jax.tree.map(lambda a: a[0], x2)).shape
    size = math.prod(out_shape)
    basis = jnp.eye(size, dtype=jax.tree.leaves(params)[0].dtype).reshape((size, *out_shape))

    def column(x2_j, direction):
        _, vjp = jax.vjp(lambda p: apply_fn(p, x2_j), params)
        (g,) = vjp(direction)
        _, tangent = jax.jvp(lambda p: f(p, x1), (params,), (g,))
        return tangent.reshape(tangent.shape[0], size)  # [n1, O]: K[:, j, :, b]

    # lax.map over x2 keeps memory at O parameter-sized vectors; vmap over the output basis.
    columns = jax.lax.map(lambda x2_j: jax.vmap(lambda e: column(x2_j, e))(basis), x2)  # [n2, O_b, n1, O_a]
    kernel = jnp.transpose(columns, (2, 0, 3, 1))  # [n1, n2, O_a, O_b]
    if trace:
        return jnp.trace(kernel, axis1=2, axis2=3)
    return kernel


def _vector_products_kernels(
    apply_fn: ApplyFn, params: Params, x1: Any, x2: Any, trace: bool, per_layer: bool
) -> Kernels:
    """Kernel columns from VJPs and JVPs (memory ``O * p``); per leaf, the model restricted to that leaf."""
    if not per_layer:
        return {"params": _vector_products_kernel(apply_fn, params, x1, x2, trace)}
    return {
        name: _vector_products_kernel(*pytree.restrict_to_leaves(apply_fn, params, [index]), x1, x2, trace)
        for index, name in enumerate(pytree.leaf_names(params))
    }


def _structured_kernels(
    apply_fn: ApplyFn, params: Params, x1: Any, x2: Any, trace: bool, per_layer: bool
) -> Kernels:
    """Layer inputs x output cotangents per layer (see :mod:`ldjax._src.structured`); biases folded
    into their dense layer unless ``per_layer``."""
    return structured.structured_ntk(apply_fn, params, x1, x2, trace, fold=not per_layer)


KERNELS_BY_METHOD: dict[str, MethodKernels] = {
    "jacobian": _jacobian_kernels,
    "vector_products": _vector_products_kernels,
    "structured": _structured_kernels,
}


def leaf_kernels(
    f: ApplyFn, p: Any, a: Any, b: Any, trace: bool, chosen: str, per_layer: bool, prepared: Any
) -> dict[str, jax.Array]:
    """The ``chosen`` method's kernels (the one dispatch over :data:`KERNELS_BY_METHOD`); per layer, a leaf
    stacked over layers (``prepared.stacked``) split into one kernel per layer."""
    kernels = KERNELS_BY_METHOD[chosen](f, p, a, b, trace, per_layer)
    if per_layer and prepared is not None and prepared.stacked:
        for leaf, layers in prepared.stacked.items():
            name = pytree.leaf_names(p)[leaf]
            if name in kernels:
                del kernels[name]
                for index, k in enumerate(split_stacked(f, p, leaf, layers, a, b, trace)):
                    kernels[f"{name}[{index}]"] = k
    return kernels

"""neural-tangents' conventions for the kernel factory: output axes to trace or keep the diagonal of,
batched models (``vmap_axes``), and the per-layer split of a leaf stacked for a ``scan`` over layers.

:func:`kernel_layout` reads ``trace``/``trace_axes``/``diagonal_axes`` once per input shape into a
:class:`Layout`; :func:`finish_kernel` gives a summed (or per-layer) kernel that layout, ldjax's
``[n1, n2, *o, *o]`` (``[n1, n2]`` traced) or nt's.
"""

import math
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ldjax._src import jacobians
from ldjax._src import pytree
from ldjax._src.typing import ApplyFn
from ldjax._src.typing import Params

Axes = int | Sequence[int] | None


def normalize_axes(axes: Axes, ndim: int, name: str) -> tuple[int, ...] | None:
    """``axes`` of the batched output ``[n, *o]`` (``ndim`` axes) made non-negative and sorted."""
    if axes is None:
        return None
    axes = (axes,) if isinstance(axes, int) else tuple(axes)
    out = []
    for a in axes:
        if not isinstance(a, int) or not -ndim <= a < ndim:
            raise ValueError(
                f"{name} must hold axes of the batched output [n, *o] (ndim {ndim}: -{ndim} .. {ndim - 1}), got {axes}"
            )
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{name} repeats an axis: {axes}")
    return tuple(sorted(out))


def batched_from_vmap_axes(apply_fn: Callable[..., Any], vmap_axes: Any) -> ApplyFn:
    """A one-example function from a batched one (neural-tangents' convention), batched along ``vmap_axes``:
    an int (inputs and outputs) or ``(in_axes, out_axes)`` (or nt's triple with empty ``kwargs_axes``)."""
    if isinstance(vmap_axes, int):
        in_axes = out_axes = vmap_axes
    elif isinstance(vmap_axes, tuple) and len(vmap_axes) in (2, 3):
        in_axes, out_axes = vmap_axes[:2]
        if len(vmap_axes) == 3 and vmap_axes[2]:
            raise ValueError(
                f"vmap_axes: keyword-argument axes are not supported by ldjax, got {vmap_axes[2]}"
            )
    else:
        raise ValueError(f"vmap_axes must be None, an int or (in_axes, out_axes), got {vmap_axes!r}")
    if not isinstance(out_axes, int):
        raise ValueError(f"vmap_axes: out_axes must be an int (one array of logits), got {out_axes!r}")

    def one_example(params: Params, x: Any) -> jax.Array:
        axes = jax.tree.map(lambda _: in_axes, x) if isinstance(in_axes, int) else in_axes
        batch = jax.tree.map(lambda leaf, a: jnp.expand_dims(leaf, a), x, axes)
        return jnp.squeeze(apply_fn(params, batch), out_axes)

    return one_example


def split_stacked(
    apply_fn: ApplyFn, params: Params, leaf: int, layers: int, x1: Any, x2: Any, trace: bool
) -> list[jax.Array]:
    """One kernel per layer of a leaf stacked along its first axis (a ``scan`` over layers)."""
    f, chosen = pytree.restrict_to_leaves(apply_fn, params, [leaf])
    (j1,) = jacobians.flat_jacobian(f, chosen, x1)
    (j2,) = (j1,) if x2 is x1 else jacobians.flat_jacobian(f, chosen, x2)
    j1 = j1.reshape(*j1.shape[:2], layers, -1)
    j2 = j2.reshape(*j2.shape[:2], layers, -1)
    per_layer = jnp.einsum("ialq,jalq->lij" if trace else "ialq,jblq->lijab", j1, j2)
    return list(per_layer)


def nt_axes(
    kernel: jax.Array, m: int, trace_axes: tuple[int, ...], diagonal_axes: tuple[int, ...], example_diag: bool
) -> jax.Array:
    """neural-tangents' trace / diagonal over output axes of ``[n, *o]`` (``m = len(o)``) and its layout.

    ``kernel`` is ``[n1, n2, *o, *o]`` (``[n, *o, *o]`` when ``example_diag``: only pairs ``(x1_i, x2_i)``).
    Traced axes are removed (a mean, as in nt), diagonal axes kept once, the others as adjacent pairs.
    """
    letters = iter("abcdefghijklmnopqrstuvwxyz")
    left = [next(letters) for _ in range(m + 1)]
    right = [left[a] if (a in trace_axes or a in diagonal_axes) else next(letters) for a in range(m + 1)]
    spec_in = ([left[0]] if example_diag else [left[0], right[0]]) + left[1:] + right[1:]
    spec_out = []
    for a in range(m + 1):
        if a in trace_axes:
            continue
        spec_out += [left[a]] if a in diagonal_axes else [left[a], right[a]]
    shape_o = kernel.shape[1 if example_diag else 2 :][:m]
    sizes = (kernel.shape[0], *shape_o)
    count = math.prod(sizes[a] for a in trace_axes)
    return jnp.einsum(f"{''.join(spec_in)}->{''.join(spec_out)}", kernel) / count


class Layout(NamedTuple):
    """How a kernel's axes come out for one input shape (from :func:`kernel_layout`).

    Attributes:
      out_shape: the shape ``o`` of one example's logits.
      trace_axes, diagonal_axes: nt's axes of ``[n, *o]``, non-negative and sorted (``()`` when not given).
      nt_mode: whether nt's layout was asked for (``trace_axes`` or ``diagonal_axes`` given).
      example_diag: axis 0 traced or diagonal: only the pairs ``(x1_i, x2_i)`` are computed.
      logit_trace: the kernel is computed traced over every logit axis (``[n1, n2]``).
      shape: the shape of the computed kernel, before nt's layout.
    """

    out_shape: tuple[int, ...]
    trace_axes: tuple[int, ...]
    diagonal_axes: tuple[int, ...]
    nt_mode: bool
    example_diag: bool
    logit_trace: bool
    shape: tuple[int, ...]


def kernel_layout(
    out_shape: tuple[int, ...], n1: int, n2: int, *, trace: bool, trace_axes: Axes, diagonal_axes: Axes
) -> Layout:
    """Check nt's axes against the logits ``[n, *o]`` of ``n1`` and ``n2`` examples; the kernel's :class:`Layout`."""
    m = len(out_shape)
    t_axes = normalize_axes(trace_axes, m + 1, "trace_axes") or ()
    d_axes = normalize_axes(diagonal_axes, m + 1, "diagonal_axes") or ()
    if set(t_axes) & set(d_axes):
        raise ValueError(f"trace_axes {t_axes} and diagonal_axes {d_axes} share an axis")
    example_diag = 0 in t_axes or 0 in d_axes
    if example_diag and n1 != n2:
        raise ValueError(
            f"the example axis 0 in trace_axes/diagonal_axes pairs x1_i with x2_i: x1 has {n1} examples "
            f"but x2 has {n2}"
        )
    nt_mode = trace_axes is not None or diagonal_axes is not None
    logit_trace = trace or (nt_mode and set(range(1, m + 1)) <= set(t_axes))
    rows = (n1,) if example_diag else (n1, n2)
    shape = rows if logit_trace else (*rows, *out_shape, *out_shape)
    return Layout(out_shape, t_axes, d_axes, nt_mode, example_diag, logit_trace, shape)


def finish_kernel(kernel: jax.Array, layout: Layout) -> jax.Array:
    """A computed kernel in its :class:`Layout`: ldjax's shape, or nt's trace / diagonal and layout."""
    kernel = kernel.reshape(layout.shape)
    if not layout.nt_mode:
        return kernel
    if layout.logit_trace:
        kernel = kernel / math.prod(layout.out_shape)
        zero = lambda axes: tuple(a for a in axes if a == 0)  # noqa: E731
        return nt_axes(kernel, 0, zero(layout.trace_axes), zero(layout.diagonal_axes), layout.example_diag)
    m = len(layout.out_shape)
    return nt_axes(kernel, m, layout.trace_axes, layout.diagonal_axes, layout.example_diag)


def pair_kernels(
    all_kernels: Callable[[Any, Any], dict[str, jax.Array]], x1: Any, x2: Any, same: bool, example_diag: bool
) -> dict[str, jax.Array]:
    """``all_kernels`` on the batches, or (``example_diag``) on each pair ``(x1_i, x2_i)`` alone."""
    if not example_diag:
        return all_kernels(x1, x1 if same else x2)
    one = lambda t: jax.tree.map(lambda leaf: leaf[None], t)  # noqa: E731
    if same:
        return jax.vmap(lambda a: all_kernels(one(a), one(a)))(x1)
    return jax.vmap(lambda a, b: all_kernels(one(a), one(b)))(x1, x2)


def named_kernels(
    kernels: dict[str, jax.Array], leaf_names: list[str], names: list[str], per_layer: bool, layout: Layout
) -> Any:
    """The summed kernel, or per layer ``{name in params: kernel}``, each in its :class:`Layout`."""
    rename = dict(zip(leaf_names, names, strict=True))
    if not per_layer:
        return finish_kernel(sum(kernels.values()), layout)
    out = {}
    for key_name, kernel in kernels.items():
        base, _, index = key_name.partition("[")
        out[rename.get(base, base) + (f"[{index}" if index else "")] = finish_kernel(kernel, layout)
    return out

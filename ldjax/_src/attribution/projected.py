r"""Projected per-example gradients, LoGra-style: per layer, the inputs and the output cotangents are
projected separately and their outer product summed over positions.

A dense layer's per-example gradient is :math:`\sum_s x_s \otimes \delta_s` (``[C, F]``, per weight
slice ``B``). With random projections :math:`P_{in}` ``[C, r_in]`` and :math:`P_{out}` ``[F, r_out]``
(entries :math:`\mathcal N(0, 1/r)`), :math:`\sum_s (P_{in}^\top x_s) \otimes (P_{out}^\top \delta_s)`
is :math:`P_{in}^\top\, g\, P_{out}`: an ``r_in x r_out`` sketch of the gradient that is never formed at
full size, and :math:`E[\langle P_{in}^\top g P_{out}, P_{in}^\top h P_{out}\rangle] = \langle g, h\rangle`.
The same holds for convolutions (inputs = patches) and embedding lookups (inputs = one-hot rows, so
:math:`P_{in}^\top x_s` is the row of :math:`P_{in}` at the token id). A side whose width is at most its
rank is not projected (identity), so at full rank the sketch is the exact gradient.

Other leaves (biases, layer-norm scales, weights used at several sites, leaves the structured package
cannot see through) have their per-example gradients materialised: kept whole when they have at most
``r_in * r_out`` entries, else projected on a matrix view ``[a, b]`` of the leaf in the same way.
Every leaf has its own projections (``jax.random.fold_in(key, leaf)``), shared by probes and training
examples.

Reference: Choe et al., "What is your data worth to GPT? LLM-scale data valuation with influence
functions" (2024) (LoGra).
"""

import functools
import math
from typing import Any
from typing import Literal
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array
from jaxtyping import Float

from ldjax._src import checks
from ldjax._src import jacobians
from ldjax._src import pytree
from ldjax._src.structured.features import site_features
from ldjax._src.structured.features import site_gradients
from ldjax._src.structured.jaxpr import SiteValues
from ldjax._src.structured.jaxpr import site_values
from ldjax._src.structured.jaxpr import size
from ldjax._src.structured.plans import KINDS
from ldjax._src.structured.prepare import Prepared

LeafKind = Literal["outer", "gradients", "fallback", "unused"]


class LeafSketch(NamedTuple):
    """How one parameter leaf's per-example gradient is sketched.

    ``"outer"``: one dense / convolution / lookup site, from its inputs (``in_dim`` = C, or V for a
    lookup) and output cotangents (``out_dim`` = F); ``"gradients"`` / ``"fallback"``: the gradient is
    materialised (through the structured package's site VJPs, or a Jacobian of the model restricted to
    the leaf) and seen as a matrix ``[in_dim, out_dim]``; ``"unused"``: no gradient.
    """

    kind: LeafKind
    in_dim: int
    out_dim: int
    weight_slices: int  # B: weight slices of a batched dense site (1 otherwise)


def sketches(prepared: Prepared) -> list[LeafSketch]:
    """One :class:`LeafSketch` per parameter leaf of the prepared (scalar) model."""
    out = []
    for leaf, route in enumerate(prepared.routes):
        shape = tuple(jnp.shape(prepared.leaves[leaf]))
        sites = prepared.sites.get(leaf, [])
        plan = prepared.plans[sites[0]] if len(sites) == 1 else None
        if route == "unused":
            out.append(LeafSketch("unused", 0, 0, 1))
        elif route != "fallback" and plan is not None and plan.kind in KINDS:
            assert plan.dims is not None
            b, _, c, f = plan.dims
            in_dim = shape[0] if plan.kind == "lookup" else c
            out.append(LeafSketch("outer", in_dim, f, b))
        else:
            a, b = matrix_view(shape)
            out.append(LeafSketch("fallback" if route == "fallback" else "gradients", a, b, 1))
    return out


def matrix_view(shape: tuple[int, ...]) -> tuple[int, int]:
    """``[a, b]`` for a leaf: all but the last axis by the last; a vector as its most square factoring."""
    if len(shape) >= 2:
        return size(shape[:-1]), shape[-1]
    p = size(shape)
    a = max(d for d in range(1, math.isqrt(p) + 1) if p % d == 0)
    return a, p // a


def ranks(rank: int | tuple[int, int]) -> tuple[int, int]:
    """``(r_in, r_out)`` from ``rank`` (one int for both sides, or a pair)."""
    pair = (rank, rank) if isinstance(rank, int) and not isinstance(rank, bool) else rank
    if (
        not isinstance(pair, tuple)
        or len(pair) != 2
        or not all(isinstance(r, int) and not isinstance(r, bool) and r >= 1 for r in pair)
    ):
        raise ValueError(
            f"rank must be a positive int or a pair (r_in, r_out) of positive ints, got {rank!r}"
        )
    return pair


def _projected(sketch: LeafSketch, rank: tuple[int, int]) -> tuple[bool, bool]:
    """Which sides are projected; a materialised leaf small enough to keep whole is not projected."""
    r_in, r_out = rank
    if sketch.kind in ("gradients", "fallback") and sketch.in_dim * sketch.out_dim <= r_in * r_out:
        return False, False
    return sketch.in_dim > r_in, sketch.out_dim > r_out


def feature_size(sketch: LeafSketch, rank: tuple[int, int]) -> int:
    """Entries of one example's sketch of this leaf."""
    if sketch.kind == "unused":
        return 0
    project_in, project_out = _projected(sketch, rank)
    width_in = rank[0] if project_in else sketch.in_dim
    width_out = rank[1] if project_out else sketch.out_dim
    return sketch.weight_slices * width_in * width_out


def projections(
    leaf_sketches: list[LeafSketch], rank: tuple[int, int], key: jax.Array, dtype: Any
) -> list[tuple[Array | None, Array | None]]:
    """Per leaf ``(P_in [in_dim, r_in], P_out [out_dim, r_out])``, ``None`` for a side kept whole."""
    sides = tuple(
        (*(_projected(s, rank) if s.kind != "unused" else (False, False)), s.in_dim, s.out_dim)
        for s in leaf_sketches
    )
    return _projections(key, sides, tuple(rank), jnp.dtype(dtype))


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _projections(
    key: jax.Array, sides: tuple[tuple[bool, bool, int, int], ...], rank: tuple[int, int], dtype: Any
) -> list[tuple[Array | None, Array | None]]:
    """All the projections in one compiled program (drawn one by one, every shape would compile its own)."""
    out = []
    for leaf, (project_in, project_out, in_dim, out_dim) in enumerate(sides):
        k_in, k_out = jax.random.split(jax.random.fold_in(key, leaf))
        p_in = jax.random.normal(k_in, (in_dim, rank[0]), dtype) / math.sqrt(rank[0]) if project_in else None
        p_out = (
            jax.random.normal(k_out, (out_dim, rank[1]), dtype) / math.sqrt(rank[1]) if project_out else None
        )
        out.append((p_in, p_out))
    return out


def features(
    prepared: Prepared,
    leaf_sketches: list[LeafSketch],
    proj: list[tuple[Array | None, Array | None]],
    leaves: list[Array],
    example: Any,
) -> list[Float[Array, "n D"] | None]:
    """Every leaf's sketched per-example gradient of the scalar model, ``[n, D_leaf]`` (``None``: unused).

    ``leaves`` are the parameter leaves to evaluate at (traced under ``jit``); ``example`` the batch
    ``(x, w)`` of the scalar model.
    """
    x_leaves = jax.tree.leaves(example)
    values = site_values(prepared.program, leaves, x_leaves, prepared.record)
    fallback = _fallback_gradients(prepared, leaves, example)
    out: list[Array | None] = []
    for leaf, (sketch, (p_in, p_out)) in enumerate(zip(leaf_sketches, proj, strict=True)):
        if sketch.kind == "unused":
            out.append(None)
        elif sketch.kind == "outer":
            out.append(_outer_sketch(prepared, leaf, values, p_in, p_out))
        else:
            g = (
                fallback[leaf]
                if sketch.kind == "fallback"
                else _site_gradients(prepared, leaf, leaves, values)
            )
            g = g.reshape(g.shape[0], sketch.in_dim, sketch.out_dim)
            if p_in is not None:
                g = jnp.einsum("nab,ai->nib", g, p_in.astype(g.dtype))
            if p_out is not None:
                g = jnp.einsum("nib,bo->nio", g, p_out.astype(g.dtype))
            out.append(g.reshape(g.shape[0], -1))
    return out


def _outer_sketch(
    prepared: Prepared, leaf: int, values: SiteValues, p_in: Array | None, p_out: Array | None
) -> Float[Array, "n D"]:
    """``Σ_s (P_in^T x_s) ⊗ (P_out^T δ_s)`` per weight slice, from the site's inputs and cotangents."""
    site = prepared.sites[leaf][0]
    plan = prepared.plans[site]
    x_in, cotangent = site_features(
        prepared.program, site, plan, values.operands[site.eqn], values.cotangents[site.eqn]
    )
    delta = cotangent[:, 0]  # [n, B, S, F]: the scalar model has one output
    if plan.kind == "lookup":  # ids [n, S]; -1 reads no row
        vocab = jnp.shape(prepared.leaves[leaf])[0]
        if p_in is None:
            x = jax.nn.one_hot(x_in, vocab, dtype=delta.dtype)
        else:
            x = jnp.where((x_in >= 0)[..., None], p_in.astype(delta.dtype)[jnp.maximum(x_in, 0)], 0)
        x = x[:, None]  # [n, 1, S, r_in]
    else:
        x = x_in.astype(delta.dtype)
        if p_in is not None:
            x = jnp.einsum("nbsc,cr->nbsr", x, p_in.astype(delta.dtype))
    if p_out is not None:
        delta = jnp.einsum("nbsf,fr->nbsr", delta, p_out.astype(delta.dtype))
    g = jnp.einsum("nbsi,nbso->nbio", x, delta)
    return g.reshape(g.shape[0], -1)


def _site_gradients(prepared: Prepared, leaf: int, leaves: list[Array], values: SiteValues) -> Array:
    """The leaf's materialised per-example gradient ``[n, p_leaf]``, summed over its sites."""
    total = sum(
        site_gradients(
            prepared.program, site, leaves[leaf], values.operands[site.eqn], values.cotangents[site.eqn]
        )
        for site in prepared.sites[leaf]
    )
    return total[:, 0]


def _fallback_gradients(prepared: Prepared, leaves: list[Array], example: Any) -> dict[int, Array]:
    """Per-example gradients ``[n, p_leaf]`` of the leaves the structured package cannot see through."""
    if not prepared.fallback:
        return {}
    params = jax.tree.unflatten(jax.tree.structure(prepared.params), leaves)
    restricted, chosen = pytree.restrict_to_leaves(prepared.apply_fn, params, prepared.fallback)
    grads = jacobians.flat_jacobian(restricted, chosen, example)
    return {leaf: g[:, 0] for leaf, g in zip(prepared.fallback, grads, strict=True)}


def contract(probe: list[Array | None], train: list[Array | None], dtype: Any) -> Float[Array, "L n_o n"]:
    """Per-leaf scores ``[L, n_o, n]`` = probe sketches · training sketches (zero for unused leaves)."""
    n_o = next((p.shape[0] for p in probe if p is not None), 0)
    n = next((t.shape[0] for t in train if t is not None), 0)
    return jnp.stack(
        [
            jnp.zeros((n_o, n), dtype) if p is None else jnp.einsum("od,nd->on", p, t)
            for p, t in zip(probe, train, strict=True)
        ]
    )


# ----------------------------------------------------------------------------------------------------
# memory


def example_bytes(prepared: Prepared, dtype: Any) -> int:
    """Bytes of one example's forward values and cotangents (every intermediate of the model, twice)."""
    n_leaves = len(prepared.leaves)
    values = sum(size(shape) for var, shape in prepared.program.shapes.items() if var >= n_leaves)
    return 2 * checks.array_bytes((values,), dtype)


def sketch_bytes(
    prepared: Prepared, leaf_sketches: list[LeafSketch], rank: tuple[int, int], dtype: Any
) -> tuple[int, int]:
    """``(sketch, materialised)``: bytes of one example's sketches, and of its materialised gradients."""
    sketch = sum(feature_size(s, rank) for s in leaf_sketches)
    materialised = sum(s.in_dim * s.out_dim for s in leaf_sketches if s.kind in ("gradients", "fallback"))
    return checks.array_bytes((sketch,), dtype), checks.array_bytes((materialised,), dtype)


def projection_bytes(leaf_sketches: list[LeafSketch], rank: tuple[int, int], dtype: Any) -> int:
    """Bytes of the projection matrices."""
    total = 0
    for sketch in leaf_sketches:
        if sketch.kind == "unused":
            continue
        project_in, project_out = _projected(sketch, rank)
        total += project_in * sketch.in_dim * rank[0] + project_out * sketch.out_dim * rank[1]
    return checks.array_bytes((total,), dtype)

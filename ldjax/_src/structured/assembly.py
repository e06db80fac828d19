r"""Assembly: every leaf's kernel from the site values of both batches.

- structured leaves: the input Gram ``[n1, n2, B, S, S']`` and the bilinear contraction with the
  cotangents, :math:`K[i,j,a,b] = \sum_{B,s,s'} G[i,j,B,s,s'] \sum_F \delta_1[i,a,B,s,F]\, \delta_2[j,b,B,s',F]`;
- a bias added right after a structured dense layer folded into it, :math:`(X X^\top + 1) \odot (\Delta \Delta^\top)`;
- other linear leaves: their materialised per-example gradients, contracted;
- the leaves used in any other way: Jacobian contraction (the fallback).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any
from typing import TypeVar

import jax
import jax.numpy as jnp
from jaxtyping import Array
from jaxtyping import Float

from ldjax._src import jacobians
from ldjax._src import pytree
from ldjax._src.structured.features import feature_gradients
from ldjax._src.structured.features import site_features
from ldjax._src.structured.features import site_gradients
from ldjax._src.structured.jaxpr import ISOMETRIC
from ldjax._src.structured.jaxpr import Site
from ldjax._src.structured.jaxpr import SiteValues
from ldjax._src.structured.jaxpr import site_values
from ldjax._src.structured.jaxpr import size
from ldjax._src.structured.plans import FEATURE_GRADIENT_KINDS
from ldjax._src.structured.plans import KINDS
from ldjax._src.structured.plans import DotLayout
from ldjax._src.structured.plans import Plan
from ldjax._src.structured.prepare import Prepared
from ldjax._src.structured.routing import bilinear_costs

T = TypeVar("T")


def assemble(prepared: Prepared, x1: Any, x2: Any, trace: bool, fold: bool) -> dict[str, jax.Array]:
    """Per-leaf kernels ``{name: [n1, n2, O, O]}`` (``[n1, n2]`` when ``trace``), in leaf order."""
    x_leaves1 = jax.tree.leaves(x1)
    x_leaves2 = x_leaves1 if x2 is x1 else jax.tree.leaves(x2)
    values1, values2 = _both(
        lambda x_leaves: site_values(prepared.program, prepared.leaves, x_leaves, prepared.record),
        x_leaves1,
        x_leaves2,
    )
    n1, n2, o = x_leaves1[0].shape[0], x_leaves2[0].shape[0], prepared.out_size
    zero = jnp.zeros((n1, n2) if trace else (n1, n2, o, o), jnp.result_type(*prepared.leaves))
    folded = foldable_biases(prepared) if fold else {}
    kernels: dict[str, jax.Array] = {}
    for leaf, (name, route) in enumerate(zip(prepared.names, prepared.routes, strict=True)):
        if route == "fallback" or leaf in folded.values():
            continue  # a folded bias's term is inside the preceding dense layer's kernel
        if route == "unused":
            kernels[name] = zero
        elif route in KINDS:
            site = prepared.sites[leaf][0]
            kernels[name] = _structured_kernel(prepared, site, values1, values2, trace, leaf in folded)
        else:
            gradients1, gradients2 = _both(
                functools.partial(_leaf_gradients, prepared, leaf), values1, values2
            )
            kernels[name] = jacobians.contract(gradients1, gradients2, trace)
    if prepared.fallback:
        kernels.update(_fallback_kernels(prepared, x1, x2, trace))
    return {name: kernels[name] for name in prepared.names if name in kernels}


def _both(per_batch: Callable[[Any], T], batch1: Any, batch2: Any) -> tuple[T, T]:
    """``per_batch`` of both batches, computed once when they are the same (a Gram matrix)."""
    first = per_batch(batch1)
    return first, first if batch2 is batch1 else per_batch(batch2)


def _structured_kernel(
    prepared: Prepared, site: Site, values1: SiteValues, values2: SiteValues, trace: bool, with_bias: bool
) -> jax.Array:
    plan = prepared.plans[site]
    (x_in1, cotangent1), (x_in2, cotangent2) = _both(
        lambda v: site_features(prepared.program, site, plan, v.operands[site.eqn], v.cotangents[site.eqn]),
        values1,
        values2,
    )
    input_gram = _input_gram(plan, x_in1, x_in2).astype(cotangent1.dtype)
    if with_bias:
        input_gram = input_gram + 1.0
    return bilinear_kernel(input_gram, cotangent1, cotangent2, trace)


def _leaf_gradients(prepared: Prepared, leaf: int, values: SiteValues) -> Float[Array, "n O p"]:
    """Per-example gradients of a leaf: from layer inputs x cotangents for one dense/conv site (in the
    site's own layout), else by VJPs through every site, summed."""
    sites = prepared.sites[leaf]
    plan = prepared.plans[sites[0]]
    if len(sites) == 1 and plan.kind in FEATURE_GRADIENT_KINDS:
        site = sites[0]
        return feature_gradients(
            prepared.program, site, plan, values.operands[site.eqn], values.cotangents[site.eqn]
        )
    return sum(
        site_gradients(
            prepared.program,
            site,
            prepared.leaves[leaf],
            values.operands[site.eqn],
            values.cotangents[site.eqn],
        )
        for site in sites
    )


def _input_gram(plan: Plan, x_in1: jax.Array, x_in2: jax.Array) -> Float[Array, "n1 n2 B S T"]:
    """``Σ_c x_in1[i, b, s, c] x_in2[j, b, t, c]``; for a lookup, whether the two ids are the same row."""
    if plan.kind == "lookup":
        same = (x_in1[:, None, :, None] == x_in2[None, :, None, :]) & (x_in1[:, None, :, None] >= 0)
        return same.astype(jnp.result_type(float))[:, :, None]  # [n1, n2, 1, s, t]
    return jnp.einsum("ibsc,jbtc->ijbst", x_in1, x_in2)


def bilinear_kernel(
    input_gram: Float[Array, "n1 n2 B S T"],
    cotangent1: Float[Array, "n1 O B S F"],
    cotangent2: Float[Array, "n2 O B T F"],
    trace: bool,
) -> Float[Array, "n1 n2 O O"] | Float[Array, "n1 n2"]:
    """``K[i,j,a,c] = Σ_{b,s,t} input_gram[i,j,b,s,t] Σ_f cotangent1[i,a,b,s,f] cotangent2[j,c,b,t,f]``."""
    n1, o, b, s, f = cotangent1.shape
    n2 = cotangent2.shape[0]
    if s == 1:
        gram = input_gram[..., 0, 0]
        if trace:
            pairs = jnp.einsum("iabf,jabf->ijb", cotangent1[..., 0, :], cotangent2[..., 0, :])
            return jnp.einsum("ijb,ijb->ij", gram, pairs)
        pairs = jnp.einsum("iabf,jcbf->ijacb", cotangent1[..., 0, :], cotangent2[..., 0, :])
        return jnp.einsum("ijb,ijacb->ijac", gram, pairs)
    # Contract the positions of the second batch first, then one large matmul over (b, s, f) per
    # example i: this layout is several times faster on CPU than contracting cotangent1's positions first.
    if trace:
        m = jnp.einsum("ijbst,jabtf->ijabsf", input_gram, cotangent2)
        return jnp.einsum("iabsf,ijabsf->ij", cotangent1, m)
    via_m, via_dg = bilinear_costs(n1, n2, o, b, s, f)
    if via_m <= via_dg:
        m = jnp.einsum("ijbst,jcbtf->ijcbsf", input_gram, cotangent2)
        return jnp.einsum("iabsf,ijcbsf->ijac", cotangent1, m)
    pairs = jnp.einsum("iabsf,jcbtf->ijacbst", cotangent1, cotangent2)
    return jnp.einsum("ijbst,ijacbst->ijac", input_gram, pairs)


def _fallback_kernels(prepared: Prepared, x1: Any, x2: Any, trace: bool) -> dict[str, jax.Array]:
    """Jacobian contraction for the leaves that could not be structured."""
    restricted, chosen = pytree.restrict_to_leaves(prepared.apply_fn, prepared.params, prepared.fallback)
    kernels = jacobians.jacobian_kernels(restricted, chosen, x1, x2, trace)
    return {prepared.names[leaf]: kernel for leaf, kernel in zip(prepared.fallback, kernels, strict=True)}


def foldable_biases(prepared: Prepared) -> dict[int, int]:
    """``{dense leaf: bias leaf}`` for biases added directly to a structured dense layer's output.

    Conditions (so that the bias gradient is exactly Σ_s δ_s and shares the layer's cotangents): the
    dense output is used only by one ``add`` whose other operand is the bias (one site, reached by
    reshapes, dtype conversions and a broadcast over the positions only), no batch dimensions, and
    the bias has one entry per output feature.
    """
    program = prepared.program
    uses: dict[int, int] = {}
    for a in [*(a for eqn in program.eqns for a in eqn.ins), *program.outs]:
        if isinstance(a, int):
            uses[a] = uses.get(a, 0) + 1
    dense_out: dict[int, tuple[int, Site]] = {}
    for leaf, sites in prepared.sites.items():
        plan = prepared.plans[sites[0]]
        if prepared.routes[leaf] == "dot" and plan.dims is not None and plan.dims.batch == 1:
            dense_out[program.eqns[sites[0].eqn].outs[0]] = (leaf, sites[0])
    folded: dict[int, int] = {}
    for leaf, sites in prepared.sites.items():
        if len(sites) != 1 or prepared.routes[leaf] in KINDS:
            continue
        site = sites[0]
        eqn = program.eqns[site.eqn]
        if eqn.primitive.name not in ("add", "add_any") or len(eqn.ins) != 2:
            continue
        other = eqn.ins[1 - site.arg]
        if not isinstance(other, int) or other not in dense_out or uses.get(other, 0) != 1:
            continue
        dense_leaf, dense_site = dense_out[other]
        y_shape = tuple(eqn.out_avals[0].shape)
        if dense_leaf in folded or program.shapes[other] != y_shape:
            continue
        if _bias_per_feature(prepared, site, y_shape, prepared.plans[dense_site]):
            folded[dense_leaf] = leaf
    return folded


def _bias_per_feature(prepared: Prepared, site: Site, y_shape: tuple[int, ...], dense: Plan) -> bool:
    """Whether the bias reaches the dense output ``y_shape`` as one entry per output feature,
    broadcast over the positions (through isometric rearrangements and at most one broadcast)."""
    assert isinstance(dense.layout, DotLayout) and dense.dims is not None
    program = prepared.program
    features = set(dense.layout.y_features)
    chain = [program.eqns[c] for c in site.chain]
    leaf_size = size(program.shapes[site.leaf])
    view = program.operand_shape(program.eqns[site.eqn].ins[site.arg])
    if leaf_size != dense.dims.features or len(view) != len(y_shape):
        return False
    broadcast = chain[-1] if chain and chain[-1].primitive.name == "broadcast_in_dim" else None
    before = chain[:-1] if broadcast is not None else chain
    if any(c.primitive.name not in ISOMETRIC or size(c.out_avals[0].shape) != leaf_size for c in before):
        return False
    if broadcast is None:
        return all((view[d] == y_shape[d]) if d in features else view[d] == 1 for d in range(len(y_shape)))
    operand = program.operand_shape(broadcast.ins[0])
    mapped = {
        d: operand[k]
        for k, d in enumerate(broadcast.params["broadcast_dimensions"])
        if operand[k] == y_shape[d]
    }
    kept_dims = {d for d, extent in mapped.items() if extent != 1 or d in features}
    return kept_dims == features and all(mapped.get(d) == y_shape[d] for d in features)

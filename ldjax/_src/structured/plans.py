"""Per-site plans: which structured formula applies to a site, its sizes and how to lay out its
layer inputs ``[B, S, C]`` and output cotangents ``[O, B, S, F]`` for one example.

``B`` counts the dimensions the weight is batched over (one weight slice each, e.g. per-head
projections), ``S`` the positions that share the weight (tokens, pixels), ``C`` the contracted input
features (for a convolution: channels x filter taps) and ``F`` the output features.
"""

from __future__ import annotations

import dataclasses
from typing import Literal
from typing import NamedTuple

from ldjax._src.structured.jaxpr import ISOMETRIC
from ldjax._src.structured.jaxpr import Eqn
from ldjax._src.structured.jaxpr import Program
from ldjax._src.structured.jaxpr import Site
from ldjax._src.structured.jaxpr import size

Kind = Literal["dot", "conv", "lookup"]
KINDS: tuple[Kind, ...] = ("dot", "conv", "lookup")
# Kinds whose per-example gradients come from layer inputs x cotangents (else: a vmapped VJP).
FEATURE_GRADIENT_KINDS: tuple[Kind, ...] = ("dot", "conv")


class Dims(NamedTuple):
    batch: int  # B
    positions: int  # S
    channels: int  # C
    features: int  # F


@dataclasses.dataclass(frozen=True)
class DotLayout:
    x_perm: tuple[int, ...]  # layer-input axes in (batch, positions, contracted) order
    y_perm: tuple[int, ...]  # output axes in (batch, positions, features) order
    y_features: tuple[int, ...]  # output axes indexed by the weight's own free dimensions


@dataclasses.dataclass(frozen=True)
class ConvLayout:
    filter_shape: tuple[int, ...]  # spatial extent of the filter
    y_perm: tuple[int, ...]  # output (and patch) axes in (batch, spatial..., features) order


@dataclasses.dataclass(frozen=True)
class Plan:
    """How a site can be structured; ``kind is None`` (and no dims or layout) when it cannot."""

    kind: Kind | None
    dims: Dims | None
    layout: DotLayout | ConvLayout | None


UNSTRUCTURED = Plan(None, None, None)


def make_plan(program: Program, site: Site, leaf_shape: tuple[int, ...]) -> Plan:
    """The plan of ``site``: a dense layer, a convolution or an embedding lookup of the leaf seen
    through isometric rearrangements only; otherwise :data:`UNSTRUCTURED`."""
    eqn = program.eqns[site.eqn]
    chain = [program.eqns[c] for c in site.chain]
    if not all(
        c.primitive.name in ISOMETRIC and size(c.out_avals[0].shape) == size(leaf_shape) for c in chain
    ):
        return UNSTRUCTURED
    name = eqn.primitive.name
    in_shapes = [program.operand_shape(a) for a in eqn.ins]
    w_shape = in_shapes[site.arg]
    if name == "dot_general":
        layout, dims = _dot_layout(eqn, site, in_shapes[1 - site.arg])
        return Plan("dot", dims, layout)
    if name == "conv_general_dilated" and site.arg == 1:
        if eqn.params["feature_group_count"] != 1 or eqn.params["batch_group_count"] != 1:
            return UNSTRUCTURED
        layout, dims = _conv_layout(eqn, w_shape)
        return Plan("conv", dims, layout)
    if name == "gather" and site.arg == 0 and _gather_is_lookup(eqn, w_shape, in_shapes[1]):
        return Plan("lookup", Dims(1, size(in_shapes[1][:-1]), 1, w_shape[1]), None)
    return UNSTRUCTURED


def _dot_layout(eqn: Eqn, site: Site, x_shape: tuple[int, ...]) -> tuple[DotLayout, Dims]:
    (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = eqn.params["dimension_numbers"]
    x_arg = 1 - site.arg
    if x_arg == 0:
        x_contract, x_batch = tuple(lhs_contract), tuple(lhs_batch)
    else:
        x_contract, x_batch = tuple(rhs_contract), tuple(rhs_batch)
    x_free = [d for d in range(len(x_shape)) if d not in x_contract and d not in x_batch]
    y_shape = eqn.out_avals[0].shape
    n_batch = len(lhs_batch)
    # dot_general's output axes: batch, then lhs free, then rhs free.
    if x_arg == 0:
        y_x_free = list(range(n_batch, n_batch + len(x_free)))
        y_w_free = list(range(n_batch + len(x_free), len(y_shape)))
    else:
        n_w_free = len(y_shape) - n_batch - len(x_free)
        y_w_free = list(range(n_batch, n_batch + n_w_free))
        y_x_free = list(range(n_batch + n_w_free, len(y_shape)))
    layout = DotLayout(
        x_perm=(*x_batch, *x_free, *x_contract),
        y_perm=(*range(n_batch), *y_x_free, *y_w_free),
        y_features=tuple(y_w_free),
    )
    dims = Dims(
        batch=size([x_shape[d] for d in x_batch]),
        positions=size([x_shape[d] for d in x_free]),
        channels=size([x_shape[d] for d in x_contract]),
        features=size([y_shape[d] for d in y_w_free]),
    )
    return layout, dims


def _conv_layout(eqn: Eqn, w_shape: tuple[int, ...]) -> tuple[ConvLayout, Dims]:
    numbers = eqn.params["dimension_numbers"]
    out_spec = tuple(numbers.out_spec)
    rhs_spec = tuple(numbers.rhs_spec)
    filter_shape = tuple(w_shape[d] for d in rhs_spec[2:])
    y_shape = eqn.out_avals[0].shape
    layout = ConvLayout(filter_shape, y_perm=(out_spec[0], *out_spec[2:], out_spec[1]))
    dims = Dims(
        batch=1,
        positions=size([y_shape[d] for d in (out_spec[0], *out_spec[2:])]),
        channels=w_shape[rhs_spec[1]] * size(filter_shape),
        features=y_shape[out_spec[1]],
    )
    return layout, dims


def _gather_is_lookup(eqn: Eqn, w_shape: tuple[int, ...], index_shape: tuple[int, ...]) -> bool:
    """Whether the gather reads whole rows of a ``[V, F]`` table at integer ids (an embedding)."""
    numbers = eqn.params["dimension_numbers"]
    y_ndim = len(eqn.out_avals[0].shape)
    return (
        len(w_shape) == 2
        and tuple(numbers.collapsed_slice_dims) == (0,)
        and tuple(numbers.start_index_map) == (0,)
        and tuple(numbers.offset_dims) == (y_ndim - 1,)
        and tuple(getattr(numbers, "operand_batching_dims", ())) == ()
        and tuple(eqn.params["slice_sizes"]) == (1, w_shape[1])
        and len(index_shape) >= 1
        and index_shape[-1] == 1
    )

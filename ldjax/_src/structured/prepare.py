"""The one preparation shared by :func:`structured_ntk` and :func:`site_report`: trace the model,
find its sites, plan them and route every parameter leaf."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from ldjax._src import pytree
from ldjax._src.structured import routing
from ldjax._src.structured.jaxpr import Const
from ldjax._src.structured.jaxpr import Program
from ldjax._src.structured.jaxpr import Site
from ldjax._src.structured.jaxpr import find_sites
from ldjax._src.structured.jaxpr import forward_flops
from ldjax._src.structured.jaxpr import size
from ldjax._src.structured.jaxpr import trace_program
from ldjax._src.structured.plans import Plan
from ldjax._src.structured.plans import make_plan
from ldjax._src.typing import ApplyFn
from ldjax._src.typing import Params


@dataclasses.dataclass(frozen=True)
class Prepared:
    """Everything about the model that does not depend on the values of the inputs."""

    apply_fn: ApplyFn
    params: Params
    leaves: list[jax.Array]
    names: list[str]  # one per leaf
    program: Program  # the model on one example
    out_size: int  # O, the number of logits of one example
    sites: dict[int, list[Site]]  # leaf -> its sites, for the leaves not in ``fallback``
    plans: dict[Site, Plan]
    routes: list[str]  # per leaf: "dot", "conv", "lookup", "gradients", "fallback" or "unused"
    fallback: list[int]  # leaves used non-linearly: Jacobian contraction
    reasons: dict[int, str]  # why each fallback leaf could not be structured ("used by tanh")
    stacked: dict[int, int]  # leaves scanned over as a stack of layers: {leaf: number of layers}
    forward_flops: int  # FLOPs of the model on one example
    record: dict[int, tuple[int, ...]]  # site equation -> the operands to keep (not the parameter)


def prepare(apply_fn: ApplyFn, params: Params, x1: Any, n2: int, route: str) -> Prepared:
    """Trace ``apply_fn`` on one example of ``x1`` and route each leaf for ``n1 x n2`` example pairs."""
    routing.check_route(route)
    leaves, treedef = jax.tree.flatten(params)
    x_leaves, x_def = jax.tree.flatten(x1)

    def flat_apply(*args: Any) -> jax.Array:
        return apply_fn(
            jax.tree.unflatten(treedef, args[: len(leaves)]), jax.tree.unflatten(x_def, args[len(leaves) :])
        )

    program = trace_program(flat_apply, leaves, x_leaves)
    out_size = size(program.operand_shape(program.outs[0]))
    all_sites, unstructurable, stacked = find_sites(program, len(leaves))
    sites: dict[int, list[Site]] = {}
    for site in all_sites:
        if site.leaf not in unstructurable:
            sites.setdefault(site.leaf, []).append(site)
    plans = {
        site: make_plan(program, site, np.shape(leaves[site.leaf]))
        for leaf_sites in sites.values()
        for site in leaf_sites
    }
    n1 = x_leaves[0].shape[0]

    def leaf_route(leaf: int) -> str:
        if leaf in unstructurable:
            return "fallback"
        if leaf not in sites:
            return "unused"
        p = size(np.shape(leaves[leaf]))
        return routing.leaf_route(sites[leaf], plans, p, n1, n2, out_size, route)

    return Prepared(
        apply_fn=apply_fn,
        params=params,
        leaves=leaves,
        names=pytree.leaf_names(params),
        program=program,
        out_size=out_size,
        sites=sites,
        plans=plans,
        routes=[leaf_route(leaf) for leaf in range(len(leaves))],
        fallback=sorted(unstructurable),
        reasons=unstructurable,
        stacked=stacked,
        forward_flops=forward_flops(program),
        record=_operands_to_record(program, sites),
    )


def _operands_to_record(program: Program, sites: dict[int, list[Site]]) -> dict[int, tuple[int, ...]]:
    """For every site equation, its variable operands other than the parameter (layer inputs, ids)."""
    record: dict[int, set[int]] = {}
    for leaf_sites in sites.values():
        for site in leaf_sites:
            eqn = program.eqns[site.eqn]
            others = {k for k, a in enumerate(eqn.ins) if k != site.arg and not isinstance(a, Const)}
            record.setdefault(site.eqn, set()).update(others)
    return {e: tuple(sorted(operands)) for e, operands in record.items()}

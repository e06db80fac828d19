"""Walking the jaxpr: trace the model once, inline nested calls into one flat program, find the
sites (equations linear in a parameter leaf) and evaluate the program with probes on their outputs.

Only the public :func:`jax.make_jaxpr` and :mod:`jax.extend.core` are used.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.extend.core as jex
import jax.numpy as jnp
import numpy as np

# Element-count-preserving rearrangements: gradient inner products are unchanged through them.
ISOMETRIC = frozenset(
    {
        "reshape",
        "transpose",
        "broadcast_in_dim",
        "convert_element_type",
        "squeeze",
        "expand_dims",
        "copy",
        "copy_p",
    }
)
# Equations that only rearrange a parameter: the result is still "the parameter", seen differently.
STRUCTURAL = ISOMETRIC | {"slice", "reduce_precision"}
# Call-like primitives whose body is inlined so that parameters are followed inside them.
INLINE = frozenset({"pjit", "jit", "closed_call", "core_call", "remat", "checkpoint"})
ALL_OPERANDS = "all"
# Primitives linear (or affine) in the listed operands when the other operands are held fixed.
LINEAR_OPERANDS: dict[str, Any] = {
    "dot_general": (0, 1),
    "conv_general_dilated": (0, 1),
    "mul": (0, 1),
    "add": (0, 1),
    "add_any": (0, 1),
    "sub": (0, 1),
    "neg": (0,),
    "div": (0,),
    "gather": (0,),
    "dynamic_slice": (0,),
    "reduce_sum": (0,),
    "concatenate": ALL_OPERANDS,
    "pad": (0,),
    "cumsum": (0,),
}


@dataclasses.dataclass(frozen=True)
class Const:
    """A literal or captured constant operand (as opposed to a variable id)."""

    value: Any


@dataclasses.dataclass(frozen=True)
class Eqn:
    """One equation of the flat program; operands are variable ids (``int``) or :class:`Const`."""

    primitive: Any
    params: dict[str, Any]
    ins: list[Any]
    outs: list[int]
    out_avals: list[Any]


@dataclasses.dataclass(frozen=True)
class Site:
    """An equation that consumes a parameter leaf linearly."""

    eqn: int  # index of the consuming equation
    arg: int  # which operand holds the parameter
    leaf: int  # which parameter leaf
    chain: tuple[int, ...]  # structural equations from the leaf to that operand


@dataclasses.dataclass(frozen=True)
class Program:
    """The model on one example as a flat list of equations.

    Variables ``0 .. n_leaves - 1`` are the parameter leaves, then the input leaves; ``shapes``
    holds the shape of every variable.
    """

    eqns: list[Eqn]
    outs: list[Any]
    shapes: dict[int, tuple[int, ...]]

    def operand_shape(self, operand: Any) -> tuple[int, ...]:
        if isinstance(operand, Const):
            return tuple(np.shape(operand.value))
        return self.shapes[operand]


def size(shape: Any) -> int:
    return int(math.prod(shape))


def trace_program(flat_apply: Callable[..., Any], leaves: list[Any], x_leaves: list[Any]) -> Program:
    """Trace ``flat_apply(*leaves, *one_example)`` on one example of the batch ``x_leaves``."""
    specs = [jax.ShapeDtypeStruct(np.shape(a), jnp.result_type(a)) for a in leaves]
    specs += [jax.ShapeDtypeStruct(np.shape(a)[1:], jnp.result_type(a)) for a in x_leaves]
    closed = jax.make_jaxpr(flat_apply)(*specs)
    eqns, outs = _flatten(closed, len(specs))
    shapes = {i: tuple(spec.shape) for i, spec in enumerate(specs)}
    for eqn in eqns:
        for v, aval in zip(eqn.outs, eqn.out_avals, strict=True):
            shapes[v] = tuple(aval.shape)
    return Program(eqns, outs, shapes)


def _flatten(closed: Any, n_in: int) -> tuple[list[Eqn], list[Any]]:
    """Inline nested jit/call equations into one flat list with integer variable ids ``>= n_in``."""
    eqns: list[Eqn] = []
    fresh = itertools.count(n_in)

    def inline(jaxpr: Any, consts: list[Any], ins: list[Any]) -> list[Any]:
        env: dict[Any, Any] = {}
        for v, c in zip(jaxpr.constvars, consts, strict=True):
            env[v] = Const(c)
        for v, a in zip(jaxpr.invars, ins, strict=True):
            env[v] = a

        def read(a: Any) -> Any:
            if isinstance(a, jex.Literal):
                return Const(a.val)
            return env[a]

        for eqn in jaxpr.eqns:
            args = [read(a) for a in eqn.invars]
            body = eqn.params.get("jaxpr")
            if eqn.primitive.name in INLINE and body is not None:
                if isinstance(body, jex.ClosedJaxpr):
                    outs = inline(body.jaxpr, list(body.consts), args)
                else:
                    outs = inline(body, [], args)
                for v, o in zip(eqn.outvars, outs, strict=True):
                    env[v] = o
                continue
            ids = [next(fresh) for _ in eqn.outvars]
            eqns.append(Eqn(eqn.primitive, dict(eqn.params), args, ids, [v.aval for v in eqn.outvars]))
            for v, i in zip(eqn.outvars, ids, strict=True):
                env[v] = i
        return [read(a) for a in jaxpr.outvars]

    outs = inline(closed.jaxpr, list(closed.consts), list(range(n_in)))
    return eqns, outs


def bind(eqn: Eqn, invals: list[Any]) -> list[Any]:
    """Apply the equation's primitive to ``invals``; always a list of outputs."""
    params = eqn.primitive.get_bind_params(eqn.params)
    subfuns: tuple[Any, ...] = ()
    if isinstance(params, tuple):  # older JAX returned (subfuns, params)
        subfuns, params = params
    out = eqn.primitive.bind(*subfuns, *invals, **params)
    return list(out) if eqn.primitive.multiple_results else [out]


def find_sites(program: Program, n_leaves: int) -> tuple[list[Site], dict[int, str], dict[int, int]]:
    """The linear sites of every parameter leaf, the leaves that cannot be structured (with the reason,
    e.g. ``"used by tanh"``) and the leaves scanned over as a stack of layers (``{leaf: layers}``: a
    ``scan`` slices them along their first axis, one slice per iteration)."""
    origin: dict[int, tuple[int, tuple[int, ...]]] = {i: (i, ()) for i in range(n_leaves)}
    sites: list[Site] = []
    unstructurable: dict[int, str] = {}
    stacked: dict[int, int] = {}
    for index, eqn in enumerate(program.eqns):
        derived = [(k, origin[a]) for k, a in enumerate(eqn.ins) if isinstance(a, int) and a in origin]
        if not derived:
            continue
        name = eqn.primitive.name
        if name in STRUCTURAL and len(derived) == 1 and derived[0][0] == 0:
            leaf, chain = derived[0][1]
            origin[eqn.outs[0]] = (leaf, (*chain, index))
            continue
        linear = LINEAR_OPERANDS.get(name)
        for k, (leaf, chain) in derived:
            if linear is not None and len(eqn.outs) == 1 and (linear == ALL_OPERANDS or k in linear):
                sites.append(Site(index, k, leaf, chain))
            else:
                unstructurable.setdefault(leaf, f"used by {name}")
                if name == "scan" and not chain and k >= eqn.params["num_consts"] + eqn.params["num_carry"]:
                    stacked[leaf] = int(eqn.params["length"])
    for a in program.outs:
        if isinstance(a, int) and a in origin:
            unstructurable.setdefault(origin[a][0], "returned as an output")
    return sites, unstructurable, stacked


def forward_flops(program: Program) -> int:
    """FLOPs of one evaluation of the program: matmuls and convolutions counted exactly, every other
    equation as one operation per output element; loop bodies (``scan``) times their length."""
    return sum(
        _eqn_flops(
            eqn.primitive.name,
            eqn.params,
            [program.operand_shape(a) for a in eqn.ins],
            [tuple(v.shape) for v in eqn.out_avals],
        )
        for eqn in program.eqns
    )


def _jaxpr_flops(jaxpr: Any) -> int:
    total = 0
    for eqn in jaxpr.eqns:
        ins = [tuple(getattr(v.aval, "shape", ())) for v in eqn.invars]
        outs = [tuple(getattr(v.aval, "shape", ())) for v in eqn.outvars]
        total += _eqn_flops(eqn.primitive.name, eqn.params, ins, outs)
    return total


def _eqn_flops(
    name: str, params: dict[str, Any], ins: list[tuple[int, ...]], outs: list[tuple[int, ...]]
) -> int:
    out = size(outs[0]) if outs else 0
    if name == "dot_general":
        (lhs_contract, _), _ = params["dimension_numbers"]
        return 2 * out * size([ins[0][d] for d in lhs_contract])
    if name == "conv_general_dilated":
        rhs_spec = params["dimension_numbers"].rhs_spec
        return 2 * out * size(ins[1]) // max(ins[1][rhs_spec[0]], 1)
    inner = getattr(params.get("jaxpr"), "jaxpr", params.get("jaxpr"))
    if hasattr(inner, "eqns"):  # a loop or call body
        return _jaxpr_flops(inner) * int(params.get("length", 1))
    return sum(size(o) for o in outs)


def evaluate(
    program: Program, invals: list[Any], probes: dict[int, Any], record: dict[int, tuple[int, ...]]
) -> tuple[list[Any], dict[int, list[Any]]]:
    """Run the program, adding ``probes[e]`` to equation e's output and keeping the operands
    ``record[e]`` of equation e (the others are ``None``)."""
    env = dict(enumerate(invals))
    kept: dict[int, list[Any]] = {}
    for index, eqn in enumerate(program.eqns):
        vals = [a.value if isinstance(a, Const) else env[a] for a in eqn.ins]
        if index in record:
            kept[index] = [v if k in record[index] else None for k, v in enumerate(vals)]
        outs = bind(eqn, vals)
        if index in probes:
            outs = [outs[0] + probes[index], *outs[1:]]
        env.update(zip(eqn.outs, outs, strict=True))
    return [a.value if isinstance(a, Const) else env[a] for a in program.outs], kept


@dataclasses.dataclass(frozen=True)
class SiteValues:
    """Per example of a batch: the recorded operands and the output cotangents of every site equation.

    ``operands[e][k]`` is ``[n, *shape]`` (``None`` for operands not recorded); ``cotangents[e]`` is
    ``[n, O, *out_shape]``: the derivative of each of the ``O`` logits by equation e's output.
    """

    operands: dict[int, list[Any]]
    cotangents: dict[int, jax.Array]


def site_values(
    program: Program, leaves: list[Any], x_leaves: list[Any], record: dict[int, tuple[int, ...]]
) -> SiteValues:
    """One evaluation per example with zero probes on every recorded equation's output; ``jax.jacrev``
    with respect to the probes gives every cotangent at once."""
    if not record:
        return SiteValues({}, {})
    zeros = {
        e: jnp.zeros(program.eqns[e].out_avals[0].shape, program.eqns[e].out_avals[0].dtype) for e in record
    }

    def one(x_example: list[Any]) -> tuple[dict[int, jax.Array], dict[int, list[Any]]]:
        def logits(probes: dict[int, Any]) -> tuple[jax.Array, dict[int, list[Any]]]:
            outs, kept = evaluate(program, [*leaves, *x_example], probes, record)
            return outs[0].reshape(-1), kept

        return jax.jacrev(logits, has_aux=True)(zeros)

    cotangents, operands = jax.vmap(one)(x_leaves)
    return SiteValues(operands, cotangents)

r"""Structured empirical NTK: each layer's kernel from its inputs and its output cotangents.

For a parameter :math:`W` used linearly, :math:`y_s = W x_s` at positions :math:`s` that share the
weight (tokens, pixels), the gradient of logit :math:`a` is :math:`\sum_s \delta_{a,s} x_s^\top`, so

.. math:: K_W[i,j,a,b] = \sum_{s,s'} \langle x_{i,s}, x_{j,s'}\rangle\,
          \langle \delta_{i,a,s}, \delta_{j,b,s'}\rangle

never forms a parameter-sized vector per output. The model is traced once with
:func:`jax.make_jaxpr`; the equations are read through the public :mod:`jax.extend` API. Every
equation that consumes a parameter leaf (reached from the leaf only through reshapes, transposes,
broadcasts and dtype conversions) and is linear in it — ``dot_general``, ``conv_general_dilated``,
``gather`` (embedding lookups), ``mul`` (scales), ``add`` (biases) and a few more — is a *site*.
One evaluation of the traced program, with zero probes added to every site's output and
``jax.jacrev`` taken with respect to the probes, yields every site's input and every output
cotangent :math:`\delta`. Each leaf then gets either the structured formula above (dense,
convolution via patches, embedding lookup) or its materialised per-example gradients, whichever
costs fewer FLOPs. Leaves used in any other way (inside a nonlinearity, a loop, a custom
derivative) fall back to Jacobian contraction, so the result is always the exact kernel.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.extend.core as jex
import jax.numpy as jnp
import numpy as np

# Element-count-preserving rearrangements: gradient inner products are unchanged through them.
_ISOMETRIC = frozenset(
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
_STRUCTURAL = _ISOMETRIC | {"slice", "reduce_precision"}
# Call-like primitives whose body is inlined so that parameters are followed inside them.
_INLINE = frozenset({"pjit", "jit", "closed_call", "core_call", "remat", "checkpoint"})
_ALL = "all"
# Site kinds whose per-example gradients come from layer inputs x cotangents (else: a vmapped VJP).
_FEATURE_GRAD_KINDS = ("dot", "conv")
# Primitives linear (or affine) in the listed operands when the other operands are held fixed.
_LINEAR_ARGS: dict[str, Any] = {
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
    "concatenate": _ALL,
    "pad": (0,),
    "cumsum": (0,),
}


@dataclasses.dataclass(frozen=True)
class _Const:
    value: Any


@dataclasses.dataclass
class _Eqn:
    prim: Any
    params: dict[str, Any]
    ins: list[Any]  # int (variable id) or _Const
    outs: list[int]
    out_avals: list[Any]


@dataclasses.dataclass(frozen=True)
class _Site:
    eqn: int  # index of the consuming equation
    arg: int  # which operand holds the parameter
    leaf: int  # which parameter leaf
    chain: tuple[int, ...]  # structural equations from the leaf to that operand


@dataclasses.dataclass
class _Program:
    eqns: list[_Eqn]
    n_in: int
    outs: list[Any]
    shapes: dict[int, tuple[int, ...]] = dataclasses.field(default_factory=dict)


def _flatten(closed: Any) -> _Program:
    """Inline nested jit/call equations into one flat list with integer variable ids."""
    eqns: list[_Eqn] = []
    counter = [0]

    def fresh() -> int:
        counter[0] += 1
        return counter[0] - 1

    def inline(jaxpr: Any, consts: list[Any], ins: list[Any]) -> list[Any]:
        env: dict[Any, Any] = {}
        for v, c in zip(jaxpr.constvars, consts, strict=True):
            env[v] = _Const(c)
        for v, a in zip(jaxpr.invars, ins, strict=True):
            env[v] = a

        def read(a: Any) -> Any:
            if isinstance(a, jex.Literal):
                return _Const(a.val)
            return env[a]

        for eqn in jaxpr.eqns:
            args = [read(a) for a in eqn.invars]
            sub = eqn.params.get("jaxpr")
            if eqn.primitive.name in _INLINE and sub is not None:
                if isinstance(sub, jex.ClosedJaxpr):
                    outs = inline(sub.jaxpr, list(sub.consts), args)
                else:
                    outs = inline(sub, [], args)
                for v, o in zip(eqn.outvars, outs, strict=True):
                    env[v] = o
                continue
            ids = [fresh() for _ in eqn.outvars]
            eqns.append(_Eqn(eqn.primitive, dict(eqn.params), args, ids, [v.aval for v in eqn.outvars]))
            for v, i in zip(eqn.outvars, ids, strict=True):
                env[v] = i
        return [read(a) for a in jaxpr.outvars]

    n_in = len(closed.jaxpr.invars)
    ins = [fresh() for _ in range(n_in)]
    outs = inline(closed.jaxpr, list(closed.consts), ins)
    return _Program(eqns, n_in, outs)


def _bind(eqn: _Eqn, invals: list[Any]) -> list[Any]:
    params = eqn.prim.get_bind_params(eqn.params)
    subfuns: tuple[Any, ...] = ()
    if isinstance(params, tuple):  # older JAX returned (subfuns, params)
        subfuns, params = params
    out = eqn.prim.bind(*subfuns, *invals, **params)
    return list(out) if eqn.prim.multiple_results else [out]


def _analyse(prog: _Program, n_leaves: int) -> tuple[list[_Site], set[int]]:
    """Find the linear sites of every parameter leaf and the leaves that cannot be structured."""
    origin: dict[int, tuple[int, tuple[int, ...]]] = {i: (i, ()) for i in range(n_leaves)}
    sites: list[_Site] = []
    bad: set[int] = set()
    for idx, eqn in enumerate(prog.eqns):
        derived = [(k, origin[a]) for k, a in enumerate(eqn.ins) if isinstance(a, int) and a in origin]
        if not derived:
            continue
        name = eqn.prim.name
        if name in _STRUCTURAL and len(derived) == 1 and derived[0][0] == 0:
            leaf, chain = derived[0][1]
            origin[eqn.outs[0]] = (leaf, (*chain, idx))
            continue
        linear = _LINEAR_ARGS.get(name)
        for k, (leaf, chain) in derived:
            if linear is not None and len(eqn.outs) == 1 and (linear == _ALL or k in linear):
                sites.append(_Site(idx, k, leaf, chain))
            else:
                bad.add(leaf)
    for a in prog.outs:
        if isinstance(a, int) and a in origin:
            bad.add(origin[a][0])
    return sites, bad


def _evaluate(
    prog: _Program, invals: list[Any], probes: dict[int, Any], record: dict[int, tuple[int, ...]]
) -> tuple[list[Any], dict[int, list[Any]]]:
    """Run the flat program, adding ``probes[e]`` to equation e's output and keeping site inputs."""
    env = dict(enumerate(invals))
    kept: dict[int, list[Any]] = {}
    for idx, eqn in enumerate(prog.eqns):
        vals = [a.value if isinstance(a, _Const) else env[a] for a in eqn.ins]
        if idx in record:
            kept[idx] = [v if k in record[idx] else None for k, v in enumerate(vals)]
        outs = _bind(eqn, vals)
        if idx in probes:
            outs = [outs[0] + probes[idx], *outs[1:]]
        env.update(zip(eqn.outs, outs, strict=True))
    return [a.value if isinstance(a, _Const) else env[a] for a in prog.outs], kept


def _size(shape: Any) -> int:
    return int(math.prod(shape))


# ----------------------------------------------------------------------------------------------
# Per-site structure: layer inputs X [B, S, C] and cotangents D [O, B, S, F] for one example.


def _dot_layout(eqn: _Eqn, site: _Site, x_shape: tuple[int, ...]):
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    x_arg = 1 - site.arg
    xc, xb = (tuple(lc), tuple(lb)) if x_arg == 0 else (tuple(rc), tuple(rb))
    x_free = [d for d in range(len(x_shape)) if d not in xc and d not in xb]
    y_ndim = len(eqn.out_avals[0].shape)
    nb = len(lb)
    if x_arg == 0:
        y_xfree = list(range(nb, nb + len(x_free)))
        y_wfree = list(range(nb + len(x_free), y_ndim))
    else:
        y_wfree_n = y_ndim - nb - len(x_free)
        y_wfree = list(range(nb, nb + y_wfree_n))
        y_xfree = list(range(nb + y_wfree_n, y_ndim))
    x_perm = (*xb, *x_free, *xc)
    y_perm = (*range(nb), *y_xfree, *y_wfree)
    b = _size([x_shape[d] for d in xb])
    s = _size([x_shape[d] for d in x_free])
    c = _size([x_shape[d] for d in xc])
    f = _size([eqn.out_avals[0].shape[d] for d in y_wfree])
    return x_perm, y_perm, tuple(y_wfree), (b, s, c, f)


def _conv_layout(eqn: _Eqn, w_shape: tuple[int, ...]):
    dn = eqn.params["dimension_numbers"]
    out_spec = tuple(dn.out_spec)
    rhs_spec = tuple(dn.rhs_spec)
    filt = tuple(w_shape[d] for d in rhs_spec[2:])
    y_shape = eqn.out_avals[0].shape
    perm = (out_spec[0], *out_spec[2:], out_spec[1])
    s = _size([y_shape[d] for d in (out_spec[0], *out_spec[2:])])
    c = w_shape[rhs_spec[1]] * _size(filt)
    f = y_shape[out_spec[1]]
    return filt, perm, (1, s, c, f)


def _gather_is_lookup(eqn: _Eqn, w_shape: tuple[int, ...], idx_shape: tuple[int, ...]) -> bool:
    dn = eqn.params["dimension_numbers"]
    y_ndim = len(eqn.out_avals[0].shape)
    return (
        len(w_shape) == 2
        and tuple(dn.collapsed_slice_dims) == (0,)
        and tuple(dn.start_index_map) == (0,)
        and tuple(dn.offset_dims) == (y_ndim - 1,)
        and tuple(getattr(dn, "operand_batching_dims", ())) == ()
        and tuple(eqn.params["slice_sizes"]) == (1, w_shape[1])
        and len(idx_shape) >= 1
        and idx_shape[-1] == 1
    )


class _Plan:
    """The structured kind of a site (or ``None``) and FLOP estimates for both routes."""

    def __init__(self, prog: _Program, site: _Site, leaf_shape: tuple[int, ...], n1: int, n2: int, o: int):
        eqn = prog.eqns[site.eqn]
        name = eqn.prim.name
        isometric = all(prog.eqns[c].prim.name in _ISOMETRIC for c in site.chain) and all(
            _size(prog.eqns[c].out_avals[0].shape) == _size(leaf_shape) for c in site.chain
        )
        self.kind: str | None = None
        self.dims: tuple[int, int, int, int] | None = None
        y_size = _size(eqn.out_avals[0].shape)
        p = _size(leaf_shape)
        # materialised per-example gradients: one VJP per (example, output), then a Gram matrix.
        self.grad_flops = 2 * (n1 + n2) * o * max(y_size, p) + 2 * n1 * n2 * o * o * p
        self.struct_flops = math.inf
        in_shapes = [_aval_shape(a, prog) for a in eqn.ins]
        w_shape = in_shapes[site.arg]
        if not isometric:
            return
        if name == "dot_general":
            x_perm, y_perm, y_wfree, dims = _dot_layout(eqn, site, in_shapes[1 - site.arg])
            self.kind, self.layout, self.dims = "dot", (x_perm, y_perm, y_wfree), dims
            b, s, c, f = dims
            self.grad_flops = 2 * (n1 + n2) * o * b * s * c * f + 2 * n1 * n2 * o * o * p
        elif name == "conv_general_dilated" and site.arg == 1:
            if eqn.params["feature_group_count"] != 1 or eqn.params["batch_group_count"] != 1:
                return
            filt, perm, dims = _conv_layout(eqn, w_shape)
            self.kind, self.layout, self.dims = "conv", (filt, perm), dims
            b, s, c, f = dims
            self.grad_flops = 2 * (n1 + n2) * o * s * c * f + 2 * n1 * n2 * o * o * p
        elif name == "gather" and site.arg == 0 and _gather_is_lookup(eqn, w_shape, in_shapes[1]):
            s = _size(in_shapes[1][:-1])
            self.kind, self.dims = "lookup", (1, s, 1, w_shape[1])
            self.grad_flops = 2 * (n1 + n2) * o * p + 2 * n1 * n2 * o * o * p
        if self.dims is not None:
            b, s, c, f = self.dims
            self.struct_flops = 2 * n1 * n2 * b * s * s * c + _contract_flops(n1, n2, o, b, s, f)


def _aval_shape(a: Any, prog: _Program) -> tuple[int, ...]:
    if isinstance(a, _Const):
        return tuple(np.shape(a.value))
    return tuple(prog.shapes[a])


def _contract_flops(n1: int, n2: int, o: int, b: int, s: int, f: int) -> float:
    via_m = 2 * n1 * n2 * o * b * s * s * f + 2 * n1 * n2 * o * o * b * s * f
    via_dg = 2 * n1 * n2 * o * o * b * s * s * f + 2 * n1 * n2 * o * o * b * s * s
    return min(via_m, via_dg)


def _bilinear_kernel(xg: jax.Array, d1: jax.Array, d2: jax.Array, trace: bool) -> jax.Array:
    """``K[i,j,a,c] = Σ_{b,s,t} xg[i,j,b,s,t] Σ_f d1[i,a,b,s,f] d2[j,c,b,t,f]``."""
    n1, o, b, s, f = d1.shape
    n2 = d2.shape[0]
    via_m = 2 * n1 * n2 * o * b * s * s * f + 2 * n1 * n2 * o * o * b * s * f
    via_dg = 2 * n1 * n2 * o * o * b * s * s * f
    if s == 1:
        if trace:
            dg = jnp.einsum("iabf,jabf->ijb", d1[..., 0, :], d2[..., 0, :])
            return jnp.einsum("ijb,ijb->ij", xg[..., 0, 0], dg)
        dg = jnp.einsum("iabf,jcbf->ijacb", d1[..., 0, :], d2[..., 0, :])
        return jnp.einsum("ijb,ijacb->ijac", xg[..., 0, 0], dg)
    # Contract the positions of the second batch first, then one large matmul over (b, s, f) per
    # example i: this layout is several times faster on CPU than contracting d1's positions first.
    if trace:
        m = jnp.einsum("ijbst,jabtf->ijabsf", xg, d2)
        return jnp.einsum("iabsf,ijabsf->ij", d1, m)
    if via_m <= via_dg:
        m = jnp.einsum("ijbst,jcbtf->ijcbsf", xg, d2)
        return jnp.einsum("iabsf,ijcbsf->ijac", d1, m)
    dg = jnp.einsum("iabsf,jcbtf->ijacbst", d1, d2)
    return jnp.einsum("ijbst,ijacbst->ijac", xg, dg)


def _site_features(prog: _Program, site: _Site, plan: _Plan, kept: list[Any], delta: jax.Array):
    """Per-example layer inputs (or indices) and cotangents ``D [n, O, B, S, F]`` of a structured site."""
    eqn = prog.eqns[site.eqn]
    n, o = delta.shape[:2]
    b, s, c, f = plan.dims
    if plan.kind == "dot":
        x_perm, y_perm, _ = plan.layout
        x = _operand(eqn, kept, 1 - site.arg, n)
        feats = jnp.transpose(x, (0, *(d + 1 for d in x_perm))).reshape(n, b, s, c)
        d = jnp.transpose(delta, (0, 1, *(d + 2 for d in y_perm))).reshape(n, o, b, s, f)
    elif plan.kind == "conv":
        filt, perm = plan.layout
        x = _operand(eqn, kept, 0, n)
        p = eqn.params

        def patches(xi):
            return jax.lax.conv_general_dilated_patches(
                xi,
                filt,
                p["window_strides"],
                p["padding"],
                lhs_dilation=p["lhs_dilation"],
                rhs_dilation=p["rhs_dilation"],
                dimension_numbers=p["dimension_numbers"],
                precision=jax.lax.Precision.HIGHEST,  # an exact copy of the inputs, never TF32
            )

        pt = jax.vmap(patches)(x)
        feats = jnp.transpose(pt, (0, *(d + 1 for d in perm))).reshape(n, 1, s, c)
        d = jnp.transpose(delta, (0, 1, *(d + 2 for d in perm))).reshape(n, o, 1, s, f)
    else:  # lookup
        idx = _operand(eqn, kept, 1, n).reshape(n, s)
        vocab = _aval_shape(eqn.ins[0], prog)[0]
        mode = str(eqn.params.get("mode", ""))
        if "CLIP" in mode:
            idx = jnp.clip(idx, 0, vocab - 1)
        else:
            idx = jnp.where((idx >= 0) & (idx < vocab), idx, -1)
        feats = idx
        d = delta.reshape(n, o, 1, s, f)
    return feats, d


def _feature_grads(prog: _Program, site: _Site, plan: _Plan, kept: list[Any], delta: jax.Array) -> jax.Array:
    """Per-example gradients ``[n, O, B*C*F]`` of a dense/conv site from its inputs and cotangents."""
    feats, d = _site_features(prog, site, plan, kept, delta)
    g = jnp.einsum("ibsc,iabsf->iabcf", feats.astype(d.dtype), d)
    return g.reshape(g.shape[0], g.shape[1], -1)


def _operand(eqn: _Eqn, kept: list[Any], k: int, n: int) -> jax.Array:
    """Operand ``k`` of a site's equation per example: recorded, or a constant repeated ``n`` times."""
    a = eqn.ins[k]
    if isinstance(a, _Const):
        value = jnp.asarray(a.value)
        return jnp.broadcast_to(value, (n, *value.shape))
    return kept[k]


def _gram(plan: _Plan, f1: jax.Array, f2: jax.Array) -> jax.Array:
    if plan.kind == "lookup":
        same = (f1[:, None, :, None] == f2[None, :, None, :]) & (f1[:, None, :, None] >= 0)
        return same.astype(jnp.result_type(float))[:, :, None]  # [n1, n2, 1, s, t]
    return jnp.einsum("ibsc,jbtc->ijbst", f1, f2)


def _site_grads(prog: _Program, site: _Site, leaf_value: jax.Array, kept: list[Any], delta: jax.Array):
    """Materialised per-example gradients of one site, pulled back to the leaf: ``[n, O, p_leaf]``."""
    eqn = prog.eqns[site.eqn]
    chain = [prog.eqns[c] for c in site.chain]

    def through_chain(w):
        for ce in chain:
            vals = [w if k == 0 else a.value for k, a in enumerate(ce.ins)]
            w = _bind(ce, vals)[0]
        return w

    def one(kept_i, delta_i):
        def fwd(w):
            vals = [
                through_chain(w) if k == site.arg else (a.value if isinstance(a, _Const) else kept_i[k])
                for k, a in enumerate(eqn.ins)
            ]
            return _bind(eqn, vals)[0]

        _, vjp = jax.vjp(fwd, leaf_value)
        g = jax.vmap(lambda d: vjp(d.astype(eqn.out_avals[0].dtype))[0])(delta_i)
        return g.reshape(g.shape[0], -1)

    return jax.vmap(one)(kept, delta)


def leaf_names(params: Any) -> list[str]:
    names = []
    for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]:
        parts = []
        for key in path:
            for attr in ("key", "name", "idx"):
                if hasattr(key, attr):
                    parts.append(str(getattr(key, attr)))
                    break
            else:
                parts.append(str(key))
        names.append("/".join(parts) if parts else "params")
    return names


def _trace(flat_apply: Any, leaves: list[Any], x_leaves: list[Any]) -> tuple[Any, _Program]:
    """Trace the model on one example and flatten it, recording every variable's shape."""
    specs = [jax.ShapeDtypeStruct(np.shape(a), jnp.result_type(a)) for a in leaves]
    specs += [jax.ShapeDtypeStruct(np.shape(a)[1:], jnp.result_type(a)) for a in x_leaves]
    closed = jax.make_jaxpr(flat_apply)(*specs)
    prog = _flatten(closed)
    prog.shapes = {i: tuple(spec.shape) for i, spec in enumerate(specs)}
    for eqn in prog.eqns:
        for v, aval in zip(eqn.outs, eqn.out_avals, strict=True):
            prog.shapes[v] = tuple(aval.shape)
    return closed, prog


@dataclasses.dataclass
class _Batch:
    kept: dict[int, list[Any]]
    delta: dict[int, jax.Array]


def structured_ntk(
    apply_fn: Any, params: Any, x1: Any, x2: Any, trace: bool, route: str = "auto", fold: bool = False
) -> dict[str, jax.Array]:
    r"""Per-leaf kernels ``{name: [n1, n2, O, O]}`` (``[n1, n2]`` when ``trace``); see the module doc.

    ``route`` ("auto", "structured", "gradients") overrides the FLOP-count choice (for tests).
    ``fold``: a bias added right after a structured dense layer is folded into that layer's term,
    :math:`(X X^\top + 1) \odot (\Delta \Delta^\top)`, and its own key is dropped (the values still
    sum to the full kernel; only for the total, not for per-layer kernels).
    """
    leaves, treedef = jax.tree.flatten(params)
    names = leaf_names(params)
    x_leaves1, x_def = jax.tree.flatten(x1)
    x_leaves2 = x_leaves1 if x2 is x1 else jax.tree.leaves(x2)
    n1, n2 = x_leaves1[0].shape[0], x_leaves2[0].shape[0]

    def flat_apply(*args):
        p = jax.tree.unflatten(treedef, args[: len(leaves)])
        x = jax.tree.unflatten(x_def, args[len(leaves) :])
        return apply_fn(p, x)

    closed, prog = _trace(flat_apply, leaves, x_leaves1)
    out_shape = tuple(closed.out_avals[0].shape)
    o = _size(out_shape)
    sites, bad = _analyse(prog, len(leaves))

    by_leaf: dict[int, list[_Site]] = {}
    for site in sites:
        if site.leaf not in bad:
            by_leaf.setdefault(site.leaf, []).append(site)
    plans = {
        site: _Plan(prog, site, tuple(np.shape(leaves[site.leaf])), n1, n2, o)
        for ss in by_leaf.values()
        for site in ss
    }
    if route not in ("auto", "structured", "gradients"):
        raise ValueError(f"route must be 'auto', 'structured' or 'gradients', got {route!r}")
    structured_leaf = {
        leaf: len(ss) == 1
        and plans[ss[0]].kind is not None
        and route != "gradients"
        and (route == "structured" or plans[ss[0]].struct_flops < plans[ss[0]].grad_flops)
        for leaf, ss in by_leaf.items()
    }
    probe_eqns = sorted({site.eqn for ss in by_leaf.values() for site in ss})
    record: dict[int, set[int]] = {}
    for ss in by_leaf.values():
        for site in ss:
            eqn = prog.eqns[site.eqn]
            others = {k for k in range(len(eqn.ins)) if k != site.arg and not isinstance(eqn.ins[k], _Const)}
            record.setdefault(site.eqn, set()).update(others)
    record_t = {e: tuple(sorted(ks)) for e, ks in record.items()}

    def cotangents(x_leaves) -> _Batch:
        if not probe_eqns:
            return _Batch({}, {})
        zeros = {
            e: jnp.zeros(prog.eqns[e].out_avals[0].shape, prog.eqns[e].out_avals[0].dtype) for e in probe_eqns
        }

        def one(xs):
            def f(probes):
                outs, kept = _evaluate(prog, [*leaves, *xs], probes, record_t)
                return outs[0].reshape(-1), kept

            return jax.jacrev(f, has_aux=True)(zeros)

        delta, kept = jax.vmap(one)(x_leaves)
        return _Batch(kept, delta)

    b1 = cotangents(x_leaves1)
    b2 = b1 if x2 is x1 else cotangents(x_leaves2)
    dtype = jnp.result_type(*leaves)
    spec_g = "iap,jap->ij" if trace else "iap,jbp->ijab"
    kernels: dict[str, jax.Array] = {}
    zero = jnp.zeros((n1, n2) if trace else (n1, n2, o, o), dtype)
    folded = _foldable_biases(prog, by_leaf, plans, structured_leaf) if fold else {}
    for leaf, name in enumerate(names):
        if leaf in bad:
            continue
        ss = by_leaf.get(leaf, [])
        if leaf in folded.values():
            continue  # its term is inside the preceding dense layer's kernel
        if not ss:
            kernels[name] = zero
        elif structured_leaf[leaf]:
            site = ss[0]
            plan = plans[site]
            f1, d1 = _site_features(prog, site, plan, b1.kept[site.eqn], b1.delta[site.eqn])
            if b2 is b1:
                f2, d2 = f1, d1
            else:
                f2, d2 = _site_features(prog, site, plan, b2.kept[site.eqn], b2.delta[site.eqn])
            gram = _gram(plan, f1, f2).astype(d1.dtype)
            if leaf in folded:
                gram = gram + 1.0
            kernels[name] = _bilinear_kernel(gram, d1, d2, trace)
        elif len(ss) == 1 and plans[ss[0]].kind in _FEATURE_GRAD_KINDS:
            # one dense/conv site: per-example gradients Σ_s x_s ⊗ δ_s from the layer inputs (patches
            # for convolutions) in one batched matmul, in the (B, C, F) layout, not the leaf's.
            site = ss[0]
            g1 = _feature_grads(prog, site, plans[site], b1.kept[site.eqn], b1.delta[site.eqn])
            g2 = (
                g1
                if b2 is b1
                else _feature_grads(prog, site, plans[site], b2.kept[site.eqn], b2.delta[site.eqn])
            )
            kernels[name] = jnp.einsum(spec_g, g1, g2)
        else:
            g1 = sum(_site_grads(prog, s, leaves[leaf], b1.kept[s.eqn], b1.delta[s.eqn]) for s in ss)
            g2 = (
                g1
                if b2 is b1
                else sum(_site_grads(prog, s, leaves[leaf], b2.kept[s.eqn], b2.delta[s.eqn]) for s in ss)
            )
            kernels[name] = jnp.einsum(spec_g, g1, g2)
    if bad:
        kernels.update(
            _fallback(flat_apply, leaves, sorted(bad), names, x_leaves1, x_leaves2, x2 is x1, trace)
        )
    return {name: kernels[name] for name in names if name in kernels}


def _foldable_biases(
    prog: _Program,
    by_leaf: dict[int, list[_Site]],
    plans: dict[_Site, _Plan],
    structured_leaf: dict[int, bool],
) -> dict[int, int]:
    """``{dense leaf: bias leaf}`` for biases added directly to a structured dense layer's output.

    Conditions (so that the bias gradient is exactly Σ_s δ_s and shares the layer's cotangents): the
    dense output is used only by one ``add`` whose other operand is the bias (one site, reached by
    reshapes, dtype conversions and a broadcast over the positions only), no batch dimensions, and
    the bias has one entry per output feature.
    """
    uses: dict[int, int] = {}
    for eqn in prog.eqns:
        for a in eqn.ins:
            if isinstance(a, int):
                uses[a] = uses.get(a, 0) + 1
    for a in prog.outs:
        if isinstance(a, int):
            uses[a] = uses.get(a, 0) + 1
    dense_out: dict[int, tuple[int, _Site]] = {}
    for leaf, ss in by_leaf.items():
        if structured_leaf.get(leaf) and plans[ss[0]].kind == "dot" and plans[ss[0]].dims[0] == 1:
            dense_out[prog.eqns[ss[0].eqn].outs[0]] = (leaf, ss[0])
    folded: dict[int, int] = {}
    for leaf, ss in by_leaf.items():
        if len(ss) != 1 or structured_leaf.get(leaf):
            continue
        site = ss[0]
        eqn = prog.eqns[site.eqn]
        if eqn.prim.name not in ("add", "add_any") or len(eqn.ins) != 2:
            continue
        other = eqn.ins[1 - site.arg]
        if not isinstance(other, int) or other not in dense_out or uses.get(other, 0) != 1:
            continue
        w_leaf, w_site = dense_out[other]
        if w_leaf in folded:
            continue
        y_shape = tuple(eqn.out_avals[0].shape)
        if prog.shapes[other] != y_shape:
            continue
        w_free = set(plans[w_site].layout[2])
        if _bias_per_feature(prog, site, y_shape, w_free, plans[w_site].dims[3]):
            folded[w_leaf] = leaf
    return folded


def _bias_per_feature(
    prog: _Program, site: _Site, y_shape: tuple[int, ...], w_free: set[int], f: int
) -> bool:
    chain = [prog.eqns[c] for c in site.chain]
    leaf_size = _size(prog.shapes[site.leaf])
    if leaf_size != f:
        return False
    view = _aval_shape(prog.eqns[site.eqn].ins[site.arg], prog)
    if len(view) != len(y_shape):
        return False
    last = chain[-1] if chain else None
    if last is not None and last.prim.name == "broadcast_in_dim":
        if any(c.prim.name not in _ISOMETRIC or _size(c.out_avals[0].shape) != leaf_size for c in chain[:-1]):
            return False
        operand = _aval_shape(last.ins[0], prog)
        mapped = {
            d: operand[k]
            for k, d in enumerate(last.params["broadcast_dimensions"])
            if operand[k] == y_shape[d]
        }
        kept_dims = {d for d, size in mapped.items() if size != 1 or d in w_free}
        return kept_dims == w_free and all(mapped.get(d) == y_shape[d] for d in w_free)
    if any(c.prim.name not in _ISOMETRIC or _size(c.out_avals[0].shape) != leaf_size for c in chain):
        return False
    return all((view[d] == y_shape[d]) if d in w_free else view[d] == 1 for d in range(len(y_shape)))


def _fallback(flat_apply, leaves, bad, names, x_leaves1, x_leaves2, same, trace) -> dict[str, jax.Array]:
    """Jacobian contraction for the leaves that could not be structured."""

    def jac(x_leaves):
        def one(xs):
            def f(sub):
                full = list(leaves)
                for k, v in zip(bad, sub, strict=True):
                    full[k] = v
                return flat_apply(*full, *xs).reshape(-1)

            return jax.jacrev(f)([leaves[k] for k in bad])

        js = jax.vmap(one)(x_leaves)
        return [j.reshape(j.shape[0], j.shape[1], -1) for j in js]

    j1 = jac(x_leaves1)
    j2 = j1 if same else jac(x_leaves2)
    spec = "iap,jap->ij" if trace else "iap,jbp->ijab"
    return {names[k]: jnp.einsum(spec, a, b) for k, a, b in zip(bad, j1, j2, strict=True)}


def site_report(apply_fn: Any, params: Any, x1: Any, route: str = "auto") -> dict[str, str]:
    """How each parameter leaf would be handled for the batch ``x1`` (for tests and benchmarks).

    Values: ``"dot"``, ``"conv"``, ``"lookup"`` (structured formulas), ``"gradients"`` (materialised
    per-example gradients), ``"fallback"`` (Jacobian contraction) or ``"unused"``.
    """
    leaves, treedef = jax.tree.flatten(params)
    names = leaf_names(params)
    x_leaves, x_def = jax.tree.flatten(x1)

    def flat_apply(*args):
        return apply_fn(
            jax.tree.unflatten(treedef, args[: len(leaves)]), jax.tree.unflatten(x_def, args[len(leaves) :])
        )

    closed, prog = _trace(flat_apply, leaves, x_leaves)
    sites, bad = _analyse(prog, len(leaves))
    n = x_leaves[0].shape[0]
    o = _size(closed.out_avals[0].shape)
    report = {}
    for leaf, name in enumerate(names):
        ss = [s for s in sites if s.leaf == leaf]
        if leaf in bad:
            report[name] = "fallback"
        elif not ss:
            report[name] = "unused"
        elif len(ss) == 1:
            plan = _Plan(prog, ss[0], tuple(np.shape(leaves[leaf])), n, n, o)
            cheaper = route == "structured" or (route == "auto" and plan.struct_flops < plan.grad_flops)
            kind = plan.kind if plan.kind is not None and cheaper else "gradients"
            report[name] = kind
        else:
            report[name] = "gradients"
    return report

"""What one site contributes per example: its layer inputs and output cotangents in the
``[B, S, C]`` / ``[O, B, S, F]`` layout of its plan, or its materialised per-example gradients."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array
from jaxtyping import Float

from ldjax._src.structured.jaxpr import Const
from ldjax._src.structured.jaxpr import Eqn
from ldjax._src.structured.jaxpr import Program
from ldjax._src.structured.jaxpr import Site
from ldjax._src.structured.jaxpr import bind
from ldjax._src.structured.plans import ConvLayout
from ldjax._src.structured.plans import DotLayout
from ldjax._src.structured.plans import Plan


def site_features(
    program: Program, site: Site, plan: Plan, operands: list[Any], cotangent: jax.Array
) -> tuple[jax.Array, Float[Array, "n O B S F"]]:
    """Per-example layer inputs ``x_in [n, B, S, C]`` (token ids ``[n, S]`` for a lookup, ``-1`` where
    out of range) and cotangents ``[n, O, B, S, F]`` of a structured site."""
    eqn = program.eqns[site.eqn]
    n, o = cotangent.shape[:2]
    assert plan.dims is not None
    b, s, c, f = plan.dims
    if isinstance(plan.layout, DotLayout):
        x = _operand(eqn, operands, 1 - site.arg, n)
        x_in = jnp.transpose(x, (0, *(d + 1 for d in plan.layout.x_perm))).reshape(n, b, s, c)
        y_perm = plan.layout.y_perm
    elif isinstance(plan.layout, ConvLayout):
        patches = _patches(eqn, plan.layout, _operand(eqn, operands, 0, n))
        y_perm = plan.layout.y_perm
        x_in = jnp.transpose(patches, (0, *(d + 1 for d in y_perm))).reshape(n, 1, s, c)
    else:  # lookup: the layer input is a one-hot row of the table, kept as its id
        return _token_ids(program, eqn, operands, n, s), cotangent.reshape(n, o, 1, s, f)
    cotangent = jnp.transpose(cotangent, (0, 1, *(d + 2 for d in y_perm))).reshape(n, o, b, s, f)
    return x_in, cotangent


def _patches(eqn: Eqn, layout: ConvLayout, x: jax.Array) -> jax.Array:
    """The convolution's input patches per example: a dense layer over ``channels x filter taps``."""
    params = eqn.params

    def one(x_example: jax.Array) -> jax.Array:
        return jax.lax.conv_general_dilated_patches(
            x_example,
            layout.filter_shape,
            params["window_strides"],
            params["padding"],
            lhs_dilation=params["lhs_dilation"],
            rhs_dilation=params["rhs_dilation"],
            dimension_numbers=params["dimension_numbers"],
            precision=jax.lax.Precision.HIGHEST,  # an exact copy of the inputs, never TF32
        )

    return jax.vmap(one)(x)


def _token_ids(program: Program, eqn: Eqn, operands: list[Any], n: int, s: int) -> jax.Array:
    """The looked-up row ids ``[n, S]``, clipped or set to ``-1`` (no row) as the gather's mode says."""
    ids = _operand(eqn, operands, 1, n).reshape(n, s)
    vocab = program.operand_shape(eqn.ins[0])[0]
    if "CLIP" in str(eqn.params.get("mode", "")):
        return jnp.clip(ids, 0, vocab - 1)
    return jnp.where((ids >= 0) & (ids < vocab), ids, -1)


def _operand(eqn: Eqn, operands: list[Any], k: int, n: int) -> jax.Array:
    """Operand ``k`` of a site's equation per example: recorded, or a constant repeated ``n`` times."""
    a = eqn.ins[k]
    if isinstance(a, Const):
        value = jnp.asarray(a.value)
        return jnp.broadcast_to(value, (n, *value.shape))
    return operands[k]


def feature_gradients(
    program: Program, site: Site, plan: Plan, operands: list[Any], cotangent: jax.Array
) -> Float[Array, "n O BCF"]:
    """Per-example gradients ``Σ_s x_s ⊗ δ_s`` of a dense/conv site from its inputs (patches for
    convolutions) and cotangents in one batched matmul, in the ``(B, C, F)`` layout, not the leaf's."""
    x_in, cotangent = site_features(program, site, plan, operands, cotangent)
    gradients = jnp.einsum("ibsc,iabsf->iabcf", x_in.astype(cotangent.dtype), cotangent)
    return gradients.reshape(gradients.shape[0], gradients.shape[1], -1)


def site_gradients(
    program: Program, site: Site, leaf: jax.Array, operands: list[Any], cotangent: jax.Array
) -> Float[Array, "n O p_leaf"]:
    """Materialised per-example gradients of one site pulled back to the leaf by a vmapped VJP."""
    eqn = program.eqns[site.eqn]
    chain = [program.eqns[c] for c in site.chain]

    def through_chain(w: jax.Array) -> jax.Array:
        for structural in chain:
            w = bind(structural, [w if k == 0 else a.value for k, a in enumerate(structural.ins)])[0]
        return w

    def one(operands_i: list[Any], cotangent_i: jax.Array) -> jax.Array:
        def site_output(w: jax.Array) -> jax.Array:
            vals = [
                through_chain(w) if k == site.arg else (a.value if isinstance(a, Const) else operands_i[k])
                for k, a in enumerate(eqn.ins)
            ]
            return bind(eqn, vals)[0]

        _, vjp = jax.vjp(site_output, leaf)
        gradients = jax.vmap(lambda d: vjp(d.astype(eqn.out_avals[0].dtype))[0])(cotangent_i)
        return gradients.reshape(gradients.shape[0], -1)

    return jax.vmap(one)(operands, cotangent)

"""Empirical neural tangent kernels by Jacobian contraction and by Jacobian-vector products."""

from __future__ import annotations

import math
from typing import Any
from typing import Literal

import jax
import jax.numpy as jnp
from jaxtyping import Array
from jaxtyping import Float

from ldjax._src import checks
from ldjax._src import structured
from ldjax._src.typing import ApplyFn
from ldjax._src.typing import Params
from ldjax._src.typing import Precision

NtkMethod = Literal["jacobian", "vector_products", "structured"]


def batched(apply_fn: ApplyFn):
    """``apply_fn`` for one example turned into ``(params, x[n, *d]) -> logits[n, *o]``."""
    return jax.vmap(apply_fn, in_axes=(None, 0))


def jacobian(
    apply_fn: ApplyFn, params: Params, x: Float[Array, " n *d"], *, precision: Precision = "highest"
) -> Any:
    r"""Per-example Jacobians :math:`\partial z(x_i) / \partial \theta` of the logits.

    Args:
      apply_fn: un-batched model, ``apply_fn(params, x) -> [*o]``.
      params: pytree of parameters.
      x: batch of inputs ``[n, *d]``.
      precision: matmul precision used while tracing (default ``"highest"``).

    Returns:
      A pytree like ``params`` whose leaves have shape ``[n, *o, *leaf_shape]``.

    Example:
      >>> import jax.numpy as jnp, ldjax
      >>> f = lambda p, x: jnp.tanh(x @ p["w"])
      >>> j = ldjax.jacobian(f, {"w": jnp.ones((3, 2))}, jnp.ones((4, 3)))
      >>> j["w"].shape
      (4, 2, 3, 2)
    """
    with checks.precision_scope(precision):
        return jax.vmap(lambda xi: jax.jacrev(apply_fn)(params, xi))(x)


def _flat_jacobian(apply_fn: ApplyFn, params: Params, x: Any) -> list[jax.Array]:
    """Per-leaf Jacobians reshaped to ``[n, O, p_leaf]`` with ``O = prod(o)``."""
    jac = jax.vmap(lambda xi: jax.jacrev(lambda p: apply_fn(p, xi).reshape(-1))(params))(x)
    n = checks.batch_size(x)
    return [leaf.reshape(n, leaf.shape[1], -1) for leaf in jax.tree.leaves(jac)]


def _contract(j1: list[jax.Array], j2: list[jax.Array], trace: bool) -> jax.Array:
    return sum(_contract_leaves(j1, j2, trace))


def _contract_leaves(j1: list[jax.Array], j2: list[jax.Array], trace: bool) -> list[jax.Array]:
    spec = "iap,jap->ij" if trace else "iap,jbp->ijab"
    return [jnp.einsum(spec, a, b) for a, b in zip(j1, j2, strict=True)]


def _one_leaf(apply_fn: ApplyFn, params: Params, index: int) -> tuple[ApplyFn, jax.Array]:
    """``apply_fn`` as a function of parameter leaf ``index`` alone (the others held fixed)."""
    leaves, treedef = jax.tree.flatten(params)

    def f(leaf: jax.Array, x: Any) -> jax.Array:
        return apply_fn(jax.tree.unflatten(treedef, [*leaves[:index], leaf, *leaves[index + 1 :]]), x)

    return f, leaves[index]


def ntk_vector_product(
    apply_fn: ApplyFn,
    params: Params,
    x1: Float[Array, " n1 *d"],
    x2: Float[Array, " n2 *d"],
    v: Float[Array, " n2 *o"],
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


def _vector_products_ntk(apply_fn: ApplyFn, params: Params, x1: Any, x2: Any, trace: bool) -> jax.Array:
    f = batched(apply_fn)
    out_shape = jax.eval_shape(apply_fn, params, jax.tree.map(lambda a: a[0], x2)).shape
    size = math.prod(out_shape)
    basis = jnp.eye(size, dtype=jax.tree.leaves(params)[0].dtype).reshape((size, *out_shape))

    def column(xj, e):
        _, vjp = jax.vjp(lambda p: apply_fn(p, xj), params)
        (g,) = vjp(e)
        _, t = jax.jvp(lambda p: f(p, x1), (params,), (g,))
        return t.reshape(t.shape[0], size)  # [n1, O]: K[:, j, :, b]

    # lax.map over x2 keeps memory at O parameter-sized vectors; vmap over the output basis.
    cols = jax.lax.map(lambda xj: jax.vmap(lambda e: column(xj, e))(basis), x2)  # [n2, O_b, n1, O_a]
    kernel = jnp.transpose(cols, (2, 0, 3, 1))  # [n1, n2, O_a, O_b]
    if trace:
        return jnp.trace(kernel, axis1=2, axis2=3)
    return kernel


def empirical_ntk(
    apply_fn: ApplyFn,
    params: Params,
    x1: Float[Array, " n1 *d"],
    x2: Float[Array, " n2 *d"] | None = None,
    *,
    method: NtkMethod = "jacobian",
    trace: bool = False,
    per_layer: bool = False,
    precision: Precision = "highest",
) -> Float[Array, "n1 n2 *o *o"] | dict[str, Float[Array, "n1 n2 *o *o"]]:
    r"""Empirical neural tangent kernel :math:`K_{ij}^{ab} = \nabla_\theta z_a(x1_i) \cdot \nabla_\theta z_b(x2_j)`.

    ``apply_fn`` is written for ONE example; ldjax vmaps it. For a classifier (``[k]`` logits)
    the kernel is ``[n1, n2, k, k]``. For a sequence model (``[T, V]`` logits) every (position,
    vocabulary entry) pair is one output, so the kernel is ``[n1, n2, T, V, T, V]``:
    ``K[i, j, t, a, s, b]`` couples logit ``a`` at position ``t`` of ``x1_i`` with logit ``b`` at
    position ``s`` of ``x2_j`` (causal models give zero blocks for ``s > t``). To study one position,
    wrap ``apply_fn`` (e.g. ``lambda p, x: f(p, x)[-1]``).

    Args:
      apply_fn: un-batched model, ``apply_fn(params, x) -> [*o]``.
      params: pytree of parameters.
      x1: batch ``[n1, *d]``.
      x2: batch ``[n2, *d]``; ``None`` means ``x1`` (the Gram matrix).
      method: ``"jacobian"`` contracts materialised per-example Jacobians (memory
        ``n * O * p``); ``"vector_products"`` builds each column from one VJP and one JVP (memory
        ``O * p``); ``"structured"`` computes every layer's kernel from its inputs and output
        cotangents, :math:`\sum_{s,s'} \langle x_{i,s}, x_{j,s'}\rangle \langle \delta_{i,a,s},
        \delta_{j,b,s'}\rangle` (dense, convolution, embedding lookup, attention projections,
        biases, scales), or from materialised per-layer gradients when that costs fewer FLOPs, and
        falls back to Jacobian contraction for parameters used any other way. Exact, not an
        approximation; usually by far the fastest.
      trace: if true, return :math:`\sum_a K_{ij}^{aa}`, shape ``[n1, n2]``.
      per_layer: if true, return a dict ``{name: kernel}`` with one kernel per parameter leaf,
        named by its path in ``params`` (``"conv1/kernel"``); the kernels sum to the full kernel.
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
    if x2 is None:
        x2 = x1
    checks.check_batch(x1, "x1")
    checks.check_batch(x2, "x2")
    checks.check_same_examples(x1, "x1", x2, "x2")
    out_shape = checks.logits_shape(apply_fn, params, x1, "x1")
    n1, n2 = checks.batch_size(x1), checks.batch_size(x2)
    if method not in ("jacobian", "vector_products", "structured"):
        raise ValueError(f"method must be 'jacobian' or 'vector_products' or 'structured', got {method!r}")
    shape = (n1, n2) if trace else (n1, n2, *out_shape, *out_shape)
    with checks.precision_scope(precision):
        if method == "structured":
            per_leaf = structured.structured_ntk(apply_fn, params, x1, x2, trace, fold=not per_layer)
            if per_layer:
                return {name: k.reshape(shape) for name, k in per_leaf.items()}
            return sum(per_leaf.values()).reshape(shape)
        if not per_layer:
            if method == "jacobian":
                j1 = _flat_jacobian(apply_fn, params, x1)
                j2 = j1 if x2 is x1 else _flat_jacobian(apply_fn, params, x2)
                kernel = _contract(j1, j2, trace)
            else:
                kernel = _vector_products_ntk(apply_fn, params, x1, x2, trace)
            return kernel.reshape(shape)
        names = structured.leaf_names(params)
        if method == "jacobian":
            j1 = _flat_jacobian(apply_fn, params, x1)
            j2 = j1 if x2 is x1 else _flat_jacobian(apply_fn, params, x2)
            kernels = _contract_leaves(j1, j2, trace)
        else:
            kernels = [
                _vector_products_ntk(*_one_leaf(apply_fn, params, index), x1, x2, trace)
                for index in range(len(names))
            ]
        return {name: k.reshape(shape) for name, k in zip(names, kernels, strict=True)}

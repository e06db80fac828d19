r"""Per-example Jacobians of the logits and their contraction into kernels (the exact reference).

:math:`K_{ij}^{ab} = \sum_p J_{iap} J_{jbp}` with :math:`J_{iap} = \partial z_a(x_i) / \partial \theta_p`.
Every other NTK method is checked against this one, and the structured kernel falls back to it
for the parameters it cannot see through.
"""

import math
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
from jaxtyping import Array
from jaxtyping import Float
from jaxtyping import PyTree
from jaxtyping import Shaped

from ldjax._src import checks
from ldjax._src.typing import ApplyFn
from ldjax._src.typing import Params
from ldjax._src.typing import Precision


def jacobian(
    apply_fn: ApplyFn,
    params: Params,
    x: PyTree[Shaped[ArrayLike, " n ..."]],
    *,
    precision: Precision = "highest",
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


def flat_jacobian(apply_fn: ApplyFn, params: Params, x: Any) -> list[Float[Array, "n O p_leaf"]]:
    """:func:`jacobian` per leaf as ``[n, O, p_leaf]`` with ``O = prod(o)`` (at the ambient precision)."""
    jac = jacobian(apply_fn, params, x, precision=None)
    n = checks.batch_size(x)
    flat = []
    for j, leaf in zip(jax.tree.leaves(jac), jax.tree.leaves(params), strict=True):
        out_size = math.prod(j.shape[1 : j.ndim - jnp.ndim(leaf)])
        flat.append(j.reshape(n, out_size, -1))
    return flat


def contract(
    j1: Float[ArrayLike, "n1 O p"], j2: Float[ArrayLike, "n2 O p"], trace: bool
) -> Float[Array, "n1 n2 O O"] | Float[Array, "n1 n2"]:
    """``K[i, j, a, b] = Σ_p j1[i, a, p] j2[j, b, p]``; with ``trace`` only ``Σ_a K[i, j, a, a]``."""
    return jnp.einsum("iap,jap->ij" if trace else "iap,jbp->ijab", j1, j2)


def jacobian_kernels(
    apply_fn: ApplyFn, params: Params, x1: Any, x2: Any, trace: bool
) -> list[Float[Array, "n1 n2 O O"] | Float[Array, "n1 n2"]]:
    """One kernel per leaf of ``params`` by Jacobian contraction (``x2 is x1``: one Jacobian, a Gram)."""
    j1 = flat_jacobian(apply_fn, params, x1)
    j2 = j1 if x2 is x1 else flat_jacobian(apply_fn, params, x2)
    return [contract(a, b, trace) for a, b in zip(j1, j2, strict=True)]

r"""The two cotangents of a push, and the scalar model that carries them.

The first-order push of training example ``j`` (its share :math:`G_j` of an update's force, step size
:math:`\eta`) on probe ``o``'s :math:`\log\pi(y_o)` is

.. math:: -\eta\, [A(x_o)\, K(x_o, x_j)\, G_j]_{y_o}
          = \langle J(x_o)^\top w_o,\; J(x_j)^\top w_j \rangle,
          \qquad w_o = A(x_o)^\top e_{y_o}, \quad w_j = -\eta\, G_j,

(summed over the response tokens of a sequence): a kernel of the scalar model
:math:`f(\theta; x, w) = \langle w, z(\theta, x) \rangle` between ``(x_o, w_o)`` and ``(x_j, w_j)``.
:math:`w_o` is the gradient of :math:`\sum_t m_t \log\pi_t(y_t)` with respect to the logits, so the
A term is applied at the probe.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import optax
from jaxtyping import Array
from jaxtyping import Float
from jaxtyping import Int

from ldjax._src.first_order import batch_update
from ldjax._src.losses._base import softmax_minus_one_hot
from ldjax._src.typing import ApplyFn
from ldjax._src.typing import LossFn
from ldjax._src.typing import Params


def push_model(apply_fn: ApplyFn) -> ApplyFn:
    """The scalar model ``f(params, (x, w)) = [<w, apply_fn(params, x)>]`` (one output)."""

    def push(params: Params, example: tuple[Any, Array]) -> Array:
        x, w = example
        z = apply_fn(params, x)
        return jnp.sum(w.astype(z.dtype) * z)[None]

    return push


def probe_cotangent(
    logits: Float[Array, " n_o *o"], tokens: Int[Array, " n_o *t"], mask: Float[Array, " n_o *t"]
) -> Float[Array, " n_o *o"]:
    r""":math:`w_o = \partial/\partial z \sum_t m_t \log\pi_t(y_t) = m_t (e_{y_t} - \pi_t)`, i.e.
    :math:`A^\top (m\, e_y)` per position."""
    return -mask.astype(logits.dtype)[..., None] * softmax_minus_one_hot(logits, tokens)


def step_forces(
    apply_fn: ApplyFn,
    params: Params,
    x: Any,
    y: Any,
    learning_rate: Float[Array, ""],
    loss: LossFn,
) -> Float[Array, " B *o"]:
    r""":math:`w_j = -\eta\, G_j` for the examples of ONE update batch ``x`` ``[B, *d]`` (``G = ∂L/∂z``)."""
    g = batch_update(apply_fn, params, x, y, loss, _NO_UPDATE).g  # its unused VJP is dropped under jit
    return -learning_rate.astype(g.dtype) * g


_NO_UPDATE = optax.identity()

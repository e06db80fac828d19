"""A multilayer perceptron (flax NNX)."""

from collections.abc import Callable
from collections.abc import Sequence

import jax
from flax import nnx
from jax.typing import ArrayLike
from jaxtyping import Array
from jaxtyping import Float


class MLP(nnx.Module):
    """Fully connected network ``in_features → hidden[0] → ... → out_features`` (logits, no final activation).

    Inputs ``[b, *d]`` are flattened to ``[b, prod(d)]``, so images can be passed as they are.

    Args:
      in_features: ``prod(d)``, the size of one flattened example.
      hidden: widths of the hidden layers (may be empty: a linear model).
      out_features: number of logits ``k``.
      rngs: ``nnx.Rngs`` for the initialisation.
      activation: non-linearity after every hidden layer (default ReLU).

    Example:
      >>> import jax.numpy as jnp, ldjax
      >>> from flax import nnx
      >>> from ldjax.models import MLP
      >>> model = MLP(784, (32,), 10, rngs=nnx.Rngs(0))
      >>> model(jnp.ones((2, 28, 28))).shape
      (2, 10)
      >>> apply_fn, params = ldjax.from_nnx(model, example_shape=(28, 28))
      >>> apply_fn(params, jnp.ones((28, 28))).shape
      (10,)
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        out_features: int,
        *,
        rngs: nnx.Rngs,
        activation: Callable[[Array], Array] = jax.nn.relu,
    ):
        widths = [int(in_features), *(int(h) for h in hidden), int(out_features)]
        if any(w < 1 for w in widths):
            raise ValueError(
                f"in_features, hidden and out_features must be positive widths, got {in_features}, "
                f"{tuple(hidden)}, {out_features}"
            )
        self.in_features = widths[0]
        self.layers = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in zip(widths[:-1], widths[1:], strict=True)]
        )
        self.activation = activation

    def __call__(self, x: Float[ArrayLike, " b *d"]) -> Float[Array, "b k"]:
        x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.in_features:
            raise ValueError(
                f"x has {x.shape[1]} features per example (shape {x.shape}) but the MLP expects "
                f"in_features={self.in_features}"
            )
        for layer in self.layers[:-1]:
            x = self.activation(layer(x))
        return self.layers[-1](x)

"""LeNet-5 (flax NNX), channels last."""

import jax
from flax import nnx
from jax.typing import ArrayLike
from jaxtyping import Array
from jaxtyping import Float


def _pool(x: Array) -> Array:
    return nnx.max_pool(x, window_shape=(2, 2), strides=(2, 2))


class LeNet5(nnx.Module):
    """LeNet-5 as commonly used for MNIST: two 5x5 convolutions and three dense layers, ReLU, max-pooling.

    ``conv(in→6, 5x5, SAME) → ReLU → maxpool 2 → conv(6→16, 5x5, VALID) → ReLU → maxpool 2 →
    dense(16·s·s→120) → ReLU → dense(120→84) → ReLU → dense(84→k)`` with ``s = (input_size // 2 − 4) // 2``
    (``s = 5`` for 28x28 MNIST: the first convolution's padding keeps 28x28, as in the usual
    "padding=2" LeNet for MNIST).

    Smaller images: ``input_size`` must be at least 12 (so ``s >= 1``). scikit-learn's 8x8 digits are
    upsampled to 28x28 before they are fed to it (the experiments use ``jax.image.resize``,
    bilinear), which keeps one architecture for both data sets.

    Args:
      num_classes: number of logits ``k``.
      in_channels: channels of the input (1 grey, 3 RGB).
      rngs: ``nnx.Rngs`` for the initialisation.
      input_size: height = width of the input images.

    Example:
      >>> import jax.numpy as jnp, ldjax
      >>> from flax import nnx
      >>> from ldjax.models import LeNet5
      >>> model = LeNet5(rngs=nnx.Rngs(0))
      >>> model(jnp.ones((2, 28, 28, 1))).shape
      (2, 10)
      >>> apply_fn, params = ldjax.from_nnx(model, example_shape=(28, 28, 1))
      >>> apply_fn(params, jnp.ones((28, 28, 1))).shape
      (10,)
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, *, rngs: nnx.Rngs, input_size: int = 28):
        if num_classes < 1 or in_channels < 1:
            raise ValueError(
                f"num_classes and in_channels must be positive, got {num_classes}, {in_channels}"
            )
        side = (int(input_size) // 2 - 4) // 2
        if side < 1:
            raise ValueError(
                f"input_size must be >= 12 for LeNet5's two 5x5 convolutions and pools, got {input_size}; "
                "upsample small images (e.g. 8x8 digits to 28x28 with jax.image.resize)"
            )
        self.input_size = int(input_size)
        self.in_channels = int(in_channels)
        self.conv1 = nnx.Conv(in_channels, 6, kernel_size=(5, 5), padding="SAME", rngs=rngs)
        self.conv2 = nnx.Conv(6, 16, kernel_size=(5, 5), padding="VALID", rngs=rngs)
        self.fc1 = nnx.Linear(16 * side * side, 120, rngs=rngs)
        self.fc2 = nnx.Linear(120, 84, rngs=rngs)
        self.fc3 = nnx.Linear(84, num_classes, rngs=rngs)

    def __call__(self, x: Float[ArrayLike, "b h w c"]) -> Float[Array, "b k"]:
        expected = (self.input_size, self.input_size, self.in_channels)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"x must be a batch [b, {', '.join(map(str, expected))}] (NHWC), got shape {x.shape}"
            )
        x = _pool(jax.nn.relu(self.conv1(x)))
        x = _pool(jax.nn.relu(self.conv2(x)))
        x = x.reshape(x.shape[0], -1)
        x = jax.nn.relu(self.fc1(x))
        x = jax.nn.relu(self.fc2(x))
        return self.fc3(x)

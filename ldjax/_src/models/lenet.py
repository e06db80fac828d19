"""LeNet-5 (flax NNX), channels last: the classic ReLU/max-pool network and the authors' tanh/average-pool one."""

import math
from typing import Any
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import ArrayLike
from jaxtyping import Array
from jaxtyping import Float

Variant = Literal["relu", "tanh"]

#: Per variant: the activation, the pooling, the widths of the two hidden dense layers.
VARIANTS: dict[str, tuple[str, str, tuple[int, int]]] = {
    "relu": ("relu", "max", (120, 84)),
    "tanh": ("tanh", "avg", (60, 42)),
}


def _torch_uniform(fan_in: int) -> nnx.initializers.Initializer:
    """PyTorch's default initialisation of ``nn.Linear``/``nn.Conv2d``: U(−1/√fan_in, 1/√fan_in)."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def _avg_pool(x: Array, window_shape: tuple[int, int], strides: tuple[int, int]) -> Array:
    """flax's ``avg_pool`` (VALID, every window full) as a window sum over a Python count.

    flax divides by a NumPy integer, which JAX's strict dtype promotion refuses; a Python int is weakly typed.
    """
    return nnx.pool(x, 0.0, jax.lax.add, window_shape, strides, "VALID") / math.prod(window_shape)


class LeNet5(nnx.Module):
    """LeNet-5 for small images: two 5x5 convolutions, two 2x2 poolings, three dense layers.

    ``conv(in→6, 5x5, SAME) → act → pool 2 → conv(6→16, 5x5, VALID) → act → pool 2 →
    dense(16·s·s→h1) → act → dense(h1→h2) → act → dense(h2→k)`` with ``s = (input_size // 2 − 4) // 2``
    (``s = 5`` for 28x28 MNIST: the first convolution's padding keeps 28x28, as in the usual
    "padding=2" LeNet for MNIST). Two variants:

    * ``"relu"`` (default): ReLU, max-pooling, ``h1, h2 = 120, 84``, flax's default initialisation
      (LeCun-normal kernels, zero biases) — LeNet-5 as commonly used for MNIST.
    * ``"tanh"``: tanh, average pooling, ``h1, h2 = 60, 42`` and PyTorch's default initialisation
      (every kernel and bias uniform in ±1/√fan_in) — the network of Ren & Sutherland's MNIST example
      (ICLR 2025, Figure 1; the authors' notebook ``squeeze_effect.ipynb``, class ``LeNet``).

    Smaller images: ``input_size`` must be at least 12 (so ``s >= 1``). scikit-learn's 8x8 digits are
    upsampled to 28x28 before they are fed to it (the experiments use ``jax.image.resize``,
    bilinear), which keeps one architecture for both data sets.

    Args:
      num_classes: number of logits ``k``.
      in_channels: channels of the input (1 grey, 3 RGB).
      rngs: ``nnx.Rngs`` for the initialisation.
      input_size: height = width of the input images.
      variant: ``"relu"`` or ``"tanh"`` (see above).

    Example:
      >>> import jax.numpy as jnp, ldjax
      >>> from flax import nnx
      >>> from ldjax.models import LeNet5
      >>> model = LeNet5(rngs=nnx.Rngs(0), variant="tanh")
      >>> model(jnp.ones((2, 28, 28, 1))).shape
      (2, 10)
      >>> apply_fn, params = ldjax.from_nnx(model, example_shape=(28, 28, 1))
      >>> apply_fn(params, jnp.ones((28, 28, 1))).shape, params["fc2"]["kernel"].shape
      ((10,), (60, 42))
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        *,
        rngs: nnx.Rngs,
        input_size: int = 28,
        variant: Variant = "relu",
    ):
        if num_classes < 1 or in_channels < 1:
            raise ValueError(
                f"num_classes and in_channels must be positive, got {num_classes}, {in_channels}"
            )
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
        side = (int(input_size) // 2 - 4) // 2
        if side < 1:
            raise ValueError(
                f"input_size must be >= 12 for LeNet5's two 5x5 convolutions and pools, got {input_size}; "
                "upsample small images (e.g. 8x8 digits to 28x28 with jax.image.resize)"
            )
        self.input_size = int(input_size)
        self.in_channels = int(in_channels)
        self.variant = variant
        activation, pooling, (h1, h2) = VARIANTS[variant]
        self.activation = jax.nn.relu if activation == "relu" else jnp.tanh
        self.pool = nnx.max_pool if pooling == "max" else _avg_pool
        torch_init = variant == "tanh"

        def conv(c_in: int, c_out: int, padding: str) -> nnx.Conv:
            init = {}
            if torch_init:
                init = {"kernel_init": _torch_uniform(c_in * 25), "bias_init": _torch_uniform(c_in * 25)}
            return nnx.Conv(c_in, c_out, kernel_size=(5, 5), padding=padding, rngs=rngs, **init)

        def dense(d_in: int, d_out: int) -> nnx.Linear:
            init = (
                {"kernel_init": _torch_uniform(d_in), "bias_init": _torch_uniform(d_in)} if torch_init else {}
            )
            return nnx.Linear(d_in, d_out, rngs=rngs, **init)

        self.conv1 = conv(in_channels, 6, "SAME")
        self.conv2 = conv(6, 16, "VALID")
        self.fc1 = dense(16 * side * side, h1)
        self.fc2 = dense(h1, h2)
        self.fc3 = dense(h2, num_classes)

    def __call__(self, x: Float[ArrayLike, "b h w c"]) -> Float[Array, "b k"]:
        expected = (self.input_size, self.input_size, self.in_channels)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"x must be a batch [b, {', '.join(map(str, expected))}] (NHWC), got shape {x.shape}"
            )
        act = self.activation
        x = self.pool(act(self.conv1(x)), window_shape=(2, 2), strides=(2, 2))
        x = self.pool(act(self.conv2(x)), window_shape=(2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        x = act(self.fc1(x))
        x = act(self.fc2(x))
        return self.fc3(x)

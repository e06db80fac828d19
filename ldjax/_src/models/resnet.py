"""A small ResNet in flax NNX with GroupNorm (no batch statistics).

GroupNorm normalises each example on its own, so the logits of one example never depend on the
rest of the batch and per-example Jacobians / kernels are well defined.

Convolutions are written as patch extraction + one matrix product (im2col). On XLA:CPU a
convolution inside a loop body (``lax.scan``, as in :func:`ldjax.train`) runs about 12x slower
than the same convolution outside a loop (jax-ml/jax#12868; measured here: 0.91 s vs 0.08 s per
update of this model); matrix products do not suffer from it. The result is the same convolution
(tested against ``jax.lax.conv_general_dilated``).
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx


class PatchConv(nnx.Module):
    """``k×k`` convolution, stride ``s``, zero padding ``(k-1)//2``, no bias, NHWC, computed as im2col + matmul.

    The kernel has flax's layout ``[k, k, in, out]`` and flax's default (LeCun normal) initialisation.
    """

    def __init__(
        self, in_channels: int, out_channels: int, size: int = 3, stride: int = 1, *, rngs: nnx.Rngs
    ):
        init = nnx.initializers.lecun_normal()
        self.kernel = nnx.Param(init(rngs.params(), (size, size, in_channels, out_channels)))
        self.size = size
        self.stride = stride

    def __call__(self, x: jax.Array) -> jax.Array:
        k, s = self.size, self.stride
        pad = (k - 1) // 2
        if pad:
            x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        h = (x.shape[1] - k) // s + 1
        w = (x.shape[2] - k) // s + 1
        patches = [
            x[:, i : i + s * (h - 1) + 1 : s, j : j + s * (w - 1) + 1 : s, :]
            for i in range(k)
            for j in range(k)
        ]
        cols = jnp.concatenate(patches, axis=-1)  # [b, h, w, k*k*in], ordered like the kernel's (i, j, c)
        kernel = self.kernel[...]
        return cols @ kernel.reshape(-1, kernel.shape[-1])


def _norm(channels: int, groups: int, rngs: nnx.Rngs) -> nnx.GroupNorm:
    return nnx.GroupNorm(channels, num_groups=min(groups, channels), rngs=rngs)


class ResidualBlock(nnx.Module):
    """conv3x3 → GN → ReLU → conv3x3 → GN, plus a (1x1 conv + GN when the shape changes) shortcut, ReLU."""

    def __init__(self, in_channels: int, channels: int, stride: int, groups: int, *, rngs: nnx.Rngs):
        self.conv1 = PatchConv(in_channels, channels, 3, stride, rngs=rngs)
        self.norm1 = _norm(channels, groups, rngs)
        self.conv2 = PatchConv(channels, channels, 3, 1, rngs=rngs)
        self.norm2 = _norm(channels, groups, rngs)
        if stride != 1 or in_channels != channels:
            self.proj = PatchConv(in_channels, channels, 1, stride, rngs=rngs)
            self.proj_norm = _norm(channels, groups, rngs)
        else:
            self.proj = None
            self.proj_norm = None

    def __call__(self, x: jax.Array) -> jax.Array:
        h = jax.nn.relu(self.norm1(self.conv1(x)))
        h = self.norm2(self.conv2(h))
        short = x if self.proj is None else self.proj_norm(self.proj(x))
        return jax.nn.relu(h + short)


class ResNet(nnx.Module):
    """Small ResNet for 32×32 images: stem conv, ``len(widths)`` stages (stride 2 after the first), pool, linear.

    The default (widths 8-16-32, one block per stage, ~25k parameters) trains on a few thousand
    CIFAR images in minutes on two CPU cores; ``widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2)``
    is a ResNet-18 layout for a GPU.

    Args:
      num_classes: k.
      widths: channels of each stage.
      blocks: residual blocks per stage (same length as ``widths``).
      in_channels: image channels.
      groups: GroupNorm groups (capped at the channel count).
      rngs: ``nnx.Rngs``.

    Maps a batch ``[b, H, W, C]`` (NHWC, float) to logits ``[b, k]``.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from ldjax.models import ResNet
      >>> model = ResNet(3, widths=(8,), blocks=(1,), rngs=nnx.Rngs(0))  # one stage; the default has three
      >>> model(jnp.zeros((2, 16, 16, 3))).shape
      (2, 3)
    """

    def __init__(
        self,
        num_classes: int,
        *,
        widths: Sequence[int] = (8, 16, 32),
        blocks: Sequence[int] = (1, 1, 1),
        in_channels: int = 3,
        groups: int = 4,
        rngs: nnx.Rngs,
    ):
        if len(widths) != len(blocks) or not widths:
            raise ValueError(
                f"widths and blocks must be non-empty and of equal length, got {widths} and {blocks}"
            )
        self.stem = PatchConv(in_channels, widths[0], 3, 1, rngs=rngs)
        self.stem_norm = _norm(widths[0], groups, rngs)
        layers = []
        c = widths[0]
        for i, (w, nb) in enumerate(zip(widths, blocks, strict=True)):
            for j in range(nb):
                layers.append(ResidualBlock(c, w, 2 if (i > 0 and j == 0) else 1, groups, rngs=rngs))
                c = w
        self.layers = nnx.List(layers)
        self.head = nnx.Linear(c, num_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4:
            raise ValueError(f"ResNet expects a batch [b, H, W, C], got shape {x.shape}")
        h = jax.nn.relu(self.stem_norm(self.stem(x)))
        for layer in self.layers:
            h = layer(h)
        return self.head(h.mean(axis=(1, 2)))

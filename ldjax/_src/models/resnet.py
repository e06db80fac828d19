"""A small pre-activation-free ResNet in flax NNX with GroupNorm (no batch statistics).

GroupNorm normalises each example on its own, so the logits of one example never depend on the
rest of the batch and per-example Jacobians / kernels are well defined.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
from flax import nnx


def _norm(channels: int, groups: int, rngs: nnx.Rngs) -> nnx.GroupNorm:
    return nnx.GroupNorm(channels, num_groups=min(groups, channels), rngs=rngs)


class ResidualBlock(nnx.Module):
    """conv3x3 → GN → ReLU → conv3x3 → GN, plus a (1x1 conv + GN when the shape changes) shortcut, ReLU."""

    def __init__(self, in_channels: int, channels: int, stride: int, groups: int, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(in_channels, channels, (3, 3), strides=stride, padding=1, use_bias=False, rngs=rngs)
        self.norm1 = _norm(channels, groups, rngs)
        self.conv2 = nnx.Conv(channels, channels, (3, 3), padding=1, use_bias=False, rngs=rngs)
        self.norm2 = _norm(channels, groups, rngs)
        if stride != 1 or in_channels != channels:
            self.proj = nnx.Conv(in_channels, channels, (1, 1), strides=stride, use_bias=False, rngs=rngs)
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
      >>> ResNet(3, rngs=nnx.Rngs(0))(jnp.zeros((2, 32, 32, 3))).shape
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
            raise ValueError(f"widths and blocks must be non-empty and of equal length, got {widths} and {blocks}")
        self.stem = nnx.Conv(in_channels, widths[0], (3, 3), padding=1, use_bias=False, rngs=rngs)
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

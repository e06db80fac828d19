"""Tiny models in the styles people write, modelled on public code (float64, for the adapter tests).

- NNX CNN with BatchNorm and Dropout whose ``__call__`` takes ``rngs`` (as flax's examples/mnist);
- NNX stack of blocks built with ``nnx.vmap`` and applied with ``nnx.scan`` (flax's scan-over-layers toy);
- linen ResNet-style block with ``BatchNorm(use_running_average=not train, axis_name="batch")`` and
  ``batch_stats`` (as flax's examples/imagenet);
- linen two-input encoder-decoder ``__call__(inputs, targets)`` returning ``[T, V]`` (as examples/wmt);
- equinox CNN (Conv2d, MaxPool2d, Linear in a list with ``jax.nn.relu`` and ``jnp.ravel``: equinox's
  documented MNIST CNN) and a GRU cell run by ``lax.scan`` (equinox's RNN example).

Written for these tests; sizes are tiny so that every method compiles fast.
"""

from __future__ import annotations

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import nnx

F64 = jnp.float64


class NnxCnn(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(1, 3, kernel_size=(3, 3), param_dtype=F64, rngs=rngs)
        self.batch_norm1 = nnx.BatchNorm(3, param_dtype=F64, rngs=rngs)
        self.batch_norm1.mean = nnx.BatchStat(jnp.zeros(3, F64))  # flax keeps statistics in float32
        self.batch_norm1.var = nnx.BatchStat(jnp.ones(3, F64))
        self.dropout1 = nnx.Dropout(rate=0.25)
        self.linear1 = nnx.Linear(3 * 3 * 3, 5, param_dtype=F64, rngs=rngs)
        self.dropout2 = nnx.Dropout(rate=0.25)
        self.linear2 = nnx.Linear(5, 3, param_dtype=F64, rngs=rngs)

    def __call__(self, x, rngs: nnx.Rngs):  # [b, 6, 6, 1]
        x = nnx.avg_pool(
            nnx.relu(self.batch_norm1(self.dropout1(self.conv1(x), rngs=rngs))), (2, 2), strides=(2, 2)
        )
        x = x.reshape(x.shape[0], -1)
        x = nnx.tanh(self.dropout2(self.linear1(x), rngs=rngs))
        return self.linear2(x)


class Block(nnx.Module):
    def __init__(self, dim: int, *, rngs: nnx.Rngs):
        self.linear = nnx.Linear(dim, dim, param_dtype=F64, rngs=rngs)
        self.bn = nnx.BatchNorm(dim, param_dtype=F64, rngs=rngs)
        self.dropout = nnx.Dropout(0.5, rngs=rngs)

    def __call__(self, x):
        return jax.nn.gelu(self.dropout(self.bn(self.linear(x))))


class ScanMLP(nnx.Module):
    def __init__(self, dim: int, *, n_layers: int, rngs: nnx.Rngs):
        @nnx.split_rngs(splits=n_layers)
        @nnx.vmap(axis_size=n_layers)
        def create_block(rngs: nnx.Rngs):
            return Block(dim, rngs=rngs)

        self.layers = create_block(rngs)

    def __call__(self, x):
        @nnx.scan
        def scan_fn(x, block):
            return block(x), None

        x, _ = scan_fn(x, self.layers)
        return x


class LinenResNet(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = True):
        norm = lambda: nn.BatchNorm(  # noqa: E731
            use_running_average=not train, momentum=0.9, axis_name="batch", param_dtype=F64
        )
        x = nn.relu(norm()(nn.Conv(2, (3, 3), use_bias=False, param_dtype=F64)(x)))
        y = norm()(nn.Conv(2, (3, 3), use_bias=False, param_dtype=F64)(x))
        x = nn.relu(x + y)
        return nn.Dense(3, param_dtype=F64)(jnp.mean(x, axis=(1, 2)))


class LinenSeq2Seq(nn.Module):
    vocab: int = 5

    @nn.compact
    def __call__(self, inputs, targets, deterministic: bool = True):
        embed = nn.Embed(self.vocab, 4, param_dtype=F64)
        memory = jnp.tanh(nn.Dense(4, param_dtype=F64)(embed(inputs))).mean(axis=1, keepdims=True)
        h = nn.Dropout(0.1, deterministic=deterministic)(embed(targets) + memory)
        h = jnp.tanh(nn.Dense(4, param_dtype=F64)(h))
        return embed.attend(h)  # [b, T, V]


class EqxCnn(eqx.Module):
    layers: list

    def __init__(self, key):
        k1, k2, k3 = jax.random.split(key, 3)
        self.layers = [
            eqx.nn.Conv2d(1, 2, kernel_size=3, key=k1, dtype=F64),
            eqx.nn.MaxPool2d(kernel_size=2),
            jax.nn.relu,
            jnp.ravel,
            eqx.nn.Linear(2 * 3 * 3, 6, key=k2, dtype=F64),
            jax.nn.sigmoid,
            eqx.nn.Linear(6, 3, key=k3, dtype=F64),
        ]

    def __call__(self, x):  # [1, 6, 6]: equinox convolutions are channels-first, one example
        for layer in self.layers:
            x = layer(x)
        return x


class EqxRnn(eqx.Module):
    cell: eqx.nn.GRUCell
    linear: eqx.nn.Linear
    bias: jax.Array

    def __init__(self, in_size, hidden, out_size, key):
        k1, k2 = jax.random.split(key)
        self.cell = eqx.nn.GRUCell(in_size, hidden, key=k1, dtype=F64)
        self.linear = eqx.nn.Linear(hidden, out_size, use_bias=False, key=k2, dtype=F64)
        self.bias = jnp.zeros(out_size, F64)

    def __call__(self, xs):  # [T, in_size]
        def step(carry, x):
            return self.cell(x, carry), None

        out, _ = jax.lax.scan(step, jnp.zeros(self.cell.hidden_size, F64), xs)
        return self.linear(out) + self.bias

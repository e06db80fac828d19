"""One-hot training of :mod:`ldjax._src.experiments.cifar3_paths`: the GroupNorm ResNet, its optimizer and one
compiled run of every seed (:func:`~ldjax._src.experiments.fitting.fit`)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from ldjax._src.adapters import from_nnx
from ldjax._src.experiments.cifar3_paths.config import Config
from ldjax._src.experiments.cifar3_paths.data import Splits
from ldjax._src.experiments.fitting import Fit
from ldjax._src.experiments.fitting import Members
from ldjax._src.experiments.fitting import fit
from ldjax._src.experiments.fitting import initial_members
from ldjax._src.experiments.fitting import repeat
from ldjax._src.experiments.fitting import stack
from ldjax._src.models.resnet import ResNet
from ldjax._src.typing import Params


def make_resnet(config: Config, k: int, key: jax.Array) -> tuple[Callable, Params]:
    """``(apply_fn, params)`` of a fresh GroupNorm ResNet: ``k`` outputs, ``config``'s layout."""
    seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
    model = ResNet(k, widths=config.widths, blocks=config.blocks, rngs=nnx.Rngs(seed))
    return from_nnx(model, example_shape=(32, 32, 3))


def optimizer_for(config: Config) -> optax.GradientTransformation:
    """SGD with momentum (``optimizer="sgd"``) or Adam (``"adam"``), with L2 weight decay."""
    if config.optimizer == "sgd":
        base = optax.sgd(config.learning_rate, momentum=config.momentum)
    elif config.optimizer == "adam":
        base = optax.adam(config.learning_rate)
    else:
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {config.optimizer!r}")
    return optax.chain(optax.add_decayed_weights(config.weight_decay), base)


def train_paths(config: Config, splits: Splits, seeds: list[int], *, progress: bool) -> tuple[Callable, Fit]:
    """One-hot training of one member per seed; train logits, val accuracy and params at every record."""
    k = len(config.classes)
    apply_fn, params, keys = initial_members(functools.partial(make_resnet, config, k), seeds)
    tr, va = splits.train, splits.val
    m = len(seeds)
    members = Members(
        x=repeat(tr.x, m), targets=repeat(np.eye(k)[tr.y], m), x_val=repeat(va.x, m), y_val=repeat(va.y, m)
    )
    run_ = fit(
        apply_fn,
        stack(params),
        members,
        keys=jnp.stack(keys),
        epochs=config.epochs,
        batch_size=config.batch_size,
        optimizer=optimizer_for(config),
        records_per_epoch=config.records_per_epoch,
        record_train=True,
        keep_params=True,
        augment=config.augment,
        chunk=200,
        progress=progress,
        desc="cifar3",
    )
    return apply_fn, run_

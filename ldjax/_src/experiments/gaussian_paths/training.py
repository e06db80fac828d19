"""One-hot training, distillation and noisy targets on the toy as members of one compiled run
(:func:`~ldjax._src.experiments.fitting.fit`): the MLP, its optimizer and the members' data."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from ldjax._src.adapters import from_nnx
from ldjax._src.experiments.fitting import Fit
from ldjax._src.experiments.fitting import Members
from ldjax._src.experiments.fitting import fit
from ldjax._src.experiments.fitting import stack
from ldjax._src.experiments.gaussian_paths.toy import Config
from ldjax._src.experiments.gaussian_paths.toy import SeedData
from ldjax._src.models.mlp import MLP
from ldjax._src.typing import Params


def make_mlp(dim: int, hidden: int, k: int, key: jax.Array) -> tuple[Callable, Params]:
    """``(apply_fn, params)`` of a fresh ``dim-hidden-hidden-k`` MLP."""
    seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
    return from_nnx(MLP(dim, (hidden, hidden), k, rngs=nnx.Rngs(seed)), example_shape=(dim,))


def optimizer_for(config: Config) -> optax.GradientTransformation:
    """The authors' optimizer of Part 1: SGD with momentum."""
    return optax.sgd(config.learning_rate, momentum=config.momentum)


def train_members(
    config: Config,
    apply_fn: Callable,
    params: list[Params],
    keys: list,
    datas: list[SeedData],
    targets: list[jax.Array],
    *,
    progress: bool,
    desc: str,
    probes: list[np.ndarray] | None = None,
    **kwargs: Any,
) -> Fit:
    """Train one member per (seed data, initialisation, key, targets): with validation and a record
    per epoch, or, with ``probes`` (training indices per member), the probes' softmax after every update."""
    validation = probes is None
    members = Members(
        x=jnp.stack([d.split.train.x for d in datas]),
        targets=jnp.stack(targets),
        x_val=jnp.stack([d.split.val.x for d in datas]) if validation else None,
        y_val=jnp.stack([d.split.val.y for d in datas]) if validation else None,
        probes=None
        if validation
        else jnp.stack([d.split.train.x[i] for d, i in zip(datas, probes, strict=True)]),
    )
    per_epoch = datas[0].split.train.x.shape[0] // config.batch_size
    return fit(
        apply_fn,
        stack(params),
        members,
        keys=jnp.stack(keys),
        epochs=config.epochs,
        batch_size=config.batch_size,
        optimizer=optimizer_for(config),
        records_per_epoch=1 if validation else per_epoch,
        progress=progress,
        desc=desc,
        **kwargs,
    )

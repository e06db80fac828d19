"""Model and training of :mod:`ldjax._src.experiments.mnist_force`: the LeNet of each seed, the optimizer, and
:func:`ldjax.train` with the per-epoch recorder and the per-update force accumulation."""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jaxtyping import Array
from jaxtyping import Int

from ldjax._src.adapters import from_nnx
from ldjax._src.experiments.mnist_force.config import MODELS
from ldjax._src.experiments.mnist_force.config import NUM_CLASSES
from ldjax._src.experiments.mnist_force.config import SIDE
from ldjax._src.experiments.mnist_force.config import Config
from ldjax._src.experiments.mnist_force.data import MnistData
from ldjax._src.first_order import probe_change
from ldjax._src.losses.classification import cross_entropy
from ldjax._src.models.lenet import LeNet5
from ldjax._src.ntk import batched
from ldjax._src.training import TrainResult
from ldjax._src.training import epoch_batches
from ldjax._src.training import train
from ldjax._src.typing import ApplyFn
from ldjax._src.typing import Params


def init_models(config: Config, keys: list[jax.Array]) -> tuple[ApplyFn, list[Params]]:
    """One ``apply_fn`` (the same graph for every seed, so every jitted analysis compiles once) and the
    initial parameters of each seed."""
    apply_fn, inits = None, []
    for key in keys:
        rngs = nnx.Rngs(int(jax.random.randint(key, (), 0, 2**31 - 1)))
        model = LeNet5(NUM_CLASSES, 1, rngs=rngs, variant=MODELS[config.model])
        fn, params = from_nnx(model, example_shape=(SIDE, SIDE, 1))
        apply_fn = apply_fn or fn
        inits.append(params)
    return apply_fn, inits


def learning_rate_schedule(config: Config, steps_per_epoch: int) -> optax.Schedule:
    """PyTorch's ``CosineAnnealingLR(T_max=epochs, eta_min=final_learning_rate)`` stepped once per epoch."""
    if config.schedule == "constant":
        return optax.constant_schedule(config.learning_rate)
    top, floor, epochs = config.learning_rate, config.final_learning_rate, config.epochs

    def schedule(step: Array) -> Array:
        epoch = jnp.asarray(step // steps_per_epoch, jnp.float32)
        return floor + (top - floor) * (1 + jnp.cos(math.pi * epoch / epochs)) / 2

    return schedule


def make_optimizer(config: Config, steps_per_epoch: int) -> optax.GradientTransformation:
    """SGD with momentum and PyTorch-style weight decay (added to the gradient before the momentum)."""
    return optax.chain(
        optax.add_decayed_weights(config.weight_decay),
        optax.sgd(learning_rate_schedule(config, steps_per_epoch), momentum=config.momentum),
    )


def _train_loss(apply_fn: ApplyFn, params: Params, idx: Int[Array, " b"], data: dict[str, Array]) -> Array:
    """Cross-entropy of the minibatch ``idx`` of the training images."""
    return cross_entropy(batched(apply_fn)(params, data["x"][idx]), data["y"][idx])


def _record(
    apply_fn: ApplyFn, n_acc: int, params: Params, step: Array, data: dict[str, Array]
) -> dict[str, Any]:
    """Recorded every epoch: the parameters, the probe accuracy, log π of the accumulation probes and the
    mean prediction on the probes of each class ``[10, 10]``."""
    del step
    z = batched(apply_fn)(params, data["x_probe"])
    onehot = jax.nn.one_hot(data["y_probe"], NUM_CLASSES)
    return {
        "params": params,
        "accuracy": jnp.mean(jnp.argmax(z, -1) == data["y_probe"]),
        "log_probs": jax.nn.log_softmax(z[:n_acc], axis=-1),
        "class_probs": (onehot.T @ jax.nn.softmax(z, axis=-1)) / jnp.sum(onehot, axis=0)[:, None],
    }


def _accumulate(
    apply_fn: ApplyFn, n_acc: int, params: Params, idx: Array, updates: Params, data: dict[str, Array]
) -> Array:
    """The first-order change ``A·J(x_o)·u`` of the optimizer's update ``u`` on the accumulation probes."""
    del idx
    return probe_change(apply_fn, params, updates, data["x_probe"][:n_acc])[0]


def train_with_recorder(
    apply_fn: ApplyFn,
    params: Params,
    data: MnistData,
    config: Config,
    key: jax.Array,
    *,
    n_acc: int,
    progress: bool,
) -> TrainResult:
    """Train one seed with :func:`ldjax.train`, recording every epoch and, with ``n_acc > 0``, summing the
    first-order force of every update on the first ``n_acc`` probes.

    Args:
      apply_fn: the model, one example at a time.
      params: the initial parameters.
      data: the training subset and the probes.
      config: the optimizer's settings and the number of epochs.
      key: PRNG key of the minibatch order.
      n_acc: probes that receive the per-update force (0: none).
      progress: show a progress bar.

    Returns:
      :class:`ldjax.TrainResult`: ``records`` are ``params``, ``accuracy``, ``log_probs`` (of the first
      ``n_acc`` probes) and ``class_probs`` after every epoch (entry 0 before training); ``accumulated`` the
      per-epoch sums of the first-order force ``[epochs, n_acc, k]`` (``None`` when ``n_acc`` is 0).
    """
    n_train = len(data.y_train)
    steps_per_epoch = n_train // config.batch_size
    arrays = {
        "x": data.x_train,
        "y": jnp.asarray(data.y_train),
        "x_probe": data.x_probe,
        "y_probe": jnp.asarray(data.y_probe),
    }
    return train(
        functools.partial(_train_loss, apply_fn),
        params,
        make_optimizer(config, steps_per_epoch),
        epoch_batches(key, n_train, config.batch_size, config.epochs),
        record=functools.partial(_record, apply_fn, n_acc),
        accumulate=functools.partial(_accumulate, apply_fn, n_acc) if n_acc else None,
        every=steps_per_epoch,
        data=arrays,
        progress=progress,
        desc="LeNet-5",
    )

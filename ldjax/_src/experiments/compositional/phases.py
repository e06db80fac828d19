"""The phases of :mod:`ldjax._src.experiments.compositional`: the paired runs, the one training loop that
decomposes every update, the influence maps at initialisation, and the results."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array

from ldjax._src.experiments.compositional.forces import PARTS
from ldjax._src.experiments.compositional.forces import RELATIONS
from ldjax._src.experiments.compositional.forces import influence_map
from ldjax._src.experiments.compositional.forces import relation_means
from ldjax._src.experiments.compositional.forces import update_forces
from ldjax._src.experiments.compositional.report import learned_epochs
from ldjax._src.experiments.compositional.task import MAPS
from ldjax._src.experiments.compositional.task import Config
from ldjax._src.experiments.compositional.task import build_model
from ldjax._src.experiments.compositional.task import make_task
from ldjax._src.experiments.compositional.task import objects
from ldjax._src.losses.classification import cross_entropy
from ldjax._src.training import TrainResult
from ldjax._src.training import epoch_batches
from ldjax._src.training import train


class Runs(NamedTuple):
    """Every mapping of every seed as copies of one model (copy ``m·S + k``: mapping ``m``, seed ``k``)."""

    tasks: list[dict[str, np.ndarray]]  # make_task of every seed
    factors: np.ndarray  # [C, 2]
    apply_fn: Callable[..., Array]
    params: Any  # stacked over copies
    train_mask: np.ndarray  # [S, C]
    noisy: np.ndarray  # [S, C]
    data: dict[str, Any]  # {"x": [C, d], "copy": {"labels", "train", "noisy"} stacked over copies}
    order: np.ndarray  # [steps, S, B] the same minibatch order for every mapping of a seed
    n: int  # training objects per seed


def make_runs(config: Config) -> Runs:
    """The tasks, initialisations, masks and minibatch orders of every copy, after checking the settings."""
    if config.seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {config.seeds}")
    S, M = config.seeds, len(MAPS)
    factors, x = objects(config.values)
    tasks = [make_task(config, k) for k in range(S)]
    n = len(tasks[0]["train_idx"])
    if not 1 <= config.batch_size <= n:
        raise ValueError(f"batch_size must be in [1, {n}] (the training objects), got {config.batch_size}")
    apply_fn = build_model(config, 0)[0]
    inits = [build_model(config, k)[1] for k in range(S)]
    params = jax.tree.map(lambda *a: jnp.stack(a), *[inits[k] for _ in MAPS for k in range(S)])
    train_mask = np.zeros((S, len(factors)), np.float32)
    for k, t in enumerate(tasks):
        train_mask[k, t["train_idx"]] = 1.0
    noisy = np.stack([t["noisy"] for t in tasks])
    copies = {
        "labels": jnp.asarray(np.concatenate([np.stack([t["labels"][m] for t in tasks]) for m in range(M)])),
        "train": jnp.asarray(np.concatenate([train_mask] * M)),
        "noisy": jnp.asarray(np.concatenate([noisy * (name == "noisy") for name in MAPS]).astype(np.float32)),
    }
    order = np.stack(
        [
            t["train_idx"][
                np.asarray(
                    epoch_batches(jax.random.key(config.seed + k), n, config.batch_size, config.epochs)
                )
            ]
            for k, t in enumerate(tasks)
        ],
        axis=1,
    )
    data = {"x": jnp.asarray(x), "copy": copies}
    return Runs(tasks, factors, apply_fn, params, train_mask, noisy, data, order, n)


def _over_copies(fn: Any) -> Any:
    """``fn(params, *per_copy_args, copy_data)`` over the stacked copies; ``x`` is shared by all of them."""

    def over(params: Any, *args: Any) -> Any:
        *rest, data = args

        def one(p: Any, *a: Any) -> Any:
            return fn(p, *a[:-1], {"x": data["x"], **a[-1]})

        return jax.vmap(one)(params, *rest, data["copy"])

    return over


def _copy_loss(batched: Callable[..., Array], p: Any, b: Array, d: dict) -> Array:
    return cross_entropy(batched(p, d["x"][b]), d["labels"][b])


def _copy_correct(batched: Callable[..., Array], p: Any, d: dict) -> Array:
    return jnp.all(jnp.argmax(batched(p, d["x"]), -1) == d["labels"], -1)


def _loss(batched: Callable[..., Array], params: Any, batch: Any, data: dict) -> Array:
    """The copies' losses summed: each copy gets its own gradient."""
    return jnp.sum(_over_copies(functools.partial(_copy_loss, batched))(params, batch, data))


def _record(batched: Callable[..., Array], params: Any, step: Any, data: dict) -> Array:
    """Which objects every copy answers right (both tokens), ``[copies, C]``."""
    del step
    return _over_copies(functools.partial(_copy_correct, batched))(params, data)


def _accumulate(
    apply_fn: Callable[..., Array], eta: float, params: Any, batch: Any, updates: Any, data: dict
):
    """:func:`~ldjax._src.experiments.compositional.forces.update_forces` of every copy's update."""
    return _over_copies(functools.partial(update_forces, apply_fn, eta))(params, batch, updates, data)


def train_copies(config: Config, runs: Runs, progress: bool) -> TrainResult:
    """All copies in one :func:`ldjax.train` loop (plain SGD), recorded every epoch, every update decomposed."""
    batched = jax.vmap(runs.apply_fn, (None, 0))
    return train(
        functools.partial(_loss, batched),
        runs.params,
        optax.sgd(config.learning_rate),
        jnp.asarray(np.concatenate([runs.order] * len(MAPS), axis=1)),
        record=functools.partial(_record, batched),
        accumulate=functools.partial(_accumulate, runs.apply_fn, config.learning_rate),
        every=runs.n // config.batch_size,
        data=runs.data,
        progress=progress,
        desc="compositional",
    )


def _copy_influence(apply_fn: Callable[..., Array], eta: float, x: Array, p: Any, d: dict, idx: Array):
    return influence_map(apply_fn, eta, p, {"x": x, **d}, idx)


class Influence(NamedTuple):
    """The influence maps at initialisation and their means per relation."""

    maps: np.ndarray  # [M, S, n, C]
    influence: np.ndarray  # [M, S, len(RELATIONS)]; for ``noisy`` over its clean updaters
    noisy_updaters: np.ndarray  # [S, len(RELATIONS)]


def influence_at_init(config: Config, runs: Runs) -> Influence:
    """:func:`influence_map` of every copy at initialisation, and :func:`relation_means` per seed."""
    S, M, n = config.seeds, len(MAPS), runs.n
    train_idx = np.stack([t["train_idx"] for t in runs.tasks])
    one = functools.partial(_copy_influence, runs.apply_fn, config.learning_rate, runs.data["x"])
    maps = jax.jit(jax.vmap(one))(
        runs.params, runs.data["copy"], jnp.asarray(np.concatenate([train_idx] * M))
    )
    maps = np.asarray(maps).reshape(M, S, n, len(runs.factors))
    influence = np.zeros((M, S, len(RELATIONS)))
    noisy_updaters = np.full((S, len(RELATIONS)), np.nan)
    for k, t in enumerate(runs.tasks):
        clean, trained_k = ~t["noisy"][t["train_idx"]], runs.train_mask[k] > 0
        for m, name in enumerate(MAPS):
            rows = clean if name == "noisy" else np.ones_like(clean)
            influence[m, k] = relation_means(maps[m, k][rows], runs.factors, t["train_idx"][rows], trained_k)
        if (~clean).any():
            noisy_map = maps[MAPS.index("noisy"), k][~clean]
            noisy_updaters[k] = relation_means(noisy_map, runs.factors, t["train_idx"][~clean], trained_k)
    return Influence(maps, influence, noisy_updaters)


def _accuracy(c: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``[R, S, C]`` correct, ``[S, C]`` mask -> ``[R, S]`` accuracy over the masked objects."""
    return np.sum(c * mask, -1) / np.maximum(mask.sum(-1), 1)


def collect(config: Config, runs: Runs, result: TrainResult, influence: Influence) -> dict[str, Any]:
    """The results of :func:`ldjax._src.experiments.compositional.run` (its docstring lists them)."""
    S, M, n, C = config.seeds, len(MAPS), runs.n, len(runs.factors)
    correct = np.asarray(result.records).reshape(-1, M, S, C).swapaxes(0, 1)  # [M, R, S, C]
    trained, noisy = runs.train_mask.astype(bool), runs.noisy
    sums = {key: np.asarray(v) for key, v in result.accumulated.items()}
    sums = {key: v.reshape(v.shape[0], M, S, *v.shape[2:]).swapaxes(0, 1) for key, v in sums.items()}
    learned = np.stack([learned_epochs(correct[m]) for m in range(M)])
    train_idx = np.stack([t["train_idx"] for t in runs.tasks])
    return {
        "dataset": f"synthetic two-factor objects ({config.values} x {config.values}, two-hot inputs, two-token "
        f"answers): {n} training / {C - n} held-out objects per seed, {config.seeds} paired seeds",
        "maps": list(MAPS),
        "parts": list(PARTS),
        "relations": list(RELATIONS),
        "seeds": S,
        "epochs": config.epochs,
        "train_accuracy": np.stack([_accuracy(c, trained) for c in correct]),
        "heldout_accuracy": np.stack([_accuracy(c, ~trained) for c in correct]),
        "noisy_row_accuracy": np.stack(
            [_accuracy(correct[MAPS.index("noisy")], mask) for mask in (trained & ~noisy, noisy)]
        ),
        "learned_epoch": np.where(trained[None], learned, -1),
        **sums,
        "influence": influence.influence,
        "influence_noisy_updaters": influence.noisy_updaters,
        "influence_map": np.round(influence.maps[:2, 0][:, :, train_idx[0]], 6),  # seed 0, training objects
        "influence_train_idx": train_idx[0],
        "factors": runs.factors,
        "train": trained,
        "noisy": noisy,
    }

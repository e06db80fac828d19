"""The phases of :mod:`ldjax._src.experiments.head_probing` after pre-training.

:func:`probe_heads` (every seed's new head trained on the frozen features, recorded every epoch),
:func:`start_stats` (the energy and the probed head's accuracy at the start of fine-tuning),
:func:`fine_tune` (every (seed, τ) run in one loop, the features measured every epoch by
:func:`feature_measures`) and :func:`first_update` (the first fine-tuning update decomposed).
"""

from __future__ import annotations

import functools
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jaxtyping import Array

from ldjax._src.experiments.head_probing.world import TARGET_CLASSES
from ldjax._src.experiments.head_probing.world import Config
from ldjax._src.experiments.head_probing.world import Model
from ldjax._src.experiments.head_probing.world import Splits
from ldjax._src.features import energy
from ldjax._src.features import feature_decomposition
from ldjax._src.features import feature_step_fn
from ldjax._src.losses.classification import cross_entropy
from ldjax._src.training import epoch_batches
from ldjax._src.training import train

TRAIN_SUBSET = 256
"""Training images on which the head's gradient norm and the energy are measured during fine-tuning."""


def _with_head(backbone: Any, head: Any) -> dict[str, Any]:
    return {"backbone": backbone, "head": head}


def _probe_loss(model: Model, backbone: Any, stacked: Any, idx: Array, d: dict[str, Array]) -> Array:
    """The seeds' losses summed: each head gets its own gradient."""
    one = lambda head, i: cross_entropy(model.heads(_with_head(backbone, head), d["h"][i]), d["y"][i])  # noqa: E731
    return jnp.sum(jax.vmap(one)(stacked, idx))


def probe_heads(config: Config, model: Model, pre_params: Any, splits: Splits, progress: bool) -> Any:
    """Head probing on the frozen features: one run per seed (SGD with momentum, constant learning rate),
    the head recorded every epoch; returns the heads at every τ, ``[S, T, ...]``."""
    seeds, taus, k = config.seeds, tuple(config.hp_epochs), len(TARGET_CLASSES)
    n_train = splits.x_ft.shape[0]
    new_heads = jax.tree.map(
        lambda *leaves: jnp.stack(leaves),
        *[nnx.to_pure_dict(nnx.state(nnx.Linear(config.feature_dim, k, rngs=nnx.Rngs(1000 + s)), nnx.Param)) for s in range(seeds)],
    )  # fmt: skip
    h_train = model.features(pre_params, splits.x_ft)
    hp_batches = jnp.stack(
        [epoch_batches(jax.random.key(2000 + s), n_train, config.batch_size, max(taus[-1], 1)) for s in range(seeds)],
        axis=1,
    )  # fmt: skip
    probed = train(
        functools.partial(_probe_loss, model, pre_params["backbone"]), new_heads,
        optax.sgd(config.hp_learning_rate, momentum=config.momentum), hp_batches,
        record=lambda stacked, step, d: stacked, every=n_train // config.batch_size,
        data={"h": h_train, "y": splits.y_ft}, progress=progress, desc="head probing",
    )  # fmt: skip
    return jax.tree.map(lambda r: jnp.swapaxes(r[np.asarray(taus)], 0, 1), probed.records)


def _head_stats(model: Model, backbone: Any, h_train: Array, splits: Splits, head: Any) -> dict[str, Array]:
    p = _with_head(backbone, head)
    z = model.heads(p, h_train)
    e = energy(z, splits.y_ft)
    return {
        "energy": e.mean,
        "energy_gap": e.mean_gap,
        "train_accuracy": jnp.mean(jnp.argmax(z, -1) == splits.y_ft),
        "test_accuracy": jnp.mean(jnp.argmax(model.logits(p, splits.x_test), -1) == splits.y_test),
        "head_norm": jnp.linalg.norm(head["kernel"]),
    }


def start_stats(model: Model, pre_params: Any, splits: Splits, start_heads: Any) -> dict[str, Array]:
    """The energy (:func:`ldjax.energy` on the downstream training set) and the probing accuracy at the
    start of fine-tuning, ``[S, T]``."""
    h_train = model.features(pre_params, splits.x_ft)
    stats = functools.partial(_head_stats, model, pre_params["backbone"], h_train, splits)
    return jax.jit(jax.vmap(jax.vmap(stats)))(start_heads)


def _ft_loss(model: Model, p: Any, idx: Array, d: dict[str, Array]) -> Array:
    per_run = jax.vmap(
        lambda ps, i: jax.vmap(lambda q: cross_entropy(model.logits(q, d["x"][i]), d["y"][i]))(ps)
    )(p, idx)  # fmt: skip
    return jnp.sum(per_run)


def feature_measures(model: Model, n_probes: int, train_subset: int, p: Any, d: dict[str, Array]) -> dict:
    """One run's features against the pre-trained ones on ``n_probes`` validation images (cos, distance,
    inner product, norm), the head's gradient norm and the energy on ``train_subset`` training images,
    the validation accuracy."""
    z_val = model.logits(p, d["x_val"])
    h, h0 = model.features(p, d["x_val"][:n_probes]), d["h0"]
    norm_h, norm_0 = jnp.linalg.norm(h, axis=-1), jnp.linalg.norm(h0, axis=-1)
    h_sub = model.features(p, d["x"][:train_subset])
    y_sub = d["y"][:train_subset]
    head_grad = jax.grad(lambda head: cross_entropy(model.heads({**p, "head": head}, h_sub), y_sub))(
        p["head"]
    )
    return {
        "cos": jnp.mean(jnp.sum(h * h0, -1) / jnp.maximum(norm_h * norm_0, 1e-12)),
        "distance": jnp.mean(jnp.linalg.norm(h - h0, axis=-1)),
        "inner": jnp.mean(jnp.sum(h * h0, -1)),
        "norm": jnp.mean(norm_h),
        "head_grad_norm": jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(head_grad))),
        "energy": energy(model.heads(p, h_sub), y_sub).mean,
        "val_accuracy": jnp.mean(jnp.argmax(z_val, -1) == d["y_val"]),
    }


def _record(measure: Any, p: Any, step: Array, d: dict[str, Array]) -> dict[str, Array]:
    del step
    return jax.vmap(jax.vmap(lambda q: measure(q, d)))(p)


class FineTuned(NamedTuple):
    """The end of :func:`fine_tune`."""

    start: Any  # every (seed, τ) run's parameters at the start, [S, T, ...]
    params: Any  # ... and at the end
    curves: dict[str, np.ndarray]  # feature_measures, [S, T, ft_epochs + 1], entry 0 = start of fine-tuning
    batches: Array  # [steps, S, batch] the minibatches (the same for every τ of a seed)
    optimizer: optax.GradientTransformation
    h0: Array  # the pre-trained features of the probe images


def fine_tune(
    config: Config, model: Model, pre_params: Any, splits: Splits, start_heads: Any, progress: bool
) -> FineTuned:
    """Every (seed, τ) run in one :func:`ldjax.train` loop (SGD, momentum, cosine decay to 0); the same data
    order for every τ of a seed; :func:`feature_measures` after every epoch."""
    seeds, n_taus = config.seeds, len(config.hp_epochs)
    n_train = splits.x_ft.shape[0]
    per_epoch = n_train // config.batch_size
    stacked = {
        "backbone": jax.tree.map(
            lambda a: jnp.broadcast_to(a, (seeds, n_taus, *a.shape)), pre_params["backbone"]
        ),
        "head": start_heads,
    }
    ft_batches = jnp.stack(
        [epoch_batches(jax.random.key(3000 + s), n_train, config.batch_size, config.ft_epochs) for s in range(seeds)],
        axis=1,
    )  # fmt: skip
    ft_opt = optax.sgd(
        optax.cosine_decay_schedule(config.ft_learning_rate, per_epoch * config.ft_epochs),
        momentum=config.momentum,
    )
    data = {
        "x": splits.x_ft,
        "y": splits.y_ft,
        "x_val": splits.x_val,
        "y_val": splits.y_val,
        "h0": model.features(pre_params, splits.x_val[: splits.n_probes]),
    }
    measure = functools.partial(feature_measures, model, splits.n_probes, min(TRAIN_SUBSET, n_train))
    tuned = train(
        functools.partial(_ft_loss, model), stacked, ft_opt, ft_batches,
        record=functools.partial(_record, measure), every=per_epoch, data=data,
        progress=progress, desc="fine-tuning",
    )  # fmt: skip
    curves = {name: np.moveaxis(np.asarray(v), 0, -1) for name, v in tuned.records.items()}
    return FineTuned(stacked, tuned.params, curves, ft_batches, ft_opt, data["h0"])


def _decompose(config: Config, step: Any, small: Any, x_o: Array, x_u: Array, y_u: Array, p: Any) -> dict:
    r = step(p, x_o, x_u, y_u)
    s = small(p, x_o[:8], x_u[:4], y_u[:4], learning_rate=config.ft_learning_rate)
    terms = feature_decomposition(s.kernel, s.direction, s.energy, config.ft_learning_rate)
    return {
        "predicted_norm": jnp.mean(jnp.linalg.norm(r.predicted, axis=-1)),
        "actual_norm": jnp.mean(jnp.linalg.norm(r.actual, axis=-1)),
        "relative_residual": jnp.linalg.norm(r.residual) / jnp.linalg.norm(r.actual),
        "correlation": jnp.corrcoef(r.predicted.ravel(), r.actual.ravel())[0, 1],
        "terms_vs_jvp": jnp.max(jnp.abs(terms - s.predicted)) / jnp.max(jnp.abs(s.predicted)),
    }


def first_update(config: Config, model: Model, splits: Splits, tuned: FineTuned) -> dict[str, np.ndarray]:
    """The first fine-tuning update of every τ of the first seed (one program): predicted vs actual
    feature change (:func:`ldjax.feature_step` at the real SGD-momentum update) and the kernel × direction ×
    energy sum against the JVP (plain SGD, 8 probes, 4 update examples)."""
    x_o = splits.x_val[: min(config.n_step_probes, splits.x_val.shape[0])]
    first = np.asarray(tuned.batches[0, 0])
    step = feature_step_fn(
        model.feature_fn, model.head_fn, cross_entropy, optimizer=tuned.optimizer, terms=False
    )
    small = feature_step_fn(model.feature_fn, model.head_fn, cross_entropy, terms=True, method="structured")
    decompose = functools.partial(
        _decompose, config, step, small, x_o, splits.x_ft[first], splits.y_ft[first]
    )
    seed0 = jax.tree.map(lambda a: a[0], tuned.start)
    return {
        name: np.asarray(v) for name, v in jax.jit(jax.lax.map, static_argnums=0)(decompose, seed0).items()
    }

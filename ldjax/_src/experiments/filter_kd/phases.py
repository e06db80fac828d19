"""The three trainings of :mod:`ldjax._src.experiments.filter_kd`: teachers on one-hot (noisy) labels, then ESKD
and Filter-KD students from each teacher's initialisation, data order and augmentation draws."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ldjax._src import paths as paths_lib
from ldjax._src.experiments.cifar3_paths.data import Splits
from ldjax._src.experiments.cifar3_paths.training import make_resnet
from ldjax._src.experiments.filter_kd.config import Config
from ldjax._src.experiments.filter_kd.config import data_config
from ldjax._src.experiments.fitting import Fit
from ldjax._src.experiments.fitting import Members
from ldjax._src.experiments.fitting import fit
from ldjax._src.experiments.fitting import initial_members
from ldjax._src.experiments.fitting import stack
from ldjax._src.typing import Params


def optimizer_for(config: Config, steps: int) -> optax.GradientTransformation:
    """The authors' optimizer: SGD with momentum and L2 weight decay, cosine schedule to ``final_learning_rate``."""
    schedule = optax.cosine_decay_schedule(
        config.learning_rate, steps, alpha=config.final_learning_rate / config.learning_rate
    )
    return optax.chain(
        optax.add_decayed_weights(config.weight_decay), optax.sgd(schedule, momentum=config.momentum)
    )


def train_phase(
    config: Config,
    apply_fn: Callable,
    params: list[Params],
    order_keys: list,
    splits: list[Splits],
    targets: list[np.ndarray],
    *,
    temperature: list[float] | None = None,
    scale: list[float] | None = None,
    teacher: Params | None = None,
    record_visits: bool = False,
    progress: bool,
    desc: str,
) -> Fit:
    """One compiled run of every member of a phase, a record (val accuracy, params) per epoch."""
    steps = config.epochs * (config.train_size // config.batch_size)
    members = Members(
        x=jnp.stack([jnp.asarray(s.train.x) for s in splits]),
        targets=jnp.stack([jnp.asarray(t, jnp.float32) for t in targets]),
        x_val=jnp.stack([jnp.asarray(s.val.x) for s in splits]),
        y_val=jnp.stack([jnp.asarray(s.val.y) for s in splits]),
        temperature=None if temperature is None else jnp.asarray(temperature),
        scale=None if scale is None else jnp.asarray(scale),
        teacher=teacher,
    )
    return fit(
        apply_fn,
        stack(params),
        members,
        keys=jnp.stack(order_keys),
        epochs=config.epochs,
        batch_size=config.batch_size,
        optimizer=optimizer_for(config, steps),
        keep_params=True,
        record_visits=record_visits,
        augment=config.augment,
        chunk=100,
        progress=progress,
        desc=desc,
    )


def filter_table(run_: Fit, m: int, *, temperature: float, decay: float) -> np.ndarray:
    """The Filter-KD table of teacher member ``m`` as saved at its best-validation epoch ``[n, k]``."""
    b = int(run_.best[m])  # record b is after epoch b: the visits of epochs 1..b
    probs = jax.nn.softmax(jnp.asarray(run_.visits[:b, m]) / temperature, -1)
    return np.asarray(paths_lib.filter_targets(probs, decay=decay, seen=run_.seen[:b, m]))


class Phases(NamedTuple):
    """The three trainings of the comparison and how their members map to (noise, seed[, τ])."""

    apply_fn: Callable
    teachers: Fit
    eskd: Fit
    filterkd: Fit
    pairs: list[tuple[float, int]]  # teacher member -> (noise, seed index)
    students: list[tuple[float, int, float]]  # student member -> (noise, seed index, τ)


def train_all(config: Config, splits: dict[float, Splits], seeds: list[int], *, progress: bool) -> Phases:
    """Teachers for every (noise, seed), then ESKD and Filter-KD students for every (noise, seed, τ),
    each student from its teacher's initialisation, data order and augmentation draws."""
    dcfg = data_config(config)
    k = len(config.classes)
    apply_fn, inits, order = initial_members(functools.partial(make_resnet, dcfg, k), seeds)
    pairs = [(noise, i) for noise in config.noises for i in range(len(seeds))]
    teachers = train_phase(
        config,
        apply_fn,
        [inits[i] for _, i in pairs],
        [order[i] for _, i in pairs],
        [splits[nz] for nz, _ in pairs],
        [np.eye(k)[splits[nz].train.y] for nz, _ in pairs],
        record_visits=True,
        progress=progress,
        desc="teachers",
    )
    students = [(nz, i, tau) for nz, i in pairs for tau in config.temperatures]
    teacher_of = [pairs.index((nz, i)) for nz, i, _ in students]
    taus = [tau for *_, tau in students]
    args = {
        "temperature": taus,
        "scale": [config.distill_scale * tau**2 for tau in taus],
        "progress": progress,
    }
    inits_s = [inits[i] for _, i, _ in students]
    order_s = [order[i] for _, i, _ in students]
    splits_s = [splits[nz] for nz, _, _ in students]
    uniform = [
        np.full((config.train_size, k), 1.0 / k) for _ in students
    ]  # unused: the teacher gives targets
    best_teachers = jax.tree.map(lambda a: a[np.asarray(teacher_of)], teachers.best_params)
    eskd = train_phase(
        config, apply_fn, inits_s, order_s, splits_s, uniform, teacher=best_teachers, desc="ESKD", **args
    )
    tables = [
        filter_table(teachers, t, temperature=tau, decay=config.ema_decay)
        for t, tau in zip(teacher_of, taus, strict=True)
    ]
    filterkd = train_phase(config, apply_fn, inits_s, order_s, splits_s, tables, desc="FilterKD", **args)
    return Phases(apply_fn, teachers, eskd, filterkd, pairs, students)

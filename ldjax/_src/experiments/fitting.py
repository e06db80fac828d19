"""The one training routine of the classification experiments (learning paths, CIFAR-3, Filter-KD).

:func:`fit` trains ``M`` independent *members* at once: member ``m`` is one run of a one-example model
``apply_fn(params, x) -> [k]`` with its own initialisation, data order, data, targets, temperature
and loss scale. The members share nothing but the compiled program: the loss is the sum of the
members' losses, so each member's gradient is its own, and an element-wise optimizer (SGD, momentum,
Adam, weight decay) updates every member exactly as if it ran alone. Runs of several seeds and
several methods (paired: same initialisation and data order across methods) thus train in one
:func:`ldjax.train` call (THE training loop), and what the experiments read off a run is recorded
inside the compiled loop: the validation accuracy, the logits of every training example, the
parameters, the softmax of probe examples, and the logits of each example at the update that visits
it (the Filter-KD table of Ren et al., 2022).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array
from jaxtyping import Bool
from jaxtyping import Float
from jaxtyping import Int

from ldjax._src.losses.classification import soft_cross_entropy
from ldjax._src.training import epoch_batches
from ldjax._src.training import train
from ldjax._src.typing import Params


@dataclasses.dataclass(frozen=True)
class Members:
    """The data of ``M`` runs, every array with a leading member axis ``[M, ...]``.

    Attributes:
      x: training inputs ``[M, n, *d]``.
      targets: training target distributions ``[M, n, k]`` (one-hot rows for one-hot training).
      x_val: validation inputs ``[M, n_val, *d]`` (``None``: no validation).
      y_val: validation labels ``int [M, n_val]``.
      temperature: τ of each member's loss ``soft_cross_entropy(z / τ, targets)`` ``[M]``.
      scale: factor on each member's loss ``[M]`` (e.g. the τ² of distillation).
      probes: inputs whose softmax is recorded ``[M, m, *d]`` (``None``: none).
      teacher: parameters ``[M, ...]`` of a network whose ``softmax(z / τ)`` on the (augmented)
        minibatch replaces ``targets`` (knowledge distillation from a network); ``None``: use targets.
    """

    x: Array
    targets: Array
    x_val: Array | None = None
    y_val: Array | None = None
    temperature: Array | None = None
    scale: Array | None = None
    probes: Array | None = None
    teacher: Any = None

    @property
    def size(self) -> int:
        return int(self.x.shape[0])


class Fit(NamedTuple):
    """``M`` training runs with what was recorded every ``steps_per_record`` updates.

    Record ``r`` is taken after ``r * steps_per_record`` updates (record 0 before training).

    Attributes:
      params: parameters after the last update ``[M, ...]``.
      best: record of best validation accuracy of each member ``int [M]`` (records ``>= 1``: the
        first evaluation is after the first epoch, as the authors' loops do; ``None`` without validation).
      best_params: parameters at ``best`` ``[M, ...]`` (``None`` without validation or ``keep_params``).
      val_accuracy: validation accuracy ``[R, M]`` (``None`` without validation).
      train_logits: logits of every training example ``[R, M, n, k]`` (``None`` unless ``record_train``).
      probes: ``softmax(z)`` of the probes ``[R, M, m, k]`` (``None`` without probes).
      visits: logits of each training example at the update of epoch ``e`` whose minibatch holds it,
        before that update and on its (augmented) input ``[E, M, n, k]``; ``seen[e, m, i]`` says
        whether epoch ``e`` visited example ``i`` (the last incomplete batch is dropped).
      seen: ``bool [E, M, n]``.
      params_records: the parameters at every record ``[R, M, ...]`` (``None`` unless ``keep_params``).
      batches: the data order ``int [steps, M, batch_size]``.
      losses: the summed loss of the members at every update ``[steps]``.
      steps_per_record: updates between records.
      steps_per_epoch: updates per epoch.
    """

    params: Params
    best: np.ndarray | None
    best_params: Params | None
    val_accuracy: np.ndarray | None
    train_logits: np.ndarray | None
    probes: np.ndarray | None
    visits: np.ndarray | None
    seen: np.ndarray | None
    params_records: Any
    batches: np.ndarray
    losses: np.ndarray
    steps_per_record: int
    steps_per_epoch: int


def stack(trees: list[Any]) -> Any:
    """Stack pytrees of equal structure on a new leading (member) axis."""
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *trees)


def member(tree: Any, m: int) -> Any:
    """Member ``m`` of a pytree stacked by :func:`stack`."""
    return jax.tree.map(lambda a: a[m], tree)


def initial_members(
    make: Callable[[jax.Array], tuple[Callable, Params]], seeds: list[int]
) -> tuple[Callable, list[Params], list[jax.Array]]:
    """The model, each seed's initial parameters and each seed's data-order key.

    ``jax.random.key(seed)`` splits into an initialisation key (given to ``make``, which returns
    ``(apply_fn, params)``) and a data-order key; the runs of one seed (its methods) share both.
    """
    params, keys = [], []
    apply_fn: Callable | None = None
    for s in seeds:
        k_init, k_order = jax.random.split(jax.random.key(s))
        apply_fn, p = make(k_init)
        params.append(p)
        keys.append(k_order)
    if apply_fn is None:
        raise ValueError("seeds is empty: expected at least one seed")
    return apply_fn, params, keys


def repeat(array: Any, m: int) -> Array:
    """``array`` repeated on a new leading member axis ``[m, ...]`` (members that share their data)."""
    array = jnp.asarray(array)
    return jnp.broadcast_to(array, (m, *array.shape))


def batched_logits(apply_fn: Callable, chunk: int | None = None) -> Callable:
    """``logits(params, x [m, *d]) -> [m, k]``: the one-example model over a batch.

    With ``chunk``, the forward pass runs over blocks of ``chunk`` examples (``lax.map``, bounded
    memory) when ``chunk`` divides ``m``, and over all ``m`` at once otherwise.
    """
    logits = jax.vmap(apply_fn, (None, 0))
    if chunk is None:
        return logits

    def chunked(params: Params, xs: Array) -> Array:
        m = xs.shape[0]
        size = chunk if m % chunk == 0 else m
        out = jax.lax.map(lambda c: logits(params, c), xs.reshape(m // size, size, *xs.shape[1:]))
        return out.reshape(m, -1)

    return chunked


def crop_and_flip(
    image: Float[Array, "h w c"], shift: Int[Array, " 2"], flip: Bool[Array, ""], *, pad: int = 4
) -> Float[Array, "h w c"]:
    """Random-crop augmentation of one image: zero-pad by ``pad``, crop at ``shift``, mirror if ``flip``.

    ``shift`` is in ``[0, 2·pad]`` per axis (``(pad, pad)`` is the identity crop); the zero of a
    standardised image is its mean colour.

    Example:
      >>> import jax.numpy as jnp
      >>> from ldjax._src.experiments.fitting import crop_and_flip
      >>> img = jnp.arange(16.0).reshape(4, 4, 1)
      >>> crop_and_flip(img, jnp.array([4, 5]), jnp.array(False))[:, :, 0][0].tolist()
      [1.0, 2.0, 3.0, 0.0]
    """
    h, w, c = image.shape
    padded = jnp.pad(image, ((pad, pad), (pad, pad), (0, 0)))
    crop = jax.lax.dynamic_slice(padded, (shift[0], shift[1], 0), (h, w, c))
    return jnp.where(flip, crop[:, ::-1], crop)


def member_order(
    keys: jax.Array, n: int, batch_size: int, epochs: int, *, augment: bool, pad: int = 4
) -> dict[str, Array]:
    """Each member's data order (:func:`ldjax.epoch_batches`) and, with ``augment``, its crops and flips.

    Returns ``{"idx": int [steps, M, batch_size]}`` plus ``"shift"`` ``[steps, M, batch_size, 2]`` and
    ``"flip"`` ``[steps, M, batch_size]`` when ``augment``.
    """
    order = jax.vmap(lambda k: epoch_batches(jax.random.fold_in(k, 0), n, batch_size, epochs))(keys)
    out = {"idx": jnp.swapaxes(order, 0, 1)}
    if augment:
        steps = order.shape[1]

        def draws(k: jax.Array) -> tuple[Array, Array]:
            k_shift, k_flip = jax.random.split(jax.random.fold_in(k, 1))
            shift = jax.random.randint(k_shift, (steps, batch_size, 2), 0, 2 * pad + 1)
            return shift, jax.random.bernoulli(k_flip, 0.5, (steps, batch_size))

        shift, flip = jax.vmap(draws)(keys)
        out["shift"] = jnp.swapaxes(shift, 0, 1)
        out["flip"] = jnp.swapaxes(flip, 0, 1)
    return out


def schedule(
    keys: jax.Array, m_count: int, n: int, batch_size: int, records_per_epoch: int, record_visits: bool
) -> tuple[int, int]:
    """``(updates per epoch, updates between records)`` of :func:`fit`; a ValueError names a bad argument."""
    if np.shape(keys)[:1] != (m_count,):
        raise ValueError(f"keys must hold one key per member [{m_count}], got shape {np.shape(keys)}")
    per_epoch = n // batch_size
    if per_epoch < 1 or per_epoch % records_per_epoch:
        raise ValueError(
            f"records_per_epoch={records_per_epoch} must divide the {per_epoch} updates per epoch"
        )
    if record_visits and records_per_epoch != 1:
        raise ValueError("record_visits needs records_per_epoch=1 (one record per epoch)")
    return per_epoch, per_epoch // records_per_epoch


def member_arrays(data: Members) -> dict[str, Any]:
    """The members' data as the traced ``data`` of :func:`ldjax.train` (temperature and scale default to 1)."""
    ones = jnp.ones(data.size)
    return {
        "x": data.x,
        "targets": data.targets,
        "temperature": ones if data.temperature is None else jnp.asarray(data.temperature),
        "scale": ones if data.scale is None else jnp.asarray(data.scale),
        "x_val": data.x_val,
        "y_val": data.y_val,
        "probes": data.probes,
        "teacher": data.teacher,
    }


def member_batch(d: dict[str, Any], b: dict[str, Array], *, augment: bool) -> Array:
    """The (augmented) minibatch of every member ``[M, batch, *d]``."""
    xs = jax.vmap(lambda x, i: x[i])(d["x"], b["idx"])
    if augment:
        xs = jax.vmap(jax.vmap(crop_and_flip))(xs, b["shift"], b["flip"])
    return xs


def member_loss(
    apply_fn: Callable, p: Params, xs: Array, t: Array, tau: Array, scale: Array, teacher: Any
) -> Array:
    """One member's ``scale · soft_cross_entropy(z / τ, t)`` on its minibatch; with a ``teacher``, ``t`` is the
    teacher's ``softmax(z / τ)`` on the same minibatch (no gradient through it)."""
    logits = jax.vmap(apply_fn, (None, 0))
    z = logits(p, xs)
    if teacher is not None:
        t = jax.nn.softmax(jax.lax.stop_gradient(logits(teacher, xs)) / tau, -1)
    return scale * soft_cross_entropy(z / tau, t)


def members_loss(
    apply_fn: Callable, augment: bool, p: Params, b: dict[str, Array], d: dict[str, Any]
) -> Array:
    """The summed loss of every member on its minibatch ``b`` (each member's gradient is its own)."""
    xs = member_batch(d, b, augment=augment)
    t = jax.vmap(lambda ts, i: ts[i])(d["targets"], b["idx"])
    teacher_axis = None if d["teacher"] is None else 0
    losses = jax.vmap(functools.partial(member_loss, apply_fn), (0, 0, 0, 0, 0, teacher_axis))(
        p, xs, t, d["temperature"], d["scale"], d["teacher"]
    )
    return jnp.sum(losses)


def visits(
    apply_fn: Callable, augment: bool, p: Params, b: dict[str, Array], updates: Any, d: dict[str, Any]
) -> dict[str, Array]:
    """The logits of each member's minibatch before the update, scattered to the examples' places
    (``visits [M, n, k]``) with ``seen [M, n]`` marking them: summed over an epoch, each example's visit."""
    del updates
    xs = member_batch(d, b, augment=augment)
    z = jax.vmap(jax.vmap(apply_fn, (None, 0)))(p, xs)  # [M, batch, k]
    n, k = d["x"].shape[1], z.shape[-1]

    def scatter(i: Array, zi: Array) -> tuple[Array, Array]:
        return jnp.zeros((n, k), zi.dtype).at[i].set(zi), jnp.zeros(n, jnp.int32).at[i].set(1)

    table, seen = jax.vmap(scatter)(b["idx"], z)
    return {"visits": table, "seen": seen}


def records(
    forward: Callable, keep_params: bool, record_train: bool, p: Params, step: Array, d: dict[str, Any]
) -> dict[str, Any]:
    """What :func:`fit` records: validation accuracy, the parameters, the training logits, the probes' softmax."""
    out: dict[str, Any] = {}
    if d["x_val"] is not None:
        z_val = jax.vmap(forward)(p, d["x_val"])
        out["val"] = jnp.mean(jnp.argmax(z_val, -1) == d["y_val"], axis=-1)
    if keep_params:
        out["params"] = p
    if record_train:
        out["train"] = jax.vmap(forward)(p, d["x"])
    if d["probes"] is not None:
        out["probes"] = jax.nn.softmax(jax.vmap(forward)(p, d["probes"]), -1)
    return out


def fit(
    apply_fn: Callable,
    params: Params,
    data: Members,
    *,
    keys: jax.Array,
    epochs: int,
    batch_size: int,
    optimizer: optax.GradientTransformation,
    records_per_epoch: int = 1,
    record_train: bool = False,
    keep_params: bool = False,
    record_visits: bool = False,
    augment: bool = False,
    chunk: int | None = None,
    progress: bool = False,
    desc: str = "train",
) -> Fit:
    """Train ``M`` members on their soft targets with minibatches reshuffled every epoch.

    Member ``m`` minimises ``scale_m · soft_cross_entropy(z / τ_m, t_m)`` over its minibatches. Runs
    that share ``keys[m]`` see the same data order (and the same crops and flips), so methods
    compared from the same initialisation are paired.

    Args:
      apply_fn: one-example model ``apply_fn(params, x) -> [k]``.
      params: initial parameters of every member, stacked ``[M, ...]`` (:func:`stack`).
      data: the members' data (:class:`Members`).
      keys: one PRNG key per member for its data order and augmentation ``[M]``.
      epochs: passes over the training set.
      batch_size: examples per update (the last incomplete batch of an epoch is dropped).
      optimizer: an element-wise optax optimizer (SGD, momentum, Adam, weight decay); one that mixes
        entries across parameters (global-norm clipping) would couple the members.
      records_per_epoch: records per epoch; must divide the updates per epoch.
      record_train: record the logits of every training example (un-augmented).
      keep_params: record the parameters (for ``best_params`` and later analyses).
      record_visits: record each example's logits at its visit (needs ``records_per_epoch=1``).
      augment: random crop (zero padding 4) and horizontal flip of image minibatches ``[h, w, c]``.
      chunk: forward the recorded sets in blocks of this many examples (bounded memory).
      progress: show a progress bar.
      desc: progress-bar label.

    Returns:
      :class:`Fit`.
    """
    m_count, n = data.size, int(data.x.shape[1])
    per_epoch, every = schedule(keys, m_count, n, batch_size, records_per_epoch, record_visits)
    batches = member_order(keys, n, batch_size, epochs, augment=augment)
    out = train(
        functools.partial(members_loss, apply_fn, augment),
        params,
        optimizer,
        batches,
        record=functools.partial(records, batched_logits(apply_fn, chunk), keep_params, record_train),
        accumulate=functools.partial(visits, apply_fn, augment) if record_visits else None,
        every=every,
        data=member_arrays(data),
        progress=progress,
        desc=desc,
    )
    recs = out.records
    val = np.asarray(recs["val"]) if "val" in recs else None
    best = 1 + np.argmax(val[1:], axis=0) if val is not None else None
    params_records = recs.get("params")
    best_params = None
    if best is not None and params_records is not None:
        best_params = jax.tree.map(lambda a: a[best, np.arange(m_count)], params_records)
    return Fit(
        params=out.params,
        best=best,
        best_params=best_params,
        val_accuracy=val,
        train_logits=np.asarray(recs["train"]) if "train" in recs else None,
        probes=np.asarray(recs["probes"]) if "probes" in recs else None,
        visits=np.asarray(out.accumulated["visits"]) if record_visits else None,
        seen=np.asarray(out.accumulated["seen"]) > 0 if record_visits else None,
        params_records=params_records,
        batches=np.asarray(batches["idx"]),
        losses=np.asarray(out.losses),
        steps_per_record=every,
        steps_per_epoch=per_epoch,
    )


def predict_fn(apply_fn: Callable, *, chunk: int | None = None) -> Callable[[Params, Array], np.ndarray]:
    """A compiled ``predict(params, x [n, *d]) -> softmax [n, k]`` of one member, to hold and call again."""
    forward = jax.jit(batched_logits(apply_fn, chunk))

    def predict(params: Params, x: Array) -> np.ndarray:
        return np.asarray(jax.nn.softmax(forward(params, x), -1))

    return predict

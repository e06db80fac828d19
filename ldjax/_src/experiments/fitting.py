"""The one training routine of the classification experiments (learning paths, CIFAR-3, Filter-KD).

:func:`fit` trains a one-example model ``apply_fn(params, x) -> [k]`` on soft targets ``[n, k]`` by
minibatch optimisation with :func:`ldjax.train` (THE training loop), and records, inside the compiled
loop, what the experiments read off a run: the validation accuracy, the softmax of every training
example, the parameters, or the softmax of a few probe examples after every update.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array
from jaxtyping import Float
from jaxtyping import Int

from ldjax._src.losses.classification import soft_cross_entropy
from ldjax._src.training import epoch_batches
from ldjax._src.training import train
from ldjax._src.typing import Params


class Fit(NamedTuple):
    """One training run, with what was recorded every ``steps_per_record`` updates.

    Record ``r`` is taken after ``r * steps_per_record`` updates (record 0 before training).

    Attributes:
      params: parameters after the last update.
      best_params: parameters at the record of best validation accuracy (``None`` without validation).
      best: record index of the best validation accuracy (first of ties; 0 without validation).
      val_accuracy: validation accuracy at every record ``[R]`` (``None`` without validation).
      train_probs: ``softmax(z / temperature)`` of every training example ``[R, n, k]`` (or ``None``).
      probes: ``softmax(z)`` of the probe examples ``[R, m, k]`` (``None`` without probes).
      params_records: the parameters at every record, stacked ``[R, ...]`` (or ``None``).
      losses: the loss of every update ``[steps]``.
      steps_per_record: updates between records.
      steps_per_epoch: updates per epoch.
    """

    params: Params
    best_params: Params | None
    best: int
    val_accuracy: np.ndarray | None
    train_probs: np.ndarray | None
    probes: np.ndarray | None
    params_records: Any
    losses: np.ndarray
    steps_per_record: int
    steps_per_epoch: int


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


def fit(
    apply_fn: Callable,
    params: Params,
    x: Float[Array, " n *d"],
    targets: Float[Array, "n k"],
    *,
    key: jax.Array,
    epochs: int,
    batch_size: int,
    optimizer: optax.GradientTransformation,
    validation: tuple[Array, Array] | None = None,
    records_per_epoch: int = 1,
    temperature: float = 1.0,
    record_train: bool = True,
    keep_params: bool = True,
    probes: Float[Array, " m *d"] | None = None,
    chunk: int | None = None,
    progress: bool = False,
    desc: str = "train",
) -> Fit:
    """Train on soft ``targets`` (soft cross-entropy) with minibatches reshuffled every epoch.

    Args:
      apply_fn: one-example model ``apply_fn(params, x) -> [k]``.
      params: initial parameters.
      x: training inputs ``[n, *d]``.
      targets: target distributions ``[n, k]`` (one-hot for one-hot training).
      key: PRNG key of the data order (:func:`ldjax.epoch_batches`).
      epochs: passes over the training set.
      batch_size: examples per update (the last incomplete batch of an epoch is dropped).
      optimizer: any optax optimizer.
      validation: ``(x_val, y_val)``: record the validation accuracy and pick the best record.
      records_per_epoch: records per epoch; must divide the updates per epoch.
      temperature: τ of the recorded ``softmax(z / τ)`` of the training set.
      record_train: record the softmax of every training example.
      keep_params: record the parameters (needed for ``best_params`` and later analyses).
      probes: inputs ``[m, *d]`` whose softmax is recorded (e.g. every update for learning paths).
      chunk: forward the recorded sets in blocks of this many examples (bounded memory).
      progress: show a progress bar.
      desc: progress-bar label.

    Returns:
      :class:`Fit`.
    """
    n = x.shape[0]
    per_epoch = n // batch_size
    if per_epoch % records_per_epoch:
        raise ValueError(
            f"records_per_epoch={records_per_epoch} must divide the {per_epoch} updates per epoch"
        )
    every = per_epoch // records_per_epoch
    batches = epoch_batches(key, n, batch_size, epochs)
    logits = jax.vmap(apply_fn, (None, 0))
    forward = batched_logits(apply_fn, chunk)
    x_val, y_val = validation if validation is not None else (None, None)

    def loss_fn(p: Params, idx: Int[Array, " b"], data: tuple) -> Array:
        xs, ts = data[0], data[1]
        return soft_cross_entropy(logits(p, xs[idx]), ts[idx])

    def record(p: Params, step: Array, data: tuple) -> dict[str, Any]:
        xs, _, xv, yv, xp = data
        out: dict[str, Any] = {}
        if xv is not None:
            out["val"] = jnp.mean(jnp.argmax(forward(p, xv), -1) == yv)
        if keep_params:
            out["params"] = p
        if record_train:
            out["train"] = jax.nn.softmax(forward(p, xs) / temperature, -1)
        if xp is not None:
            out["probes"] = jax.nn.softmax(forward(p, xp), -1)
        return out

    out = train(
        loss_fn,
        params,
        optimizer,
        batches,
        record=record,
        every=every,
        data=(x, targets, x_val, y_val, probes),
        progress=progress,
        desc=desc,
    )
    recs = out.records
    val = np.asarray(recs["val"]) if "val" in recs else None
    best = int(np.argmax(val)) if val is not None else 0
    params_records = recs.get("params")
    best_params = None
    if val is not None and params_records is not None:
        best_params = jax.tree.map(lambda a: a[best], params_records)
    return Fit(
        params=out.params,
        best_params=best_params,
        best=best,
        val_accuracy=val,
        train_probs=np.asarray(recs["train"]) if "train" in recs else None,
        probes=np.asarray(recs["probes"]) if "probes" in recs else None,
        params_records=params_records,
        losses=np.asarray(out.losses),
        steps_per_record=every,
        steps_per_epoch=per_epoch,
    )


def probabilities(apply_fn: Callable, params: Params, x: Float[Array, " n *d"]) -> np.ndarray:
    """``softmax(apply_fn(params, x_i))`` for every example ``[n, k]`` (one compiled forward pass)."""
    return np.asarray(jax.nn.softmax(jax.jit(jax.vmap(apply_fn, (None, 0)))(params, x), -1))


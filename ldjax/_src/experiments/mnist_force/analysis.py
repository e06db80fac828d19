"""The analyses of :mod:`ldjax._src.experiments.mnist_force` at a checkpoint: the class force map, one step on
one image (predicted vs actual, A, K, G of shown probes), and the per-epoch accumulation of the forces."""

import functools
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array
from jaxtyping import Float
from jaxtyping import Int

from ldjax._src.experiments import common
from ldjax._src.experiments.mnist_force.config import NUM_CLASSES
from ldjax._src.experiments.mnist_force.data import MnistData
from ldjax._src.first_order import first_order_step
from ldjax._src.losses.classification import cross_entropy
from ldjax._src.one_step import one_step
from ldjax._src.typing import ApplyFn
from ldjax._src.typing import Params


def class_force_map(
    apply_fn: ApplyFn,
    params: Params,
    x_o: Float[Array, " n_o *d"],
    x_by_class: Float[Array, "c m *d"],
    *,
    learning_rate: float,
) -> Float[Array, "c n_o k"]:
    r"""Predicted Δ log π on ``x_o``, averaged over single-example SGD updates on ``m`` examples of each class.

    Entry ``[c]`` is :math:`\frac1m \sum_{j} -\eta\, A(x_o)\, K(x_o, x_{c,j})\, G(x_{c,j})` where
    ``x_{c,j}`` is labelled ``c``. The first-order prediction is linear in the update, so the mean
    over the ``m`` updates is one JVP along the mean update ``−η · mean_j ∇θ L(x_{c,j})``.

    Args:
      apply_fn: un-batched classifier, ``apply_fn(params, x) -> [k]``.
      params: parameters.
      x_o: observed examples ``[n_o, *d]``.
      x_by_class: ``m`` training examples of each class ``c = 0..C-1``, ``[C, m, *d]``.
      learning_rate: η.

    Returns:
      ``[C, n_o, k]``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ldjax._src.experiments.mnist_force.analysis import class_force_map
      >>> f = lambda p, x: x @ p
      >>> x = jax.random.normal(jax.random.key(0), (2, 3, 5))
      >>> class_force_map(f, jnp.ones((5, 2)), x[0], x, learning_rate=0.1).shape
      (2, 3, 2)
    """
    sgd = optax.sgd(learning_rate)

    def one_class(args):
        xs, label = args
        labels = jnp.full((xs.shape[0],), label, jnp.int32)
        return first_order_step(apply_fn, params, x_o, xs, labels, cross_entropy, sgd).predicted

    return jax.lax.map(one_class, (x_by_class, jnp.arange(x_by_class.shape[0], dtype=jnp.int32)))


def class_means(values: Float[np.ndarray, " n *r"], labels: Int[np.ndarray, " n"]) -> np.ndarray:
    """The mean of ``values`` over the examples of each class ``[10, *r]`` (NaN for a class without examples)."""
    values = np.asarray(values, float)
    return np.stack(
        [
            values[labels == c].mean(axis=0) if np.any(labels == c) else np.full(values.shape[1:], np.nan)
            for c in range(NUM_CLASSES)
        ]
    )


def force_maps(fmap: Float[np.ndarray, "c n_o k"], y_o: Int[np.ndarray, " n_o"]) -> dict[str, np.ndarray]:
    """The two 10x10 maps of :func:`class_force_map`'s output, updating class (rows) x observing class (columns).

    ``towards_updating_class[c, c']``: the mean change of log π(c) on the probes of class ``c'`` (how much
    learning ``c`` pulls ``c'`` towards ``c``); ``true_class[c, c']``: the mean change of log π(c') there.
    """
    n = len(y_o)
    towards = np.stack([class_means(fmap[c, :, c], y_o) for c in range(NUM_CLASSES)])
    true = np.stack([class_means(fmap[c, np.arange(n), y_o], y_o) for c in range(NUM_CLASSES)])
    return {"towards_updating_class": towards, "true_class": true}


class UpdateSet(NamedTuple):
    """What the one-step analyses at a checkpoint update on and show.

    Attributes:
      x_u: the single analysed update image ``[1, 28, 28, 1]`` (the first training image of ``update_class``).
      y_u: its label ``[1]``.
      index: its row in the training subset.
      shown: rows of the probes whose A, K, G are kept, one per ``probe_classes`` entry.
      x_by_class: ``m`` training images of every class ``[10, m, 28, 28, 1]`` (the force map).
    """

    x_u: Float[Array, "1 28 28 1"]
    y_u: Int[Array, " 1"]
    index: int
    shown: Int[np.ndarray, " s"]
    x_by_class: Float[Array, "10 m 28 28 1"]


def choose_updates(data: MnistData, update_class: int, probe_classes: tuple[int, ...], m: int) -> UpdateSet:
    """The update image (the first training image of ``update_class``), the first probe of each of
    ``probe_classes`` and the first ``m`` training images of every class."""
    u = int(np.flatnonzero(data.y_train == update_class)[0])
    shown = np.array([int(np.flatnonzero(data.y_probe == c)[0]) for c in probe_classes])
    x_by_class = jnp.stack([data.x_train[np.flatnonzero(data.y_train == c)[:m]] for c in range(NUM_CLASSES)])
    return UpdateSet(data.x_train[u : u + 1], jnp.asarray(data.y_train[u : u + 1]), u, shown, x_by_class)


@functools.partial(jax.jit, static_argnums=0)
def _step_all(apply_fn: ApplyFn, params: Params, x_probe: Array, x_u: Array, y_u: Array, eta: float):
    r = one_step(apply_fn, params, x_probe, x_u, y_u, loss=cross_entropy, learning_rate=eta, terms=False)
    return r.predicted, r.actual, r.g


@functools.partial(jax.jit, static_argnums=0)
def _step_terms(apply_fn: ApplyFn, params: Params, x_shown: Array, x_u: Array, y_u: Array, eta: float):
    return one_step(
        apply_fn, params, x_shown, x_u, y_u, loss=cross_entropy, learning_rate=eta, method="vector_products"
    )


@functools.partial(jax.jit, static_argnums=0)
def _force_map(apply_fn: ApplyFn, params: Params, x_probe: Array, x_by_class: Array, eta: float) -> Array:
    return class_force_map(apply_fn, params, x_probe, x_by_class, learning_rate=eta)


def analyse_checkpoint(
    apply_fn: ApplyFn,
    params: Params,
    data: MnistData,
    updates: UpdateSet,
    *,
    epoch: int,
    accuracy: float,
    update_class: int,
    learning_rate: float,
    force_map: bool,
    detail: bool,
) -> dict[str, Any]:
    """One plain-SGD step on the update image at one checkpoint and (``force_map``) the class force map.

    Args:
      apply_fn: the model.
      params: the parameters at the checkpoint.
      data: the probes.
      updates: the update image, the shown probes and the per-class images of the force map.
      epoch: the checkpoint's epoch (recorded).
      accuracy: the probe accuracy there (recorded).
      update_class: the label of the update image.
      learning_rate: η of the analysed plain-SGD steps.
      force_map: compute the class force map (10 JVPs on the probes, the costly part).
      detail: also keep the per-probe predicted and actual changes and the A, K, G of the shown probes
        (for the figures of the first seed).

    Returns:
      A dict: the correlation of predicted and actual Δ log π over every probe and class, the force
      maps (with ``force_map``), and with ``detail`` the per-probe arrays, the terms and per-class means.
    """
    eta, u, y_probe = learning_rate, update_class, data.y_probe
    predicted, actual, g = (
        np.asarray(v) for v in _step_all(apply_fn, params, data.x_probe, updates.x_u, updates.y_u, eta)
    )
    out = {
        "epoch": int(epoch),
        "probe_accuracy": float(accuracy),
        "correlation": float(np.corrcoef(predicted.ravel(), actual.ravel())[0, 1]),
        "max_abs_residual": float(np.abs(actual - predicted).max()),
        "max_abs_actual": float(np.abs(actual).max()),
    }
    if force_map:
        maps = force_maps(
            np.asarray(_force_map(apply_fn, params, data.x_probe, updates.x_by_class, eta)), y_probe
        )
        out |= {
            "force_map_towards_updating_class": maps["towards_updating_class"],
            "force_map_true_class": maps["true_class"],
        }
    if not detail:
        return out
    terms = _step_terms(apply_fn, params, data.x_probe[updates.shown], updates.x_u, updates.y_u, eta)
    rows = np.arange(len(y_probe))
    towards_actual = class_means(actual[:, u], y_probe)
    others = [c for c in range(NUM_CLASSES) if c != u]
    return out | {
        "predicted": predicted,
        "actual": actual,
        "g": g[0],
        "shown": common.shown_terms(terms),
        "mean_true_class_change_predicted": class_means(predicted[rows, y_probe], y_probe),
        "mean_true_class_change_actual": class_means(actual[rows, y_probe], y_probe),
        "mean_update_class_change_by_class_actual": towards_actual,
        "mean_update_class_change_by_class_predicted": class_means(predicted[:, u], y_probe),
        "most_pulled_towards_update_class": sorted(others, key=lambda c: -towards_actual[c]),
    }


def accumulation_summary(
    log_probs: Float[np.ndarray, "e1 n_acc k"],
    accumulated: Float[np.ndarray, "e n_acc k"],
    y_acc: Int[np.ndarray, " n_acc"],
) -> dict[str, Any]:
    """Per-epoch sums of the first-order forces against the actual change of log π over each epoch.

    Args:
      log_probs: log π of the accumulation probes after every epoch (entry 0 before training).
      accumulated: the per-epoch sums of the first-order force.
      y_acc: the labels of the accumulation probes.

    Returns:
      Per-epoch correlations (over probes and classes) and the true-class changes, predicted and actual.
    """
    actual_epoch = np.diff(np.asarray(log_probs), axis=0)
    predicted_epoch = np.asarray(accumulated)
    rows = np.arange(len(y_acc))
    return {
        "epoch_correlation": [
            float(np.corrcoef(predicted_epoch[e].ravel(), actual_epoch[e].ravel())[0, 1])
            for e in range(len(actual_epoch))
        ],
        "mean_true_class_change_predicted": predicted_epoch[:, rows, y_acc].mean(axis=1),
        "mean_true_class_change_actual": actual_epoch[:, rows, y_acc].mean(axis=1),
        "true_class_change_predicted": predicted_epoch[:, rows, y_acc],
        "true_class_change_actual": actual_epoch[:, rows, y_acc],
    }

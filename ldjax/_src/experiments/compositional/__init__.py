r"""Simplicity bias towards compositional mappings, seen through the forces between examples (thesis ch. 7).

Ren & Sutherland ("Understanding simplicity bias towards compositional mappings via learning dynamics",
NeurIPS 2024 workshop on compositional learning; Ren's thesis, ch. 7) explain why a compositional mapping is
learned faster than a holistic one: an update on :math:`x_u` moves every other example by
:math:`-\eta\,A(x_o)\,K(x_o, x_u)\,G(x_u)`; under a compositional mapping the objects that share a factor with
:math:`x_u` (larger :math:`K`) also share that factor's part of the answer, so the update raises their correct
answers (the forces **cooperate**), while under a random bijection a shared factor says nothing about the
answer and the same push lowers them (the forces **contradict**). The same picture explains why clean labels
are learned before noisy ones.

The toy (:mod:`~ldjax._src.experiments.compositional.task`, the authors' two-factor set-up): objects
:math:`(g_1, g_2)`, 2 factors × ``values`` values, two-hot inputs, answers of two tokens over ``values``
symbols; an MLP (``hidden`` ReLU layers, width 128 as the authors') emits ``[2, values]`` logits, trained with
the cross-entropy of both tokens. The mappings (:data:`MAPS`), each a bijection of the ``values²`` objects onto
the ``values²`` answers: ``compositional`` :math:`(\sigma_1(g_1), \sigma_2(g_2))`; ``random``; and ``noisy``
(compositional with ``noise_fraction`` of the training objects mislabelled in both tokens).
``heldout_per_value`` objects per value of each factor are held out, so held-out accuracy measures
compositional generalisation. Per seed the three mappings are PAIRED: the same inputs, held-out split,
initialisation and minibatch order; all ``3 × seeds`` runs are copies of ONE compiled :func:`ldjax.train`
loop with plain SGD (each copy's loss has its own gradient, and SGD is element-wise).

Inside the loop, the ``accumulate`` hook decomposes every update
(:func:`~ldjax._src.experiments.compositional.forces.update_forces`: the first-order change of the training
labels' log π of the batch itself, of the OTHER training objects and of the held-out objects, split into the
clean and the noisy rows of the batch; and the actual change, for the checks). After training,
:func:`~ldjax._src.experiments.compositional.forces.influence_map` gives the pairwise picture at
initialisation. Claims, checks and figures: :mod:`~ldjax._src.experiments.compositional.report`.
"""

from __future__ import annotations

import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ldjax._src.experiments import common
from ldjax._src.experiments.compositional import report
from ldjax._src.experiments.compositional.forces import PARTS
from ldjax._src.experiments.compositional.forces import RELATIONS
from ldjax._src.experiments.compositional.forces import influence_map
from ldjax._src.experiments.compositional.forces import relation_means
from ldjax._src.experiments.compositional.forces import update_forces
from ldjax._src.experiments.compositional.task import FULL
from ldjax._src.experiments.compositional.task import MAPS
from ldjax._src.experiments.compositional.task import TINY
from ldjax._src.experiments.compositional.task import Config
from ldjax._src.experiments.compositional.task import build_model
from ldjax._src.experiments.compositional.task import make_task
from ldjax._src.experiments.compositional.task import objects
from ldjax._src.losses.classification import cross_entropy
from ldjax._src.training import epoch_batches
from ldjax._src.training import train

__all__ = ("FULL", "MAPS", "TINY", "Config", "fidelity", "main", "plot", "run")

fidelity = report.fidelity
plot = report.plot


def _over_copies(fn: Any) -> Any:
    """``fn(params, *per_copy_args, copy_data)`` over the stacked copies; ``x`` is shared by all of them."""

    def over(params: Any, *args: Any) -> Any:
        *rest, data = args

        def one(p: Any, *a: Any) -> Any:
            return fn(p, *a[:-1], {"x": data["x"], **a[-1]})

        return jax.vmap(one)(params, *rest, data["copy"])

    return over


def run(config: Config, *, data_dir: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Train every mapping of every seed as copies of one loop, decomposing every update; deterministic.

    Returns a dict (``M = 3`` maps, ``R = epochs + 1`` records, ``S`` seeds, ``C`` objects, ``n`` training
    objects): ``train_accuracy`` and ``heldout_accuracy`` ``[M, R, S]`` (both tokens right; held-out
    objects scored against the mapping's own label, the compositional one for ``noisy``);
    ``noisy_row_accuracy`` ``[2, R, S]`` (the noisy run's clean and mislabelled training objects);
    ``learned_epoch`` ``[M, S, C]`` (:func:`report.learned_epochs`; −1 for held-out objects); per-epoch sums
    over the updates of :func:`update_forces`: ``self``, ``others``, ``heldout`` ``[M, epochs, S, 2]`` and
    ``actual_self``, ``actual_others``, ``abs_error``, ``abs_actual``, ``abs_error_tenth`` ``[M, epochs, S]``;
    ``influence`` ``[M, S, 4]`` (:func:`relation_means` of the :func:`influence_map` at initialisation; for
    ``noisy`` over its clean updaters) and ``influence_noisy_updaters`` ``[S, 4]``; seed 0's maps of
    ``compositional`` and ``random`` between its training objects ``influence_map`` ``[2, n, n]`` (rounded to
    1e-6), ``influence_train_idx`` ``[n]`` and the ``factors`` ``[C, 2]``;
    ``train`` and ``noisy`` masks ``[S, C]``.
    """
    del data_dir  # synthetic, no files
    if config.seeds < 1:
        raise ValueError(f"seeds must be >= 1, got {config.seeds}")
    S, M = config.seeds, len(MAPS)
    factors, x = objects(config.values)
    C = len(factors)
    tasks = [make_task(config, k) for k in range(S)]
    n = len(tasks[0]["train_idx"])
    if not 1 <= config.batch_size <= n:
        raise ValueError(f"batch_size must be in [1, {n}] (the training objects), got {config.batch_size}")
    apply_fn = build_model(config, 0)[0]
    inits = [build_model(config, k)[1] for k in range(S)]
    params = jax.tree.map(
        lambda *a: jnp.stack(a), *[inits[k] for _ in MAPS for k in range(S)]
    )  # copy m·S + k
    train_mask = np.zeros((S, C), np.float32)
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
    )  # [steps, S, B]: the same order for every mapping of a seed
    data = {"x": jnp.asarray(x), "copy": copies}
    eta = config.learning_rate
    batched = jax.vmap(apply_fn, (None, 0))

    def loss(params: Any, batch: Any, data: dict) -> Any:
        per_copy = _over_copies(lambda p, b, d: cross_entropy(batched(p, d["x"][b]), d["labels"][b]))
        return jnp.sum(per_copy(params, batch, data))

    def record(params: Any, step: Any, data: dict) -> Any:
        del step
        return _over_copies(lambda p, d: jnp.all(jnp.argmax(batched(p, d["x"]), -1) == d["labels"], -1))(
            params, data
        )

    def accumulate(params: Any, batch: Any, updates: Any, data: dict) -> Any:
        per_copy = _over_copies(lambda p, b, u, d: update_forces(apply_fn, eta, p, b, u, d))
        return per_copy(params, batch, updates, data)

    result = train(
        loss,
        params,
        optax.sgd(eta),
        jnp.asarray(np.concatenate([order] * M, axis=1)),
        record=record,
        accumulate=accumulate,
        every=n // config.batch_size,
        data=data,
        progress=progress,
        desc="compositional",
    )
    train_idx = np.stack([t["train_idx"] for t in tasks])
    maps = jax.jit(jax.vmap(lambda p, d, idx: influence_map(apply_fn, eta, p, {"x": data["x"], **d}, idx)))(
        params, copies, jnp.asarray(np.concatenate([train_idx] * M))
    )
    maps = np.asarray(maps).reshape(M, S, n, C)
    influence = np.zeros((M, S, len(RELATIONS)))
    noisy_updaters = np.full((S, len(RELATIONS)), np.nan)
    for k, t in enumerate(tasks):
        clean, trained_k = ~t["noisy"][t["train_idx"]], train_mask[k] > 0
        for m, name in enumerate(MAPS):
            rows = clean if name == "noisy" else np.ones_like(clean)
            influence[m, k] = relation_means(maps[m, k][rows], factors, t["train_idx"][rows], trained_k)
        if (~clean).any():
            noisy_map = maps[MAPS.index("noisy"), k][~clean]
            noisy_updaters[k] = relation_means(noisy_map, factors, t["train_idx"][~clean], trained_k)

    correct = np.asarray(result.records).reshape(-1, M, S, C).swapaxes(0, 1)  # [M, R, S, C]
    trained = train_mask.astype(bool)

    def accuracy(c: np.ndarray, mask: np.ndarray) -> np.ndarray:  # [R, S, C], [S, C] -> [R, S]
        return np.sum(c * mask, -1) / np.maximum(mask.sum(-1), 1)

    sums = {key: np.asarray(v) for key, v in result.accumulated.items()}
    sums = {key: v.reshape(v.shape[0], M, S, *v.shape[2:]).swapaxes(0, 1) for key, v in sums.items()}
    learned = np.stack([report.learned_epochs(correct[m]) for m in range(M)])
    return {
        "dataset": f"synthetic two-factor objects ({config.values} x {config.values}, two-hot inputs, two-token "
        f"answers): {n} training / {C - n} held-out objects per seed, {config.seeds} paired seeds",
        "maps": list(MAPS),
        "parts": list(PARTS),
        "relations": list(RELATIONS),
        "seeds": S,
        "epochs": config.epochs,
        "train_accuracy": np.stack([accuracy(c, trained) for c in correct]),
        "heldout_accuracy": np.stack([accuracy(c, ~trained) for c in correct]),
        "noisy_row_accuracy": np.stack(
            [accuracy(correct[MAPS.index("noisy")], mask) for mask in (trained & ~noisy, noisy)]
        ),
        "learned_epoch": np.where(trained[None], learned, -1),
        **sums,
        "influence": influence,
        "influence_noisy_updaters": noisy_updaters,
        "influence_map": np.round(maps[:2, 0][:, :, train_idx[0]], 6),  # seed 0, training objects
        "influence_train_idx": train_idx[0],
        "factors": factors,
        "train": trained,
        "noisy": noisy,
    }


def main(argv: list[str] | None = None) -> int:
    return common.main(sys.modules[__name__], argv)


if __name__ == "__main__":
    raise SystemExit(main())

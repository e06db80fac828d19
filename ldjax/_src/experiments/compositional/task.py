"""The two-factor toy of thesis ch. 7: objects, their two-hot inputs, the three mappings, the model, the settings."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from flax import nnx
from jaxtyping import Array
from jaxtyping import Float
from jaxtyping import Int

from ldjax._src.adapters import from_nnx
from ldjax._src.models.mlp import MLP

MAPS = ("compositional", "random", "noisy")
"""The mappings trained from the same initialisation in the same order: compositional, a random bijection,
and the compositional one with ``noise_fraction`` of its training objects mislabelled."""


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings; the defaults are the quick run (5 paired seeds, about 30 s of CPU time on 2 cores).

    Attributes:
      seed: base seed; seed ``k`` draws the mappings, the held-out split, the initialisation and the order.
      seeds: paired seeds (each trains all of :data:`MAPS`).
      values: values per factor (2 factors, ``values²`` objects).
      heldout_per_value: held-out objects per value of each factor.
      hidden: widths of the MLP's ReLU layers (the authors: 128).
      learning_rate: plain SGD step size η (the update is exactly −η·Jᵀ·G).
      batch_size: objects per update.
      epochs: passes over the training objects.
      noise_fraction: share of the training objects mislabelled in the ``noisy`` mapping.
    """

    seed: int = 0
    seeds: int = 5
    values: int = 10
    heldout_per_value: int = 2
    hidden: tuple[int, ...] = (128, 128)
    learning_rate: float = 0.05
    batch_size: int = 8
    epochs: int = 200
    noise_fraction: float = 0.2


FULL = Config(seeds=20, learning_rate=0.02, epochs=500)
"""One GPU: 20 paired seeds and a smaller step (closer to the first-order picture), long enough for the
random bijection to be learned at that step (about 10× the quick run's work; not yet run on a GPU)."""
TINY = Config(seeds=2, values=4, heldout_per_value=1, hidden=(16,), learning_rate=0.2, batch_size=4, epochs=6)
"""The smoke-test size (the test suite and the notebook under ``LDJAX_NOTEBOOK_TINY``)."""


def objects(values: int) -> tuple[Int[np.ndarray, "C 2"], Float[np.ndarray, "C d"]]:
    """The ``C = values²`` objects ``(g1, g2)`` in row-major order and their two-hot inputs ``[C, 2·values]``.

    Example:
      >>> from ldjax._src.experiments.compositional.task import objects
      >>> g, x = objects(3)
      >>> g[5].tolist(), x[5].tolist()
      ([1, 2], [0.0, 1.0, 0.0, 0.0, 0.0, 1.0])
    """
    if values < 2:
        raise ValueError(f"values must be >= 2, got {values}")
    g = np.stack(np.divmod(np.arange(values * values), values), axis=1)
    eye = np.eye(values, dtype=np.float32)
    return g, np.concatenate([eye[g[:, 0]], eye[g[:, 1]]], axis=1)


def make_task(config: Config, k: int) -> dict[str, np.ndarray]:
    """Seed ``k``'s held-out split and its labels under each of :data:`MAPS`.

    Held out: the objects ``(i, (p(i) + r) mod values)`` for a random permutation ``p`` and every
    ``r < heldout_per_value``, so each value of either factor is held out ``heldout_per_value`` times and
    trained on ``values − heldout_per_value`` times (a held-out object's answer is determined by the
    compositional mapping). The compositional labels are ``(σ1(g1), σ2(g2))`` for two random permutations;
    the random bijection assigns the same ``C`` messages to the objects in a random order; the noisy labels
    replace both tokens of ``round(noise_fraction · n_train)`` training objects by another symbol.

    Returns:
      ``labels`` ``[3, C, 2]`` (:data:`MAPS` order; held-out objects keep the mapping's label),
      ``train_idx`` ``[n_train]`` and ``noisy`` ``[C]`` (the mislabelled objects of ``noisy``).
    """
    v, h = config.values, config.heldout_per_value
    if not 0 < h < v:
        raise ValueError(f"heldout_per_value must be in [1, values={v}), got {h}")
    if not 0.0 <= config.noise_fraction < 1.0:
        raise ValueError(f"noise_fraction must be in [0, 1), got {config.noise_fraction}")
    rng = np.random.default_rng([config.seed, k])
    g, _ = objects(v)
    perm = rng.permutation(v)
    heldout = np.zeros((v, v), bool)
    for r in range(h):
        heldout[np.arange(v), (perm + r) % v] = True
    train_idx = np.flatnonzero(~heldout.ravel())
    sigma1, sigma2 = rng.permutation(v), rng.permutation(v)
    compositional = np.stack([sigma1[g[:, 0]], sigma2[g[:, 1]]], axis=1)
    random = compositional[rng.permutation(v * v)]
    n_noisy = int(round(config.noise_fraction * len(train_idx)))
    noisy = np.zeros(v * v, bool)
    noisy[rng.choice(train_idx, n_noisy, replace=False)] = True
    noisy_labels = compositional.copy()
    noisy_labels[noisy] = (compositional[noisy] + rng.integers(1, v, size=(n_noisy, 2))) % v
    return {
        "labels": np.stack([compositional, random, noisy_labels]).astype(np.int32),
        "train_idx": train_idx.astype(np.int32),
        "noisy": noisy,
    }


def build_model(config: Config, k: int) -> tuple[Any, Any]:
    """``apply_fn(params, x[2·values]) -> [2, values]`` (one logit row per token) and seed ``k``'s parameters.

    The two tokens are two positions of one output (``*o = [2, values]``), so A is the log-softmax Jacobian
    of each token and log π(y|x) = log π₁(y₁|x) + log π₂(y₂|x).
    """
    d = 2 * config.values
    base, params = from_nnx(MLP(d, config.hidden, d, rngs=nnx.Rngs(config.seed + k)), example_shape=(d,))

    def apply_fn(p: Any, x: Array) -> Array:
        return base(p, x).reshape(2, config.values)

    return apply_fn, params

"""Settings, task, model and the data of every run of :mod:`ldjax._src.experiments.grpo_exploration`."""

from __future__ import annotations

import dataclasses
from typing import Any
from typing import NamedTuple

import jax
import numpy as np
from flax import nnx
from jaxtyping import Array

import ldjax
from ldjax._src.data.graph_walks import GraphWalks
from ldjax._src.models.transformer import TinyTransformer

METHODS = ("grpo", "simko", "psr", "nsr")
"""RL methods: (uses the SimKO loss, advantage = w·[group-normalised, r, r − 1])."""
METHOD_TABLE = {
    "grpo": (0.0, (1.0, 0.0, 0.0)),
    "simko": (1.0, (1.0, 0.0, 0.0)),
    "psr": (0.0, (0.0, 1.0, 0.0)),
    "nsr": (0.0, (0.0, 0.0, 1.0)),
}


@dataclasses.dataclass(frozen=True)
class Config:
    """Quick settings (about 2 minutes on 2 CPU cores). Learning rates are Adam's."""

    seeds: tuple[int, ...] = (0, 1, 2)
    width: int = 24
    steps: int = 4
    out_degree: int = 2
    n_train: int = 128
    n_heldout: int = 64
    d_model: int = 32
    n_heads: int = 4
    n_layers: int = 2
    d_ff: int = 64
    pretrain_docs: int = 1500
    pretrain_steps: int = 150
    pretrain_batch: int = 64
    pretrain_lr: float = 3e-3
    iterations: int = 200
    prompts_per_iteration: int = 16
    group_size: int = 8
    minibatches: int = 2
    rl_lr: float = 2e-3
    clip: float = 0.2
    kl_coef: float = 0.0
    top_k: int = 3
    alpha: float = 0.01
    scale: float = 1.1
    quantile: float = 0.8
    eval_samples: int = 256
    record_every: int = 25
    record_samples: int = 16


FULL = Config(
    seeds=(0, 1, 2, 3, 4),
    width=32,
    n_train=192,
    n_heldout=96,
    d_model=64,
    d_ff=128,
    pretrain_docs=3000,
    pretrain_steps=300,
    iterations=600,
    rl_lr=1e-3,
    record_every=30,
    record_samples=32,
)

#: The tiny run shared by the smoke test and the notebook under ``LDJAX_NOTEBOOK_TINY``: every phase, in seconds.
TINY = Config(
    seeds=(0, 1, 2),
    width=8,
    steps=2,
    n_train=16,
    n_heldout=8,
    d_model=16,
    n_heads=2,
    n_layers=1,
    d_ff=32,
    pretrain_docs=200,
    pretrain_steps=20,
    iterations=4,
    prompts_per_iteration=4,
    group_size=4,
    eval_samples=16,
    record_every=2,
    record_samples=16,
)


def make_tasks(config: Config) -> list[GraphWalks]:
    """One graph-walk task per seed (:mod:`ldjax._src.data.graph_walks`), after checking the settings."""
    if config.iterations % config.record_every:
        raise ValueError(f"record_every={config.record_every} must divide iterations={config.iterations}")
    if len(config.seeds) < 1:
        raise ValueError("seeds must name at least one seed")
    return [
        GraphWalks(
            config.width,
            config.steps,
            config.out_degree,
            n_train=config.n_train,
            n_heldout=config.n_heldout,
            seed=seed,
        )
        for seed in config.seeds
    ]


def build_model(config: Config, vocab_size: int, seq_len: int, seeds) -> tuple[Any, Any]:
    """``apply_fn`` and the initial parameters of every seed, stacked on a leading axis (numpy)."""
    params = []
    for seed in seeds:
        model = TinyTransformer(
            vocab_size,
            seq_len - 1,
            config.d_model,
            config.n_heads,
            config.n_layers,
            config.d_ff,
            rngs=nnx.Rngs(seed),
        )
        apply_fn, p = ldjax.from_nnx(model, example_shape=(seq_len - 1,))
        params.append(jax.device_get(p))
    return apply_fn, jax.tree.map(lambda *xs: np.stack(xs), *params)


class SeedData(NamedTuple):
    """What every run of one seed shares (stacked over seeds)."""

    params0: Any
    adjacency: Array
    train_prompts: Array
    heldout_prompts: Array
    seed: Array

    def key(self, salt: int) -> Array:
        """The seed's key for one use (``salt``): RL iterations 1, records 2, final measures 3, analysis 4."""
        return jax.random.fold_in(jax.random.key(self.seed), salt)


class RunData(NamedTuple):
    """What one RL run sees (stacked over runs, seed-major: run = seed · len(METHODS) + method)."""

    seed: SeedData
    use_simko: Array
    adv_weights: Array


def seed_data(config: Config, tasks: list[GraphWalks], base: Any) -> SeedData:
    """Every seed's base model, graph and prompts, stacked over seeds."""
    return SeedData(
        params0=base,
        adjacency=np.stack([t.adjacency for t in tasks]),
        train_prompts=np.stack([t.prompts(t.train_pairs) for t in tasks]),
        heldout_prompts=np.stack([t.prompts(t.heldout_pairs) for t in tasks]),
        seed=np.asarray(config.seeds, np.uint32),
    )

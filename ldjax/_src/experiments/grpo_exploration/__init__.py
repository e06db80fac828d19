r"""RL fine-tuning through the force lens: GRPO squeezes exploration, SimKO restores pass@k.

Ren's thesis (chapter 5, "Improve exploration in GRPO") reads the GRPO gradient of a sampled token as
:math:`A_{i}\,\nabla_\theta \log\pi(y_{i,l} \mid s_{i,l})` — the G-term of SFT/DPO scaled by the advantage.
Responses with negative advantage therefore put a *negative gradient* on tokens that are often already at or
near the argmax, and by the squeezing effect probability mass concentrates on the top-1 candidate: pass@1
rises while pass@k at large k falls below the base model ("RLVR hurts exploration"). SimKO (Peng et al.,
2025, CLR-Lab/SimKO) spreads the positive update over the top-K candidates and penalises the top-1 of a
negative response harder, at high-entropy tokens only (:func:`ldjax.losses.simko`).

The experiment, per seed (every method of a seed starts from the same base model, sees the same prompts in
the same order and draws the same random numbers: the comparisons are paired):

1. the task (:mod:`ldjax._src.data.graph_walks`): walk from a source to a goal in a seeded layered graph,
   binary verifiable reward, many correct answers per prompt, train and held-out prompts;
2. a base :class:`~ldjax.models.TinyTransformer` pre-trained with :func:`ldjax.train` on random walks written
   as solutions of train prompts (every seed's model in one stacked run: Adam is elementwise, so the seeds
   train independently);
3. RL from the base model with four methods, all with the same budget: ``grpo`` (group-normalised
   advantages, PPO's clipped ratio over ``minibatches`` updates per rollout, optional KL to the base model,
   off by default as in SimKO's runs), ``simko`` (the authors' K = 3, α = 0.01, λ = 1.1, τ = 0.8),
   ``psr`` and ``nsr`` (positive / negative samples only, the authors' ``compute_psr_nsr_outcome_advantage``:
   A = r and A = r − 1). Sampling and updates are jitted; the update is :func:`ldjax._src.training.update_fn`
   (the step :func:`ldjax.train` scans); all runs are one ``vmap``;
4. measures on held-out prompts over training (pass@1, the average k-th highest candidate probability at the
   generated tokens for k = 1…5, entropy) and at the end (pass@k for k = 1…256 from ``eval_samples``
   samples per prompt with the unbiased estimator :func:`pass_at_k`);
5. the force analysis of one GRPO update at the end of training, at the real Adam step
   (:func:`ldjax.predict_fn` with the run's optimizer state): predicted vs actual Δ log π on the rollout, and
   the prediction split (:func:`ldjax._src.first_order.split_change` with Adam's preconditioner) into the
   positive-advantage half, the negative-advantage half and Adam's momentum push: where the negative half
   moves probability (the argmax gains).

Quick settings (``Config()``): 3 seeds, 4 methods, 200 RL iterations of 16 prompts × 8 samples, a 2-layer
d=32 transformer: about 2 minutes on 2 CPU cores. ``FULL``: 5 seeds, a larger graph and model, 600
iterations, sized for one GPU.

The package: :mod:`~ldjax._src.experiments.grpo_exploration.world` (``Config``, ``FULL``, the methods, the
tasks, the model and the per-seed data), :mod:`~ldjax._src.experiments.grpo_exploration.measures` (pass@k,
candidate probabilities, KL, argmax gains: pure functions of arrays),
:mod:`~ldjax._src.experiments.grpo_exploration.programs` (the jitted sampling, RL update, measures and force
analysis), :mod:`~ldjax._src.experiments.grpo_exploration.phases` (pre-training, the RL loop, the force
analysis and the results they store), :mod:`~ldjax._src.experiments.grpo_exploration.report` (claims, checks
and figures); :func:`run` here chains the phases.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from ldjax._src.experiments import common
from ldjax._src.experiments.grpo_exploration.measures import TOP_CANDIDATES
from ldjax._src.experiments.grpo_exploration.measures import argmax_gain_stats
from ldjax._src.experiments.grpo_exploration.measures import brute_force_pass_at_k
from ldjax._src.experiments.grpo_exploration.measures import candidate_probs
from ldjax._src.experiments.grpo_exploration.measures import concentration
from ldjax._src.experiments.grpo_exploration.measures import pass_at_k
from ldjax._src.experiments.grpo_exploration.measures import reference_kl
from ldjax._src.experiments.grpo_exploration.phases import estimator_check
from ldjax._src.experiments.grpo_exploration.phases import force_analysis
from ldjax._src.experiments.grpo_exploration.phases import pretrain
from ldjax._src.experiments.grpo_exploration.phases import reinforce
from ldjax._src.experiments.grpo_exploration.phases import store_measures
from ldjax._src.experiments.grpo_exploration.programs import programs
from ldjax._src.experiments.grpo_exploration.programs import sample_fn
from ldjax._src.experiments.grpo_exploration.report import CRITERIA
from ldjax._src.experiments.grpo_exploration.report import SOURCE_GRPO
from ldjax._src.experiments.grpo_exploration.report import SOURCE_SIMKO
from ldjax._src.experiments.grpo_exploration.report import fidelity
from ldjax._src.experiments.grpo_exploration.report import plot
from ldjax._src.experiments.grpo_exploration.world import FULL
from ldjax._src.experiments.grpo_exploration.world import METHODS
from ldjax._src.experiments.grpo_exploration.world import TINY
from ldjax._src.experiments.grpo_exploration.world import Config
from ldjax._src.experiments.grpo_exploration.world import build_model
from ldjax._src.experiments.grpo_exploration.world import make_tasks
from ldjax._src.experiments.grpo_exploration.world import seed_data

__all__ = (
    "CRITERIA",
    "FULL",
    "METHODS",
    "SOURCE_GRPO",
    "SOURCE_SIMKO",
    "TINY",
    "TOP_CANDIDATES",
    "Config",
    "argmax_gain_stats",
    "brute_force_pass_at_k",
    "build_model",
    "candidate_probs",
    "concentration",
    "fidelity",
    "main",
    "pass_at_k",
    "plot",
    "reference_kl",
    "run",
    "sample_fn",
)


def run(config: Config, *, data_dir: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Pre-train, run every RL method from the same base model per seed, measure; deterministic given ``config``.

    Returns a dict with ``methods``, ``ks`` and, stacked ``[seeds, ...]``: ``base_*`` and ``<method>_*`` final
    measures (``passk`` ``[seeds, len(ks)]``, ``correct`` per held-out prompt, ``candidate_probs`` ``[seeds, 5]``,
    ``entropy``), ``<method>_curve_*`` over training (``[seeds, records]``; ``candidate_probs``
    ``[seeds, records, 5]``), ``<method>_train_reward`` per iteration, the force analysis ``force_*`` per seed,
    and the checks' numbers.
    """
    del data_dir  # synthetic task, no files
    tasks = make_tasks(config)
    apply_fn, params0 = build_model(config, tasks[0].vocab_size, tasks[0].seq_len, config.seeds)
    base, pretrain_losses = pretrain(config, tasks, apply_fn, params0, progress)
    compiled = programs(config, apply_fn, tasks[0].seq_len)
    seeds = seed_data(config, tasks, base)
    rl = reinforce(config, compiled, seeds, progress)

    ks = [2**j for j in range(int(np.log2(config.eval_samples)) + 1)]
    results: dict[str, Any] = {
        "dataset": f"layered-graph walks (synthetic, no files): {config.width} nodes × {config.steps + 1} layers, "
        f"out-degree {config.out_degree}, {config.n_train} train / {config.n_heldout} held-out prompts per seed",
        "methods": list(METHODS),
        "seeds": list(config.seeds),
        "ks": ks,
        "record_iterations": [config.record_every * r for r in range(len(rl.records))],
        "pretrain_losses": pretrain_losses,
        "solutions_per_heldout_prompt": [
            float(np.mean([t.path_counts[s, g] for s, g in t.heldout_pairs])) for t in tasks
        ],
    }
    store_measures(results, config, rl, ks)
    results.update(force_analysis(compiled, seeds, rl.carry))
    results.update(estimator_check(results["base_correct"][0], config.eval_samples, ks, seed=config.seeds[0]))
    return results


def main(argv: list[str] | None = None) -> int:
    return common.main(sys.modules[__name__], argv)

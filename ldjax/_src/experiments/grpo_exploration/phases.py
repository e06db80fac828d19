"""The phases of :mod:`ldjax._src.experiments.grpo_exploration` and the results they store.

:func:`pretrain` (every seed's base model), :func:`reinforce` (every RL run, recorded every
``record_every`` iterations), :func:`store_measures` (final and recorded measures per method),
:func:`force_analysis` (one GRPO update per seed, predicted, split and checked) and
:func:`estimator_check` (the pass@k estimator against brute force).
"""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ldjax._src.data.graph_walks import GraphWalks
from ldjax._src.experiments import common
from ldjax._src.experiments.grpo_exploration.measures import argmax_gain_stats
from ldjax._src.experiments.grpo_exploration.measures import brute_force_pass_at_k
from ldjax._src.experiments.grpo_exploration.measures import pass_at_k
from ldjax._src.experiments.grpo_exploration.programs import Programs
from ldjax._src.experiments.grpo_exploration.world import METHODS
from ldjax._src.experiments.grpo_exploration.world import Config
from ldjax._src.experiments.grpo_exploration.world import SeedData
from ldjax._src.losses import sequence as seq_losses
from ldjax._src.training import epoch_batches
from ldjax._src.training import train


def pretrain(
    config: Config, tasks: list[GraphWalks], apply_fn: Any, params: Any, progress: bool
) -> tuple[Any, np.ndarray]:
    """Every seed's base model in one :func:`ldjax.train` run on stacked parameters (Adam is elementwise)."""
    f = jax.vmap(apply_fn, (None, 0))
    corpus = np.concatenate([task.pretraining_corpus(config.pretrain_docs) for task in tasks])
    x, t = seq_losses.next_token_target(corpus, np.broadcast_to(tasks[0].response_mask(), corpus.shape))
    per_seed = lambda a: np.asarray(a).reshape(len(tasks), config.pretrain_docs, *np.shape(a)[1:])  # noqa: E731
    data = (per_seed(x), jax.tree.map(per_seed, t))
    batch = min(config.pretrain_batch, config.pretrain_docs)
    epochs = -(-config.pretrain_steps // (config.pretrain_docs // batch))
    idx = np.stack(
        [epoch_batches(jax.random.key(seed), config.pretrain_docs, batch, epochs) for seed in config.seeds],
        axis=1,
    )[: config.pretrain_steps]  # [steps, seeds, batch]

    def one_seed(p, i, x, t):
        return seq_losses.sft(f(p, x[i]), jax.tree.map(lambda a: a[i], t))

    def loss(stacked, i, data):
        return jnp.sum(jax.vmap(one_seed)(stacked, i, *data))

    result = train(
        loss, params, optax.adam(config.pretrain_lr), idx, data=data, progress=progress, desc="pre-train"
    )
    return result.params, np.asarray(result.losses) / len(tasks)


class Reinforced(NamedTuple):
    """The end of :func:`reinforce`: every run's ``(params, opt_state)`` and its measures."""

    carry: tuple
    records: list  # measure() of every record, the first before training
    rewards: list  # [S·M, record_every] mean train reward per chunk
    final: tuple  # measure() with eval_samples at the end


def reinforce(config: Config, programs: Programs, seeds: SeedData, progress: bool) -> Reinforced:
    """Every RL run from its seed's base model, measured on held-out prompts every ``record_every``
    iterations (``record_samples`` per prompt, salt 2) and at the end (``eval_samples``, salt 3)."""
    carry, runs = programs.start(seeds)
    records = [programs.measure(seeds, carry[0], samples=config.record_samples, salt=2, index=0)]
    rewards, n_chunks = [], config.iterations // config.record_every
    bar = common.progress(total=config.iterations, desc="RL", enabled=progress)
    for c in range(n_chunks):
        carry, (reward, _) = programs.chunk(carry, runs, c)
        rewards.append(np.asarray(reward))
        records.append(programs.measure(seeds, carry[0], samples=config.record_samples, salt=2, index=c + 1))
        bar.update(config.record_every)
    bar.close()
    final = programs.measure(seeds, carry[0], samples=config.eval_samples, salt=3, index=0)
    return Reinforced(carry, records, rewards, final)


def store_measures(results: dict[str, Any], config: Config, rl: Reinforced, ks: list[int]) -> None:
    """``base_*`` and ``<method>_*`` final measures, ``<method>_curve_*`` and ``<method>_train_reward``."""
    n_seeds, n_methods = len(config.seeds), len(METHODS)

    def split(a):  # the base models' rows, then the runs' rows as [seeds, methods, ...]
        a = np.asarray(a)
        return a[:n_seeds], a[n_seeds:].reshape(n_seeds, n_methods, *a.shape[1:])

    final = [split(a) for a in rl.final]  # (base [S, ...], runs [S, M, ...]) per measure
    curves = [[split(a) for a in r] for r in rl.records]
    store_eval(results, "base", [base_part for base_part, _ in final], config, ks)
    results["base_curve_pass1"] = np.asarray(curves[0][0][0]).mean(-1) / config.record_samples
    train_reward = np.concatenate(rl.rewards, axis=1).reshape(n_seeds, n_methods, -1)
    for j, method in enumerate(METHODS):
        store_eval(results, method, [runs_part[:, j] for _, runs_part in final], config, ks)
        results[f"{method}_train_reward"] = train_reward[:, j]
        over_time = [np.stack([r[m][1][:, j] for r in curves], axis=1) for m in range(3)]  # [S, records, ...]
        results[f"{method}_curve_pass1"] = over_time[0].mean(-1) / config.record_samples
        results[f"{method}_curve_candidate_probs"] = over_time[1]
        results[f"{method}_curve_entropy"] = over_time[2]


def force_analysis(programs: Programs, seeds: SeedData, carry: tuple) -> dict[str, Any]:
    """One GRPO update at the end of training per seed (real Adam step): predicted vs actual, split."""
    per_seed = []
    for s in range(len(seeds.seed)):
        one = jax.device_get(programs.analyse(seeds, carry[0], carry[1], s))
        change = programs.predict(
            one["params"], one["x"], one["x"], one["target"], opt_state=one["opt_state"]
        )
        per_seed.append({**one, "predicted": change.predicted, "actual": change.actual})
    return store_force(per_seed)


def store_eval(results: dict, name: str, evaluation, config: Config, ks: list[int]) -> None:
    """``<name>_correct``, ``_passk``, ``_candidate_probs`` and ``_entropy`` of one model per seed."""
    correct, probs, entropy = (np.asarray(a) for a in evaluation)
    results[f"{name}_correct"] = correct  # [seeds, n_heldout]
    results[f"{name}_passk"] = np.stack([pass_at_k(c, config.eval_samples, ks) for c in correct])
    results[f"{name}_candidate_probs"] = probs
    results[f"{name}_entropy"] = entropy


def store_force(per_seed: list[dict]) -> dict[str, Any]:
    """The ``force_*`` results: the checks' errors, where each part moves probability, a scatter sample."""
    out: dict[str, Any] = {}
    corr, split_err, g_err, stats = [], [], [], {"positive": [], "negative": [], "momentum": []}
    for r in per_seed:
        mask = np.asarray(r["target"].mask) > 0
        pred, act = np.asarray(r["predicted"])[mask].ravel(), np.asarray(r["actual"])[mask].ravel()
        corr.append(float(np.corrcoef(pred, act)[0, 1]))
        total = np.asarray(r["halves"]).sum(0) + np.asarray(r["momentum"])
        scale = max(float(np.abs(r["predicted"]).max()), 1e-30)
        split_err.append(float(np.abs(total - np.asarray(r["predicted"])).max() / scale))
        g_scale = max(float(np.abs(r["g"]).max()), 1e-30)
        g_err.append(float(np.abs(np.asarray(r["closed"]) - np.asarray(r["g"])).max() / g_scale))
        for name, change in (
            ("positive", r["halves"][0]),
            ("negative", r["halves"][1]),
            ("momentum", r["momentum"]),
        ):
            stats[name].append(argmax_gain_stats(change, r["logits"], r["target"]))
    out["force_corr"] = corr
    out["force_split_rel_error"] = split_err
    out["force_closed_form_rel_error"] = g_err
    for name, rows in stats.items():
        for key in rows[0]:
            out[f"force_{name}_{key}"] = [row[key] for row in rows]
    first = per_seed[0]
    mask = np.asarray(first["target"].mask) > 0
    out["force_scatter_predicted"] = np.asarray(first["predicted"])[mask].ravel()[::7]  # a subsample to plot
    out["force_scatter_actual"] = np.asarray(first["actual"])[mask].ravel()[::7]
    out["force_negative_rows"] = [int(np.sum(np.asarray(r["target"].advantages) < 0)) for r in per_seed]
    return out


def estimator_check(correct: np.ndarray, n: int, ks: list[int], *, seed: int, draws: int = 2000) -> dict:
    """pass@k by the unbiased estimator vs brute force (random k-subsets of each prompt's n outcomes)."""
    check_ks = [k for k in ks if 1 < k < n][1::2][:3]
    brute = [brute_force_pass_at_k(correct, n, k, draws=draws, seed=seed + k) for k in check_ks]
    return {
        "estimator_ks": check_ks,
        "estimator_unbiased": pass_at_k(correct, n, check_ks),
        "estimator_brute_force": np.asarray(brute),
        "estimator_draws": draws,
    }

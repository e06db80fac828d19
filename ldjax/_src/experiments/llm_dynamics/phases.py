r"""The training phases of the LLM experiment, each ONE compiled :func:`ldjax.train` loop over copies.

A copy is one seed of one method: the copies' parameters are stacked on a leading axis and trained on the
sum of their losses (:func:`over_copies`), so each gets its own loss's gradient and, Adam being element-wise,
runs on its own. The methods that share a data shape run as copies of one loop (``sft`` with ``extend_sft``;
``dpo``, ``dpo_base``, ``ipo`` and ``extend``), which costs one compilation instead of one per method.
Every fine-tuning phase records :func:`~ldjax._src.experiments.llm_dynamics.world.probe_stats`, its loss and ‖G‖ on
its whole training set every ``record_every`` updates.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array
from jaxtyping import Bool
from jaxtyping import Int

from ldjax._src.data.language import EOS
from ldjax._src.data.language import PROMPT_LEN
from ldjax._src.experiments.llm_dynamics.world import Config
from ldjax._src.experiments.llm_dynamics.world import Model
from ldjax._src.experiments.llm_dynamics.world import Tokens
from ldjax._src.experiments.llm_dynamics.world import World
from ldjax._src.experiments.llm_dynamics.world import concat_trees
from ldjax._src.experiments.llm_dynamics.world import decode
from ldjax._src.experiments.llm_dynamics.world import probe_stats
from ldjax._src.experiments.llm_dynamics.world import response_mask
from ldjax._src.experiments.llm_dynamics.world import slice_trees
from ldjax._src.experiments.llm_dynamics.world import take_rows
from ldjax._src.experiments.llm_dynamics.world import tokens_of
from ldjax._src.losses import sequence as seq_losses
from ldjax._src.training import TrainResult
from ldjax._src.training import epoch_batches
from ldjax._src.training import train


def batch_order(config: Config, n: int, batch: int, epochs: int, stream: int) -> Int[Array, "steps S B"]:
    """Each seed's minibatch order for one data stream (the same stream gives paired orders across methods)."""
    keys = [jax.random.fold_in(jax.random.key(config.seed + k), stream) for k in range(config.seeds)]
    return jnp.asarray(np.stack([epoch_batches(key, n, min(batch, n), epochs) for key in keys], axis=1))


def tile_order(order: Array, copies: int) -> Array:
    """``[steps, S, B] -> [steps, copies * S, B]``: every method of a seed sees that seed's order."""
    return jnp.asarray(np.concatenate([order] * copies, axis=1))


def over_copies(per_copy: Callable[..., Array]) -> Callable[..., Array]:
    """``loss(params, batch, data)`` summed over the leading copy axis (seeds, or methods × seeds): each
    copy's gradient is its own loss's, and Adam is element-wise, so each copy trains on its own."""

    def loss(params: Any, batch: Any, data: Any) -> Array:
        return jnp.sum(jax.vmap(per_copy)(params, batch, data))

    return loss


def _recorder(
    model: Model, loss_and_force: Callable[[Any, dict], tuple[Array, Array]]
) -> Callable[..., dict]:
    """The ``record`` hook of a fine-tuning phase: :func:`probe_stats`, the loss and ‖G‖ on the whole
    training set, for every copy."""

    def record(params: Any, step: Array, data: dict) -> dict:
        del step

        def one(p: Any, d: dict) -> dict:
            out = probe_stats(model.batched, p, d["probes"], d["valley"])
            out["loss"], g = loss_and_force(p, d)
            out["g_norm"] = jnp.linalg.norm(g)
            return out

        return jax.vmap(one)(params, data)

    return record


def _finetune(
    config: Config,
    loss: Callable,
    params: Any,
    batches: Any,
    data: dict,
    record: Callable,
    lr: float,
    desc: str,
    progress: bool,
) -> TrainResult:
    every = config.record_every
    steps = (jax.tree.leaves(batches)[0].shape[0] // every) * every
    batches = jax.tree.map(lambda a: a[:steps], batches)
    return train(
        loss,
        params,
        optax.adam(lr),
        batches,
        record=record,
        every=every,
        data=data,
        progress=progress,
        desc=desc,
    )


def pretrain(config: Config, model: Model, world: World, params: Any, *, progress: bool) -> TrainResult:
    """Next-token training on every seed's pre-training corpus (cosine-decayed Adam)."""
    corpus = world.pretrain
    order = batch_order(config, corpus.x.shape[1], config.pretrain_batch, config.pretrain_epochs, stream=0)

    def per_seed(p: Any, rows: Array, data: Tokens) -> Array:
        batch = take_rows(data, rows)
        return seq_losses.sft(model.batched(p, batch.x), seq_losses.SequenceTarget(batch.tokens, batch.mask))

    schedule = optax.cosine_decay_schedule(config.pretrain_lr, order.shape[0], alpha=0.05)
    return train(
        over_copies(per_seed),
        params,
        optax.adam(schedule),
        order,
        data=corpus,
        progress=progress,
        desc="pre-train",
    )


def supervised(
    config: Config, model: Model, world: World, params: Any, sets: dict[str, Tokens], *, progress: bool
) -> dict[str, TrainResult]:
    """SFT from ``params`` on each of ``sets`` (every training prompt with its answers; the sets have one
    shape), all in ONE compiled loop, recorded every ``record_every`` updates; the same minibatch order."""
    names = tuple(sets)
    copies = len(names)
    tile = functools.partial(jax.tree.map, lambda a: jnp.asarray(np.concatenate([a] * copies)))
    data = concat_trees(list(sets.values()))
    order = batch_order(config, data.x.shape[1], config.finetune_batch, config.sft_epochs, stream=1)

    def per_copy(p: Any, rows: Array, d: dict) -> Array:
        batch = take_rows(d["train"], rows)
        return seq_losses.sft(model.batched(p, batch.x), seq_losses.SequenceTarget(batch.tokens, batch.mask))

    def loss_and_force(p: Any, d: dict) -> tuple[Array, Array]:
        z, t = model.batched(p, d["train"].x), seq_losses.SequenceTarget(d["train"].tokens, d["train"].mask)
        return seq_losses.sft(z, t), seq_losses.sft_g(z, t)

    bundle = {"train": data, "probes": tile(world.probes), "valley": tile(model.valley(params, world.probes))}
    record = _recorder(model, loss_and_force)
    r = _finetune(
        config,
        over_copies(per_copy),
        tile(params),
        tile_order(order, copies),
        bundle,
        record,
        config.sft_lr,
        "sft / extend sft",
        progress,
    )
    return split_copies(config, r, names)


def split_copies(config: Config, r: TrainResult, names: tuple[str, ...]) -> dict[str, TrainResult]:
    """One :class:`TrainResult` per method of a run whose copies are methods × seeds."""
    s = config.seeds
    return {
        name: TrainResult(
            slice_trees(r.params, k * s, (k + 1) * s),
            None,
            r.losses,
            slice_trees(r.records, k * s, (k + 1) * s, 1),
            None,
        )
        for k, name in enumerate(names)
    }


def preference_loss(config: Config, kind: str) -> tuple[Callable, Callable]:
    """``(loss, force)`` of DPO (β = ``beta``) or IPO (τ = ``ipo_tau``)."""
    if kind == "dpo":
        return seq_losses.dpo_fn(config.beta), lambda z, t: seq_losses.dpo_g(z, t, beta=config.beta)
    if kind == "ipo":
        return seq_losses.ipo_fn(config.ipo_tau), lambda z, t: seq_losses.ipo_g(z, t, tau=config.ipo_tau)
    raise ValueError(f"kind must be 'dpo' or 'ipo', got {kind!r}")


def preference_order(config: Config, m: int) -> Int[Array, "steps S B"]:
    """The order of preference pairs, shared by every preference phase of a seed (paired comparisons)."""
    return batch_order(config, m, config.finetune_batch, config.pref_epochs, stream=2)


def preferences(
    config: Config, model: Model, world: World, starts: dict[str, tuple[str, Any]], *, progress: bool
) -> dict[str, TrainResult]:
    """Off-policy DPO / IPO on the language's pairs, every method of ``starts`` in ONE compiled loop.

    Args:
      starts: ``{phase: (kind, params)}``, kind ``"dpo"`` or ``"ipo"``; each phase starts from its
        ``params`` (stacked over seeds), which are also its reference model.

    Returns:
      One :class:`TrainResult` per phase (``losses`` hold the loss of all phases together).
    """
    names = tuple(starts)
    pairs = world.pairs
    m = pairs.x.shape[1] // 2
    copies = len(names)
    tile = functools.partial(jax.tree.map, lambda a: jnp.asarray(np.concatenate([a] * copies)))
    dpo, dpo_force = preference_loss(config, "dpo")
    ipo, ipo_force = preference_loss(config, "ipo")

    def target(d: dict, rows: Array | None = None) -> tuple[Array, seq_losses.PreferenceTarget]:
        t, ref = d["train"], d["ref"]
        if rows is not None:
            t, ref = take_rows(t, rows), ref[rows]
        return t.x, seq_losses.PreferenceTarget(t.tokens, t.mask, ref)

    def per_copy(p: Any, idx: Array, d: dict) -> Array:
        x, tgt = target(d, jnp.concatenate([idx, idx + m]))
        z = model.batched(p, x)
        return jnp.where(d["ipo"], ipo(z, tgt), dpo(z, tgt))

    def loss_and_force(p: Any, d: dict) -> tuple[Array, Array]:
        x, tgt = target(d)
        z = model.batched(p, x)
        loss = jnp.where(d["ipo"], ipo(z, tgt), dpo(z, tgt))
        return loss, jnp.where(d["ipo"], ipo_force(z, tgt), dpo_force(z, tgt))

    params = concat_trees([start for _, start in starts.values()])
    bundle = {
        "train": tile(pairs),
        "ref": jnp.concatenate([model.reference(start, pairs) for _, start in starts.values()]),
        "ipo": jnp.repeat(jnp.asarray([kind == "ipo" for kind, _ in starts.values()]), config.seeds),
        "probes": tile(world.probes),
        "valley": jnp.concatenate([model.valley(start, world.probes) for _, start in starts.values()]),
    }
    order = tile_order(preference_order(config, m), copies)
    record = _recorder(model, loss_and_force)
    r = _finetune(
        config,
        over_copies(per_copy),
        params,
        order,
        bundle,
        record,
        config.pref_lr,
        "dpo / ipo / extend",
        progress,
    )

    return split_copies(config, r, names)


def sampled_pairs(
    batched: Callable,
    params: Any,
    prompts: Int[Array, "B L"],
    allowed: Bool[Array, "B R V"],
    key: Array,
    temperature: float,
    eos_id: int,
) -> Tokens:
    """Two answers per prompt sampled from ``params``, ranked by the reward (acceptable words, see
    :meth:`Language.reward`): y⁺ rows first, y⁻ rows second; a tied pair gets zero mask (no force)."""
    seqs = decode(batched, params, jnp.concatenate([prompts] * 2), key, temperature)
    ok = jnp.take_along_axis(jnp.concatenate([allowed] * 2), seqs[:, PROMPT_LEN:, None], -1)[..., 0]
    reward = jnp.sum(ok * response_mask(seqs, eos_id)[:, PROMPT_LEN:], -1)
    b = prompts.shape[0]
    first_wins = (reward[:b] >= reward[b:])[:, None]
    both = jnp.concatenate(
        [jnp.where(first_wins, seqs[:b], seqs[b:]), jnp.where(first_wins, seqs[b:], seqs[:b])]
    )
    weight = jnp.tile(reward[:b] != reward[b:], 2).astype(jnp.float32)
    return tokens_of(both, response_mask(both, eos_id) * weight[:, None])


def on_policy(config: Config, model: Model, world: World, params: Any, *, progress: bool) -> TrainResult:
    """DPO on pairs sampled from the CURRENT model at every update (:func:`sampled_pairs`, no gradient
    through the sampler, temperature ``temperature``); reference = ``params``; prompts in the order of
    :func:`preferences`. The recorded loss and ‖G‖ are those of DPO on the language's (off-policy) pairs."""
    eos_id = world.languages[0].index[EOS]
    order = preference_order(config, world.prompts.shape[1])
    keys = [jax.random.fold_in(jax.random.key(config.seed + k), 3) for k in range(config.seeds)]
    sample_keys = jnp.stack([jax.random.key_data(jax.random.split(k, order.shape[0])) for k in keys], axis=1)
    dpo, dpo_force = preference_loss(config, "dpo")

    def per_seed(p: Any, batch: tuple[Array, Array], d: dict) -> Array:
        idx, raw_key = batch
        key = jax.random.wrap_key_data(raw_key)
        t = sampled_pairs(
            model.batched,
            jax.lax.stop_gradient(p),
            d["prompts"][idx],
            d["allowed"][idx],
            key,
            config.temperature,
            eos_id,
        )
        ref = seq_losses.sequence_log_prob(model.batched(d["ref_params"], t.x), t.tokens, t.mask)
        return dpo(model.batched(p, t.x), seq_losses.PreferenceTarget(t.tokens, t.mask, ref))

    def loss_and_force(p: Any, d: dict) -> tuple[Array, Array]:
        z = model.batched(p, d["train"].x)
        tgt = seq_losses.PreferenceTarget(d["train"].tokens, d["train"].mask, d["ref"])
        return dpo(z, tgt), dpo_force(z, tgt)

    bundle = {
        "prompts": world.prompts,
        "allowed": world.allowed,
        "ref_params": params,
        "train": world.pairs,
        "ref": model.reference(params, world.pairs),
        "probes": world.probes,
        "valley": model.valley(params, world.probes),
    }
    record = _recorder(model, loss_and_force)
    return _finetune(
        config,
        over_copies(per_seed),
        params,
        (order, sample_keys),
        bundle,
        record,
        config.pref_lr,
        "on-policy dpo",
        progress,
    )

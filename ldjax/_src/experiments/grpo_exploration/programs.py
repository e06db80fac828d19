"""The jitted programs of :mod:`ldjax._src.experiments.grpo_exploration`: sampling, the RL update, the
held-out measures and the force analysis of one GRPO update.

Each program is a top-level function of a :class:`Setup` (what every program shares: the settings, the
model and the optimizer) and arrays; :func:`programs` binds the setup and compiles them once per run.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jaxtyping import Array

import ldjax
from ldjax._src.data.graph_walks import PROMPT_LEN
from ldjax._src.data.graph_walks import walk_rewards
from ldjax._src.experiments.grpo_exploration.measures import candidate_probs
from ldjax._src.experiments.grpo_exploration.measures import reference_kl
from ldjax._src.experiments.grpo_exploration.world import METHOD_TABLE
from ldjax._src.experiments.grpo_exploration.world import METHODS
from ldjax._src.experiments.grpo_exploration.world import Config
from ldjax._src.experiments.grpo_exploration.world import RunData
from ldjax._src.experiments.grpo_exploration.world import SeedData
from ldjax._src.first_order import batch_update
from ldjax._src.first_order import probe_change
from ldjax._src.first_order import split_change
from ldjax._src.losses import policy
from ldjax._src.losses import sequence as seq_losses
from ldjax._src.training import update_fn


def sample_fn(apply_fn, prompt_len: int = PROMPT_LEN):
    """``sample(params, prompts[n, S], key) -> seqs[n, S]``: ancestral sampling at temperature 1.

    Positions ``prompt_len .. S-1`` are filled left to right; each step recomputes the prefix (no KV
    cache; the sequences are short). Position ``i`` draws with ``fold_in(key, i)``: the same key gives the
    same sequences. Traceable (call it under ``jax.jit``/``vmap``).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ldjax._src.experiments.grpo_exploration import sample_fn
      >>> f = lambda p, tokens: jnp.tile(p, (tokens.shape[0], 1))  # the same logits at every position
      >>> seqs = jax.jit(sample_fn(f, prompt_len=1))(jnp.array([0.0, 9.0]), jnp.zeros((2, 3), int), jax.random.key(0))
      >>> seqs.tolist()  # token 1 has probability 0.9999
      [[0, 1, 1], [0, 1, 1]]
    """
    f = jax.vmap(apply_fn, (None, 0))

    def sample(params, prompts, key):
        seqs = prompts
        for i in range(prompt_len, prompts.shape[1]):
            logits = f(params, seqs[:, :i])[:, -1]
            nxt = jax.random.categorical(jax.random.fold_in(key, i), logits)
            seqs = seqs.at[:, i].set(nxt.astype(seqs.dtype))
        return seqs

    return sample


def advantages(rewards: Array, weights: Array, group: int) -> Array:
    """A method's advantage: ``weights`` · [group-normalised, r, r − 1] (:data:`~.world.METHOD_TABLE`)."""
    return (
        weights[0] * policy.group_advantages(rewards, group)
        + weights[1] * rewards
        + weights[2] * (rewards - 1.0)
    )


class Setup(NamedTuple):
    """What every program of a run shares (bound with ``functools.partial``, never traced)."""

    config: Config
    apply_fn: Callable[..., Array]
    batched: Callable[..., Array]  # apply_fn over a batch of sequences
    sample: Callable[..., Array]  # :func:`sample_fn`
    response: Array  # [seq_len]: 1 at the response positions
    optimizer: optax.GradientTransformation
    update: Callable[..., Any]  # :func:`ldjax._src.training.update_fn` of :func:`rl_loss`


def rl_loss(config: Config, batched: Callable[..., Array], params: Any, rows: Array, data: tuple) -> Array:
    """The loss of one minibatch ``rows`` of a rollout ``data = (x, target, ref, simko_on)``.

    SimKO with α = 0 and λ = 1 is GRPO exactly (same value and force): one loss, the method as data.
    """
    x, target, ref, simko_on = data
    sub = jax.tree.map(lambda a: a[rows], target)
    z = batched(params, x[rows])
    loss = policy.simko(
        z,
        sub,
        top_k=config.top_k,
        alpha=config.alpha * simko_on,
        scale=1.0 + (config.scale - 1.0) * simko_on,
        quantile=config.quantile,
        clip=config.clip,
    )
    if config.kl_coef:
        loss = loss + config.kl_coef * reference_kl(z, sub, ref[rows])
    return loss


def make_setup(config: Config, apply_fn: Callable[..., Array], seq_len: int) -> Setup:
    """The :class:`Setup` of a run, after checking that the rollout splits into ``minibatches``."""
    n_rows = config.group_size * config.prompts_per_iteration
    if n_rows % config.minibatches:
        raise ValueError(
            f"prompts_per_iteration * group_size = {n_rows} must be divisible by minibatches={config.minibatches}"
        )
    batched = jax.vmap(apply_fn, (None, 0))
    optimizer = optax.adam(config.rl_lr)
    return Setup(
        config=config,
        apply_fn=apply_fn,
        batched=batched,
        sample=sample_fn(apply_fn),
        response=jnp.zeros(seq_len).at[PROMPT_LEN:].set(1.0),
        optimizer=optimizer,
        update=update_fn(functools.partial(rl_loss, config, batched), optimizer),
    )


def per_run(a: Array) -> Array:
    """Repeat a per-seed array for every method (seed-major runs)."""
    return jnp.repeat(a, len(METHODS), axis=0)


def rollout(setup: Setup, params: Any, seed: SeedData, key: Array) -> tuple[Array, Any, Array]:
    """``group_size`` samples of ``prompts_per_iteration`` random train prompts: inputs, targets, rewards."""
    config = setup.config
    k_prompts, k_sample = jax.random.split(key)
    idx = jax.random.choice(
        k_prompts, seed.train_prompts.shape[0], (config.prompts_per_iteration,), replace=False
    )
    seqs = setup.sample(params, jnp.repeat(seed.train_prompts[idx], config.group_size, axis=0), k_sample)
    rewards = walk_rewards(seed.adjacency, seqs)
    x, st = seq_losses.next_token_target(seqs, jnp.broadcast_to(setup.response, seqs.shape))
    return x, st, rewards


def iteration(setup: Setup, carry: tuple, key: Array, run: RunData) -> tuple[tuple, tuple[Array, Array]]:
    """One RL iteration of one run: a rollout, then ``minibatches`` updates on it; (mean reward, mean loss)."""
    config, f = setup.config, setup.batched
    params, opt_state = carry
    x, st, rewards = rollout(setup, params, run.seed, key)
    adv = advantages(rewards, run.adv_weights, config.group_size)
    old = jax.lax.stop_gradient(seq_losses.token_log_probs(f(params, x), st.tokens))
    ref = seq_losses.token_log_probs(f(run.seed.params0, x), st.tokens) if config.kl_coef else old
    data = (x, policy.PolicyTarget(st.tokens, st.mask, adv, old), ref, run.use_simko)
    minibatch_rows = jnp.arange(config.group_size * config.prompts_per_iteration).reshape(
        config.minibatches, -1
    )
    carry, (losses, _) = jax.lax.scan(lambda c, rows: setup.update(c, rows, data), carry, minibatch_rows)
    return carry, (jnp.mean(rewards), jnp.mean(losses))


def start(setup: Setup, seeds: SeedData) -> tuple[tuple, RunData]:
    """Every run (seed-major: run = seed · len(METHODS) + method) at its seed's base model, fresh Adam."""
    use_simko = jnp.asarray([METHOD_TABLE[m][0] for m in METHODS])
    adv_weights = jnp.asarray([METHOD_TABLE[m][1] for m in METHODS])
    runs = RunData(
        seed=jax.tree.map(per_run, seeds),
        use_simko=jnp.tile(use_simko, len(seeds.seed)),
        adv_weights=jnp.tile(adv_weights, (len(seeds.seed), 1)),
    )
    return (runs.seed.params0, jax.vmap(setup.optimizer.init)(runs.seed.params0)), runs


def chunk(setup: Setup, carry: tuple, run: RunData, index: Array) -> tuple[tuple, tuple[Array, Array]]:
    """Iterations ``index·record_every …`` of one run. Iteration ``i`` draws with ``fold_in(key, i)``:
    the runs of a seed share their keys (paired runs) and the record period does not change them."""
    steps = index * setup.config.record_every + jnp.arange(setup.config.record_every)
    keys = jax.vmap(lambda i: jax.random.fold_in(run.seed.key(1), i))(steps)
    return jax.lax.scan(lambda c, k: iteration(setup, c, k, run), carry, keys)


def measure(setup: Setup, seeds: SeedData, params: Any, samples: int, salt: Any, index: Any) -> tuple:
    """Held-out samples of the base models ``[S]`` followed by ``params`` ``[S·M]``, one row at a time.

    Returns ``(correct [S + S·M, n_heldout], candidate_probs [.., 5], entropy [..])``; every row of a
    seed draws with the same key.
    """
    stacked = jax.tree.map(lambda b, p: jnp.concatenate([b, p]), seeds.params0, params)
    keys = jax.vmap(lambda seed: jax.random.fold_in(SeedData.key(seed, salt), index))(seeds)
    rows = (
        jnp.concatenate([seeds.adjacency, per_run(seeds.adjacency)]),
        jnp.concatenate([seeds.heldout_prompts, per_run(seeds.heldout_prompts)]),
        jnp.concatenate([keys, per_run(keys)]),
    )

    def one(args):
        p, (adj, prompts, key) = args
        seqs = setup.sample(p, jnp.repeat(prompts, samples, axis=0), key)
        correct = walk_rewards(adj, seqs).reshape(prompts.shape[0], samples).sum(axis=1)
        x, st = seq_losses.next_token_target(seqs, jnp.broadcast_to(setup.response, seqs.shape))
        probs, entropy = candidate_probs(setup.batched(p, x), st.mask)
        return correct, probs, entropy

    return jax.lax.map(one, (stacked, rows))


def analyse_one(setup: Setup, seed: SeedData, params: Any, opt_state: Any) -> dict[str, Any]:
    """One GRPO update (real Adam step) on a fresh rollout, its prediction split into the positive half,
    the negative half (Adam's preconditioner) and Adam's momentum push; the closed-form force."""
    apply_fn, optimizer = setup.apply_fn, setup.optimizer
    x, st, rewards = rollout(setup, params, seed, seed.key(4))
    target = policy.PolicyTarget(
        st.tokens, st.mask, policy.group_advantages(rewards, setup.config.group_size)
    )
    step = batch_update(apply_fn, params, x, target, policy.grpo, optimizer, opt_state)
    up = ldjax.optimizer_update(step.grads, opt_state, optimizer="adam", learning_rate=setup.config.rl_lr)
    masks = jnp.stack([target.advantages > 0, target.advantages < 0]).astype(jnp.float32)
    halves = split_change(
        apply_fn,
        params,
        x,
        x,
        masks,
        g=step.g,
        preconditioner=up.preconditioner,
        coefficient=up.coefficient,
    )
    logits = setup.batched(params, x)
    return {
        "x": x,
        "target": target,
        "halves": halves,
        "momentum": probe_change(apply_fn, params, up.momentum_update, x)[0],
        "g": step.g,
        "closed": policy.grpo_g(logits, target),
        "logits": logits,
        "params": params,
        "opt_state": opt_state,
    }


def analyse(setup: Setup, seeds: SeedData, params: Any, opt_state: Any, seed_index: Any) -> dict[str, Any]:
    """:func:`analyse_one` from seed ``seed_index``'s final GRPO model."""
    run = seed_index * len(METHODS) + METHODS.index("grpo")
    pick = lambda tree, i: jax.tree.map(lambda a: a[i], tree)  # noqa: E731
    return analyse_one(setup, pick(seeds, seed_index), pick(params, run), pick(opt_state, run))


class Programs(NamedTuple):
    """The jitted programs of the RL phase and the force analysis."""

    start: Any
    chunk: Any
    measure: Any
    analyse: Any
    predict: Any
    optimizer: Any


def programs(config: Config, apply_fn: Callable[..., Array], seq_len: int) -> Programs:
    """``start`` (runs from seeds), ``chunk`` (RL iterations of every run), ``measure`` (held-out samples),
    ``analyse`` and ``predict`` (the force analysis), compiled once."""
    setup = make_setup(config, apply_fn, seq_len)
    return Programs(
        start=jax.jit(functools.partial(start, setup)),
        chunk=jax.jit(jax.vmap(functools.partial(chunk, setup), in_axes=(0, 0, None))),
        measure=jax.jit(functools.partial(measure, setup), static_argnames="samples"),
        analyse=jax.jit(functools.partial(analyse, setup)),
        predict=ldjax.predict_fn(apply_fn, policy.grpo, optimizer=setup.optimizer, actual=True),
        optimizer=setup.optimizer,
    )

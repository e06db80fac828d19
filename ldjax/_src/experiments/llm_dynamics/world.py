r"""The set-up of the LLM experiment: settings, every seed's data and model, probes, decoding.

Every array of a :class:`World` and every parameter pytree has a leading seed axis ``S`` (seed ``k`` is
``config.seed + k``: its language, initialisation and data order); the functions named for one seed are
vmapped over it. See :mod:`ldjax._src.experiments.llm_dynamics`.
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
from flax import nnx
from jaxtyping import Array
from jaxtyping import Bool
from jaxtyping import Float
from jaxtyping import Int

import ldjax
from ldjax._src.data import language as lang_lib
from ldjax._src.data.language import MAX_LEN
from ldjax._src.data.language import PROBE_TYPES
from ldjax._src.data.language import PROMPT_LEN
from ldjax._src.data.language import Language
from ldjax._src.losses import sequence as seq_losses
from ldjax._src.models.transformer import TinyTransformer
from ldjax._src.models.transformer import count_params


@dataclasses.dataclass(frozen=True)
class Config:
    """Quick settings (learning rates are Adam's): about 150 s of CPU time (user + sys) for the whole run,
    3 seeds, 135k parameters each; ``TINY`` is the smoke test, ``FULL`` the one-GPU size.

    Seeds ``seed .. seed + seeds - 1`` run side by side: their parameters are stacked and trained by ONE
    compiled loop on the sum of their losses, so each seed gets its own loss's gradient and (Adam being
    element-wise) runs on its own, up to float round-off.
    """

    seed: int = 0
    seeds: int = 3
    n_entities: int = 32
    n_chatter: int = 400
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    d_ff: int = 128
    pretrain_epochs: int = 15
    pretrain_batch: int = 32
    pretrain_lr: float = 3e-3
    sft_epochs: int = 12
    sft_lr: float = 1e-3
    pref_epochs: int = 40
    pref_lr: float = 3e-4
    finetune_batch: int = 8
    beta: float = 0.1
    ipo_tau: float = 0.1
    temperature: float = 1.0
    record_every: int = 5


FULL = Config(
    seeds=5,
    n_entities=128,
    n_chatter=3000,
    d_model=384,
    n_heads=6,
    n_layers=8,
    d_ff=1536,
    pretrain_epochs=30,
    pretrain_batch=64,
    pretrain_lr=1e-3,
    sft_lr=3e-4,
    pref_lr=1e-4,
    finetune_batch=16,
    record_every=10,
)


TINY = Config(
    n_entities=8,
    n_chatter=40,
    d_model=16,
    n_heads=2,
    n_layers=1,
    d_ff=32,
    pretrain_epochs=2,
    sft_epochs=2,
    pref_epochs=2,
    finetune_batch=4,
    record_every=1,
)
"""The smoke-test size (the test suite and the notebook under ``LDJAX_NOTEBOOK_TINY``): every phase runs."""


class Tokens(NamedTuple):
    """Model inputs and next-token targets; in a :class:`World` every leaf has a leading seed axis."""

    x: Int[Array, "*s n T"]
    tokens: Int[Array, "*s n T"]
    mask: Float[Array, "*s n T"]


class World(NamedTuple):
    """Every seed's language and data, stacked on a leading seed axis ``S``."""

    languages: tuple[Language, ...]
    pretrain: Tokens
    sft: Tokens
    extend: Tokens
    pairs: Tokens  # y⁺ rows [0, m), y⁻ rows [m, 2m)
    probes: Tokens  # [S, types * m, T]: every probe type of every training prompt
    heldout: Tokens  # [S, types * q, T]: the same for the test prompts
    prompts: Int[Array, "S m L"]  # training prompts, zero after <sep>
    allowed: Bool[Array, "S m R V"]  # acceptable word at each response position (the reward)
    queries: Int[Array, "S n L"]  # train then test prompts (generation)


class Model(NamedTuple):
    """The architecture shared by every seed and the programs compiled once per run.

    Attributes:
      apply_fn: ``apply_fn(params, x[T]) -> logits [T, V]`` of one seed.
      batched: ``batched(params, x[n, T]) -> [n, T, V]`` of one seed.
      valley: :func:`valley_mask` of every seed, compiled.
      reference: :func:`reference_logp` of every seed, compiled.
      greedy: greedy answers of every seed, ``(params, queries [S, n, L]) -> [S, n, L]``, compiled.
    """

    apply_fn: Callable[..., Array]
    batched: Callable[..., Array]
    valley: Callable[..., Array]
    reference: Callable[..., Array]
    greedy: Callable[..., Array]


def tokens_of(seqs: Any, masks: Any) -> Tokens:
    x, target = seq_losses.next_token_target(jnp.asarray(seqs), jnp.asarray(masks))
    return Tokens(x, target.tokens, target.mask)


def stack_trees(trees: list[Any]) -> Any:  # on the host: no compiled program per leaf shape
    return jax.tree.map(lambda *leaves: jnp.asarray(np.stack(leaves)), *trees)


def concat_trees(trees: list[Any]) -> Any:
    return jax.tree.map(lambda *leaves: jnp.asarray(np.concatenate(leaves)), *trees)


def slice_trees(tree: Any, start: int, stop: int, axis: int = 0) -> Any:
    return jax.tree.map(lambda a: jnp.asarray(np.asarray(a).take(np.arange(start, stop), axis=axis)), tree)


def make_world(config: Config) -> World:
    """Build every seed's language and tokenise its corpora, fine-tuning sets and probes."""
    langs = tuple(
        Language(config.n_entities, n_chatter=config.n_chatter, seed=config.seed + k)
        for k in range(config.seeds)
    )

    def probes(lang: Language, prompts: tuple) -> Tokens:
        seqs, masks = lang.probe_batch(prompts)
        return tokens_of(seqs.reshape(-1, MAX_LEN), masks.reshape(-1, MAX_LEN))

    return World(
        languages=langs,
        pretrain=stack_trees([tokens_of(*g.pretraining_corpus()) for g in langs]),
        sft=stack_trees([tokens_of(*g.sft_pairs()) for g in langs]),
        extend=stack_trees([tokens_of(*g.sft_pairs(with_rejected=True)) for g in langs]),
        pairs=stack_trees([tokens_of(*g.preference_pairs()) for g in langs]),
        probes=stack_trees([probes(g, g.train_prompts) for g in langs]),
        heldout=stack_trees([probes(g, g.test_prompts) for g in langs]),
        prompts=jnp.stack([g.prompt_batch(g.train_prompts) for g in langs]),
        allowed=jnp.stack([g.allowed(g.train_prompts) for g in langs]),
        queries=jnp.stack([g.prompt_batch((*g.train_prompts, *g.test_prompts)) for g in langs]),
    )


def build_model(config: Config) -> tuple[Model, Any, int]:
    """The transformer of every seed: ``(model, params stacked over seeds, parameters per seed)``."""

    def one(seed: int):
        module = TinyTransformer(
            lang_lib.VOCAB_SIZE,
            MAX_LEN - 1,
            config.d_model,
            config.n_heads,
            config.n_layers,
            config.d_ff,
            rngs=nnx.Rngs(seed),
        )
        return ldjax.from_nnx(module, example_shape=(MAX_LEN - 1,)), count_params(module)

    (apply_fn, _), n_params = one(config.seed)
    params = stack_trees([one(config.seed + k)[0][1] for k in range(config.seeds)])
    batched = jax.vmap(apply_fn, (None, 0))
    model = Model(
        apply_fn,
        batched,
        jax.jit(jax.vmap(functools.partial(valley_mask, batched))),
        jax.jit(jax.vmap(functools.partial(reference_logp, batched))),
        jax.jit(jax.vmap(lambda p, q: decode(batched, p, q, jax.random.key(0), 0.0))),
    )
    return model, params, n_params


def take_rows(tokens: Tokens, rows: Array) -> Tokens:
    return Tokens(tokens.x[rows], tokens.tokens[rows], tokens.mask[rows])


def probe_stats(
    batched: Callable, params: Any, probes: Tokens, valley: Float[Array, "m T"]
) -> dict[str, Array]:
    """One copy's record on the probe set (every probe type of every training prompt).

    Returns ``logp [len(PROBES), m]`` (summed log π of each probe type, then log π(y*) and log(1 − p(y*)),
    y* the teacher-forced argmax along [x; y⁺]), the mean argmax probability at the y⁻ positions (all of
    them, and the ``valley`` ones whose y⁻ token was not the argmax when the phase began), and ‖A‖_F
    averaged over the y⁺ positions (‖A‖_F² = V − 2 + V‖π‖² for A = I − 1πᵀ).
    """
    n_types = len(PROBE_TYPES)
    logp = jax.nn.log_softmax(batched(params, probes.x), -1)
    per_type = logp.reshape(n_types, -1, *logp.shape[1:])  # [types, m, T, V]
    tokens = probes.tokens.reshape(n_types, -1, probes.tokens.shape[-1])
    mask = probes.mask.reshape(tokens.shape)
    picked = jnp.take_along_axis(per_type, tokens[..., None], -1)[..., 0]
    top = jnp.max(per_type, -1)  # log π(argmax) at every position
    chosen, rejected = PROBE_TYPES.index("chosen"), PROBE_TYPES.index("rejected")
    ystar = jnp.sum(top[chosen] * mask[chosen], -1)
    not_ystar = jnp.sum(jnp.log1p(-jnp.minimum(jnp.exp(top[chosen]), 1.0 - 1e-6)) * mask[chosen], -1)
    vocab = logp.shape[-1]
    a_norm = jnp.sqrt(vocab - 2.0 + vocab * jnp.sum(jnp.exp(2 * per_type[chosen]), -1))
    p_top_rejected = jnp.exp(top[rejected])
    return {
        "logp": jnp.concatenate([jnp.sum(picked * mask, -1), ystar[None], not_ystar[None]]),
        "argmax_prob_rejected": jnp.sum(p_top_rejected * mask[rejected]) / jnp.sum(mask[rejected]),
        "argmax_prob_valley": jnp.sum(p_top_rejected * valley) / jnp.maximum(jnp.sum(valley), 1.0),
        "a_norm": jnp.sum(a_norm * mask[chosen]) / jnp.sum(mask[chosen]),
    }


def valley_mask(batched: Callable, params: Any, probes: Tokens) -> Float[Array, "m T"]:
    """One seed's y⁻ probe positions whose token is NOT the argmax under ``params`` (where squeezing acts)."""
    rejected = PROBE_TYPES.index("rejected")
    part = jax.tree.map(lambda a: a.reshape(len(PROBE_TYPES), -1, a.shape[-1])[rejected], probes)
    top = jnp.argmax(batched(params, part.x), -1)
    return part.mask * (top != part.tokens)


def reference_logp(batched: Callable, params: Any, pairs: Tokens) -> Float[Array, " n"]:
    """One seed's summed response log π of the preference rows under ``params`` (the reference model)."""
    return seq_losses.sequence_log_prob(batched(params, pairs.x), pairs.tokens, pairs.mask)


def decode(
    batched: Callable, params: Any, prompts: Int[Array, "n L"], key: Array, temperature: float
) -> Int[Array, "n L"]:
    """Continue ``prompts`` (zero after ``<sep>``) to ``MAX_LEN`` tokens: greedy at temperature 0, else sampled."""

    def body(t: Array, carry: tuple[Array, Array]) -> tuple[Array, Array]:
        seqs, key = carry
        key, sub = jax.random.split(key)
        logits = jax.lax.dynamic_index_in_dim(batched(params, seqs[:, :-1]), t - 1, axis=1, keepdims=False)
        if temperature == 0:
            nxt = jnp.argmax(logits, -1)
        else:
            nxt = jax.random.categorical(sub, logits / temperature, axis=-1)
        return jax.lax.dynamic_update_index_in_dim(seqs, nxt.astype(seqs.dtype), t, axis=1), key

    return jax.lax.fori_loop(PROMPT_LEN, MAX_LEN, body, (prompts, key))[0]


def response_mask(seqs: Int[Array, "n L"], eos_id: int) -> Float[Array, "n L"]:
    """1 from the first response position up to and including the first ``<eos>``."""
    pos = jnp.arange(seqs.shape[-1])
    is_eos = (seqs == eos_id) & (pos >= PROMPT_LEN)
    first = jnp.min(jnp.where(is_eos, pos, seqs.shape[-1] - 1), axis=-1)
    return ((pos >= PROMPT_LEN) & (pos <= first[..., None])).astype(jnp.float32)


def picked(delta: Float[Array, "n T V"], probes: Tokens) -> Float[Array, "n T"]:
    """The change of log π of each probe's own token, zero outside its response."""
    return jnp.take_along_axis(delta, probes.tokens[..., None], -1)[..., 0] * probes.mask

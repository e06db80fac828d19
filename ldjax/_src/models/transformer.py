"""A tiny causal transformer language model in flax NNX (GPT-style, pre-layer-norm).

Attention is written with plain ``nnx.Linear`` projections and ``jnp.einsum``, so every matrix
product of the model is a visible ``dot_general`` in its jaxpr (structured kernels can see them).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array
from jaxtyping import Float
from jaxtyping import Int

from ldjax._src import checks


class CausalSelfAttention(nnx.Module):
    """Multi-head causal self-attention: ``[b, T, d] -> [b, T, d]``."""

    def __init__(self, d_model: int, n_heads: int, *, rngs: nnx.Rngs):
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.query = nnx.Linear(d_model, d_model, rngs=rngs)
        self.key = nnx.Linear(d_model, d_model, rngs=rngs)
        self.value = nnx.Linear(d_model, d_model, rngs=rngs)
        self.out = nnx.Linear(d_model, d_model, rngs=rngs)

    def __call__(self, x: Float[Array, "b T d"]) -> Float[Array, "b T d"]:
        b, t, d = x.shape
        h = self.n_heads
        q = self.query(x).reshape(b, t, h, d // h)
        k = self.key(x).reshape(b, t, h, d // h)
        v = self.value(x).reshape(b, t, h, d // h)
        scores = jnp.einsum("bqhc,bkhc->bhqk", q, k) / jnp.sqrt(jnp.asarray(d // h, x.dtype))
        causal = jnp.tril(jnp.ones((t, t), bool))
        scores = jnp.where(causal, scores, jnp.finfo(scores.dtype).min)
        weights = jax.nn.softmax(scores, axis=-1)
        mixed = jnp.einsum("bhqk,bkhc->bqhc", weights, v).reshape(b, t, d)
        return self.out(mixed)


class Block(nnx.Module):
    """``x + attn(ln(x))`` then ``x + mlp(ln(x))`` (GELU MLP)."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int, *, rngs: nnx.Rngs):
        self.ln1 = nnx.LayerNorm(d_model, rngs=rngs)
        self.attn = CausalSelfAttention(d_model, n_heads, rngs=rngs)
        self.ln2 = nnx.LayerNorm(d_model, rngs=rngs)
        self.fc1 = nnx.Linear(d_model, d_ff, rngs=rngs)
        self.fc2 = nnx.Linear(d_ff, d_model, rngs=rngs)

    def __call__(self, x: Float[Array, "b T d"]) -> Float[Array, "b T d"]:
        x = x + self.attn(self.ln1(x))
        return x + self.fc2(jax.nn.gelu(self.fc1(self.ln2(x))))


class TinyTransformer(nnx.Module):
    """A decoder-only transformer: token + position embeddings, ``n_layers`` pre-LN blocks, final LN, linear head.

    Parameter count ≈ ``V·d + max_len·d + n_layers·(4d² + 2·d·d_ff) + d·V``: e.g. ``V=64, max_len=16,
    d_model=64, n_heads=4, n_layers=2, d_ff=128`` has about 76k parameters; ``d_model=128, n_layers=4,
    d_ff=512`` about 0.8M.

    Args:
      vocab_size: V.
      max_len: the longest sequence (number of position embeddings).
      d_model: width.
      n_heads: attention heads (must divide ``d_model``).
      n_layers: blocks.
      d_ff: hidden width of the MLPs.
      rngs: ``nnx.Rngs``.

    Maps int tokens ``[b, T]`` (``T <= max_len``) to next-token logits ``[b, T, V]``; position ``t``
    sees tokens ``0..t`` only.

    Example:
      >>> import jax.numpy as jnp, ldjax, ldjax.models
      >>> from flax import nnx
      >>> model = ldjax.models.TinyTransformer(11, 8, 16, 2, 1, 32, rngs=nnx.Rngs(0))
      >>> model(jnp.zeros((3, 5), jnp.int32)).shape
      (3, 5, 11)
      >>> f, p = ldjax.from_nnx(model, example_shape=(5,))
      >>> f(p, jnp.zeros(5, jnp.int32)).shape
      (5, 11)
    """

    def __init__(
        self,
        vocab_size: int,
        max_len: int,
        d_model: int,
        n_heads: int,
        n_layers: int,
        d_ff: int,
        *,
        rngs: nnx.Rngs,
    ):
        for name, value in (
            ("vocab_size", vocab_size),
            ("max_len", max_len),
            ("d_model", d_model),
            ("n_heads", n_heads),
            ("n_layers", n_layers),
            ("d_ff", d_ff),
        ):
            if int(value) < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.max_len = max_len
        self.n_layers = n_layers
        self.token_embed = nnx.Embed(vocab_size, d_model, rngs=rngs)
        self.position_embed = nnx.Embed(max_len, d_model, rngs=rngs)
        for i in range(n_layers):
            setattr(self, f"block{i}", Block(d_model, n_heads, d_ff, rngs=rngs))
        self.ln_final = nnx.LayerNorm(d_model, rngs=rngs)
        self.head = nnx.Linear(d_model, vocab_size, rngs=rngs)

    def check_input(self, tokens: Int[Array, "b T"], name: str = "tokens") -> None:
        """Token ids must be integers in ``[0, V)`` with ``T <= max_len``; ``name`` is named in the error.

        ldjax's analyses call it on every batch (through :func:`ldjax.from_nnx`): JAX clamps an
        out-of-range lookup going forward and drops it going back, so a bad id would give a wrong
        kernel, not an error.

        Example:
          >>> import jax.numpy as jnp, ldjax, ldjax.models
          >>> from flax import nnx
          >>> model = ldjax.models.TinyTransformer(11, 8, 16, 2, 1, 32, rngs=nnx.Rngs(0))
          >>> model.check_input(jnp.array([[3, 11]]), "x_u")
          Traceback (most recent call last):
          ValueError: x_u holds ids in [3, 11] but the vocabulary has V=11 entries: expected ids in [0, 11)
        """
        vocab = self.token_embed.num_embeddings
        bound = f"the vocabulary has V={vocab} entries"
        checks.check_ids(tokens, vocab, name, what="token ids", short="ids", bound=bound)
        shape = tuple(jnp.shape(tokens))
        if len(shape) != 2:
            raise ValueError(f"{name} must be a batch of token ids [n, T], got shape {shape}")
        if shape[1] > self.max_len:
            raise ValueError(
                f"{name} has length T={shape[1]} but the model has max_len={self.max_len} positions"
            )

    def __call__(self, tokens: Int[Array, "b T"]) -> Float[Array, "b T V"]:
        if tokens.ndim != 2:
            raise ValueError(f"tokens must be [b, T] integer ids, got shape {tuple(tokens.shape)}")
        t = tokens.shape[1]
        if t > self.max_len:
            raise ValueError(f"tokens has length T={t} but the model has max_len={self.max_len} positions")
        # plain gathers (nnx.Embed would cast its table to param_dtype; this keeps float64 params float64)
        x = (
            jnp.take(self.token_embed.embedding[...], tokens, axis=0)
            + self.position_embed.embedding[...][:t][None]
        )
        for i in range(self.n_layers):
            x = getattr(self, f"block{i}")(x)
        return self.head(self.ln_final(x))


def count_params(module: nnx.Module) -> int:
    """Number of scalars in the module's ``nnx.Param`` leaves."""
    return sum(int(leaf.size) for leaf in jax.tree.leaves(nnx.state(module, nnx.Param)))

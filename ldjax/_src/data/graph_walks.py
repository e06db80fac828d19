r"""A verifiable-reward task with many correct answers: walk from a source to a goal in a layered graph.

Design
------
The world is a seeded random **layered graph**: ``steps + 1`` layers of ``width`` nodes each; every node
of layer ℓ < ``steps`` has ``out_degree`` distinct successors in layer ℓ + 1, drawn uniformly. A **prompt**
names a source ``s`` in layer 0 and a goal ``g`` in the last layer; a **response** is a walk of exactly
``steps`` nodes ``v_1 … v_L``, one per layer. The **reward** is verifiable and binary:

.. math:: r = 1 \iff s \to v_1 \to \dots \to v_L \text{ are edges and } v_L = g.

A prompt has as many correct answers as there are walks from ``s`` to ``g`` (:attr:`GraphWalks.path_counts`);
only *solvable* pairs (at least one walk) are prompts. With the defaults (24 nodes a layer, 4 steps, 2
successors) a source has 16 walks and a solvable pair 1.5 walks on average, so a random walk solves a prompt
about once in 11 tries: pass@k for large k measures whether the policy still *explores* the rarer routes.

The solvable pairs are shuffled (seeded) into ``n_heldout`` **held-out** prompts and ``n_train`` **train**
prompts (fixed counts, so that seeds share array shapes). The **pre-training corpus**
(:meth:`GraphWalks.pretraining_corpus`) is the "internet" of this world: random walks (uniform successor at
every step) from layer-0 sources, each written as the solution of the prompt (source, its own endpoint),
kept only when that pair is a train prompt. It is a subset of the train prompts' solutions, sampled in
proportion to how often a random walk finds them; no held-out prompt ever appears in it. A model
pre-trained on it knows the edges and, imperfectly, which first steps lead to which goals: it starts with a
spread distribution over correct answers and a non-trivial pass@1 on held-out prompts.

Tokens: ``<pad> = 0``, ``<bos> = 1``, ``<sep> = 2``, then node ``j`` of layer ℓ is ``3 + ℓ·width + j``
(printed as a letter for the layer and the index: ``a5`` is node 5 of layer 0). A sequence is
``<bos> s g <sep> v_1 … v_L`` (``4 + steps`` tokens); the response is its last ``steps`` tokens.

Example:
  >>> from ldjax._src.data.graph_walks import GraphWalks
  >>> task = GraphWalks(width=6, steps=2, out_degree=2, n_train=8, n_heldout=4, seed=0)
  >>> task.seq_len, task.vocab_size, task.train_pairs.shape
  (6, 21, (8, 2))
"""

import itertools

import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike
from jaxtyping import Array
from jaxtyping import Bool
from jaxtyping import Float
from jaxtyping import Int

PAD, BOS, SEP = 0, 1, 2
PROMPT_LEN = 4
_SPECIAL = ("<pad>", "<bos>", "<sep>")
_LAYER_NAMES = "abcdefghijklmnopqrstuvwxyz"


def walk_rewards(adjacency: Bool[ArrayLike, "L W W"], seqs: Int[ArrayLike, "n S"]) -> Float[Array, " n"]:
    """Binary rewards of sequences ``<bos> s g <sep> v_1 … v_L``: 1 where the walk uses edges and ends at ``g``.

    Traceable (``jax.jit``/``vmap``, the adjacency may be a traced argument); also takes numpy arrays.

    Args:
      adjacency: ``[L, W, W]``, ``adjacency[l, i, j]`` = node ``i`` of layer ``l`` has successor ``j``.
      seqs: ``[n, 4 + L]`` token ids.

    Returns:
      ``float32 [n]`` in {0, 1}. A token that is not a node of the layer its position asks for scores 0.

    Example:
      >>> import numpy as np
      >>> from ldjax._src.data.graph_walks import walk_rewards
      >>> adj = np.zeros((1, 2, 2), bool); adj[0, 0, 1] = True          # one step: a0 -> b1
      >>> walk_rewards(adj, np.array([[1, 3, 6, 2, 6], [1, 3, 5, 2, 5]]))  # a0 b1 | a0 b0
      Array([1., 0.], dtype=float32)
    """
    adjacency = jnp.asarray(adjacency)
    seqs = jnp.asarray(seqs)
    steps, width = adjacency.shape[0], adjacency.shape[1]
    if seqs.ndim != 2 or seqs.shape[1] != PROMPT_LEN + steps:
        raise ValueError(
            f"seqs has shape {tuple(seqs.shape)}: expected [n, {PROMPT_LEN + steps}] for {steps} steps"
        )
    source = seqs[:, 1] - 3
    goal = seqs[:, 2] - 3 - steps * width
    ok = (source >= 0) & (source < width) & (goal >= 0) & (goal < width)
    here = jnp.clip(source, 0, width - 1)
    for layer in range(steps):
        node = seqs[:, PROMPT_LEN + layer] - 3 - (layer + 1) * width
        valid = (node >= 0) & (node < width)
        node = jnp.clip(node, 0, width - 1)
        ok = ok & valid & adjacency[layer, here, node]
        here = node
    return (ok & (here == goal)).astype(jnp.float32)


class GraphWalks:
    """The layered-graph walk task (see the module docstring).

    Args:
      width: nodes per layer (W).
      steps: walk length (L); the graph has ``steps + 1`` layers.
      out_degree: successors of every node (``1 <= out_degree <= width``).
      n_train: train prompts (solvable (source, goal) pairs).
      n_heldout: held-out prompts, disjoint from the train prompts.
      seed: draws the edges, the split and (with :meth:`pretraining_corpus`) the corpus.

    Attributes:
      adjacency: ``bool [L, W, W]``.
      path_counts: ``int [W, W]``, the number of walks (correct answers) from each source to each goal.
      train_pairs, heldout_pairs: ``int [n, 2]`` (source index, goal index).
      vocab_size, seq_len: ``3 + (L + 1)·W`` and ``4 + L``.
    """

    def __init__(
        self,
        width: int = 24,
        steps: int = 4,
        out_degree: int = 2,
        *,
        n_train: int = 128,
        n_heldout: int = 64,
        seed: int = 0,
    ):
        for name, value, low in (("width", width, 2), ("steps", steps, 1), ("n_train", n_train, 1)):
            if int(value) < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if not 1 <= out_degree <= width:
            raise ValueError(f"out_degree must be in [1, width={width}], got {out_degree}")
        if n_heldout < 0:
            raise ValueError(f"n_heldout must be >= 0, got {n_heldout}")
        self.width, self.steps, self.out_degree, self.seed = width, steps, out_degree, seed
        rng = np.random.default_rng(seed)
        adjacency = np.zeros((steps, width, width), bool)
        for layer, node in itertools.product(range(steps), range(width)):
            adjacency[layer, node, rng.choice(width, out_degree, replace=False)] = True
        self.adjacency = adjacency
        counts = np.eye(width, dtype=np.int64)
        for layer in range(steps):
            counts = counts @ adjacency[layer].astype(np.int64)
        self.path_counts = counts
        solvable = np.argwhere(counts > 0)
        if len(solvable) < n_train + n_heldout:
            raise ValueError(
                f"the graph (seed={seed}) has {len(solvable)} solvable (source, goal) pairs but n_train + "
                f"n_heldout = {n_train + n_heldout}: lower them or raise width / out_degree"
            )
        solvable = solvable[rng.permutation(len(solvable))]
        self.heldout_pairs = solvable[:n_heldout].astype(np.int32)
        self.train_pairs = solvable[n_heldout : n_heldout + n_train].astype(np.int32)
        self.vocab_size = 3 + (steps + 1) * width
        self.seq_len = PROMPT_LEN + steps

    # ---------------------------------------------------------------------------------------------
    # tokens

    def token(self, layer: int, node: int) -> int:
        """The token id of ``node`` in ``layer``."""
        return 3 + layer * self.width + node

    def decode(self, seq) -> str:
        """A sequence as text: ``<bos> a5 e1 <sep> b0 c3 d2 e1``."""
        words = []
        for tok in np.asarray(seq).tolist():
            if tok < 3:
                words.append(_SPECIAL[tok])
            else:
                layer, node = divmod(tok - 3, self.width)
                words.append(f"{_LAYER_NAMES[layer % 26]}{node}")
        return " ".join(words)

    def prompts(self, pairs) -> np.ndarray:
        """``int32 [n, seq_len]``: ``<bos> s g <sep>`` followed by ``<pad>`` where the response goes."""
        pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
        out = np.zeros((len(pairs), self.seq_len), np.int32)
        out[:, 0], out[:, 3] = BOS, SEP
        out[:, 1] = [self.token(0, s) for s in pairs[:, 0].tolist()]
        out[:, 2] = [self.token(self.steps, g) for g in pairs[:, 1].tolist()]
        return out

    def response_mask(self) -> np.ndarray:
        """``float32 [seq_len]``: 1 on the response positions."""
        mask = np.zeros(self.seq_len, np.float32)
        mask[PROMPT_LEN:] = 1.0
        return mask

    # ---------------------------------------------------------------------------------------------
    # rewards and solutions

    def rewards(self, seqs) -> np.ndarray:
        """Binary rewards of ``seqs`` (see :func:`walk_rewards`)."""
        return np.asarray(walk_rewards(self.adjacency, seqs))

    def solutions(self, source: int | np.integer, goal: int | np.integer) -> list[tuple[int, ...]]:
        """Every correct answer (node indices ``v_1 … v_L``) of the prompt (``source``, ``goal``).

        ``source`` and ``goal`` may be Python or NumPy integers (a row of ``train_pairs`` / ``heldout_pairs``).
        """
        source, goal = int(source), int(goal)
        walks = [(source,)]
        for layer in range(self.steps):
            walks = [w + (int(j),) for w in walks for j in np.flatnonzero(self.adjacency[layer, w[-1]])]
        return [w[1:] for w in walks if w[-1] == goal]

    def sequence(self, source: int | np.integer, goal: int | np.integer, walk) -> np.ndarray:
        """The token sequence of prompt (``source``, ``goal``) answered by ``walk`` (node indices)."""
        seq = self.prompts([(source, goal)])[0]
        seq[PROMPT_LEN:] = [self.token(layer + 1, int(node)) for layer, node in enumerate(walk)]
        return seq

    # ---------------------------------------------------------------------------------------------
    # corpus

    def pretraining_corpus(self, n_docs: int) -> np.ndarray:
        """``int32 [n_docs, seq_len]`` random walks written as solutions of their train prompt.

        A walk starts at a uniformly drawn source with at least one train prompt, takes a uniformly drawn
        successor at every step, and is kept when (source, endpoint) is a train prompt. Seeded by ``seed``.
        """
        if n_docs < 1:
            raise ValueError(f"n_docs must be >= 1, got {n_docs}")
        rng = np.random.default_rng([self.seed, 1])
        train = {(int(s), int(g)) for s, g in self.train_pairs}
        sources = np.unique(self.train_pairs[:, 0])
        docs: list[np.ndarray] = []
        while len(docs) < n_docs:
            here = source = int(rng.choice(sources))
            walk = []
            for layer in range(self.steps):
                here = int(rng.choice(np.flatnonzero(self.adjacency[layer, here])))
                walk.append(here)
            if (source, here) in train:
                docs.append(self.sequence(source, here, walk))
        return np.stack(docs)

r"""The forces between the toy's examples: every update decomposed, and the pairwise map at initialisation.

Both call the one first-order step of ldjax (:func:`~ldjax._src.first_order.split_change`: one VJP at the
update batch, one JVP at the observed objects per part of the force, A applied) and read off the change of
log π(y|x) = log π₁(y₁|x) + log π₂(y₂|x) of each object's TRAINING label.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array
from jaxtyping import Bool
from jaxtyping import Float
from jaxtyping import Int

from ldjax._src.first_order import actual_change
from ldjax._src.first_order import split_change
from ldjax._src.losses.classification import cross_entropy_g

PARTS = ("clean", "noisy")
"""The two parts of every update's force: its correctly labelled and its mislabelled rows."""
RELATIONS = ("same_g1", "same_g2", "no_shared", "heldout")
"""How an observed object relates to the updated one in :func:`relation_means`: another training object
sharing factor 1 only, factor 2 only, or no factor; or a held-out object."""


def picked(change: Float[Array, "*b C 2 V"], labels: Int[Array, "C 2"]) -> Float[Array, "*b C"]:
    """The change of log π(y|x), summed over the two tokens, at each object's label ``y``.

    Example:
      >>> import jax.numpy as jnp
      >>> from ldjax._src.experiments.compositional.forces import picked
      >>> picked(jnp.arange(8.0).reshape(1, 2, 4), jnp.array([[1, 3]])).tolist()  # 1 + 7
      [8.0]
    """
    index = jnp.broadcast_to(labels[..., None], (*change.shape[:-1], 1))
    return jnp.take_along_axis(change, index, axis=-1)[..., 0].sum(-1)


def update_forces(
    apply_fn: Any,
    learning_rate: float,
    params: Any,
    batch: Int[Array, " B"],
    updates: Any,
    data: dict[str, Array],
) -> dict[str, Array]:
    r"""One SGD update of one run, decomposed by the clean and the noisy rows of its batch.

    The predicted change of part :math:`P` is :math:`-\eta\,A(x_o) \sum_{u \in P} K(x_o, x_u) G(x_u)`
    (``split_change`` with the two row masks); it is read at every object's training label and summed over

    * ``self``: the batch's own rows of that part (how much the part teaches itself);
    * ``others``: the training objects NOT in the batch (cooperation when > 0, contradiction when < 0);
    * ``heldout``: the held-out objects (generalisation).

    Args:
      apply_fn: ``apply_fn(params, x) -> [2, V]``.
      learning_rate: η of the SGD step.
      params: the parameters before the update.
      batch: the batch's object indices ``[B]`` (distinct).
      updates: the optimizer's actual update (``−η·∇L``).
      data: ``x`` ``[C, d]``, ``labels`` ``[C, 2]``, ``train`` and ``noisy`` masks ``[C]`` (floats).

    Returns:
      ``self``, ``others``, ``heldout`` ``[2]`` (:data:`PARTS`); scalars ``actual_self`` and
      ``actual_others`` (the same sums of the actual change after the real update), ``abs_error`` and
      ``abs_actual`` (Σ over objects of |predicted − actual| and |actual|), ``abs_error_tenth`` (the same
      error for a tenth of the update, which must be ~100× smaller).
    """
    x, labels, train, noisy = data["x"], data["labels"], data["train"], data["noisy"]
    x_u = x[batch]
    g = cross_entropy_g(jax.vmap(apply_fn, (None, 0))(params, x_u), labels[batch])
    parts = jnp.stack([1.0 - noisy[batch], noisy[batch]])
    predicted = picked(
        split_change(apply_fn, params, x, x_u, parts, g=g, learning_rate=learning_rate), labels
    )
    in_batch = jnp.zeros_like(train).at[batch].set(1.0)
    own = in_batch * jnp.stack([1.0 - noisy, noisy])
    others = train * (1.0 - in_batch)
    actual = picked(actual_change(apply_fn, params, updates, x), labels)
    tenth = picked(actual_change(apply_fn, params, jax.tree.map(lambda u: u / 10, updates), x), labels)
    total = predicted.sum(0)
    return {
        "self": jnp.sum(own * predicted, -1),
        "others": predicted @ others,
        "heldout": predicted @ (1.0 - train),
        "actual_self": actual @ in_batch,
        "actual_others": actual @ others,
        "abs_error": jnp.sum(jnp.abs(total - actual)),
        "abs_actual": jnp.sum(jnp.abs(actual)),
        "abs_error_tenth": jnp.sum(jnp.abs(total / 10 - tenth)),
    }


def influence_map(
    apply_fn: Any, learning_rate: float, params: Any, data: dict[str, Array], train_idx: Int[Array, " n"]
) -> Float[Array, "n C"]:
    """``[u, o]``: the first-order change of object ``o``'s log π(y|x) caused by one SGD step of size η on
    training object ``u`` ALONE (``split_change`` with one part per training object; the force of the
    whole training set's loss times ``n`` is each object's own loss's force)."""
    x, labels = data["x"], data["labels"]
    x_u = x[train_idx]
    n = train_idx.shape[0]
    g = cross_entropy_g(jax.vmap(apply_fn, (None, 0))(params, x_u), labels[train_idx]) * n
    return picked(
        split_change(apply_fn, params, x, x_u, jnp.eye(n), g=g, learning_rate=learning_rate), labels
    )


def relation_means(
    influence: Float[np.ndarray, "u C"],
    factors: Int[np.ndarray, "C 2"],
    updated: Int[np.ndarray, " u"],
    trained: Bool[np.ndarray, " C"],
) -> Float[np.ndarray, " 4"]:
    """Mean of rows of an :func:`influence_map` (the updated objects ``updated``) over the pairs ``(u, o)``,
    ``u ≠ o``, of each of :data:`RELATIONS`, given the training objects ``trained`` (``nan`` for a relation
    without pairs).

    Example:
      >>> import numpy as np
      >>> from ldjax._src.experiments.compositional.forces import relation_means
      >>> g = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
      >>> trained = np.array([True, True, True, False])
      >>> relation_means(np.array([[9.0, 1.0, 2.0, 3.0]]), g, np.array([0]), trained).tolist()
      [1.0, 2.0, nan, 3.0]
    """
    gu = factors[updated]
    same1 = gu[:, None, 0] == factors[None, :, 0]
    same2 = gu[:, None, 1] == factors[None, :, 1]
    masks = (same1 & ~same2 & trained, same2 & ~same1 & trained, ~same1 & ~same2 & trained)
    masks += (np.broadcast_to(~trained, same1.shape),)
    return np.array([influence[m].mean() if m.any() else np.nan for m in masks])

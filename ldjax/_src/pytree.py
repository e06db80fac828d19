"""Small pytree helpers: names of parameter leaves and a model seen as a function of some leaves."""

from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import jax

from ldjax._src.typing import ApplyFn
from ldjax._src.typing import Params


def leaf_names(params: Params) -> list[str]:
    """One name per leaf of ``params``, in ``jax.tree.leaves`` order: its path joined by ``/``.

    Example:
      >>> import jax.numpy as jnp
      >>> leaf_names({"conv1": {"kernel": jnp.ones(2), "bias": jnp.ones(1)}, "head": [jnp.ones(3)]})
      ['conv1/bias', 'conv1/kernel', 'head/0']
    """
    names = []
    for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]:
        parts = []
        for key in path:
            for attr in ("key", "name", "idx"):
                if hasattr(key, attr):
                    parts.append(str(getattr(key, attr)))
                    break
            else:
                parts.append(str(key))
        names.append("/".join(parts) if parts else "params")
    return names


def restrict_to_leaves(
    apply_fn: ApplyFn, params: Params, indices: Sequence[int]
) -> tuple[Callable[[list[jax.Array], Any], jax.Array], list[jax.Array]]:
    """``apply_fn`` as a function of the leaves at ``indices`` alone, the other leaves held fixed.

    Returns ``(f, chosen)`` with ``f(chosen, x) == apply_fn(params, x)``; ``chosen`` is the list of
    those leaves (in the order of ``indices``), so any kernel of ``f`` at ``chosen`` is the kernel of
    ``apply_fn`` restricted to them.
    """
    leaves, treedef = jax.tree.flatten(params)

    def f(chosen: list[jax.Array], x: Any) -> jax.Array:
        full = list(leaves)
        for index, leaf in zip(indices, chosen, strict=True):
            full[index] = leaf
        return apply_fn(jax.tree.unflatten(treedef, full), x)

    return f, [leaves[index] for index in indices]


def select_leaves(
    apply_fn: ApplyFn, params: Params, params_filter: Callable[[str], bool] | None
) -> tuple[ApplyFn, Any, list[str]]:
    """The model restricted to the leaves ``params_filter`` selects, those leaves and their names."""
    names = leaf_names(params)
    if params_filter is None:
        return apply_fn, params, names
    indices = [i for i, name in enumerate(names) if params_filter(name)]
    if not indices:
        raise ValueError(f"params_filter selected no parameter; the leaves are {names}")
    f, chosen = restrict_to_leaves(apply_fn, params, indices)
    return f, chosen, [names[i] for i in indices]


def only_selected(optimizer: Any, params_filter: Callable[[str], bool] | None) -> Any:
    """``optimizer`` whose updates are zero for the leaves ``params_filter(name)`` rejects (frozen).

    The state has the same structure as ``optimizer``'s own (an ``opt_state`` from training fits).
    """
    if params_filter is None:
        return optimizer
    import optax

    def update(grads: Any, state: Any, params: Any = None) -> Any:
        updates, state = optimizer.update(grads, state, params)
        flat, treedef = jax.tree.flatten(updates)
        keep = [params_filter(name) for name in leaf_names(updates)]
        return jax.tree.unflatten(
            treedef, [u if k else u * 0 for u, k in zip(flat, keep, strict=True)]
        ), state

    return optax.GradientTransformation(optimizer.init, update)

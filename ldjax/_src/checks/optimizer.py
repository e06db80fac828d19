"""Update rules: the learning rate, optax optimizers and their states, diagonal preconditioners."""

from typing import Any

import jax
import numpy as np

from ldjax._src.checks.arrays import check_positive
from ldjax._src.checks.arrays import check_unit_interval
from ldjax._src.checks.arrays import concrete
from ldjax._src.typing import Params


def check_learning_rate(learning_rate: Any) -> None:
    check_positive(learning_rate, "learning_rate")


def check_optimizer(optimizer: Any, opt_state: Any) -> None:
    """``optimizer`` is ``None`` (plain SGD, no state) or an optax ``GradientTransformation``."""
    if optimizer is None:
        if opt_state is not None:
            raise ValueError(
                "opt_state was given but optimizer is None: pass the optax optimizer whose state it is "
                "(e.g. optimizer=optax.adam(1e-3)); plain SGD has no state"
            )
        return
    if isinstance(optimizer, str):
        raise ValueError(
            f"optimizer must be an optax.GradientTransformation such as optax.{optimizer}(1e-3), got the "
            f"string {optimizer!r}; ldjax.preconditioned_one_step takes optimizer names ('sgd', 'momentum', "
            f"'rmsprop', 'adam')"
        )
    if not (callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None))):
        raise ValueError(
            f"optimizer must be an optax.GradientTransformation (with init and update), got "
            f"{type(optimizer).__name__}"
        )


def _describe_state(tree: Any) -> str:
    """An optax state in words: its NamedTuple types and their fields, ``(ScaleByAdamState(count, mu, nu),)``."""
    if hasattr(tree, "_fields"):
        return f"{type(tree).__name__}({', '.join(tree._fields)})"
    if isinstance(tree, list | tuple):
        inner = ", ".join(_describe_state(item) for item in tree)
        return f"({inner},)" if len(tree) == 1 else f"({inner})"
    if isinstance(tree, dict):
        return f"a dict with keys {', '.join(map(repr, tree))}"
    return "an array" if hasattr(tree, "shape") else type(tree).__name__


def _state_fields(tree: Any) -> list[str]:
    """The NamedTuple field names (and dict keys) anywhere in ``tree`` (depth first)."""
    fields: list[str] = []
    if hasattr(tree, "_fields"):
        fields += tree._fields
    if isinstance(tree, list | tuple):
        for item in tree:
            fields += _state_fields(item)
    elif isinstance(tree, dict):
        fields += map(str, tree)
        for item in tree.values():
            fields += _state_fields(item)
    return fields


def check_opt_state(
    optimizer: Any, params: Params, opt_state: Any, optimizer_name: str | None = None
) -> None:
    """``opt_state`` must have the structure and leaf shapes of ``optimizer.init(params)``.

    Args:
      optimizer: an optax ``GradientTransformation``.
      params: the parameters the state belongs to.
      opt_state: the state to check (``None`` passes: the caller then uses ``optimizer.init``).
      optimizer_name: how to name the optimizer in the message (``"optax.adam"``); default ``"optimizer"``.
    """
    if opt_state is None:
        return
    expected = jax.eval_shape(optimizer.init, params)
    name = optimizer_name or "optimizer"
    if jax.tree.structure(expected) != jax.tree.structure(opt_state):
        have = set(_state_fields(opt_state))
        missing = [field for field in dict.fromkeys(_state_fields(expected)) if field not in have]
        lacks = f", without the field(s) {', '.join(map(repr, missing))}" if missing else ""
        raise ValueError(
            f"opt_state does not fit {name}: its init(params) gives {_describe_state(expected)} but opt_state is "
            f"{_describe_state(opt_state)}{lacks}. Pass the state of the same optimizer (its init(params), or "
            f"its state after training)"
        )
    flat_want = jax.tree_util.tree_flatten_with_path(expected)[0]
    for (path, a), b in zip(flat_want, jax.tree.leaves(opt_state), strict=True):
        if tuple(a.shape) != tuple(np.shape(b)):
            raise ValueError(
                f"opt_state{jax.tree_util.keystr(path)} has shape {tuple(np.shape(b))} but {name}'s init(params) "
                f"gives {tuple(a.shape)}: is opt_state from another model?"
            )


def check_update_rule(learning_rate: Any, optimizer: Any) -> None:
    """Plain SGD needs ``learning_rate``; an optax ``optimizer`` carries its own, so then it must be ``None``."""
    if optimizer is None:
        if learning_rate is None:
            raise ValueError("learning_rate is required with the default plain SGD (optimizer=None)")
        check_learning_rate(learning_rate)
    elif learning_rate is not None:
        raise ValueError(
            "learning_rate must be None when optimizer is given: the optimizer carries its own schedule"
        )


def check_gradient_update(learning_rate: Any, preconditioner: Params | None, coefficient: Any) -> None:
    """An update linear in the gradient: ``learning_rate`` (plain SGD) or ``preconditioner`` with ``coefficient``."""
    if preconditioner is None:
        if learning_rate is None or coefficient is not None:
            raise ValueError(
                "give learning_rate (plain SGD) or preconditioner and coefficient (a diagonal preconditioner), "
                f"got learning_rate={learning_rate!r}, coefficient={coefficient!r} and no preconditioner"
            )
    elif coefficient is None or learning_rate is not None:
        raise ValueError(
            "with a preconditioner give coefficient (the scalar c of u = -c·P⊙g) and no learning_rate, "
            f"got learning_rate={learning_rate!r}, coefficient={coefficient!r}"
        )


def check_optimizer_hyperparameters(learning_rate: Any, hp: dict[str, Any]) -> None:
    """learning_rate, eps > 0; momentum, decay, b1, b2 in [0, 1); eps_root >= 0 (optax's ranges)."""
    check_positive(learning_rate, "learning_rate")
    for name in ("momentum", "decay", "b1", "b2"):
        if name in hp:
            check_unit_interval(hp[name], name)
    if "eps" in hp:
        check_positive(hp["eps"], "eps")
    if "eps_root" in hp and not (np.isfinite(hp["eps_root"]) and hp["eps_root"] >= 0):
        raise ValueError(f"eps_root must be a finite number >= 0, got {hp['eps_root']!r}")


def check_preconditioner(preconditioner: Any, params: Params) -> None:
    """A diagonal preconditioner: the structure and leaf shapes of ``params``, finite and ``>= 0``.

    Zero entries are allowed (they freeze a parameter); negative or non-finite ones would give a
    kernel of NaNs (the reparametrisation takes ``sqrt(P)``).
    """
    if jax.tree.structure(preconditioner) != jax.tree.structure(params):
        raise ValueError(
            "preconditioner must be a pytree with the structure of params (one diagonal per leaf)"
        )
    flat = jax.tree_util.tree_flatten_with_path(preconditioner)[0]
    for (path, p), leaf in zip(flat, jax.tree.leaves(params), strict=True):
        where = "preconditioner" + jax.tree_util.keystr(path)
        if np.shape(p) != np.shape(leaf):
            raise ValueError(
                f"{where} has shape {np.shape(p)} but the parameter has shape {np.shape(leaf)}: expected one "
                f"diagonal entry per parameter"
            )
        value = concrete(p)
        if value is not None and value.size and not (np.all(np.isfinite(value)) and value.min() >= 0):
            bad = int(value.size - np.count_nonzero(np.isfinite(value) & (value >= 0)))
            raise ValueError(
                f"{where} holds {bad} negative, NaN or inf value(s): expected a finite diagonal P >= 0"
            )

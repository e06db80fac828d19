"""Early validation with messages that name the argument and what was expected.

One home for every check the public entry points share: batches and example shapes, finite values
(``check_finite=False`` skips them for speed), parameter dtypes, the shape of one example's logits
(classifier ``[k]`` or sequence ``[T, V]``), model inputs (token-id ranges of the built-in models),
targets, update rules, optimizers and their states, and the memory a result would need
(:func:`check_memory`, with the estimates :func:`jacobian_bytes` and :func:`kernel_bytes`).
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ldjax._src.typing import ApplyFn
from ldjax._src.typing import Params
from ldjax._src.typing import Precision

_PRECISIONS = ("highest", "high", "default", "float32", "bfloat16", "tensorfloat32")
DEFAULT_MEMORY_FRACTION = 0.5
"""The default memory budget is this fraction of the device's memory (of the machine's RAM on CPU)."""


def concrete(x: Any) -> np.ndarray | None:
    """``x`` as a numpy array when its value is known now (not under tracing), else ``None``."""
    try:
        return np.asarray(x)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def precision_scope(precision: Precision):
    """Context that fixes the matmul precision of everything traced inside it.

    ``None`` leaves the ambient setting (on GPU fp32 matmuls then default to TF32).
    """
    if precision is None:
        return contextlib.nullcontext()
    if precision not in _PRECISIONS:
        raise ValueError(f"precision must be one of {_PRECISIONS} or None, got {precision!r}")
    return jax.default_matmul_precision(precision)


# ----------------------------------------------------------------------------------------------------
# batches, values and parameters


def check_batch(x: Any, name: str) -> None:
    """``x`` must be an array (or pytree of arrays) with a non-empty leading batch axis."""
    leaves = jax.tree.leaves(x)
    if not leaves:
        raise ValueError(f"{name} is empty: expected a batch of examples [n, *d] with n >= 1")
    for leaf in leaves:
        shape = np.shape(leaf)
        if len(shape) == 0:
            raise ValueError(
                f"{name} is a scalar: expected a batch of examples [n, *d]; for one example x use x[None]"
            )
        if shape[0] == 0:
            raise ValueError(f"{name} is an empty batch (shape {tuple(shape)}): expected n >= 1 examples")
    n = {np.shape(leaf)[0] for leaf in leaves}
    if len(n) > 1:
        raise ValueError(f"{name} leaves disagree on the batch size: {sorted(n)}")


def batch_size(x: Any) -> int:
    return int(np.shape(jax.tree.leaves(x)[0])[0])


def example_shape(x: Any) -> Any:
    return jax.tree.map(lambda leaf: tuple(np.shape(leaf)[1:]), x)


def check_same_examples(x1: Any, name1: str, x2: Any, name2: str) -> None:
    s1, s2 = example_shape(x1), example_shape(x2)
    if s1 != s2:
        raise ValueError(
            f"{name1} holds examples of shape {str(s1)} but {name2} holds examples of shape {str(s2)}: "
            f"both must be batches [n, *d] of the same example shape"
        )


def _nonfinite(leaf: Any) -> int | None:
    """How many NaN/inf entries a float leaf holds (``None`` when its value is not known now)."""
    if isinstance(leaf, jax.Array):
        if not jnp.issubdtype(leaf.dtype, jnp.inexact):
            return 0
        try:  # on the device: no copy of the array to the host when it is finite
            if bool(jnp.all(jnp.isfinite(leaf))):
                return 0
        except jax.errors.ConcretizationTypeError:
            return None
    value = concrete(leaf)
    if value is None or not np.issubdtype(value.dtype, np.inexact):
        return 0 if value is not None else None
    return int(value.size - np.count_nonzero(np.isfinite(value)))


def check_finite(tree: Any, name: str) -> None:
    """Raise if any leaf of ``tree`` holds NaN or inf (only when values are concrete)."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        bad = _nonfinite(leaf)
        if bad:
            where = jax.tree_util.keystr(path) or ""
            raise ValueError(f"{name}{where} contains {bad} NaN or inf value(s): expected finite numbers")


def check_params(params: Params, name: str = "params") -> None:
    """``params`` must hold at least one leaf and every leaf must be a float array.

    Every NTK method and every step differentiates with respect to every leaf, so an integer or
    boolean leaf (a step counter, a mask) is refused here rather than by some methods and not others.
    """
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    if not flat:
        raise ValueError(f"{name} has no leaves: expected a pytree of float arrays (the model's parameters)")
    for path, leaf in flat:
        where = name + jax.tree_util.keystr(path)
        dtype = getattr(leaf, "dtype", None)
        if dtype is None and isinstance(leaf, int | float | complex):
            dtype = jnp.result_type(leaf)
        if dtype is None:
            raise ValueError(
                f"{where} is a {type(leaf).__name__}, not an array: every leaf of {name} must be a float array"
            )
        if not jnp.issubdtype(dtype, jnp.inexact):
            raise ValueError(
                f"{where} has dtype {dtype}: every leaf of {name} must be a float array (derivatives are "
                f"taken with respect to every leaf); keep integer or boolean state out of {name}, e.g. in "
                f"a closure of apply_fn"
            )


def params_dtype(params: Params) -> np.dtype:
    """The dtype of the results computed from ``params`` (their promoted float type)."""
    return np.dtype(jnp.result_type(*jax.tree.leaves(params)))


# ----------------------------------------------------------------------------------------------------
# the model: one example's logits, its inputs, forward mode


def _token_sequence(example: Any, length: int) -> bool:
    """Whether one example holds integer ids ``[T, ...]`` with ``T = length`` (a sequence model's input)."""
    return any(
        jnp.issubdtype(leaf.dtype, jnp.integer) and len(leaf.shape) >= 1 and leaf.shape[0] == length
        for leaf in jax.tree.leaves(example)
    )


def _check_two_dimensional(apply_fn: ApplyFn, example: Any, out: tuple[int, ...], x: Any, name: str) -> None:
    """A 2-D output is a sequence model's ``[T, V]`` only for token inputs or when declared."""
    declared = getattr(apply_fn, "sequence_output", None)
    if declared or (declared is None and _token_sequence(example, out[0])):
        return
    got = str(example_shape(x))
    if out[0] == 1:
        why = "its leading axis of size 1 looks like a batch axis that apply_fn adds itself"
    elif out[0] == batch_size(x):
        why = (
            f"its leading axis equals the batch size n={out[0]} of {name}: apply_fn seems to see the whole "
            f"batch ({name} batched twice, or a closure over the batch)"
        )
    else:
        why = f"{name} may be batched twice (its examples have shape {got})"
    raise ValueError(
        f"apply_fn returned logits of shape {tuple(out)} for one example of {name}: {why}. apply_fn(params, x) "
        f"must return [k] for ONE example; a 2-D output is read as a sequence model's [T, V] only for "
        f"integer token inputs [T] or when declared with ldjax.as_apply_fn(f, sequence_output=True)"
    )


def check_example_shape(fn: Any, x: Any, name: str, fn_name: str = "apply_fn") -> None:
    """``x`` must be a batch of the examples ``fn`` expects, when ``fn`` knows their shape (``example_shape``)."""
    expected = getattr(fn, "example_shape", None)
    if expected is not None and tuple(expected) != example_shape(x):
        raise ValueError(
            f"{name} has shape {str(jax.tree.map(np.shape, x))} but {fn_name} expects one example of shape "
            f"{str(tuple(expected))}: pass a batch [n, {', '.join(map(str, expected))}]"
        )


def logits_shape(apply_fn: ApplyFn, params: Params, x: Any, name: str) -> tuple[int, ...]:
    """Shape of ``apply_fn`` on ONE example of the batch ``x``; a clear error when it does not fit."""
    check_example_shape(apply_fn, x, name)
    got = example_shape(x)
    one = jax.tree.map(lambda leaf: jax.ShapeDtypeStruct(np.shape(leaf)[1:], jnp.result_type(leaf)), x)
    try:
        out = jax.eval_shape(apply_fn, params, one)
    except Exception as err:  # noqa: BLE001 - re-raised with context
        raise ValueError(
            f"apply_fn failed on one example of {name} (example shape {str(got)}, {name} has shape "
            f"{str(jax.tree.map(np.shape, x))}). apply_fn(params, x) takes ONE example without a batch "
            f"axis; {name} must be a batch [n, *d] of such examples. The error was: {err}"
        ) from err
    if not isinstance(out, jax.ShapeDtypeStruct):
        raise ValueError(f"apply_fn must return one array of logits, got {type(out).__name__}")
    if out.ndim not in (1, 2):
        raise ValueError(
            f"apply_fn returned logits of shape {tuple(out.shape)} for one example of {name}: expected [k] "
            f"(classifier) or [T, V] (sequence model). Is {name} batched twice, or does apply_fn add a "
            f"batch axis?"
        )
    if out.ndim == 2:
        _check_two_dimensional(apply_fn, one, tuple(out.shape), x, name)
    return tuple(out.shape)


def check_model_input(apply_fn: ApplyFn, x: Any, name: str) -> None:
    """Run the model's own input check, ``apply_fn.check_input(x, name)``, when it has one.

    The built-in token models carry one (ids in ``[0, V)``, length at most ``max_len``): JAX clamps an
    out-of-range gather going forward and drops it going back, so a bad id gives a wrong kernel, not
    an error. ``x`` is the whole batch.
    """
    check = getattr(apply_fn, "check_input", None)
    if check is not None:
        check(x, name)


@contextlib.contextmanager
def forward_mode(what: str) -> Iterator[None]:
    """Turn JAX's error for a ``jax.custom_vjp`` model under forward mode into one that says what to use."""
    try:
        yield
    except TypeError as err:
        if "custom_vjp" not in str(err):
            raise
        raise ValueError(
            f"apply_fn uses jax.custom_vjp, which has no forward mode, and {what} takes a JVP of the model. "
            f"Models with custom_vjp work with empirical_ntk(method='jacobian' or 'structured'); for "
            f"{what} define the custom derivative with jax.custom_jvp instead"
        ) from err


# ----------------------------------------------------------------------------------------------------
# losses, targets, update rules and optimizers


def check_scalar_loss(loss_fn: Any, logits: Any, target: Any, name: str = "loss") -> None:
    try:
        out = jax.eval_shape(loss_fn, logits, target)
    except Exception as err:  # noqa: BLE001
        raise ValueError(
            f"{name}(logits, target) failed on logits of shape {np.shape(logits)}: {err}"
        ) from err
    if not isinstance(out, jax.ShapeDtypeStruct) or out.shape != ():
        shape = getattr(out, "shape", type(out).__name__)
        raise ValueError(
            f"{name} must return a scalar (the mean loss over the batch), got shape {shape}; "
            f"reduce it, e.g. with .mean()"
        )


def check_positive(value: Any, name: str) -> None:
    """A positive finite scalar (when its value is known now)."""
    v = concrete(value)
    if v is None:
        return
    if v.shape != () or not np.issubdtype(v.dtype, np.number) or not np.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a positive finite scalar, got {value!r}")


def check_unit_interval(value: Any, name: str) -> None:
    """A scalar in ``[0, 1)`` (a decay rate such as Adam's ``b1``, ``b2`` or a momentum)."""
    v = concrete(value)
    if v is None:
        return
    if v.shape != () or not np.issubdtype(v.dtype, np.number) or not (0 <= v < 1):
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")


def check_learning_rate(learning_rate: Any) -> None:
    check_positive(learning_rate, "learning_rate")


def check_loss_target(loss: Any, out_shape: tuple[int, ...], target: Any, name: str) -> None:
    """Run the loss's own target check, ``loss.check_target(out_shape, target, name)``, when it has one.

    ``out_shape`` is the shape of one example's logits. The built-in losses carry ``check_target``
    (integer labels in ``[0, k)``, probability rows, sequence masks ...); any other callable is accepted as is.
    """
    check = getattr(loss, "check_target", None)
    if check is not None:
        check(out_shape, target, name)


def check_ids(ids: Any, size: int, name: str, *, what: str, short: str, bound: str) -> None:
    """``ids`` must be integers in ``[0, size)``: the shared dtype and range check of labels and tokens.

    Args:
      ids: integer labels or token ids (any shape).
      size: the number of classes ``k`` or the vocabulary size ``V``.
      name: the argument to name in the message (``"y_u"``, ``"y_u.tokens"``).
      what: what the ids are (``"class labels"``).
      short: their short name in the range message (``"labels"``).
      bound: where ``size`` comes from (``"the model has k=4 classes"``).
    """
    dtype = jnp.result_type(ids)
    if not jnp.issubdtype(dtype, jnp.integer):
        raise ValueError(f"{name} must hold integer {what} in [0, {size}), got dtype {dtype}")
    value = concrete(ids)
    if value is not None and value.size and (value.min() < 0 or value.max() >= size):
        raise ValueError(
            f"{name} holds {short} in [{value.min()}, {value.max()}] but {bound}: "
            f"expected {short} in [0, {size})"
        )


def check_targets_batch(y: Any, n: int, name: str, batch_name: str) -> None:
    """Every leaf of the target ``y`` has the batch axis first, with one entry per example (``n``)."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(y)[0]:
        where = name + jax.tree_util.keystr(path)
        shape = np.shape(leaf)
        if len(shape) == 0:
            raise ValueError(
                f"{where} is a scalar: expected one target per example of {batch_name}, a batch of {n} "
                f"(e.g. labels of shape ({n},))"
            )
        if shape[0] != n:
            raise ValueError(
                f"{where} has {shape[0]} targets but {batch_name} has {n} examples: expected one target each"
            )


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


# ----------------------------------------------------------------------------------------------------
# memory


class MemoryBudgetError(ValueError):
    """A result would need more memory than the budget: refused before anything is allocated."""


def _format_bytes(nbytes: float) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= size:
            return f"{nbytes / size:.1f} {unit}"
    return f"{int(nbytes)} B"


def _machine_ram() -> int | None:
    try:
        ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    try:  # a container's memory limit (cgroup v2), when lower
        limit = open("/sys/fs/cgroup/memory.max").read().strip()  # noqa: SIM115
        if limit.isdigit():
            ram = min(ram, int(limit))
    except OSError:
        pass
    return ram


def device_memory(device: Any = None) -> tuple[int | None, str]:
    """``(bytes, description)`` of the memory of ``device`` (default: the first device).

    An accelerator reports its own limit; on CPU it is the machine's RAM (``os.sysconf``, or a
    container's lower cgroup limit). ``bytes`` is ``None`` when neither is known.
    """
    device = jax.devices()[0] if device is None else device
    try:
        stats = device.memory_stats()
    except Exception:  # noqa: BLE001 - some backends do not implement it
        stats = None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"]), f"the {_format_bytes(stats['bytes_limit'])} of {device.device_kind}"
    ram = _machine_ram()
    return ram, f"this machine's {_format_bytes(ram)} of RAM" if ram else "unknown memory"


def memory_budget(budget: float | None = None) -> tuple[float, str]:
    """``(bytes, description)``: ``budget`` itself, or by default a fraction of the device's memory.

    The default is :data:`DEFAULT_MEMORY_FRACTION` (half) of :func:`device_memory`; ``math.inf`` turns
    the check off.
    """
    if budget is not None:
        check_positive_budget(budget)
        return float(budget), f"memory_budget={budget!r}"
    total, what = device_memory()
    if total is None:
        return math.inf, what
    return DEFAULT_MEMORY_FRACTION * total, f"half of {what}"


def check_positive_budget(budget: Any) -> None:
    if not isinstance(budget, int | float) or isinstance(budget, bool) or not budget > 0:
        raise ValueError(f"memory_budget must be a positive number of bytes (or math.inf), got {budget!r}")


def array_bytes(shape: Sequence[int], dtype: Any) -> int:
    """Bytes of an array of ``shape`` and ``dtype``."""
    return math.prod(int(s) for s in shape) * np.dtype(dtype).itemsize


def jacobian_bytes(n: int, out_shape: Sequence[int], params: Params) -> int:
    r"""Bytes of the per-example Jacobians of ``n`` examples: :math:`n \cdot O \cdot p` entries.

    Example:
      >>> import jax.numpy as jnp
      >>> from ldjax._src.checks import jacobian_bytes
      >>> jacobian_bytes(4, (3,), {"w": jnp.zeros((10, 3))})  # 4 · 3 · 30 float32
      1440
    """
    out = math.prod(out_shape)
    return sum(
        n * out * array_bytes(np.shape(leaf), jnp.result_type(leaf)) for leaf in jax.tree.leaves(params)
    )


def kernel_bytes(
    n1: int, n2: int, out_shape: Sequence[int], dtype: Any, *, trace: bool = False, count: int = 1
) -> int:
    r"""Bytes of ``count`` kernels ``[n1, n2, *o, *o]`` (:math:`n_1 n_2 O^2`), or ``[n1, n2]`` with ``trace``.

    Example:
      >>> from ldjax._src.checks import kernel_bytes
      >>> kernel_bytes(2, 3, (32, 2000), "float32") / 2**30  # a sequence model's kernel, 2 x 3 examples
      91.55...
    """
    out = 1 if trace else math.prod(out_shape) ** 2
    return count * n1 * n2 * out * np.dtype(dtype).itemsize


def check_memory(
    items: Sequence[tuple[str, int]], *, what: str, cheaper: str, budget: float | None = None
) -> None:
    """Refuse, before anything is allocated, a computation whose ``items`` exceed the memory budget.

    Args:
      items: ``(description, bytes)`` of the large arrays the computation would hold at once.
      what: the computation, as the message's subject (``"empirical_ntk(method='jacobian')"``).
      cheaper: the routes that need less memory, in words.
      budget: bytes (``None``: :func:`memory_budget`'s default; ``math.inf``: no check).

    Raises:
      MemoryBudgetError: the estimate is above the budget; the message names the cheaper routes.
    """
    limit, source = memory_budget(budget)
    total = sum(nbytes for _, nbytes in items)
    if total <= limit:
        return
    parts = "; ".join(f"{label}: {_format_bytes(nbytes)}" for label, nbytes in items if nbytes)
    raise MemoryBudgetError(
        f"{what} would need about {_format_bytes(total)} ({parts}), more than the memory budget of "
        f"{_format_bytes(limit)} ({source}). Cheaper: {cheaper}. To try anyway pass memory_budget=<bytes> "
        f"(math.inf: no check)"
    )


def kernel_memory(
    method: str,
    params: Params,
    n1: int,
    n2: int,
    out_shape: Sequence[int],
    *,
    trace: bool,
    per_layer: bool,
    same: bool,
    name: str = "the kernel",
) -> list[tuple[str, int]]:
    """The large arrays an NTK ``method`` holds for ``[n1, n2, *o, *o]``: the kernel(s) and what builds them."""
    dtype = params_dtype(params)
    count = len(jax.tree.leaves(params)) if per_layer else 1
    shape = f"[{n1}, {n2}]" if trace else f"[{n1}, {n2}, {', '.join(map(str, (*out_shape, *out_shape)))}]"
    items = [
        (
            f"{name} {shape}" + (f" x {count} layers" if count > 1 else ""),
            kernel_bytes(n1, n2, out_shape, dtype, trace=trace, count=count),
        )
    ]
    if method == "jacobian":
        rows = n1 if same else n1 + n2
        items.append((f"per-example Jacobians of {rows} examples", jacobian_bytes(rows, out_shape, params)))
    elif method == "vector_products":
        size = math.prod(out_shape)
        items.append(
            (f"{size} parameter-sized vectors (one per output)", jacobian_bytes(1, out_shape, params))
        )
    return items


def check_terms_memory(
    params: Params,
    x_o: Any,
    x_u: Any,
    out_shape: Sequence[int],
    method: str,
    budget: float | None,
    *,
    what: str,
) -> None:
    """Refuse ``terms=True`` of a one-step analysis when ``a`` and ``k`` (and what builds ``k``) exceed the budget."""
    n_o, n_u = batch_size(x_o), batch_size(x_u)
    items = kernel_memory(
        method, params, n_o, n_u, out_shape, trace=False, per_layer=False, same=False, name="k"
    )
    a_shape = (n_o, *out_shape, out_shape[-1])
    items.append((f"a {list(a_shape)}", array_bytes(a_shape, params_dtype(params))))
    check_memory(
        items,
        what=f"{what}(terms=True, method={method!r})",
        cheaper="terms=False (predicted, actual and g need no kernel: one VJP and one JVP), "
        "ldjax.predict_log_prob_change for vocabulary-scale changes, or ldjax.empirical_ntk with "
        "trace=True or method='structured' for the kernel alone",
        budget=budget,
    )


def check_probe_memory(
    params: Params, x_probe: Any, out_shape: Sequence[int], budget: float | None, *, actual: bool
) -> None:
    """Refuse a prediction whose arrays ``[n_probe, *o]`` (logits, JVP, change; after-step logits) exceed the budget."""
    count = 5 if actual else 3
    shape = (batch_size(x_probe), *out_shape)
    check_memory(
        [(f"{count} arrays {list(shape)}", count * array_bytes(shape, params_dtype(params)))],
        what="predict_log_prob_change",
        cheaper="fewer probes per call, ldjax.sharded_log_prob_change over several devices, or one position "
        "of a sequence model (lambda p, x: f(p, x)[-1])",
        budget=budget,
    )


# ----------------------------------------------------------------------------------------------------
# the entry points' validation


def _shape_signature(*trees: Any) -> Any:
    """A hashable key of the structure, shapes and dtypes of ``trees`` (not their values)."""
    leaves, treedef = jax.tree.flatten(trees)
    return treedef, tuple((np.shape(leaf), getattr(leaf, "dtype", type(leaf))) for leaf in leaves)


def _check_step_shapes(apply_fn: ApplyFn, params: Params, x_o: Any, x_u: Any, y_u: Any, probe_name: str):
    """The shape part of :func:`validate_step`; returns the shape of one example's logits."""
    check_params(params)
    check_batch(x_o, probe_name)
    check_batch(x_u, "x_u")
    check_same_examples(x_o, probe_name, x_u, "x_u")
    out_shape = logits_shape(apply_fn, params, x_u, "x_u")
    check_log_softmax_outputs(out_shape)
    check_targets_batch(y_u, batch_size(x_u), "y_u", "x_u")
    return out_shape


def validate_step(
    apply_fn: ApplyFn,
    params: Params,
    x_o: Any,
    x_u: Any,
    y_u: Any,
    loss: Any,
    learning_rate: Any = None,
    optimizer: Any = None,
    *,
    opt_state: Any = None,
    optimizer_name: str | None = None,
    probe_name: str = "x_o",
    known_shapes: dict | None = None,
    check_finite: bool = True,
) -> tuple[int, ...]:
    """Check the arguments of a one-step prediction before anything is traced; the shape of one example's logits.

    Shape checks (parameter dtypes, batches, example shapes, ``apply_fn`` on one example, one target
    per example, a scalar loss, the optimizer state's structure) run once per shape signature of
    ``(params, x_o, x_u, y_u, opt_state)`` when the caller keeps ``known_shapes`` (a dict held by a
    returned function, e.g. :func:`ldjax.one_step_fn`'s). Value checks (finite inputs, a positive
    learning rate, the model's input check, the loss's ``check_target``) run on every call whose
    values are concrete.

    Args:
      apply_fn, params, x_o, x_u, y_u, loss: as in :func:`ldjax.one_step`.
      learning_rate: η of plain SGD (``optimizer=None``), else ``None``.
      optimizer: an optax optimizer or ``None``.
      opt_state: the optimizer's state or ``None``.
      optimizer_name: the optimizer's name in messages (default: described by its state).
      probe_name: the probes' name in messages (``"x_probe"`` for :func:`ldjax.predict_log_prob_change`).
      known_shapes: a cache ``{shape signature: logits shape}`` the caller owns; ``None`` checks every time.
      check_finite: check that ``params``, the inputs, the float targets and ``opt_state`` are finite.
    """
    check_optimizer(optimizer, opt_state)
    check_update_rule(learning_rate, optimizer)
    if not callable(loss):
        raise ValueError(f"loss must be a function loss(logits, target) -> scalar, got {type(loss).__name__}")
    check_model_input(apply_fn, x_o, probe_name)
    check_model_input(apply_fn, x_u, "x_u")
    key = _shape_signature(params, x_o, x_u, y_u, opt_state)
    known = known_shapes is not None and key in known_shapes
    out_shape = (
        known_shapes[key] if known else _check_step_shapes(apply_fn, params, x_o, x_u, y_u, probe_name)
    )
    if check_finite:
        check_finite_values(((params, "params"), (x_o, probe_name), (x_u, "x_u"), (y_u, "y_u")))
        check_finite_values(((opt_state, "opt_state"),))
    check_loss_target(loss, out_shape, y_u, "y_u")
    if not known:
        if optimizer is not None:
            check_opt_state(optimizer, params, opt_state, optimizer_name)
        n_u = batch_size(x_u)
        check_scalar_loss(loss, jax.ShapeDtypeStruct((n_u, *out_shape), params_dtype(params)), y_u)
        if known_shapes is not None:
            known_shapes[key] = out_shape
    return out_shape


def check_finite_values(named: Sequence[tuple[Any, str]]) -> None:
    """:func:`check_finite` on each ``(tree, name)``."""
    for tree, name in named:
        check_finite(tree, name)


def validate_kernel(
    apply_fn: ApplyFn,
    params: Params,
    x1: Any,
    x2: Any,
    *,
    method: str,
    trace: bool,
    per_layer: bool,
    check_finite: bool = True,
    memory_budget: float | None = None,
    known_shapes: dict | None = None,
    what: str = "empirical_ntk",
    row_blocks: int = 1,
) -> tuple[int, ...]:
    """Check the arguments of a kernel (:func:`ldjax.empirical_ntk`) and its memory; one example's logits shape.

    ``x2=None`` is the Gram matrix of ``x1``. Shape checks and the memory estimate
    (:func:`kernel_memory`, refused above the budget) run once per shape signature when the caller keeps
    ``known_shapes``; value checks (:func:`check_kernel_values`) on every call whose values are concrete.
    ``row_blocks`` is the number of devices the rows are split over (each holds ``n1 / row_blocks`` rows).
    """
    same = x2 is None or x2 is x1
    x2 = x1 if x2 is None else x2
    check_model_input(apply_fn, x1, "x1")
    check_model_input(apply_fn, x2, "x2")
    key = _shape_signature(params, x1, x2)
    if known_shapes is not None and key in known_shapes:
        out_shape = known_shapes[key]
    else:
        check_params(params)
        check_batch(x1, "x1")
        check_batch(x2, "x2")
        check_same_examples(x1, "x1", x2, "x2")
        out_shape = logits_shape(apply_fn, params, x1, "x1")
        rows = -(-batch_size(x1) // row_blocks)
        items = kernel_memory(
            method, params, rows, batch_size(x2), out_shape, trace=trace, per_layer=per_layer, same=same
        )
        cheaper = [] if trace else ["trace=True (a kernel [n1, n2])"]
        cheaper += [] if method == "structured" else ["method='structured' (no Jacobians)"]
        cheaper += ["fewer examples per call (blocks of x1)"]
        cheaper += (
            ["one position of a sequence model (lambda p, x: f(p, x)[-1])"] if len(out_shape) == 2 else []
        )
        check_memory(
            items,
            what=f"{what}(method={method!r})",
            cheaper=", ".join(cheaper[:-1]) + " or " + cheaper[-1] if len(cheaper) > 1 else cheaper[0],
            budget=memory_budget,
        )
        if known_shapes is not None:
            known_shapes[key] = out_shape
    if check_finite:
        check_finite_values(((params, "params"), (x1, "x1"), (x2, "x2")))
    return out_shape


def check_kernel_values(apply_fn: ApplyFn, params: Params, x1: Any, x2: Any, *, check_finite: bool) -> None:
    """The value checks of a kernel's arguments: the model's own input check (token ids in range) and
    finite values (unless ``check_finite`` is false)."""
    x2 = x1 if x2 is None else x2
    check_model_input(apply_fn, x1, "x1")
    check_model_input(apply_fn, x2, "x2")
    if check_finite:
        check_finite_values(((params, "params"), (x1, "x1"), (x2, "x2")))


def check_log_softmax_outputs(out_shape: tuple[int, ...]) -> None:
    """Δ log π needs at least two logits per distribution: log-softmax of one logit is constant (0)."""
    if out_shape[-1] < 2:
        raise ValueError(
            f"apply_fn returns one logit per example (shape {out_shape}): log-softmax over one logit is "
            f"always 0, so Δ log π would be 0. For a sigmoid classifier wrap it with "
            f"ldjax.binary_logits(apply_fn) (logits [0, z]: softmax gives [1 - σ(z), σ(z)]); for regression "
            f"(A = I) use ldjax.empirical_ntk and ldjax.decomposition(None, k, g, learning_rate)"
        )

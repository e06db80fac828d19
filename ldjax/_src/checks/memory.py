"""Memory: the budget, the estimates of what a result needs, and :class:`MemoryBudgetError`."""

import math
import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ldjax._src.checks.arrays import batch_size
from ldjax._src.checks.arrays import params_dtype
from ldjax._src.typing import Params

DEFAULT_MEMORY_FRACTION = 0.5
"""The default memory budget is this fraction of the device's memory (of the machine's RAM on CPU)."""


class MemoryBudgetError(ValueError):
    """A result would need more memory than the budget: refused before anything is allocated.

    A ``ValueError``, so existing handlers keep working; the message names the estimate, the budget and
    the cheaper routes.

    Example:
      >>> import jax, jax.numpy as jnp, ldjax
      >>> f = lambda p, x: jnp.tanh(x @ p)
      >>> try:
      ...     ldjax.empirical_ntk(f, jnp.ones((3, 2)), jnp.ones((4, 3)), method="jacobian", memory_budget=10)
      ... except ldjax.MemoryBudgetError as err:
      ...     print(str(err).split(" would")[0])
      empirical_ntk(method='jacobian')
    """


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


def check_feature_terms_memory(
    params: Params,
    x_o: Any,
    x_u: Any,
    feature: Sequence[int],
    out: Sequence[int],
    method: str,
    budget: float | None,
) -> None:
    """Refuse ``terms=True`` of :func:`ldjax.feature_step` when the feature kernel (and what builds it) and the
    direction exceed the budget."""
    n_o, n_u = batch_size(x_o), batch_size(x_u)
    items = kernel_memory(
        method, params, n_o, n_u, feature, trace=False, per_layer=False, same=False, name="kernel"
    )
    shape = (n_u, *out, *feature)
    items.append((f"direction {list(shape)}", array_bytes(shape, params_dtype(params))))
    check_memory(
        items,
        what=f"feature_step(terms=True, method={method!r})",
        cheaper="terms=False (predicted, actual and energy need no kernel: one VJP and one JVP), fewer x_o or "
        "x_u, or method='structured'",
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

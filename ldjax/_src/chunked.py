r"""Big kernels on one machine: the ``n1 x n2`` kernel in blocks under a memory budget, resumable from disk.

One compiled program computes a ``b x b`` block (the last row and column of blocks are padded to
that shape with copies of an example and cut back, so nothing recompiles). The block size is the
largest whose compiled program (XLA's memory analysis: arguments, outputs and temporaries) fits the
budget. With ``directory``, each block is written there as ``.npy`` (to a temporary name, then
renamed: a block on disk is always complete) next to a ``meta.json`` holding a fingerprint of the
inputs and options; an interrupted run called again with the same arguments skips the blocks
already on disk. For a Gram matrix (``x2=None``) only the blocks on and above the diagonal are
computed; the others are their transposes.
"""

import json
import math
import os
import pathlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ldjax._src import checks
from ldjax._src.explain import GiB
from ldjax._src.ntk import DEFAULT_METHOD
from ldjax._src.ntk import NtkMethod
from ldjax._src.ntk_fn import empirical_ntk_fn
from ldjax._src.results_io import atomic_write
from ldjax._src.results_io import fingerprint
from ldjax._src.typing import ApplyFn
from ldjax._src.typing import Params
from ldjax._src.typing import Precision

_FORMAT = 1


def chunked_ntk(
    apply_fn: ApplyFn,
    params: Params,
    x1: Any,
    x2: Any = None,
    *,
    method: NtkMethod = DEFAULT_METHOD,
    trace: bool = False,
    memory_budget: float = 2 * GiB,
    block_size: int | None = None,
    directory: str | os.PathLike | None = None,
    progress: bool = True,
    callback: Callable[[int, int], None] | None = None,
    precision: Precision = "highest",
) -> np.ndarray:
    """:func:`ldjax.empirical_ntk` computed block by block under a memory budget, optionally resumable.

    Args:
      apply_fn: un-batched model, ``apply_fn(params, x) -> [*o]``.
      params: pytree of parameters.
      x1: batch ``[n1, *d]`` (host or device arrays).
      x2: batch ``[n2, *d]``; ``None`` means ``x1`` (only the upper triangle of blocks is computed).
      method, trace, precision: as in :func:`ldjax.empirical_ntk` (``trace=True`` for ``[n1, n2]``).
      memory_budget: bytes one block's compiled program may use, and the bound for the result held in
        host memory (default 2 GiB).
      block_size: rows (and columns) per block; default: that of an interrupted run being resumed, else
        the largest power of two (or ``max(n1, n2)``) whose program fits ``memory_budget``.
      directory: where to keep finished blocks; an interrupted call resumes from them. ``None``: keep
        nothing on disk.
      progress: show a tqdm progress bar.
      callback: ``callback(i, j)`` after block ``(i, j)`` is finished (e.g. for logging).

    Returns:
      The kernel as a numpy array, ``[n1, n2, *o, *o]`` (``[n1, n2]`` when ``trace``).

    Example:
      >>> import jax.numpy as jnp, numpy as np, ldjax
      >>> f = lambda w, x: jnp.tanh(x @ w)
      >>> w, x = jnp.full((5, 3), 0.1), jnp.linspace(0.0, 1.0, 35).reshape(7, 5)
      >>> k = ldjax.chunked_ntk(f, w, x, trace=True, block_size=3, progress=False)
      >>> k.shape, bool(np.allclose(k, ldjax.empirical_ntk(f, w, x, trace=True), rtol=1e-5))
      ((7, 7), True)
    """
    checks.check_positive_budget(memory_budget)
    if block_size is not None and (not isinstance(block_size, int) or block_size <= 0):
        raise ValueError(f"block_size must be a positive int, got {block_size!r}")
    gram = x2 is None
    x2_ = x1 if gram else x2
    shape, dtype = _result_layout(apply_fn, params, x1, x2, trace, memory_budget)
    n1, n2 = shape[:2]
    kernel_fn = empirical_ntk_fn(
        apply_fn, method=method, trace=trace, memory_budget=memory_budget, precision=precision
    )
    options = dict(method=method, trace=trace)
    b = block_size or _saved_block(directory, params, x1, None if gram else x2, options)
    b = b or _fitting_block(kernel_fn, params, x1, x2_, max(n1, n2), memory_budget)
    rows, cols = math.ceil(n1 / b), math.ceil(n2 / b)
    todo = [(i, j) for i in range(rows) for j in range(cols) if not gram or j >= i]
    store = None
    if directory is not None:
        store = _BlockStore(
            pathlib.Path(directory),
            _fingerprint(params, x1, None if gram else x2, {**options, "b": b}),
            dict(n1=n1, n2=n2, block=b, shape=list(shape), dtype=dtype.str, method=method, trace=trace),
        )
    result = np.empty(shape, dtype)
    done = [ij for ij in todo if store is not None and store.has(*ij)]
    bar = _progress_bar(progress, len(todo), len(done), b)
    try:
        for i, j in todo:
            if store is not None and store.has(i, j):
                block = store.load(i, j)
            else:
                block = _kernel_block(kernel_fn, params, x1, x2_, i, j, b, gram=gram)
                if store is not None:
                    store.save(i, j, block)
                if bar is not None:
                    bar.update(1)
                if callback is not None:
                    callback(i, j)
            _place(result, block, i, j, b, trace=trace, mirror=gram and i != j)
    finally:
        if bar is not None:
            bar.close()
    return result


def _result_layout(
    apply_fn: ApplyFn, params: Params, x1: Any, x2: Any, trace: bool, memory_budget: float
) -> tuple[tuple[int, ...], np.dtype]:
    """Check the batches (``x2=None``: the Gram matrix of ``x1``); the kernel's shape and dtype, refused
    when the kernel alone exceeds ``memory_budget`` (it is held in host memory)."""
    checks.check_batch(x1, "x1")
    if x2 is not None:
        checks.check_batch(x2, "x2")
        checks.check_same_examples(x1, "x1", x2, "x2")
    out_shape = checks.logits_shape(apply_fn, params, x1, "x1")
    n1, n2 = checks.batch_size(x1), checks.batch_size(x1 if x2 is None else x2)
    dtype = np.dtype(jnp.result_type(*jax.tree.leaves(params)))
    o = math.prod(out_shape)
    tail = () if trace else (*out_shape, *out_shape)
    result_bytes = n1 * n2 * (1 if trace else o * o) * dtype.itemsize
    if result_bytes > memory_budget:
        raise ValueError(
            f"the kernel itself, {(n1, n2, *tail)} numbers ({result_bytes / GiB:.3g} GiB), exceeds memory_budget "
            f"({memory_budget / GiB:.3g} GiB): pass trace=True, fewer examples or a larger budget"
        )
    return (n1, n2, *tail), dtype


def _kernel_block(
    kernel_fn: Any, params: Params, x1: Any, x2: Any, i: int, j: int, b: int, *, gram: bool
) -> np.ndarray:
    """Block ``(i, j)`` of the kernel (rows ``i*b ..`` of ``x1``, columns ``j*b ..`` of ``x2``), cut to size."""
    a, n_a = _block(x1, i, b)
    c, n_c = _block(x2, j, b)
    return np.asarray(kernel_fn(params, a, None if (gram and i == j) else c))[:n_a, :n_c]


def _place(
    result: np.ndarray, block: np.ndarray, i: int, j: int, b: int, *, trace: bool, mirror: bool
) -> None:
    """Write block ``(i, j)`` into ``result``; with ``mirror`` (a Gram matrix) its transpose at ``(j, i)`` too."""
    rows, cols = slice(i * b, i * b + block.shape[0]), slice(j * b, j * b + block.shape[1])
    result[rows, cols] = block
    if mirror:
        result[cols, rows] = _transpose(block, trace)


def _progress_bar(enabled: bool, total: int, done: int, b: int) -> Any:
    """A tqdm bar over the ``total`` blocks, ``done`` of them already on disk (``None`` unless ``enabled``)."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc=f"kernel blocks ({b}x{b})", unit="block")


def _saved_block(directory: Any, params: Params, x1: Any, x2: Any, options: dict[str, Any]) -> int | None:
    """The block size of an earlier run of the same computation in ``directory`` (resume without searching)."""
    if directory is None or not (pathlib.Path(directory) / "meta.json").exists():
        return None
    meta = json.loads((pathlib.Path(directory) / "meta.json").read_text())
    b = meta.get("block")
    if isinstance(b, int) and meta.get("fingerprint") == _fingerprint(params, x1, x2, {**options, "b": b}):
        return b
    return None


def _transpose(block: np.ndarray, trace: bool) -> np.ndarray:
    """``K(x2_j, x1_i)`` from ``K(x1_i, x2_j)``: swap the examples and the two groups of logit axes."""
    if trace:
        return block.T
    m = (block.ndim - 2) // 2
    return np.transpose(block, (1, 0, *range(2 + m, 2 + 2 * m), *range(2, 2 + m)))


def _block(x: Any, index: int, b: int) -> tuple[Any, int]:
    """Rows ``[index * b, (index + 1) * b)`` of ``x``, padded to ``b`` rows with copies of the first one."""
    n = checks.batch_size(x)
    start, stop = index * b, min((index + 1) * b, n)
    extra = b - (stop - start)

    def take(leaf: Any) -> jax.Array:
        rows = jnp.asarray(leaf[start:stop])
        return rows if extra == 0 else jnp.concatenate([rows, jnp.repeat(rows[:1], extra, axis=0)])

    return jax.tree.map(take, x), stop - start


def _fitting_block(kernel_fn: Any, params: Params, x1: Any, x2: Any, n: int, budget: float) -> int:
    """The largest block size (``n``, then powers of two below it) whose compiled program fits ``budget``.

    The sizes are screened with the cheap estimate of :func:`ldjax.explain_kernel` (no compilation), then
    the first that passes is compiled and checked with XLA's memory analysis, halving until it fits.
    """
    sizes = sorted({n, *(2**k for k in range(int(math.log2(max(n, 1))) + 1) if 2**k < n)}, reverse=True)
    for b in sizes:
        a, c = _block(x1, 0, b)[0], _block(x2, 0, b)[0]
        plan = kernel_fn.explain(params, a, c)
        method = kernel_fn.options["method"]
        if plan.costs[plan.method if method == "auto" else method].bytes > budget:
            continue
        try:  # two batches (an off-diagonal block): the larger program even for a Gram matrix
            compiled = kernel_fn.lower(params, a, c).compile()
        except ValueError as err:  # the method refuses (memory) at this size
            if "memory_budget" in str(err):
                continue
            raise
        if _program_bytes(compiled) <= budget:
            return b
    raise ValueError(f"even one example pair does not fit memory_budget ({budget / GiB:.3g} GiB)")


def _program_bytes(compiled: Any) -> int:
    """Arguments + outputs + temporaries of a compiled program (XLA's memory analysis)."""
    analysis = compiled.memory_analysis()
    if analysis is None:
        return 0
    return int(analysis.argument_size_in_bytes + analysis.output_size_in_bytes + analysis.temp_size_in_bytes)


def _fingerprint(params: Params, x1: Any, x2: Any, options: dict[str, Any]) -> str:
    return fingerprint(jax.tree.leaves((params, x1, x2)), options)


class _BlockStore:
    """Finished blocks as ``block_<i>_<j>.npy`` in a directory with a ``meta.json`` (format, fingerprint)."""

    def __init__(self, directory: pathlib.Path, fingerprint: str, info: dict[str, Any]):
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        meta_path = directory / "meta.json"
        meta = {"format": _FORMAT, "fingerprint": fingerprint, **info}
        if meta_path.exists():
            old = json.loads(meta_path.read_text())
            if old.get("fingerprint") != fingerprint:
                raise ValueError(
                    f"directory {str(directory)!r} holds blocks of another computation (other inputs, "
                    f"parameters or options: {old.get('shape')}, method {old.get('method')!r}, block "
                    f"{old.get('block')}): use a new directory or delete it"
                )
        else:
            atomic_write(meta_path, lambda f: f.write(json.dumps(meta, indent=1).encode()))

    def _path(self, i: int, j: int) -> pathlib.Path:
        return self.directory / f"block_{i:05d}_{j:05d}.npy"

    def has(self, i: int, j: int) -> bool:
        return self._path(i, j).exists()

    def load(self, i: int, j: int) -> np.ndarray:
        return np.load(self._path(i, j), allow_pickle=False)

    def save(self, i: int, j: int, block: np.ndarray) -> None:
        atomic_write(self._path(i, j), lambda f: np.save(f, block, allow_pickle=False))

"""The arguments of :func:`ldjax.force_attribution`: the training trace, the updates and the probes'
responses, checked with messages that name the argument (:func:`check`, the first step of an attribution)."""

import functools
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.typing import ArrayLike
from jaxtyping import Array
from jaxtyping import Int

from ldjax._src import checks
from ldjax._src import sharding
from ldjax._src.attribution import projected
from ldjax._src.attribution.forces import step_forces
from ldjax._src.ntk import batched
from ldjax._src.typing import ApplyFn
from ldjax._src.typing import LossFn
from ldjax._src.typing import Params
from ldjax._src.typing import Precision


class TrainingTrace(NamedTuple):
    """The updates of a training run to sum the pushes over.

    Attributes:
      batches: ``int [steps, B]``: the training examples of each update (indices into ``train_x``), e.g.
        :func:`ldjax.epoch_batches`. Each example's force is its share of its batch's loss gradient.
      learning_rates: η of each update, ``[steps]`` (or one number for all).
      params: the parameters BEFORE each update, a pytree whose leaves have a leading ``[steps]`` axis
        (e.g. recorded by :func:`ldjax.train` with ``record=lambda p, step: p``); ``None``: every update
        is taken at the ``params`` given to :func:`force_attribution`.
    """

    batches: Int[ArrayLike, "steps B"]
    learning_rates: Any
    params: Params | None = None


class Checked(NamedTuple):
    """The arguments of :func:`ldjax.force_attribution` after :func:`check`, with the defaults filled in."""

    params: Params
    """``params``, or ``trace.params`` (a leading ``[steps]`` axis on every leaf) when ``stacked``."""
    step_params: Params
    """The parameters of the first update: the shapes, dtype and route of the whole run."""
    stacked: bool
    """Whether every update has its own parameters (``trace.params``)."""
    train_x: Any
    train_y: Any
    probe_x: Any
    out_shape: tuple[int, ...]
    """The model's logits ``[*o]`` for one example."""
    n: int
    n_o: int
    batches: np.ndarray
    """``int [steps, B]``: the training examples of each update."""
    rates: np.ndarray
    """``[steps]``: η of each update."""
    tokens: np.ndarray
    """``[n_o, *o[:-1]]``: the probes' responses."""
    mask: np.ndarray
    """The probes' response mask, shaped like ``tokens``."""
    rank: tuple[int, int]
    key: jax.Array
    devices: int
    """Devices along the mesh axis (1 without a mesh)."""
    axis_name: str | None


def check(
    apply_fn: ApplyFn,
    params: Params | None,
    train_x: Any,
    train_y: Any,
    probe_x: Any,
    probe_y: Any,
    *,
    loss: LossFn,
    learning_rate: Any,
    trace: TrainingTrace | None,
    method: str,
    rank: int | tuple[int, int],
    key: jax.Array | None,
    chunk_size: int | None,
    memory_budget: float | None,
    mesh: Mesh | None,
    axis: str | None,
    precision: Precision,
    check_finite: bool,
) -> Checked:
    """Check every argument of :func:`ldjax.force_attribution` (the options first, then the data, the
    updates and the probes), with a message that names the argument; the checked arguments."""
    r = _check_options(method, rank, precision, memory_budget, chunk_size)
    checks.check_batch(train_x, "train_x")
    checks.check_batch(probe_x, "probe_x")
    checks.check_same_examples(train_x, "train_x", probe_x, "probe_x")
    n, n_o = checks.batch_size(train_x), checks.batch_size(probe_x)
    if trace is not None and not isinstance(trace, TrainingTrace):
        raise ValueError(
            f"trace must be a ldjax.TrainingTrace(batches, learning_rates, params), got {type(trace).__name__}"
        )
    stacked = trace is not None and trace.params is not None
    step_params = first_step_params(params, trace, stacked)
    checks.check_params(step_params)
    out_shape = checks.logits_shape(apply_fn, step_params, train_x, "train_x")
    checks.check_log_softmax_outputs(out_shape)
    checks.check_targets_batch(train_y, n, "train_y", "train_x")
    batches, rates = updates(trace, learning_rate, n)
    check_loss_target(loss, out_shape, train_y, batches[0])
    tokens, mask = probe_targets(apply_fn, step_params, probe_x, probe_y, out_shape, precision)
    run_params = trace.params if stacked else params  # type: ignore[union-attr]
    if check_finite:
        checks.check_finite_values(((run_params, "params"), (train_x, "train_x"), (probe_x, "probe_x")))
    devices, axis_name = mesh_axis(mesh, axis)
    key = jax.random.key(0) if key is None else key
    return Checked(
        params=run_params, step_params=step_params, stacked=stacked, train_x=train_x, train_y=train_y, probe_x=probe_x,
        out_shape=out_shape, n=n, n_o=n_o,
        batches=batches, rates=rates, tokens=tokens, mask=mask, rank=r, key=key, devices=devices, axis_name=axis_name,
    )  # fmt: skip


def _check_options(
    method: str,
    rank: int | tuple[int, int],
    precision: Precision,
    memory_budget: float | None,
    chunk_size: int | None,
) -> tuple[int, int]:
    """Check the options that do not depend on the data; the rank as ``(r_in, r_out)``."""
    if method not in ("auto", "exact", "projected"):
        raise ValueError(f"method must be 'auto', 'exact' or 'projected', got {method!r}")
    r = projected.ranks(rank)
    checks.precision_scope(precision)
    if memory_budget is not None:
        checks.check_positive_budget(memory_budget)
    if chunk_size is not None and (
        not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1
    ):
        raise ValueError(
            f"chunk_size must be a positive int (training examples per chunk), got {chunk_size!r}"
        )
    return r


def first_step_params(params: Params | None, trace: TrainingTrace | None, stacked: bool) -> Params:
    if not stacked:
        if params is None:
            raise ValueError(
                "params is None: pass the parameters (or a trace whose params holds every update's)"
            )
        return params
    if params is not None:
        raise ValueError(
            "params must be None when trace.params holds the parameters of every update (got both)"
        )
    assert trace is not None
    return jax.tree.map(lambda a: a[0], trace.params)


def updates(trace: TrainingTrace | None, learning_rate: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(batches int [steps, B], rates [steps])``: the trace's, or every example alone at η."""
    if trace is None:
        rate = 1.0 if learning_rate is None else learning_rate
        check_rates(np.asarray(rate, np.float64), "learning_rate")
        return np.arange(n)[:, None], np.full((n,), float(rate))
    if learning_rate is not None:
        raise ValueError("with a trace, give the learning rates as trace.learning_rates, not learning_rate")
    batches = np.asarray(trace.batches)
    if (
        batches.ndim != 2
        or batches.shape[0] == 0
        or batches.shape[1] == 0
        or not np.issubdtype(batches.dtype, np.integer)
    ):
        raise ValueError(
            f"trace.batches must be integer indices [steps, B] with steps, B >= 1, got shape {batches.shape} "
            f"and dtype {batches.dtype}"
        )
    if batches.min() < 0 or batches.max() >= n:
        raise ValueError(
            f"trace.batches holds indices in [{batches.min()}, {batches.max()}] but train_x has n={n} examples: "
            f"expected indices in [0, {n})"
        )
    rates = np.asarray(trace.learning_rates, np.float64)
    if rates.ndim == 0:
        rates = np.full((batches.shape[0],), float(rates))
    if rates.shape != (batches.shape[0],):
        raise ValueError(
            f"trace.learning_rates has shape {rates.shape}: expected one number or one per update ({batches.shape[0]},)"
        )
    check_rates(rates, "trace.learning_rates")
    if trace.params is not None:
        steps = {np.shape(a)[0] if np.ndim(a) else None for a in jax.tree.leaves(trace.params)}
        if steps != {batches.shape[0]}:
            raise ValueError(
                f"trace.params must have a leading axis of one entry per update ({batches.shape[0]}) on every "
                f"leaf, got leading sizes {sorted(map(str, steps))}"
            )
    return batches, rates


def check_rates(rates: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(rates)) or np.any(rates <= 0):
        raise ValueError(
            f"{name} must be finite and > 0, got {rates.tolist() if rates.ndim else float(rates)}"
        )


def check_loss_target(loss: LossFn, out_shape: tuple[int, ...], train_y: Any, first: np.ndarray) -> None:
    """The loss's target check on one update batch, naming what a batch is."""
    y = jax.tree.map(lambda a: take(a, first), train_y)
    try:
        checks.check_loss_target(loss, out_shape, y, "train_y")
    except ValueError as err:
        raise ValueError(
            f"{err} (checked on the first update batch, {len(first)} example(s); without a trace every "
            f"training example is its own batch; a loss over pairs or groups needs trace=TrainingTrace(batches, ...))"
        ) from err


def probe_targets(
    apply_fn: ApplyFn,
    params: Params,
    probe_x: Any,
    probe_y: Any,
    out_shape: tuple[int, ...],
    precision: Precision,
) -> tuple[np.ndarray, np.ndarray]:
    """``(tokens [n_o, *o[:-1]], mask)`` of the probes' responses."""
    n_o = checks.batch_size(probe_x)
    shape = (n_o, *out_shape[:-1])
    if probe_y is None:
        with checks.precision_scope(precision):
            z = forward(apply_fn)(params, probe_x)
        return np.asarray(jnp.argmax(z, axis=-1)), np.ones(shape, np.float32)
    tokens, mask = (probe_y.tokens, probe_y.mask) if hasattr(probe_y, "mask") else (probe_y, None)
    tokens = np.asarray(tokens)
    if tokens.shape != shape or not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(
            f"probe_y has shape {tokens.shape} and dtype {tokens.dtype}: expected integer labels/tokens {list(shape)} "
            f"(one per probe{' and position' if len(out_shape) == 2 else ''}), or a SequenceTarget"
        )
    checks.check_ids(
        tokens,
        out_shape[-1],
        "probe_y",
        what="labels",
        short="labels",
        bound=f"the model has {out_shape[-1]} logits",
    )
    mask = np.ones(shape, np.float32) if mask is None else np.asarray(mask)
    if mask.shape != shape:
        raise ValueError(f"probe_y.mask has shape {mask.shape}: expected {shape}")
    return tokens, mask


@functools.lru_cache(maxsize=16)
def forward(apply_fn: ApplyFn) -> Callable[..., Array]:
    return jax.jit(batched(apply_fn))


def behaviour(
    apply_fn: ApplyFn,
    loss: LossFn,
    params: Params,
    probe_x: Any,
    train_x: Any,
    train_y: Any,
    first: np.ndarray,
    rate: float,
    precision: Precision,
) -> list[np.ndarray]:
    """What the model function and the loss do (the probes' logits, the first update's forces), for the
    fingerprint of a resumable run: two functions with the same name are not mistaken for each other."""
    x = jax.tree.map(lambda a: take(a, first), train_x)
    y = jax.tree.map(lambda a: take(a, first), train_y)
    with checks.precision_scope(precision):
        logits = forward(apply_fn)(params, probe_x)
        forces = _first_forces(apply_fn, loss)(params, x, y, jnp.asarray(rate, checks.params_dtype(params)))
    return [np.asarray(logits), np.asarray(forces)]


@functools.lru_cache(maxsize=16)
def _first_forces(apply_fn: ApplyFn, loss: LossFn) -> Callable[..., Array]:
    return jax.jit(lambda p, x, y, r: step_forces(apply_fn, p, x, y, r, loss))


def mesh_axis(mesh: Mesh | None, axis: str | None) -> tuple[int, str | None]:
    """``(devices along the axis, its name)``; ``(1, None)`` without a mesh."""
    if mesh is None:
        if axis is not None:
            raise ValueError("axis is given without a mesh")
        return 1, None
    name = sharding.mesh_axis(mesh, axis)
    return int(mesh.shape[name]), name


def take(a: Any, idx: np.ndarray) -> Any:
    """``a[idx]`` on the host for numpy inputs (no transfer of the whole set), on device otherwise."""
    return a[idx] if isinstance(a, jax.Array) else np.asarray(a)[idx]

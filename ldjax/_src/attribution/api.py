"""The public entry point, :func:`ldjax.force_attribution`, and its result.

An attribution is four steps: check the arguments (:func:`.arguments.check`), plan the route, the chunks and
their store (:func:`.plan.plan_attribution`), run the compiled chunks (:func:`_run`), assemble the result.
"""

from collections.abc import Callable
from typing import Any
from typing import Literal
from typing import NamedTuple

import jax
import numpy as np
from jax.sharding import Mesh

from ldjax._src.attribution import arguments
from ldjax._src.attribution import plan
from ldjax._src.attribution import programs
from ldjax._src.attribution import projected
from ldjax._src.attribution import streaming
from ldjax._src.attribution.arguments import TrainingTrace
from ldjax._src.typing import ApplyFn
from ldjax._src.typing import LearningRate
from ldjax._src.typing import LossFn
from ldjax._src.typing import Params
from ldjax._src.typing import Precision

AttributionMethod = Literal["auto", "exact", "projected"]


class Attribution(NamedTuple):
    """Result of :func:`force_attribution`.

    Attributes:
      scores: ``[n_o, n]``: the first-order change of probe ``o``'s log π(y_o) caused by training example
        ``j`` (summed over the updates of a trace); positive = pushed up.
      per_layer: ``{leaf name: [n_o, n]}`` summing to ``scores`` (``None`` unless ``per_layer``).
      method: ``"exact"`` or ``"projected"`` (what ``"auto"`` chose).
      rank: ``(r_in, r_out)`` of the projections, ``None`` for the exact route.
    """

    scores: np.ndarray
    per_layer: dict[str, np.ndarray] | None
    method: str
    rank: tuple[int, int] | None


def force_attribution(
    apply_fn: ApplyFn,
    params: Params | None,
    train_x: Any,
    train_y: Any,
    probe_x: Any,
    probe_y: Any = None,
    *,
    loss: LossFn,
    learning_rate: LearningRate | None = None,
    trace: TrainingTrace | None = None,
    method: AttributionMethod = "auto",
    rank: int | tuple[int, int] = 64,
    key: jax.Array | None = None,
    per_layer: bool = True,
    chunk_size: int | None = None,
    memory_budget: float | None = None,
    directory: Any = None,
    mesh: Mesh | None = None,
    axis: str | None = None,
    progress: bool = True,
    callback: Callable[[int, int], None] | None = None,
    precision: Precision = "highest",
    check_finite: bool = True,
) -> Attribution:
    r"""Rank training examples by their first-order push on each probe's log-probability.

    .. math:: s_{oj} = -\eta\, \big[A(x_o)\, K(x_o, x_j)\, G_j\big]_{y_o}

    summed over the (response) positions of a sequence probe; positive: ``j`` pushed ``y_o`` up. Without
    ``trace`` every training example is its own update (batch of one, step ``learning_rate``), as in
    TracIn's single-checkpoint score, but with the A term at the probe and the loss's force G; with a
    ``trace`` each example's share of its batch's force is used and the scores are summed over the updates,
    so that a column sums to the trace's total first-order change (per update, the same split as
    ``split_change`` with one mask per example).

    ``method="exact"`` uses the structured per-layer kernels (exact in any dtype; cost and memory grow
    with the layers' widths); ``"projected"`` sketches every per-example gradient per layer with random
    projections of rank ``rank`` of its inputs and output cotangents (LoGra), never forming a full
    gradient: unbiased, error shrinking with the rank, exact at full rank. ``"auto"`` takes the exact
    route when a chunk of :data:`~ldjax._src.attribution.programs.AUTO_EXAMPLES` (16) training examples fits ``memory_budget``.

    The updates are processed in chunks (``chunk_size`` examples, by default as many as fit
    ``memory_budget``), each one compiled program; ``progress`` shows a bar. With ``directory`` each
    finished chunk is saved there (npz, written atomically) and a second call with the same arguments
    resumes after an interruption. With ``mesh`` each chunk's updates are split over ``axis`` of the mesh
    (its devices may belong to several processes under ``jax.distributed``; every process then passes the
    same arguments and gets the whole result).

    Args:
      apply_fn: un-batched model, ``apply_fn(params, x) -> [k]`` or ``[T, V]``.
      params: pytree of parameters (``None`` when ``trace.params`` holds those of every update).
      train_x: training inputs ``[n, *d]`` (host or device arrays, or a pytree of them).
      train_y: their targets for ``loss`` (leading axis ``n``).
      probe_x: probe inputs ``[n_o, *d]``.
      probe_y: the probes' responses: labels ``[n_o]`` (classifier), tokens ``[n_o, T]``, or a
        :class:`ldjax.losses.SequenceTarget` whose mask selects the response tokens; default: the model's
        own argmax at every position.
      loss: ``loss(logits[B, *o], y) -> scalar``, as in :func:`ldjax.one_step`.
      learning_rate: η of each single-example update (default 1); with ``trace``, use
        ``trace.learning_rates``.
      trace: :class:`TrainingTrace`: the updates of an epoch to sum over.
      method: ``"auto"``, ``"exact"`` or ``"projected"``.
      rank: projection rank, one int or ``(r_in, r_out)`` (projected route; default 64, i.e. 4,096
        numbers per layer and example).
      key: PRNG key of the projections (default ``jax.random.key(0)``).
      per_layer: also return the scores of every parameter leaf.
      chunk_size: training examples per compiled chunk (rounded down to whole updates, at least one).
      memory_budget: bytes a chunk may use (default: half of the device's memory); refused with a
        message when even one update does not fit.
      directory: where to keep finished chunks, for resuming (``None``: nothing on disk).
      mesh: a ``jax.sharding.Mesh`` whose ``axis`` (default: its first) splits each chunk's updates.
      axis: the mesh axis.
      progress: show a tqdm progress bar over training examples.
      callback: ``callback(chunk, n_chunks)`` after each chunk is finished.
      precision: matmul precision (default ``"highest"``).
      check_finite: refuse NaN or inf in the parameters and inputs.

    Returns:
      :class:`Attribution` (numpy arrays).

    Example:
      >>> import jax, jax.numpy as jnp, ldjax
      >>> f = lambda p, x: jnp.tanh(x @ p["w1"]) @ p["w2"]
      >>> k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
      >>> params = {"w1": jax.random.normal(k1, (5, 16)), "w2": jax.random.normal(k2, (16, 3))}
      >>> x, y = jax.random.normal(k3, (20, 5)), jnp.arange(20) % 3
      >>> r = ldjax.force_attribution(f, params, x, y, x[:2], y[:2], loss=ldjax.losses.cross_entropy,
      ...                             learning_rate=0.1, progress=False)
      >>> r.scores.shape, r.method, sorted(r.per_layer)
      ((2, 20), 'exact', ['w1', 'w2'])
      >>> step = ldjax.one_step(f, params, x[:2], x[3:4], y[3:4], loss=ldjax.losses.cross_entropy,
      ...                       learning_rate=0.1)
      >>> bool(jnp.allclose(r.scores[:, 3], step.predicted[jnp.arange(2), y[:2]], atol=1e-6))
      True
    """
    args = arguments.check(
        apply_fn, params, train_x, train_y, probe_x, probe_y, loss=loss, learning_rate=learning_rate, trace=trace,
        method=method, rank=rank, key=key, chunk_size=chunk_size, memory_budget=memory_budget, mesh=mesh, axis=axis,
        precision=precision, check_finite=check_finite,
    )  # fmt: skip
    how = plan.plan_attribution(
        apply_fn, loss, args, method=method, per_layer=per_layer, chunk_size=chunk_size,
        memory_budget=memory_budget, directory=directory, precision=precision,
    )  # fmt: skip
    total = _run(
        apply_fn, loss, args, how, per_layer=per_layer, precision=precision, mesh=mesh, progress=progress,
        callback=callback,
    )  # fmt: skip
    return Attribution(
        scores=total.sum(0),
        per_layer=dict(zip(how.names, total, strict=True)) if per_layer else None,
        method=how.method,
        rank=args.rank if how.method == "projected" else None,
    )


def _run(
    apply_fn: ApplyFn,
    loss: LossFn,
    args: arguments.Checked,
    how: plan.Plan,
    *,
    per_layer: bool,
    precision: Precision,
    mesh: Mesh | None,
    progress: bool,
    callback: Callable[[int, int], None] | None,
) -> np.ndarray:
    """``[L, n_o, n]``: the scores of every leaf (``L = 1`` without ``per_layer``) summed over the updates,
    computed chunk by chunk (or read from the plan's store)."""
    compiled = programs.programs(
        apply_fn, loss, how.method, per_layer, precision, args.stacked, mesh, args.axis_name, *how.shapes
    )
    proj = (
        projected.projections(how.leaf_sketches, args.rank, args.key, how.dtype)
        if how.method == "projected"
        else None
    )
    if args.stacked:
        probe_state = (args.probe_x, args.tokens, args.mask)
    else:
        probe_state = compiled.probe_side(args.params, args.probe_x, args.tokens, args.mask, proj)
    batches, chunk_steps = args.batches, how.chunk_steps

    def compute(start: int, stop: int) -> np.ndarray:
        rows = np.arange(start, start + chunk_steps)
        valid = rows < stop
        rows = np.where(valid, rows, start)
        idx = batches[rows]
        x = jax.tree.map(lambda a: arguments.take(a, idx), args.train_x)
        y = jax.tree.map(lambda a: arguments.take(a, idx), args.train_y)
        step_rates = np.where(valid, args.rates[rows], 0).astype(how.dtype)
        p = jax.tree.map(lambda a: arguments.take(a, rows), args.params) if args.stacked else args.params
        out = programs.gather(compiled.chunk(p, probe_state, x, y, step_rates, proj))
        return out[:, :, : stop - start]

    n_steps, b = batches.shape
    chunks = streaming.stream(
        compute, n_steps, chunk_steps, how.store, examples_per_step=b, progress=progress, callback=callback
    )
    total = np.zeros((len(how.names) if per_layer else 1, args.n_o, args.n), how.dtype)
    for start, part in chunks:
        idx = batches[start : start + part.shape[2]].reshape(-1)
        np.add.at(total, (slice(None), slice(None), idx), part.reshape(part.shape[0], args.n_o, -1))
    return total

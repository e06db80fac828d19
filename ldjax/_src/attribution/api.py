"""The public entry point, :func:`ldjax.force_attribution`, and its result."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from typing import Literal
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from ldjax._src import checks
from ldjax._src import pytree
from ldjax._src.attribution import arguments
from ldjax._src.attribution import programs
from ldjax._src.attribution import projected
from ldjax._src.attribution import streaming
from ldjax._src.attribution.arguments import TrainingTrace
from ldjax._src.typing import ApplyFn
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
    learning_rate: float | None = None,
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
    checks.check_batch(train_x, "train_x")
    checks.check_batch(probe_x, "probe_x")
    checks.check_same_examples(train_x, "train_x", probe_x, "probe_x")
    n, n_o = checks.batch_size(train_x), checks.batch_size(probe_x)
    stacked = trace is not None and trace.params is not None
    step_params = arguments.first_step_params(params, trace, stacked)
    checks.check_params(step_params)
    out_shape = checks.logits_shape(apply_fn, step_params, train_x, "train_x")
    checks.check_log_softmax_outputs(out_shape)
    checks.check_targets_batch(train_y, n, "train_y", "train_x")
    batches, rates = arguments.updates(trace, learning_rate, n)
    arguments.check_loss_target(loss, out_shape, train_y, batches[0])
    tokens, mask = arguments.probe_targets(apply_fn, step_params, probe_x, probe_y, out_shape, precision)
    if check_finite:
        checks.check_finite_values(
            ((params if not stacked else trace.params, "params"), (train_x, "train_x"), (probe_x, "probe_x"))  # type: ignore[union-attr]
        )
    devices, axis_name = arguments.mesh_axis(mesh, axis)
    key = jax.random.key(0) if key is None else key

    dtype = checks.params_dtype(step_params)
    names = pytree.leaf_names(step_params)
    n_steps, b = batches.shape
    shapes = (programs.spec(step_params), programs.spec(probe_x), out_shape, b)
    prepared = programs.prepared_model(apply_fn, *shapes)
    leaf_sketches = projected.sketches(prepared)
    chosen, fixed, per_example = programs.choose(
        method, prepared, leaf_sketches, r, n_o, b, dtype, memory_budget, per_layer, len(names)
    )
    limit, _ = checks.memory_budget(memory_budget)
    params_bytes = sum(
        checks.array_bytes(np.shape(a), jnp.result_type(a)) for a in jax.tree.leaves(step_params)
    )
    if chunk_size is not None:
        chunk_steps = max(1, chunk_size // b)
    elif stacked:  # one update at a time inside a chunk; the chunk holds its updates' parameters
        chunk_steps = int(max(1, (limit - fixed - b * per_example) // max(params_bytes, 1)))
    else:
        chunk_steps = int(max(1, (limit - fixed) // (b * per_example)))
    chunk_steps = min(chunk_steps, n_steps)
    chunk_steps = -(-chunk_steps // devices) * devices  # a whole number of updates per device

    store = None
    if directory is not None:
        key_data = np.asarray(jax.random.key_data(key))
        fp = streaming.fingerprint(
            [
                *jax.tree.leaves(trace.params if stacked else params),  # type: ignore[union-attr]
                *jax.tree.leaves(train_x),
                *jax.tree.leaves(train_y),
                *jax.tree.leaves(probe_x),
                tokens,
                mask,
                batches,
                rates,
                key_data,
                *arguments.behaviour(
                    apply_fn, loss, step_params, probe_x, train_x, train_y, batches[0], rates[0], precision
                ),
            ],
            {
                "method": chosen,
                "rank": list(r),
                "per_layer": per_layer,
                "names": names,
                "precision": str(precision),
                "loss": getattr(loss, "__name__", repr(loss)),
            },
        )
        store = streaming.ChunkStore(
            directory, fp, chunk_steps, {"method": chosen, "n": n, "n_o": n_o, "steps": n_steps, "batch": b}
        )
        chunk_steps = store.chunk_steps
        if chunk_steps % devices:
            raise ValueError(
                f"directory {str(directory)!r} holds chunks of {chunk_steps} update(s), which do not split over the "
                f"{devices} devices of mesh axis {axis_name!r}: resume on the mesh the run started with, or use a new "
                f"directory"
            )

    compiled = programs.programs(
        apply_fn, loss, chosen, per_layer, precision, stacked, mesh, axis_name, *shapes
    )
    proj = projected.projections(leaf_sketches, r, key, dtype) if chosen == "projected" else None
    if stacked:
        probe_state = (probe_x, tokens, mask)
    else:
        probe_state = compiled.probe_side(step_params, probe_x, tokens, mask, proj)

    def compute(start: int, stop: int) -> np.ndarray:
        rows = np.arange(start, start + chunk_steps)
        valid = rows < stop
        rows = np.where(valid, rows, start)
        idx = batches[rows]
        x = jax.tree.map(lambda a: arguments.take(a, idx), train_x)
        y = jax.tree.map(lambda a: arguments.take(a, idx), train_y)
        step_rates = np.where(valid, rates[rows], 0).astype(dtype)
        p = jax.tree.map(lambda a: arguments.take(a, rows), trace.params) if stacked else params  # type: ignore[union-attr]
        out = programs.gather(compiled.chunk(p, probe_state, x, y, step_rates, proj))
        return out[:, :, : stop - start]

    chunks = streaming.stream(
        compute, n_steps, chunk_steps, store, examples_per_step=b, progress=progress, callback=callback
    )
    total = np.zeros((len(names) if per_layer else 1, n_o, n), dtype)
    for start, part in chunks:
        idx = batches[start : start + part.shape[2]].reshape(-1)
        np.add.at(total, (slice(None), slice(None), idx), part.reshape(part.shape[0], n_o, -1))
    layers = dict(zip(names, total, strict=True)) if per_layer else None
    return Attribution(
        scores=total.sum(0),
        per_layer=layers,
        method=chosen,
        rank=r if chosen == "projected" else None,
    )

"""The plan of one :func:`ldjax.force_attribution` call, the step between checking and running: the route
(``"auto"``'s choice) and its memory, the updates per compiled chunk, and the store of finished chunks
when a ``directory`` is given."""

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ldjax._src import checks
from ldjax._src import pytree
from ldjax._src.attribution import arguments
from ldjax._src.attribution import programs
from ldjax._src.attribution import projected
from ldjax._src.attribution import streaming
from ldjax._src.attribution.arguments import Checked
from ldjax._src.typing import ApplyFn
from ldjax._src.typing import LossFn
from ldjax._src.typing import Precision


class Plan(NamedTuple):
    """How an attribution runs."""

    method: str
    """``"exact"`` or ``"projected"``."""
    names: list[str]
    """The parameter leaves' names."""
    dtype: Any
    """The parameters' dtype, that of the scores."""
    shapes: tuple[Any, ...]
    """``(params spec, probe_x spec, out_shape, B)``: what the compiled programs are specialised to."""
    leaf_sketches: list[projected.LeafSketch]
    chunk_steps: int
    """Updates per compiled chunk: a whole number per device of the mesh axis."""
    store: streaming.ChunkStore | None
    """Where finished chunks are kept (``None`` without a ``directory``)."""


def plan_attribution(
    apply_fn: ApplyFn,
    loss: LossFn,
    args: Checked,
    *,
    method: str,
    per_layer: bool,
    chunk_size: int | None,
    memory_budget: float | None,
    directory: Any,
    precision: Precision,
) -> Plan:
    """The route, the chunk size and the chunk store of one attribution; refused with a message when one
    update does not fit ``memory_budget`` or a ``directory``'s chunks do not split over the mesh axis."""
    dtype = checks.params_dtype(args.step_params)
    names = pytree.leaf_names(args.step_params)
    b = args.batches.shape[1]
    shapes = (programs.spec(args.step_params), programs.spec(args.probe_x), args.out_shape, b)
    prepared = programs.prepared_model(apply_fn, *shapes)
    leaf_sketches = projected.sketches(prepared)
    chosen, fixed, per_example = programs.choose(
        method, prepared, leaf_sketches, args.rank, args.n_o, b, dtype, memory_budget, per_layer, len(names)
    )
    chunk_steps = _chunk_steps(args, chunk_size, memory_budget, fixed, per_example)
    store = None
    if directory is not None:
        key = _fingerprint(
            apply_fn, loss, args, chosen, per_layer=per_layer, names=names, precision=precision
        )
        meta = {"method": chosen, "n": args.n, "n_o": args.n_o, "steps": args.batches.shape[0], "batch": b}
        store = streaming.ChunkStore(directory, key, chunk_steps, meta)
        chunk_steps = store.chunk_steps
        if chunk_steps % args.devices:
            raise ValueError(
                f"directory {str(directory)!r} holds chunks of {chunk_steps} update(s), which do not split over the "
                f"{args.devices} devices of mesh axis {args.axis_name!r}: resume on the mesh the run started with, or "
                f"use a new directory"
            )
    return Plan(chosen, names, dtype, shapes, leaf_sketches, chunk_steps, store)


def _chunk_steps(
    args: Checked, chunk_size: int | None, memory_budget: float | None, fixed: int, per_example: int
) -> int:
    """Updates per chunk: ``chunk_size`` examples, else as many as fit the budget, a multiple of the devices."""
    n_steps, b = args.batches.shape
    limit, _ = checks.memory_budget(memory_budget)
    params_bytes = sum(
        checks.array_bytes(np.shape(a), jnp.result_type(a)) for a in jax.tree.leaves(args.step_params)
    )
    if chunk_size is not None:
        chunk_steps = max(1, chunk_size // b)
    elif args.stacked:  # one update at a time inside a chunk; the chunk holds its updates' parameters
        chunk_steps = int(max(1, (limit - fixed - b * per_example) // max(params_bytes, 1)))
    else:
        chunk_steps = int(max(1, (limit - fixed) // (b * per_example)))
    chunk_steps = min(chunk_steps, n_steps)
    return -(-chunk_steps // args.devices) * args.devices  # a whole number of updates per device


def _fingerprint(
    apply_fn: ApplyFn,
    loss: LossFn,
    args: Checked,
    method: str,
    *,
    per_layer: bool,
    names: list[str],
    precision: Precision,
) -> str:
    """The chunk store's key: everything the scores depend on (see :mod:`.streaming`)."""
    behaviour = arguments.behaviour(
        apply_fn,
        loss,
        args.step_params,
        args.probe_x,
        args.train_x,
        args.train_y,
        args.batches[0],
        args.rates[0],
        precision,
    )
    return streaming.fingerprint(
        [
            *jax.tree.leaves(args.params),
            *jax.tree.leaves(args.train_x),
            *jax.tree.leaves(args.train_y),
            *jax.tree.leaves(args.probe_x),
            args.tokens,
            args.mask,
            args.batches,
            args.rates,
            np.asarray(jax.random.key_data(args.key)),
            *behaviour,
        ],
        {
            "method": method,
            "rank": list(args.rank),
            "per_layer": per_layer,
            "names": names,
            "precision": str(precision),
            "loss": getattr(loss, "__name__", repr(loss)),
        },
    )

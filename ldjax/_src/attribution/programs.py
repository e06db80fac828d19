"""The compiled programs of :func:`ldjax.force_attribution`: the push model prepared for the structured
package, the probe side and one chunk of updates (optionally split over a mesh), and the route and its
memory."""

import functools
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec
from jaxtyping import Array
from jaxtyping import Float

from ldjax._src import checks
from ldjax._src.attribution import exact
from ldjax._src.attribution import projected
from ldjax._src.attribution.forces import probe_cotangent
from ldjax._src.attribution.forces import push_model
from ldjax._src.attribution.forces import step_forces
from ldjax._src.ntk import batched
from ldjax._src.structured.prepare import prepare
from ldjax._src.typing import ApplyFn
from ldjax._src.typing import LossFn
from ldjax._src.typing import Params
from ldjax._src.typing import Precision

AUTO_EXAMPLES = 16
"""``method="auto"`` takes the exact route when a chunk of this many training examples fits the budget."""


def spec(tree: Any) -> tuple[Any, tuple[jax.ShapeDtypeStruct, ...]]:
    """A hashable stand-in for a pytree of arrays: its structure and its leaves' shapes and dtypes."""
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, tuple(jax.ShapeDtypeStruct(np.shape(a), jnp.result_type(a)) for a in leaves)


def unspec(spec: tuple[Any, tuple[jax.ShapeDtypeStruct, ...]]) -> Any:
    return jax.tree.unflatten(spec[0], spec[1])


@functools.lru_cache(maxsize=16)
def prepared_model(
    apply_fn: ApplyFn, params_spec: Any, probe_spec: Any, out_shape: tuple[int, ...], b: int
) -> Any:
    """The structured preparation of the push model (shapes only), routed for probes x ``max(16, B)``."""
    params, probe_x = unspec(params_spec), unspec(probe_spec)
    z = jax.eval_shape(
        apply_fn, params, jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), probe_x)
    )
    w = jax.ShapeDtypeStruct((checks.batch_size(probe_x), *out_shape), z.dtype)
    return prepare(push_model(apply_fn), params, (probe_x, w), max(AUTO_EXAMPLES, b), "auto")


class Programs(NamedTuple):
    """The compiled pieces of one attribution (held across calls with the same shapes and options).

    ``probe_side(params, x_o, tokens, mask, proj)``: what the probes contribute at fixed parameters, once;
    ``chunk(params, probe, x[s, B], y[s, B], rates[s], proj) -> [L, n_o, s, B]``.
    """

    probe_side: Callable[..., Any]
    chunk: Callable[..., Array]


@functools.lru_cache(maxsize=16)
def programs(
    apply_fn: ApplyFn,
    loss: LossFn,
    method: str,
    per_layer: bool,
    precision: Precision,
    stacked: bool,
    mesh: Mesh | None,
    axis: str | None,
    *shapes: Any,
) -> Programs:
    """The probe side and the chunk program of one attribution, compiled for ``shapes`` (see :class:`Programs`)."""
    prepared = prepared_model(apply_fn, *shapes)
    leaf_sketches = projected.sketches(prepared)
    model = prepared.apply_fn
    names = prepared.names

    def probe_side(params: Params, probe_x: Any, tokens: Array, mask: Array, proj: Any) -> Any:
        """``(x_o, w_o)`` (exact) or the probes' sketches (projected) at ``params``."""
        w_o = probe_cotangent(batched(apply_fn)(params, probe_x), tokens, mask)
        if method == "exact":
            return probe_x, w_o
        return projected.features(prepared, leaf_sketches, proj, jax.tree.leaves(params), (probe_x, w_o))

    def scores(params: Params, probe: Any, x: Any, w: Array, proj: Any) -> Float[Array, "L n_o n"]:
        if method == "exact":
            out = exact.scores(model, params, names, probe, (x, w))
        else:
            train = projected.features(prepared, leaf_sketches, proj, jax.tree.leaves(params), (x, w))
            out = projected.contract(probe, train, w.dtype)
        return out if per_layer else out.sum(0, keepdims=True)

    def chunk(params: Params, probe: Any, x: Any, y: Any, rates: Array, proj: Any) -> Array:
        with checks.precision_scope(precision):
            if stacked:  # every update at its own parameters, one after the other

                def one(args: Any) -> Array:
                    p, xs, ys, r = args
                    w = step_forces(apply_fn, p, xs, ys, r, loss)
                    return scores(p, probe_side(p, *probe, proj), xs, w, proj)

                out = jax.lax.map(one, (params, x, y, rates))  # [s, L, n_o, B]
                return jnp.transpose(out, (1, 2, 0, 3))
            w = jax.vmap(lambda xs, ys, r: step_forces(apply_fn, params, xs, ys, r, loss))(x, y, rates)
            s, b = w.shape[:2]
            flat_x = jax.tree.map(lambda a: a.reshape(s * b, *a.shape[2:]), x)
            out = scores(params, probe, flat_x, w.reshape(s * b, *w.shape[2:]), proj)
            return out.reshape(*out.shape[:2], s, b)

    def probe_once(params: Params, probe_x: Any, tokens: Array, mask: Array, proj: Any) -> Any:
        with checks.precision_scope(precision):
            return probe_side(params, probe_x, tokens, mask, proj)

    return Programs(
        jax.jit(probe_once), jax.jit(chunk if mesh is None else _split_updates(chunk, mesh, axis, stacked))
    )


def _split_updates(
    chunk: Callable[..., Array], mesh: Mesh, axis: str | None, stacked: bool
) -> Callable[..., Array]:
    """``chunk`` with its updates (and their parameters when ``stacked``) split over ``axis`` of ``mesh``."""
    split, whole = PartitionSpec(axis), PartitionSpec()
    return jax.shard_map(
        chunk,
        mesh=mesh,
        in_specs=(split if stacked else whole, whole, split, split, split, whole),
        out_specs=PartitionSpec(None, None, axis),
        check_vma=False,
    )


def choose(
    method: str,
    prepared: Any,
    leaf_sketches: list[projected.LeafSketch],
    rank: tuple[int, int],
    n_o: int,
    b: int,
    dtype: Any,
    budget: float | None,
    per_layer: bool,
    n_leaves: int,
) -> tuple[str, int, int]:
    """The route and its ``(fixed, per_example)`` bytes; refused when one update does not fit."""
    scores = checks.array_bytes(((n_leaves if per_layer else 1) * n_o,), dtype)
    exact_fixed, exact_example = exact.memory(prepared, n_o, dtype)
    values = projected.example_bytes(prepared, dtype)
    sketch, materialised = projected.sketch_bytes(prepared, leaf_sketches, rank, dtype)
    projected_fixed = n_o * (values + sketch + materialised) + projected.projection_bytes(
        leaf_sketches, rank, dtype
    )
    costs = {
        "exact": (exact_fixed, exact_example + scores),
        "projected": (projected_fixed, values + sketch + materialised + scores),
    }
    limit, _ = checks.memory_budget(budget)
    if method == "auto":
        fixed, per = costs["exact"]
        method = "exact" if fixed + max(b, AUTO_EXAMPLES) * per <= limit else "projected"
    fixed, per = costs[method]
    checks.check_memory(
        [("the probes' share", fixed), (f"one update of {b} training example(s)", b * per)],
        what=f"force_attribution(method={method!r})",
        cheaper="method='projected' with a smaller rank, per_layer=False, fewer probes per call, or smaller "
        "update batches in the trace",
        budget=budget,
    )
    return method, fixed, per


def gather(out: jax.Array) -> np.ndarray:
    """The whole array on every process (an all-gather when its shards live on several processes)."""
    if out.is_fully_addressable:
        return np.asarray(out)
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(out, tiled=True))

"""Kernels and predictions over large probe sets, split over the devices of a ``jax.sharding.Mesh``.

The probe axis (``x1`` of a kernel, ``x_probe`` of a prediction) is split along one mesh axis
with :func:`jax.shard_map`; parameters, the second batch and the optimizer's update are
replicated. Each device computes its block of rows; the result is the same array as on one
device, sharded along its first axis. A probe count that does not divide evenly is padded (with
copies of the first probe) and the padding is dropped from the result.
"""

import math
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec
from jax.typing import ArrayLike
from jaxtyping import Array
from jaxtyping import Float
from jaxtyping import PyTree
from jaxtyping import Shaped

from ldjax._src import checks
from ldjax._src.first_order import batch_update
from ldjax._src.first_order import probe_change
from ldjax._src.ntk import DEFAULT_METHOD
from ldjax._src.ntk import NtkMethod
from ldjax._src.ntk_fn import empirical_ntk
from ldjax._src.typing import ApplyFn
from ldjax._src.typing import LearningRate
from ldjax._src.typing import LossFn
from ldjax._src.typing import Params
from ldjax._src.typing import Precision


def mesh_axis(mesh: Mesh, axis: str | None) -> str:
    """The name of the mesh axis to split over (default: the first), checked."""
    if not isinstance(mesh, Mesh):
        raise ValueError(f"mesh must be a jax.sharding.Mesh, got {type(mesh).__name__}")
    if axis is None:
        return mesh.axis_names[0]
    if axis not in mesh.axis_names:
        raise ValueError(f"axis {axis!r} is not an axis of the mesh: expected one of {mesh.axis_names}")
    return axis


def _placed(mesh: Mesh, spec: PartitionSpec, tree: Any) -> Any:
    """``tree`` resharded to ``spec`` when the mesh has Explicit axes (as ``jax.make_mesh`` gives by default):
    ``shard_map`` then requires its inputs' shardings to match its ``in_specs``."""
    explicit = getattr(jax.sharding.AxisType, "Explicit", None)
    if explicit is None or explicit not in tuple(getattr(mesh, "axis_types", ())):
        return tree
    return jax.sharding.reshard(tree, NamedSharding(mesh, spec))


def _unpad(mesh: Mesh, tree: Any, n: int) -> Any:
    """The first ``n`` rows of every leaf. On a mesh with Explicit axes a sharded axis cannot be cut unevenly:
    there the rows are gathered (replicated) first when padding was added."""
    if all(jax.tree.leaves(jax.tree.map(lambda a: a.shape[0] == n, tree))):
        return tree
    return jax.tree.map(lambda a: _placed(mesh, PartitionSpec(), a)[:n], tree)


def _pad(x: Any, multiple: int) -> tuple[Any, int]:
    n = checks.batch_size(x)
    extra = (-n) % multiple
    if extra == 0:
        return x, n
    return jax.tree.map(lambda a: jnp.concatenate([a, jnp.repeat(a[:1], extra, axis=0)]), x), n


def sharded_ntk(
    apply_fn: ApplyFn,
    params: Params,
    x1: PyTree[Shaped[ArrayLike, " n1 ..."]],
    x2: PyTree[Shaped[ArrayLike, " n2 ..."]] | None = None,
    *,
    mesh: Mesh,
    axis: str | None = None,
    method: NtkMethod = DEFAULT_METHOD,
    trace: bool = False,
    per_layer: bool = False,
    precision: Precision = "highest",
    check_finite: bool = True,
    memory_budget: float | None = None,
) -> Float[Array, "n1 n2 *oo"] | dict[str, Array]:
    """:func:`ldjax.empirical_ntk` with the rows (``x1``) split over ``mesh``'s ``axis``.

    Args:
      apply_fn, params, x1, x2, method, trace, per_layer, precision, check_finite: as in
        :func:`ldjax.empirical_ntk` (``x2=None`` means ``x1``; the default method is ``"jacobian"``, as
        there).
      memory_budget: bytes ONE device's block of rows may take (as in :func:`ldjax.empirical_ntk`).
      mesh: a ``jax.sharding.Mesh``, e.g. ``jax.make_mesh((4,), ("probe",))`` (Explicit or Auto axes).
      axis: the mesh axis that splits the probes (default: the mesh's first axis).

    Returns:
      The kernel, sharded along its first axis (on a mesh with Explicit axes, replicated when ``n1`` is
      not a multiple of the axis size).

    Example:
      >>> import jax, jax.numpy as jnp, numpy as np, ldjax
      >>> mesh = jax.sharding.Mesh(np.array(jax.devices()), ("probe",))
      >>> f = lambda p, x: jnp.tanh(x @ p)
      >>> p, x = jnp.ones((3, 2)), jnp.arange(12.0).reshape(4, 3) / 10
      >>> ldjax.sharded_ntk(f, p, x, mesh=mesh).shape
      (4, 4, 2, 2)
    """
    name = mesh_axis(mesh, axis)
    checks.validate_kernel(
        apply_fn,
        params,
        x1,
        x2,
        method=method,
        trace=trace,
        per_layer=per_layer,
        check_finite=check_finite,
        memory_budget=memory_budget,
        what="sharded_ntk",
        row_blocks=mesh.shape[name],
    )
    if x2 is None:
        x2 = x1
    padded, n1 = _pad(x1, mesh.shape[name])

    def block(p: Params, a: Any, b: Any) -> Any:
        return empirical_ntk(
            apply_fn,
            p,
            a,
            b,
            method=method,
            trace=trace,
            per_layer=per_layer,
            precision=precision,
            check_finite=False,  # checked above, on the whole batch
            memory_budget=math.inf,  # checked above, per device
        )

    out = jax.shard_map(
        block,
        mesh=mesh,
        in_specs=(PartitionSpec(), PartitionSpec(name), PartitionSpec()),
        out_specs=PartitionSpec(name),
        check_vma=False,
    )(
        _placed(mesh, PartitionSpec(), params),
        _placed(mesh, PartitionSpec(name), padded),
        _placed(mesh, PartitionSpec(), x2),
    )
    return _unpad(mesh, out, n1)


def sharded_log_prob_change(
    apply_fn: ApplyFn,
    params: Params,
    x_probe: PyTree[Shaped[ArrayLike, " n_probe ..."]],
    x_u: PyTree[Shaped[ArrayLike, " n_u ..."]],
    y_u: Any,
    *,
    mesh: Mesh,
    loss: LossFn,
    learning_rate: LearningRate | None = None,
    optimizer: optax.GradientTransformation | None = None,
    opt_state: Any = None,
    axis: str | None = None,
    precision: Precision = "highest",
    check_finite: bool = True,
) -> Float[Array, " n_probe *o"]:
    """:func:`ldjax.predict_log_prob_change` (``predicted``) with the probes split over ``mesh``.

    The update is computed once from the batch (replicated); each device then runs the JVP for its
    share of the probes. The arguments are those of :func:`ldjax.predict_log_prob_change`, with
    ``mesh`` and its ``axis`` (default: the mesh's first axis) splitting the probes.

    Returns:
      Predicted Δ log π, ``[n_probe, *o]``, sharded along the probes.

    Example:
      >>> import jax, jax.numpy as jnp, numpy as np, ldjax
      >>> mesh = jax.sharding.Mesh(np.array(jax.devices()), ("probe",))
      >>> f = lambda p, x: jnp.tanh(x @ p)
      >>> p, x = jnp.ones((3, 2)), jnp.arange(12.0).reshape(4, 3) / 10
      >>> ldjax.sharded_log_prob_change(f, p, x, x[:2], jnp.array([0, 1]), mesh=mesh,
      ...                               loss=ldjax.losses.cross_entropy, learning_rate=0.1).shape
      (4, 2)
    """
    name = mesh_axis(mesh, axis)
    checks.validate_step(
        apply_fn,
        params,
        x_probe,
        x_u,
        y_u,
        loss,
        learning_rate,
        optimizer,
        opt_state=opt_state,
        probe_name="x_probe",
        check_finite=check_finite,
    )
    if optimizer is None:
        optimizer = optax.sgd(learning_rate)
    padded, n = _pad(x_probe, mesh.shape[name])
    with checks.precision_scope(precision):
        updates = batch_update(apply_fn, params, x_u, y_u, loss, optimizer, opt_state).updates

        def block(p: Params, u: Any, xp: Any) -> Array:
            return probe_change(apply_fn, p, u, xp)[0]

        with checks.forward_mode("sharded_log_prob_change"):
            out = jax.shard_map(
                block,
                mesh=mesh,
                in_specs=(PartitionSpec(), PartitionSpec(), PartitionSpec(name)),
                out_specs=PartitionSpec(name),
                check_vma=False,
            )(
                _placed(mesh, PartitionSpec(), params),
                _placed(mesh, PartitionSpec(), updates),
                _placed(mesh, PartitionSpec(name), padded),
            )
    return _unpad(mesh, out, n)

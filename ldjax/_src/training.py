"""A compiled optax training loop that records predictions without leaving ``lax.scan``.

Learning dynamics are read off training as it happens: every ``every`` updates the loop evaluates
``record(params, step)`` (e.g. the softmax of every training example) and sums
``accumulate(params, batch, updates)`` over the updates in between (e.g. the predicted one-step
force on a probe set). Both run inside the jitted scan, so recording costs one extra forward pass
per record instead of a host round trip.
"""

from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array
from jaxtyping import Int

from ldjax._src.typing import Params
from ldjax._src.typing import PyTree


class TrainResult(NamedTuple):
    """Result of :func:`train`.

    Attributes:
      params: parameters after the last update.
      opt_state: optimizer state after the last update.
      losses: loss of every update, ``[num_steps]`` (before the update).
      records: ``record`` outputs stacked on a leading axis ``[num_steps // every + 1, ...]``: entry
        ``r`` is taken after ``r * every`` updates (entry 0 before training); ``None`` without ``record``.
      accumulated: sums of ``accumulate`` over each segment of ``every`` updates,
        ``[num_steps // every, ...]``; entry ``r`` covers updates ``r*every .. (r+1)*every - 1``.
    """

    params: Params
    opt_state: Any
    losses: Array
    records: PyTree | None
    accumulated: PyTree | None


def epoch_batches(key: jax.Array, n: int, batch_size: int, epochs: int) -> Int[Array, "steps batch"]:
    """Minibatch indices for ``epochs`` passes over ``n`` examples, reshuffled every epoch.

    The last incomplete batch of each epoch is dropped, so every row has ``batch_size`` indices.

    Args:
      key: PRNG key.
      n: number of examples.
      batch_size: examples per update (``1 <= batch_size <= n``).
      epochs: number of passes.

    Returns:
      ``int32 [epochs * (n // batch_size), batch_size]``.

    Example:
      >>> import jax, ldjax
      >>> ldjax.epoch_batches(jax.random.key(0), n=10, batch_size=4, epochs=3).shape
      (6, 4)
    """
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be in [1, n={n}], got {batch_size}")
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    per_epoch = n // batch_size
    keys = jax.random.split(key, epochs)
    perms = jax.vmap(lambda k: jax.random.permutation(k, n))(keys)[:, : per_epoch * batch_size]
    return perms.reshape(epochs * per_epoch, batch_size).astype(jnp.int32)


def _call(fn: Callable, args: tuple, data: Any) -> Any:
    return fn(*args) if data is None else fn(*args, data)


def update_fn(
    loss_fn: Callable[..., Array],
    optimizer: optax.GradientTransformation,
    *,
    accumulate: Callable[..., PyTree] | None = None,
) -> Callable[..., tuple[tuple[Params, Any], tuple[Array, PyTree]]]:
    """One optax update, the step :func:`train` scans: ``update((params, opt_state), batch, data=None)``.

    For loops that :func:`train` cannot express, e.g. on-policy RL, which alternates sampling a rollout
    with a few updates on it: call ``update`` inside your own ``jax.jit``/``lax.scan``.

    Args:
      loss_fn, optimizer, accumulate: as in :func:`train`.

    Returns:
      ``update(carry, batch, data=None) -> ((params, opt_state), (loss, accumulated))``, where ``loss``
      is taken before the update and ``accumulated`` is ``accumulate``'s output (``None`` without it).

    Example:
      >>> import jax.numpy as jnp, optax
      >>> from ldjax._src.training import update_fn
      >>> update = update_fn(lambda p, b: jnp.sum((p - b) ** 2), optax.sgd(0.25))
      >>> (params, _), (loss, _) = update((jnp.zeros(2), optax.sgd(0.25).init(jnp.zeros(2))), jnp.ones(2))
      >>> params, loss
      (Array([0.5, 0.5], dtype=float32), Array(2., dtype=float32))
    """

    def update(carry, batch, data=None):
        params, opt_state = carry
        loss, grads = jax.value_and_grad(lambda p: _call(loss_fn, (p, batch), data))(params)
        with jax.numpy_dtype_promotion("standard"):  # optax's Adam takes 1 - b1**count with an int count
            updates, opt_state = optimizer.update(grads, opt_state, params)
        acc = None if accumulate is None else _call(accumulate, (params, batch, updates), data)
        return (optax.apply_updates(params, updates), opt_state), (loss, acc)

    return update


def train(
    loss_fn: Callable[..., Array],
    params: Params,
    optimizer: optax.GradientTransformation,
    batches: PyTree,
    *,
    record: Callable[..., PyTree] | None = None,
    accumulate: Callable[..., PyTree] | None = None,
    every: int = 1,
    data: PyTree = None,
    opt_state: Any = None,
    progress: bool = True,
    desc: str = "train",
) -> TrainResult:
    r"""Run ``num_steps`` optax updates inside ``jax.jit``/``lax.scan``, recording as it goes.

    Args:
      loss_fn: ``loss_fn(params, batch) -> scalar`` (``loss_fn(params, batch, data)`` when ``data``
        is given).
      params: initial parameters.
      optimizer: any ``optax.GradientTransformation``; it is given ``params`` (weight decay works).
      batches: pytree whose leaves have a leading ``[num_steps, ...]`` axis: one minibatch (or
        index array, see :func:`epoch_batches`) per update.
      record: ``record(params, step) -> pytree`` (``+ data``), evaluated at step 0 and after every
        ``every`` updates, e.g. the predictions of all training examples.
      accumulate: ``accumulate(params, batch, updates) -> pytree`` (``+ data``), evaluated at every
        update with the parameters BEFORE the update and the optimizer's update ``u``, summed over
        each segment of ``every`` updates. E.g. the first-order force ``A·J(x_o)·u`` on probes.
      every: record period in updates; must divide ``num_steps``.
      data: arrays passed to the hooks as a traced argument (not baked into the program as
        constants), e.g. the whole training set indexed by ``batches``.
      opt_state: initial optimizer state; default ``optimizer.init(params)``.
      progress: show a tqdm progress bar over updates.
      desc: progress-bar label.

    Returns:
      :class:`TrainResult`.

    Example:
      >>> import jax, jax.numpy as jnp, optax, ldjax
      >>> x, y = jnp.ones((8, 3)), jnp.zeros(8, jnp.int32)
      >>> f = lambda p, xi: xi @ p
      >>> loss = lambda p, idx: ldjax.losses.cross_entropy(jax.vmap(f, (None, 0))(p, x[idx]), y[idx])
      >>> idx = ldjax.epoch_batches(jax.random.key(0), 8, 4, epochs=2)
      >>> r = ldjax.train(loss, jnp.zeros((3, 2)), optax.sgd(0.1), idx, every=2, progress=False,
      ...                 record=lambda p, step: f(p, x[0]))
      >>> r.losses.shape, r.records.shape
      ((4,), (3, 2))
    """
    num_steps = _num_steps(batches, every)
    num_segments = num_steps // every
    if opt_state is None:
        opt_state = optimizer.init(params)
    segments = jax.tree.map(lambda b: b.reshape((num_segments, every, *b.shape[1:])), batches)
    run_block = _segments_program(update_fn(loss_fn, optimizer, accumulate=accumulate), record, every)
    # Blocks of equal size (a divisor of num_segments) so the loop compiles once; ~50 bar updates.
    target = max(1, num_segments // 50)
    block = max(d for d in range(1, target + 1) if num_segments % d == 0)
    carry = (params, opt_state)
    first = (
        None if record is None else jax.jit(lambda p, d: _call(record, (p, jnp.int32(0)), d))(params, data)
    )
    outputs = []
    bar = _progress_bar(num_steps, desc, progress)
    for start in range(0, num_segments, block):
        seg = jax.tree.map(lambda b, s=start: b[s : s + block], segments)
        steps = jnp.arange(start, start + block, dtype=jnp.int32) * every
        carry, out = run_block(carry, seg, steps, data)
        outputs.append(out)
        if bar is not None:
            jax.block_until_ready(carry)
            bar.update(block * every)
    if bar is not None:
        bar.close()
    losses, recs, accs = jax.tree.map(lambda *xs: jnp.concatenate(xs), *outputs)
    losses = losses.reshape(num_steps)
    records = None
    if record is not None:
        records = jax.tree.map(lambda f0, r: jnp.concatenate([f0[None], r]), first, recs)
    return TrainResult(params=carry[0], opt_state=carry[1], losses=losses, records=records, accumulated=accs)


def _num_steps(batches: PyTree, every: int) -> int:
    """The number of updates in ``batches`` (the leaves' common leading axis, at least one), which ``every``
    must divide."""
    leaves = jax.tree.leaves(batches)
    if not leaves:
        raise ValueError("batches is empty: expected a pytree with a leading [num_steps, ...] axis")
    num_steps = int(np.shape(leaves[0])[0])
    if any(np.shape(leaf)[0] != num_steps for leaf in leaves):
        raise ValueError("batches leaves disagree on num_steps (their leading axis)")
    if num_steps == 0:
        raise ValueError("batches has num_steps = 0: expected at least one update")
    if every < 1 or num_steps % every:
        raise ValueError(f"every must be a positive divisor of num_steps={num_steps}, got {every}")
    return num_steps


def _segments_program(
    update: Callable[..., Any], record: Callable[..., PyTree] | None, every: int
) -> Callable[..., Any]:
    """The jitted ``run_block(carry, block, steps, data)`` that :func:`train` calls on each block of segments.

    A segment is ``every`` updates (``lax.scan`` of ``update``), then ``record`` at the step reached; the
    block is a ``lax.scan`` over segments giving, per segment, the losses, the record and the sum of the
    accumulated values.
    """

    def segment(carry, seg_and_step, data):
        seg, step = seg_and_step
        carry, (losses, acc) = jax.lax.scan(lambda c, b: update(c, b, data), carry, seg)
        acc = None if acc is None else jax.tree.map(lambda a: jnp.sum(a, axis=0), acc)
        rec = None if record is None else _call(record, (carry[0], step + every), data)
        return carry, (losses, rec, acc)

    @jax.jit
    def run_block(carry, block, steps, data):
        return jax.lax.scan(lambda c, s: segment(c, s, data), carry, (block, steps))

    return run_block


def _progress_bar(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="step", leave=False)

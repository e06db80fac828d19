"""Overhead of recording predictions inside the compiled training loop (:func:`ldjax.train`).

For each case, times the same optax training run (a) plain, (b) recording the softmax of EVERY
training example every ``every`` updates, and (c) recording a probe set of 300 examples after every
update (the Gaussian-toy paths). Prints one JSON line per case: device, jax version, sizes, compile
seconds, median and min seconds over repeats, and the ratio to plain training.

Each ``ldjax.train`` call builds a fresh jitted loop, so a persistent compilation cache (in a
temporary directory, min compile time 0) is switched on; the first call warms it and is reported
as ``compile_s`` (its wall time minus the median).

The arithmetic floor: recording n examples every ``every`` updates adds n/every forward passes per
update to training's ~3·B (forward + backward of a batch of B). With n = 5000, B = 32, every = 4
that is 1250 vs 96 example-passes: recording all training predictions that often can only cost
≤ 1.3x where the hardware has idle width (GPU) or n ≲ 1.2·B·every.

Against that floor (issue 17): each recording variant also times ``floor``, the same ``record`` evaluated as
many times as the run records (``num_steps // every + 1``) in one compiled ``lax.scan`` at parameters that
change every iteration (so XLA cannot hoist the forward pass out of the loop, as in training), and reports
``ratio_to_floor`` = recorded run / (plain run + floor). Target ≤ 1.15: the recorder costs no more than the
forward passes it must do.

Run: ``python benchmarks/bench_recorder.py [--repeats 3] [--quick] [--cases toy,resnet]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import jax
import jax.numpy as jnp
import optax
from flax import nnx

import ldjax
import ldjax.data
from ldjax.models import MLP
from ldjax.models import ResNet


def _time(fn, repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return first, statistics.median(times), min(times)


def floor_fn(record, params, n_records, data):
    """``record(params_i, step_i, data)`` for ``n_records`` steps in one jitted scan, each at parameters that
    differ (by ``step · 1e-30``: numerically nothing, but not loop-invariant), outputs stacked as ``train``
    stacks them: the recorder's arithmetic floor."""
    steps = jnp.arange(n_records, dtype=jnp.int32)

    @jax.jit
    def run(p, d):
        def body(c, step):
            q = jax.tree.map(lambda a: a + step.astype(a.dtype) * 1e-30, c)
            return c, record(q, step, d)

        return jax.lax.scan(body, p, steps)[1]

    return lambda: run(params, data)


def case(name, apply_fn, params, x, y, *, batch, epochs, every, repeats, lr):
    n = x.shape[0]
    batches = ldjax.epoch_batches(jax.random.key(0), n, batch, epochs)
    steps = batches.shape[0] - batches.shape[0] % every
    batches = batches[:steps]
    logits = jax.vmap(apply_fn, (None, 0))
    opt = optax.sgd(lr, momentum=0.9)
    probe = jnp.arange(min(300, n))

    def loss_fn(p, idx, data):
        xs, ys = data
        return ldjax.losses.cross_entropy(logits(p, xs[idx]), ys[idx])

    def all_preds(p, step, data):
        return jax.nn.softmax(logits(p, data[0]), -1)

    def probe_preds(p, step, data):
        return jax.nn.softmax(logits(p, data[0][probe]), -1)

    def run(record, period, b):
        if record is None:
            return lambda: ldjax.train(loss_fn, params, opt, b, data=(x, y), progress=False).losses
        return lambda: (
            ldjax.train(
                loss_fn, params, opt, b, data=(x, y), progress=False, record=record, every=period
            ).records
        )

    runs = {  # label: (record, every)
        "plain": (None, 1),
        f"all_{n}_every_{every}": (all_preds, every),
        "probe_300_every_1": (probe_preds, 1),
    }
    base = base_call = None
    for label, (record, period) in runs.items():
        first, med, best = _time(run(record, period, batches), repeats)
        # the cost of one call that is not per update: tracing the loop and loading it from the compilation
        # cache (train builds a fresh jitted loop each call), the first record; measured on `every` updates
        _, call_s, _ = _time(run(record, period, batches[:every]), repeats)
        base = med if label == "plain" else base
        base_call = call_s if label == "plain" else base_call
        line = {
            "bench": "recorder",
            "case": name,
            "variant": label,
            "device": jax.devices()[0].device_kind,
            "backend": jax.default_backend(),
            "jax": jax.__version__,
            "n": n,
            "batch": batch,
            "steps": steps,
            "every": period,
            "compile_s": round(first - med, 3),
            "median_s": round(med, 4),
            "min_s": round(best, 4),
            "ratio_to_plain": round(med / base, 3),
            "target_ratio": 1.3,
            f"call_{every}_updates_s": round(call_s, 4),
        }
        if record is not None:
            records = steps // period + 1
            _, floor_med, floor_min = _time(floor_fn(record, params, records, (x, y)), repeats)
            line |= {
                "records": records,
                "floor_median_s": round(floor_med, 4),
                "floor_min_s": round(floor_min, 4),
                "ratio_to_floor": round(med / (base + floor_med), 3),
                # the same without the per-call costs of both runs (the short call's floor share removed)
                "ratio_to_floor_per_update": round(
                    (med - call_s) / (base - base_call + floor_med * (1 - (every // period + 1) / records)), 3
                ),
                "target_ratio_to_floor": 1.15,
            }
        print(json.dumps({**line, "load": " ".join(f"{v:.2f}" for v in os.getloadavg())}), flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="fewer epochs (CI smoke)")
    parser.add_argument("--cases", default="toy,resnet", help="toy (Gaussian-toy MLP), resnet (CIFAR shape)")
    args = parser.parse_args(argv)
    cases = args.cases.split(",")
    jax.config.update("jax_compilation_cache_dir", tempfile.mkdtemp(prefix="ldjax-bench-cache-"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)

    if "toy" in cases:
        toy_case(args)
    if "resnet" in cases:
        resnet_case(args)
    return 0


def toy_case(args):
    toy = ldjax.data.split_toy(ldjax.data.gaussian_toy(key=jax.random.key(13), n=100_000)).train
    f, p = ldjax.from_nnx(MLP(30, (128, 128), 3, rngs=nnx.Rngs(0)), example_shape=(30,))
    case(
        "gaussian_toy_mlp_30-128-128-3",
        f,
        p,
        toy.x,
        toy.y,
        batch=32,
        epochs=2 if args.quick else 10,
        every=4,
        repeats=args.repeats,
        lr=5e-4,
    )


def resnet_case(args):
    n = 1200
    x = jax.random.normal(jax.random.key(1), (n, 32, 32, 3))
    y = jax.random.randint(jax.random.key(2), (n,), 0, 3)
    f, p = ldjax.from_nnx(ResNet(3, rngs=nnx.Rngs(0)), example_shape=(32, 32, 3))
    case(
        "resnet_8-16-32_cifar_shape",
        f,
        p,
        x,
        y,
        batch=50,
        epochs=1 if args.quick else 3,
        every=4,
        repeats=args.repeats,
        lr=0.05,
    )


if __name__ == "__main__":
    raise SystemExit(main())

"""The traced 4,096 x 4,096 kernel of ldjax's LeNet-5 (NNX, MNIST-sized inputs) under a 2 GiB budget.

Prints one JSON line: device, jax version, sizes, block size, method, seconds, load average before and
after, and the max relative difference of a 64 x 64 corner from ``ldjax.empirical_ntk``. With
``--directory`` the blocks are kept there and a second call resumes (``--interrupt-after N`` stops the
first call after N blocks, to show it).

Usage: ``python benchmarks/bench_chunked.py [--n 4096] [--budget-gib 2] [--directory DIR]``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

import jax
import numpy as np
from flax import nnx

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
jax.config.update("jax_default_matmul_precision", "highest")

from timing import device_name  # noqa: E402

import ldjax  # noqa: E402
from ldjax.models import LeNet5  # noqa: E402


class Interrupted(Exception):
    pass


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--budget-gib", type=float, default=2.0)
    parser.add_argument("--directory", default=None)
    parser.add_argument("--interrupt-after", type=int, default=0)
    parser.add_argument("--method", default="auto")
    args = parser.parse_args(argv)
    model = LeNet5(10, rngs=nnx.Rngs(0))
    apply_fn, params = ldjax.from_nnx(model)
    x = jax.random.normal(jax.random.key(1), (args.n, 28, 28, 1))
    budget = int(args.budget_gib * 2**30)
    kwargs = dict(method=args.method, trace=True, memory_budget=budget, directory=args.directory)
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    if args.interrupt_after:
        count = [0]

        def stop(i, j):
            count[0] += 1
            if count[0] >= args.interrupt_after:
                raise Interrupted

        try:
            ldjax.chunked_ntk(apply_fn, params, x, callback=stop, **kwargs)
        except Interrupted:
            print(f"# interrupted after {count[0]} blocks, {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        t0 = time.perf_counter()
    kernel = ldjax.chunked_ntk(apply_fn, params, x, **kwargs)
    seconds = time.perf_counter() - t0
    corner = ldjax.empirical_ntk(apply_fn, params, x[:64], trace=True, method="jacobian")
    diff = float(np.max(np.abs(kernel[:64, :64] - np.asarray(corner))) / np.max(np.abs(np.asarray(corner))))
    kernel_fn = ldjax.empirical_ntk_fn(apply_fn, method=args.method, trace=True, memory_budget=budget)
    plan = kernel_fn.explain(params, x[:64])
    print(
        json.dumps(
            {
                "bench": "chunked",
                "model": "ldjax.models.LeNet5",
                "n": args.n,
                "budget_gib": args.budget_gib,
                "auto_method_at_64": plan.method,
                "seconds": seconds,
                "load_before": load_before,
                "load_after": os.getloadavg(),
                "cores": os.cpu_count(),
                "device": device_name(),
                "jax": jax.__version__,
                "max_rel_diff_corner": diff,
                "resumed": bool(args.interrupt_after),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()

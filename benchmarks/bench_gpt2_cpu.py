"""The GPT-2 small shape on CPU (issue 17): prediction vs a training step, and projected attribution vs an epoch.

Model: ``benchmarks/models.py``'s GPT at the GPT-2 small shape (12 layers, d = 768, 12 heads, V = 50,257,
T = 128, random weights; pretrained ones cannot be downloaded here), float32, matmul precision "highest".

- ``predict``: ``ldjax.predict_log_prob_change`` for 8 probes × 128 tokens × all V entries after one SGD
  update on 8 sequences, against one SGD training step on them: time (median) and compiled peak memory
  (XLA's memory analysis, temporaries + outputs; arguments excluded): ``bench_predict.run_size``.
  Targets: ≤ 1.8× the time, ≤ 2× the memory.
- ``attribution``: projected ``force_attribution`` (rank 64, no per-layer breakdown) of ``--sequences``
  training sequences on 16 probes, in chunks of one training batch (8 sequences), each chunk timed through
  the ``callback``; the same sequences' training epoch (batch 8) timed step by step. A whole epoch of 1,000
  sequences takes too long on 2 CPU cores, so the script measures the fixed cost (argument checks and the
  probe side: the time to the first chunk minus one chunk), the time per chunk and the time per training
  step on ``--sequences`` sequences, and extrapolates the RATIO to 1,000 sequences:
  ``(fixed + 125 · chunk) / (125 · step)``. Target ≤ 3×. At T = 128 and V = 50,257 the projected route
  estimates ~0.9 GiB per probe for the probe side (every intermediate of one example, twice), so 16 probes
  do not fit the default budget (half of the RAM) of a 23 GiB machine: ``--probes 4`` measures one call of
  4 probes, the share of 16 probes that fits, and the 16 probes take 4 such calls; ``--probes 16
  --memory-gib 20`` overrides the (conservative) estimate.

One JSON line per part (device, jax version, sizes, times). A persistent compilation cache in a temporary
directory lets the memory analysis reuse the timed programs' compilation.

Usage: ``python benchmarks/bench_gpt2_cpu.py [--parts predict,attribution] [--sequences 24] [--budget 20]``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

import jax
import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_gpu  # noqa: E402
import bench_predict  # noqa: E402
from timing import device_name  # noqa: E402

SIZE = bench_predict.SIZES["gpt2-small"]
TARGET_SEQUENCES = 1000


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def attribution(name, cfg, n, n_o, rank, emit, precision="highest", memory_budget=None):
    """Fixed cost, time per chunk of one batch and time per training step; the ratio to an epoch, measured on
    ``n`` sequences and extrapolated to :data:`TARGET_SEQUENCES`."""
    b = cfg["B"]
    if n % b or n < 3 * b:
        raise ValueError(f"--sequences must be a multiple of the batch {b} with at least 3 batches, got {n}")
    load_before = load()
    params, x, y, probes, apply_fn, train_step = bench_gpu.attribution_problem(cfg, n, n_o)

    def batch(start):
        return jax.tree.map(lambda a: a[start : start + b], (x, y))

    with jax.default_matmul_precision(precision):
        step = jax.jit(train_step)
        t0 = time.perf_counter()
        jax.block_until_ready(step(params, *batch(0)))  # compile and warm up
        step_first_s = time.perf_counter() - t0
        steps, p = [], params
        for start in range(0, n, b):
            t0 = time.perf_counter()
            p = jax.block_until_ready(step(p, *batch(start)))
            steps.append(time.perf_counter() - t0)
        del p

        def run():
            stamps = [time.perf_counter()]
            out = bench_gpu.attribute(
                apply_fn, params, x, y, probes, precision, rank=rank, chunk_size=b, memory_budget=memory_budget,
                callback=lambda i, m: stamps.append(time.perf_counter()),
            )  # fmt: skip
            stamps.append(time.perf_counter())
            return out, np.diff(stamps)

        _, first_parts = run()  # compiles
        out, parts = run()
    assert out.scores.shape == (n_o, n) and np.all(np.isfinite(out.scores))
    chunk_s = statistics.median(parts[1:-1])
    fixed_s = parts[0] - chunk_s + parts[-1]  # before the first chunk's work and after the last chunk
    step_s = statistics.median(steps)
    chunks_target = TARGET_SEQUENCES // b
    emit(
        {
            "bench": "attribution_cpu",
            "size": name,
            **cfg,
            "device": device_name(),
            "jax": jax.__version__,
            "precision": str(precision),
            "sequences_measured": n,
            "probes": n_o,
            "rank": rank,
            "chunk_sequences": b,
            "memory_budget": memory_budget,
            "first_call_s": float(sum(first_parts)),
            "attribution_s": float(sum(parts)),
            "chunk_s": [float(c) for c in parts[1:-1]],
            "chunk_median_s": chunk_s,
            "fixed_s": float(fixed_s),
            "train_step_first_s": step_first_s,
            "train_step_s": steps,
            "train_step_median_s": step_s,
            "epoch_s": float(sum(steps)),
            "sequences_per_s_measured": n / float(sum(parts)),
            "sequences_per_s_per_chunk": b / chunk_s,
            "ratio_to_epoch_measured": float(sum(parts)) / float(sum(steps)),
            "ratio_to_epoch_extrapolated_1000": (fixed_s + chunks_target * chunk_s)
            / (chunks_target * step_s),
            "target_ratio": 3.0,
            "load_before": load_before,
            "load_after": load(),
        }
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="predict,attribution")
    parser.add_argument(
        "--sequences", type=int, default=24, help="measured training sequences (multiple of 8)"
    )
    parser.add_argument("--probes", type=int, default=16)
    parser.add_argument("--rank", type=int, default=64)
    parser.add_argument("--budget", type=float, default=20.0, help="seconds of repeats per timed program")
    parser.add_argument(
        "--memory-gib", type=float, default=None, help="force_attribution's memory_budget (GiB)"
    )
    parser.add_argument("--tiny", action="store_true", help="a small GPT instead (a smoke run of the script)")
    parser.add_argument("--out", default=None, help="also append the JSON lines to this file")
    args = parser.parse_args(argv)
    jax.config.update("jax_compilation_cache_dir", tempfile.mkdtemp(prefix="ldjax-bench-cache-"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    cfg = bench_gpu.TINY_GPT if args.tiny else SIZE
    name = "tiny-gpt" if args.tiny else "gpt2-small"

    def emit(line):
        text = json.dumps({**line, "load": load()})
        print(text, flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(text + "\n")

    for part in args.parts.split(","):
        if part == "predict":
            bench_predict.run_size(name, cfg, args.budget, emit)
        elif part == "attribution":
            budget = None if args.memory_gib is None else args.memory_gib * 2**30
            attribution(name, cfg, args.sequences, args.probes, args.rank, emit, memory_budget=budget)
        else:
            raise ValueError(f"unknown part {part!r}")


if __name__ == "__main__":
    main()

"""Every benchmark sized for ONE GPU, at matmul precision "highest" (fp32) and at the device default
(TF32 on recent NVIDIA cards), as one command (``make bench-gpu``), planned to take ≤ 10 minutes.

Cases (each one JSON line with the card's name, the precision, sizes and times; a case that fails prints
its error as a JSON line and the others go on):

1. ``ntk``: FCN 3072→2048→2048→2048→8, N=128, full kernel by ``ldjax.empirical_ntk(method="structured")``;
   XLA's FLOP count of the compiled program over the median time, as a fraction of the card's measured
   fp32 matmul rate (a 8192² matmul at the same precision) and of its data-sheet fp32 peak when known.
2. ``predict``: the GPT-2 small shape (12 layers, d=768, V=50,257, T=128, random weights; pretrained ones
   cannot be downloaded here), ``predict_log_prob_change`` for 8 probes × 128 tokens × the whole
   vocabulary after one update on 8 sequences vs one SGD training step on them (time and compiled peak
   memory; targets ≤ 1.8× and ≤ 2×): ``bench_predict.run_size``.
3. ``attribution``: projected ``force_attribution`` (rank 64, no per-layer breakdown) of ``--sequences``
   training sequences on 16 probes on the same model: sequences/s, and the ratio to one training epoch
   over the same sequences (batch 8; target ≤ 3×).

Writes the JSON lines to ``benchmarks/out/gpu-<time>.jsonl`` and prints a markdown table to paste into
``benchmarks/RESULTS.md``. ``--tiny`` shrinks every size (a CPU smoke run of the script itself).

Usage: ``python benchmarks/bench_gpu.py [--tiny] [--cases ntk,predict,attribution] [--precisions highest,default]``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import sys
import time
import traceback

import jax
import jax.numpy as jnp
import numpy as np
import optax

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_predict  # noqa: E402
import models  # noqa: E402
from timing import time_fn  # noqa: E402

import ldjax  # noqa: E402

FP32_PEAK = {"H200": 67e12, "H100 80GB HBM3": 67e12, "H100 PCIe": 51e12, "A100": 19.5e12, "L4": 30.3e12}
"""Data-sheet dense fp32 (non-tensor-core) peaks in FLOP/s, by a substring of ``device_kind``."""

GPT2_SMALL = bench_predict.SIZES["gpt2-small"]
TINY_GPT = {"vocab": 512, "T": 16, "d": 32, "heads": 2, "layers": 2, "B": 8}


def card() -> str:
    d = jax.devices()[0]
    return f"{d.platform}:{getattr(d, 'device_kind', d.platform)}"


def fp32_peak() -> float | None:
    kind = getattr(jax.devices()[0], "device_kind", "")
    return next((peak for name, peak in FP32_PEAK.items() if name in kind), None)


def matmul_rate(size: int) -> float:
    a = jnp.ones((size, size), jnp.float32)
    _, median_s, _, _, _ = time_fn(lambda u: u @ u, a, budget_s=2.0)
    return 2 * size**3 / median_s


def ntk_case(precision, tiny, emit):
    widths = [64, 32, 8] if tiny else [3072, 2048, 2048, 2048, 8]
    n = 8 if tiny else 128
    cfg = {"widths": widths}
    params = models.fcn_init(jax.random.key(0), cfg)
    x = models.make_inputs(jax.random.key(1), "fcn", cfg, n)
    apply_fn = lambda p, xi: models.fcn_apply(p, xi, cfg)  # noqa: E731

    def kernel(p, a):
        return ldjax.empirical_ntk(apply_fn, p, a, method="structured", precision=precision)

    with jax.default_matmul_precision(precision):
        compiled = jax.jit(kernel).lower(params, x).compile()
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, list | tuple) else cost
        flops = float(cost.get("flops", float("nan"))) if cost else float("nan")
        compile_s, median_s, min_s, reps, out = time_fn(kernel, params, x)
        rate = matmul_rate(256 if tiny else 8192)
    peak = fp32_peak()
    emit(
        {
            "case": "ntk fcn128 structured" if not tiny else "ntk fcn (tiny)",
            "n": n,
            "widths": widths,
            "shape": list(out.shape),
            "compile_s": compile_s,
            "median_s": median_s,
            "min_s": min_s,
            "reps": reps,
            "xla_flops": flops,
            "flops_per_s": flops / median_s,
            "matmul_flops_per_s": rate,
            "fraction_of_matmul": flops / median_s / rate,
            "fp32_peak": peak,
            "fraction_of_fp32_peak": None if peak is None else flops / median_s / peak,
        }
    )


def predict_case(precision, tiny, emit):
    cfg = TINY_GPT if tiny else GPT2_SMALL
    bench_predict.run_size("tiny-gpt" if tiny else "gpt2-small", cfg, 3.0, lambda line: emit(line), precision)


def attribution_problem(cfg, n, n_o):
    """The GPT of ``cfg`` (random weights), ``n`` training sequences, ``n_o`` probe sequences and one SGD
    training step (η = 1e-3), ``train_step(params, x[B], y[B]) -> params``: what the attribution is timed on
    and what it is compared with (also used by ``bench_gpt2_cpu.py``)."""
    t, v = cfg["T"], cfg["vocab"]
    params = models.gpt_init(jax.random.key(0), cfg)
    seqs = jax.random.randint(jax.random.key(1), (n, t + 1), 0, v)
    x, y = seqs[:, :-1], ldjax.losses.SequenceTarget(seqs[:, 1:], jnp.ones((n, t)))
    probes = jax.random.randint(jax.random.key(2), (n_o, t + 1), 0, v)
    apply_fn = lambda p, xi: models.gpt_logits(p, xi, cfg)  # noqa: E731
    opt = optax.sgd(1e-3)

    def train_step(p, xb, yb):
        def loss_fn(q):
            return ldjax.losses.sft(jax.vmap(apply_fn, (None, 0))(q, xb), yb)

        grads = jax.grad(loss_fn)(p)
        updates, _ = opt.update(grads, opt.init(p), p)
        return optax.apply_updates(p, updates)

    return params, x, y, probes, apply_fn, train_step


def attribute(apply_fn, params, x, y, probes, precision, rank=64, **options):
    """Projected ``force_attribution`` (no per-layer breakdown) of ``(x, y)`` on the probe sequences."""
    return ldjax.force_attribution(
        apply_fn, params, x, y, probes[:, :-1], probes[:, 1:], loss=ldjax.losses.sft, learning_rate=1e-3,
        method="projected", rank=rank, per_layer=False, progress=False, precision=precision, **options,
    )  # fmt: skip


def attribution_case(precision, tiny, emit, sequences):
    cfg = TINY_GPT if tiny else GPT2_SMALL
    n, b, n_o = (32 if tiny else sequences), cfg["B"], 4 if tiny else 16
    params, x, y, probes, apply_fn, train_step = attribution_problem(cfg, n, n_o)

    with jax.default_matmul_precision(precision):
        step = jax.jit(train_step)
        first = jax.tree.map(lambda a: a[:b], (x, y))
        jax.block_until_ready(step(params, *first))  # compile
        t0 = time.perf_counter()
        p = params
        for start in range(0, n - b + 1, b):
            p = step(p, *jax.tree.map(lambda a, s=start: a[s : s + b], (x, y)))
        jax.block_until_ready(p)
        epoch_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        attribute(apply_fn, params, x, y, probes, precision)
        first_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        out = attribute(apply_fn, params, x, y, probes, precision)
        attribution_s = time.perf_counter() - t0
    assert out.scores.shape == (n_o, n) and np.all(np.isfinite(out.scores))
    emit(
        {
            "case": "attribution gpt2-small" if not tiny else "attribution (tiny gpt)",
            **cfg,
            "sequences": n,
            "probes": n_o,
            "rank": 64,
            "first_call_s": first_s,
            "attribution_s": attribution_s,
            "sequences_per_s": n / attribution_s,
            "epoch_s": epoch_s,
            "ratio_to_epoch": attribution_s / epoch_s,
        }
    )


def table(lines: list[dict]) -> str:
    rows = ["| card | precision | case | figures |", "|---|---|---|---|"]
    for line in lines:
        if "error" in line:
            figures = f"FAILED: {line['error']}"
        elif line.get("case", "").startswith("ntk"):
            peak = line["fraction_of_fp32_peak"]
            figures = (
                f"{line['median_s'] * 1e3:.1f} ms, {line['flops_per_s'] / 1e12:.2f} TFLOP/s = "
                f"{line['fraction_of_matmul']:.2f} of the measured matmul rate"
                + ("" if peak is None else f", {peak:.2f} of the fp32 data-sheet peak")
            )
        elif line.get("bench") == "predict":
            figures = (
                f"train {line['train_median_s'] * 1e3:.1f} ms, predict {line['predict_median_s'] * 1e3:.1f} ms "
                f"(× {line['time_ratio']:.2f}); memory × {line['memory_ratio']:.2f}"
            )
        else:
            figures = (
                f"{line['sequences_per_s']:.1f} sequences/s ({line['sequences']} on {line['probes']} probes), "
                f"{line['ratio_to_epoch']:.2f}× one epoch ({line['epoch_s']:.1f} s)"
            )
        rows.append(
            f"| {line['card']} | {line['precision']} | {line.get('case', line.get('size'))} | {figures} |"
        )
    return "\n".join(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: a smoke run of the script on CPU")
    parser.add_argument("--cases", default="ntk,predict,attribution")
    parser.add_argument("--precisions", default="highest,default")
    parser.add_argument("--sequences", type=int, default=1000)
    args = parser.parse_args(argv)
    (HERE / "out").mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = HERE / "out" / f"gpu-{stamp}.jsonl"
    lines = []
    print(f"# card: {card()}; jax {jax.__version__}; results -> {path}", flush=True)
    t_start = time.perf_counter()
    for precision in args.precisions.split(","):
        for case in args.cases.split(","):
            base = {"card": card(), "jax": jax.__version__, "precision": precision, "tiny": args.tiny}

            def emit(line, base=base):
                line = {**line, **base}
                lines.append(line)
                text = json.dumps(line)
                print(text, flush=True)
                with open(path, "a") as f:
                    f.write(text + "\n")

            prec = None if precision == "default" else precision
            try:
                if case == "ntk":
                    ntk_case(prec, args.tiny, emit)
                elif case == "predict":
                    predict_case(prec, args.tiny, emit)
                elif case == "attribution":
                    attribution_case(prec, args.tiny, emit, args.sequences)
                else:
                    raise ValueError(f"unknown case {case!r}")
            except Exception as err:  # one failed case does not stop the others
                traceback.print_exc()
                emit({"case": case, "error": f"{type(err).__name__}: {str(err)[:300]}"})
    print(f"# total {time.perf_counter() - t_start:.0f} s\n")
    print(table(lines))


if __name__ == "__main__":
    main()

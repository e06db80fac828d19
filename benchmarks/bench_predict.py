"""Vocabulary-scale prediction vs one training step, across GPT sizes.

For each size: the time and the compiled peak memory (XLA's memory analysis: temporaries plus
outputs; arguments, shared by both, excluded) of (a) one SGD training step on a batch of B
sequences (forward, backward, update) and (b) ``ldjax.predict_log_prob_change`` on B probe
sequences after an update on the same batch (Δ log π for every probe, position and vocabulary
entry, ``[B, T, V]``, without forming the kernel). Target: (b) ≤ 1.8× the time and ≤ 2× the
memory of (a). One JSON line per size.

Usage: ``python benchmarks/bench_predict.py [--sizes tiny,small,medium]``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import jax
import numpy as np
import optax

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
jax.config.update("jax_default_matmul_precision", "highest")

import models  # noqa: E402
from timing import device_name  # noqa: E402
from timing import time_fn  # noqa: E402

import ldjax  # noqa: E402

SIZES = {
    "tiny": {"vocab": 512, "T": 32, "d": 64, "heads": 2, "layers": 2, "B": 8},
    "small": {"vocab": 2048, "T": 64, "d": 128, "heads": 4, "layers": 2, "B": 8},
    "medium": {"vocab": 4096, "T": 64, "d": 256, "heads": 4, "layers": 4, "B": 8},
    # the GPT-2 small shape (random weights): for one GPU (bench_gpu.py); on CPU once (bench_gpt2_cpu.py)
    "gpt2-small": {"vocab": 50257, "T": 128, "d": 768, "heads": 12, "layers": 12, "B": 8},
}


def peak_bytes(fn, *args):
    mem = jax.jit(fn).lower(*args).compile().memory_analysis()
    if mem is None:
        return float("nan")
    return float(mem.temp_size_in_bytes + mem.output_size_in_bytes - getattr(mem, "alias_size_in_bytes", 0))


def run_size(name, cfg, budget_s, emit, precision="highest"):
    """Time and memory of one training step and of the prediction at ``precision`` (``None``: the
    device's default, TF32 on recent NVIDIA cards)."""
    with jax.default_matmul_precision(precision):
        return _run_size(name, cfg, budget_s, emit, precision)


def _run_size(name, cfg, budget_s, emit, precision):
    params = models.gpt_init(jax.random.key(0), cfg)
    b, t, v = cfg["B"], cfg["T"], cfg["vocab"]
    seqs = jax.random.randint(jax.random.key(1), (b, t + 1), 0, v)
    x_u, tokens = seqs[:, :-1], seqs[:, 1:]
    y_u = ldjax.losses.SequenceTarget(tokens, np.ones((b, t), np.float32))
    x_probe = jax.random.randint(jax.random.key(2), (b, t), 0, v)
    apply_fn = lambda p, x: models.gpt_logits(p, x, cfg)  # noqa: E731
    lr = 1e-3
    opt = optax.sgd(lr)

    def train_step(p, x, y):
        def loss_fn(q):
            return ldjax.losses.sft(jax.vmap(apply_fn, (None, 0))(q, x), y)

        loss, grads = jax.value_and_grad(loss_fn)(p)
        updates, _ = opt.update(grads, opt.init(p), p)
        return optax.apply_updates(p, updates), loss

    def predict(p, xp, x, y):
        return ldjax.predict_log_prob_change(
            apply_fn, p, xp, x, y, loss=ldjax.losses.sft, learning_rate=lr, precision=precision
        ).predicted

    c_train, m_train, min_train, reps_t, _ = time_fn(train_step, params, x_u, y_u, budget_s=budget_s)
    c_pred, m_pred, min_pred, reps_p, out = time_fn(predict, params, x_probe, x_u, y_u, budget_s=budget_s)
    assert out.shape == (b, t, v)
    mem_train = peak_bytes(train_step, params, x_u, y_u)
    mem_pred = peak_bytes(predict, params, x_probe, x_u, y_u)
    n_params = int(sum(np.size(a) for a in params.values()))
    emit(
        {
            "bench": "predict",
            "size": name,
            **cfg,
            "params": n_params,
            "device": device_name(),
            "jax": jax.__version__,
            "precision": str(precision),
            "train_compile_s": c_train,
            "train_median_s": m_train,
            "train_min_s": min_train,
            "predict_compile_s": c_pred,
            "predict_median_s": m_pred,
            "predict_min_s": min_pred,
            "time_ratio": m_pred / m_train,
            "train_peak_bytes": mem_train,
            "predict_peak_bytes": mem_pred,
            "memory_ratio": mem_pred / mem_train,
            "reps": [reps_t, reps_p],
        }
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(SIZES))
    parser.add_argument("--budget", type=float, default=3.0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    out = open(args.out, "a") if args.out else None

    def emit(line):
        text = json.dumps(line)
        print(text, flush=True)
        if out:
            out.write(text + "\n")

    for name in args.sizes.split(","):
        run_size(name, SIZES[name], args.budget, emit)


if __name__ == "__main__":
    main()

"""Projected force attribution against the exact one, as a function of the rank (and its time).

On a small GPT (benchmarks/models.py: token + position embeddings, pre-LN blocks, all positions' logits,
SFT on every token) the exact scores ``ldjax.force_attribution(method="exact")`` of ``n`` training
sequences on ``probes`` probe sequences are computable; the projected ones (LoGra per-layer sketches of
rank r) are compared with them for several ranks and projection keys:

- Pearson: correlation of all ``probes x n`` scores with the exact ones;
- Spearman: per probe, the rank correlation over the training sequences, averaged over probes;
- top-k: per probe, |top-k(projected) ∩ top-k(exact)| / k for the k most positive pushes, averaged;
- rel. error: ||S_r − S|| / ||S|| (Frobenius).

Each number is the mean (and min–max) over ``--keys`` projection keys. Prints one JSON line per
(rank, key), then a markdown table. Float32, matmul precision "highest".

Usage: ``python benchmarks/bench_attribution.py [--n 256] [--probes 8] [--ranks 2,4,8,16,32,64]``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
jax.config.update("jax_default_matmul_precision", "highest")

from models import gpt_init  # noqa: E402
from models import gpt_logits  # noqa: E402
from timing import device_name  # noqa: E402

import ldjax  # noqa: E402


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Rank correlation of two vectors (no ties in continuous scores)."""
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def top_k_overlap(got: np.ndarray, ref: np.ndarray, k: int) -> float:
    """Mean over probes of |top-k(got) ∩ top-k(ref)| / k (the k largest scores of each row)."""
    overlaps = [
        len(set(np.argsort(-g)[:k]) & set(np.argsort(-r)[:k])) / k for g, r in zip(got, ref, strict=True)
    ]
    return float(np.mean(overlaps))


def compare(got: np.ndarray, ref: np.ndarray, k: int) -> dict[str, float]:
    return {
        "pearson": float(np.corrcoef(got.ravel(), ref.ravel())[0, 1]),
        "spearman": float(np.mean([spearman(g, r) for g, r in zip(got, ref, strict=True)])),
        "top_k": top_k_overlap(got, ref, k),
        "rel_error": float(np.linalg.norm(got - ref) / np.linalg.norm(ref)),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256, help="training sequences")
    parser.add_argument("--probes", type=int, default=8)
    parser.add_argument("--ranks", default="2,4,8,16,32,64")
    parser.add_argument("--keys", type=int, default=3, help="projection keys per rank")
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--d", type=int, default=32)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=128)
    parser.add_argument("--T", type=int, default=16)
    parser.add_argument("--table", action="store_true", help="print a markdown table at the end")
    args = parser.parse_args(argv)
    cfg = {"d": args.d, "heads": 2, "vocab": args.vocab, "T": args.T, "layers": args.layers}
    params = gpt_init(jax.random.key(0), cfg)
    k_train, k_probe = jax.random.split(jax.random.key(1))
    train = jax.random.randint(k_train, (args.n, args.T), 0, args.vocab)
    probes = jax.random.randint(k_probe, (args.probes, args.T), 0, args.vocab)

    def apply_fn(p, tokens):  # next-token logits at every position
        return gpt_logits(p, tokens, cfg)

    targets = ldjax.losses.SequenceTarget(jnp.roll(train, -1, axis=1), jnp.ones((args.n, args.T)))
    probe_targets = jnp.roll(probes, -1, axis=1)
    common = dict(loss=ldjax.losses.sft, learning_rate=1e-3, progress=False, per_layer=False)
    n_params = sum(int(np.size(a)) for a in jax.tree.leaves(params))
    base = {
        "bench": "attribution",
        "device": device_name(),
        "jax": jax.__version__,
        "model": f"gpt d={args.d} layers={args.layers} V={args.vocab} T={args.T}",
        "params": n_params,
        "n": args.n,
        "probes": args.probes,
    }

    def run(**kwargs):
        t0 = time.perf_counter()
        out = ldjax.force_attribution(
            apply_fn, params, train, targets, probes, probe_targets, **common, **kwargs
        )
        return out.scores, time.perf_counter() - t0

    exact, seconds = run(method="exact")
    exact, seconds = run(method="exact")  # the second call reuses the compiled programs
    print(json.dumps({**base, "method": "exact", "seconds": seconds, "load": os.getloadavg()}), flush=True)
    rows = []
    for rank in [int(r) for r in args.ranks.split(",")]:
        per_key = []
        for key in range(args.keys):
            got, seconds = run(method="projected", rank=rank, key=jax.random.key(100 + key))
            stats = compare(got, exact, args.top_k)
            per_key.append({**stats, "seconds": seconds})
            print(
                json.dumps({**base, "method": "projected", "rank": rank, "key": key, **per_key[-1]}),
                flush=True,
            )
        rows.append((rank, per_key))
    if args.table:
        print(
            f"\n| rank | Pearson | Spearman (per probe) | top-{args.top_k} overlap | rel. error | seconds (last key) |"
        )
        print("|---|---|---|---|---|---|")
        for rank, per_key in rows:
            cells = []
            for name in ("pearson", "spearman", "top_k", "rel_error"):
                values = [s[name] for s in per_key]
                cells.append(f"{statistics.mean(values):.3f} ({min(values):.3f}–{max(values):.3f})")
            print(f"| {rank} | " + " | ".join(cells) + f" | {per_key[-1]['seconds']:.1f} |")


if __name__ == "__main__":
    main()

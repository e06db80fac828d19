"""Empirical NTK benchmarks: ldjax's methods side by side with neural-tangents 0.6.5.

One JSON line per (case, implementation): device, jax version, sizes, compile seconds (measured
apart), median and min seconds, the peer's figure and the ratio ldjax/peer, and the max relative
difference of the kernel from the reference (ldjax's Jacobian contraction where it fits in memory,
else ldjax's structured kernel; both sides use the same float32 weights and inputs, exchanged as
``.npz``). The peer runs in its own venv (``bash benchmarks/setup_nt_env.sh``) in the same run.

Usage: ``python benchmarks/bench_ntk.py [--cases fcn16,fcn128,lenet5,resnet,gpt] [--no-peer]``.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
jax.config.update("jax_default_matmul_precision", "highest")

import models  # noqa: E402
from timing import device_name  # noqa: E402
from timing import time_fn  # noqa: E402

import ldjax  # noqa: E402
from ldjax._src import structured  # noqa: E402

ALL_METHODS = ("structured", "vector_products", "jacobian", "auto")
PEER_METHODS = ("structured", "vector_products", "jacobian")
CASES = {
    "fcn16": dict(
        model="fcn",
        cfg={"widths": [3072, 2048, 2048, 2048, 8]},
        n=16,
        methods=ALL_METHODS,
        peer=PEER_METHODS,
        hand=True,
    ),
    "fcn128": dict(
        model="fcn",
        cfg={"widths": [3072, 2048, 2048, 2048, 8]},
        n=128,
        methods=("structured",),
        peer=("structured",),
        hand=True,
    ),
    "lenet5": dict(model="lenet5", cfg={"k": 10}, n=64, methods=ALL_METHODS, peer=PEER_METHODS),
    "resnet": dict(
        model="resnet",
        cfg={"k": 10, "channels": [16, 32], "blocks": 1},
        n=32,
        methods=ALL_METHODS,
        peer=PEER_METHODS,
    ),
    "gpt": dict(
        model="gpt",
        cfg={"vocab": 128, "T": 16, "d": 32, "heads": 2, "layers": 2},
        n=8,
        methods=ALL_METHODS,
        peer=PEER_METHODS,
        flops=True,
    ),
}


def hand_fcn_kernel(params, x, widths):
    """The per-layer formula written by hand for this MLP: Σ_l (X_l X_lᵀ + 1) ⊙ (Δ_l Δ_lᵀ)."""
    n_layers = len(widths) - 1
    hs, pre, h = [x], [], x
    for i in range(n_layers):
        z = h @ params[f"w{i}"] + params[f"b{i}"]
        pre.append(z)
        if i < n_layers - 1:
            h = jax.nn.relu(z)
            hs.append(h)
    k = widths[-1]
    d = jnp.broadcast_to(jnp.eye(k, dtype=x.dtype), (x.shape[0], k, k))
    kernel = 0.0
    for i in reversed(range(n_layers)):
        gram = hs[i] @ hs[i].T + 1.0
        kernel = kernel + gram[:, :, None, None] * jnp.einsum("iaf,jbf->ijab", d, d)
        if i > 0:
            d = jnp.einsum("iaf,gf->iag", d, params[f"w{i}"]) * (pre[i - 1] > 0)[:, None, :]
    return kernel


def matmul_rate(size=2048):
    a = jnp.ones((size, size), jnp.float32)
    _, median_s, _, _, _ = time_fn(lambda u: u @ u, a, budget_s=2.0, max_reps=5)
    return 2 * size**3 / median_s


def rel_diff(k, ref):
    k, ref = np.asarray(k, np.float64), np.asarray(ref, np.float64)
    return float(np.max(np.abs(k - ref)) / np.max(np.abs(ref)))


def run_case(name, spec, peer_python, budget_s, emit):
    init, apply = models.MODELS[spec["model"]]
    cfg, n = spec["cfg"], spec["n"]
    params = init(jax.random.key(0), cfg)
    x = models.make_inputs(jax.random.key(1), spec["model"], cfg, n)
    apply_fn = ldjax.as_apply_fn(lambda p, xi: apply(p, xi, cfg))
    n_params = int(sum(np.size(v) for v in params.values()))
    k = int(jax.eval_shape(apply_fn, params, x[0]).shape[-1])
    base = {
        "bench": "ntk",
        "case": name,
        "model": spec["model"],
        "n": n,
        "k": k,
        "params": n_params,
        "device": device_name(),
        "jax": jax.__version__,
    }
    results, kernels = {}, {}
    for method in spec["methods"]:
        fn = lambda p, xb, m=method: ldjax.empirical_ntk(apply_fn, p, xb, method=m)  # noqa: E731
        compile_s, median_s, min_s, reps, kern = time_fn(fn, params, x, budget_s=budget_s)
        results[f"ldjax {method}"] = dict(compile_s=compile_s, median_s=median_s, min_s=min_s, reps=reps)
        if method == "auto":
            kernel_fn = ldjax.empirical_ntk_fn(apply_fn, method="auto")
            results["ldjax auto"]["chose"] = kernel_fn.explain(params, x).method
        kernels[f"ldjax {method}"] = np.asarray(kern)
        if method == "structured" and spec.get("flops"):
            compiled = jax.jit(fn).lower(params, x).compile()
            cost = compiled.cost_analysis()
            cost = cost[0] if isinstance(cost, list) else cost
            results["ldjax structured"]["xla_flops"] = float(cost.get("flops", float("nan")))
    if spec.get("hand"):
        fn = lambda p, xb: hand_fcn_kernel(p, xb, cfg["widths"])  # noqa: E731
        compile_s, median_s, min_s, reps, kern = time_fn(fn, params, x, budget_s=budget_s)
        results["by hand"] = dict(compile_s=compile_s, median_s=median_s, min_s=min_s, reps=reps)
        kernels["by hand"] = np.asarray(kern)
    if peer_python is not None and spec.get("peer"):
        with tempfile.TemporaryDirectory() as tmp:
            case_npz, case_json, out_npz = (
                os.path.join(tmp, f) for f in ("case.npz", "case.json", "out.npz")
            )
            np.savez(case_npz, x=np.asarray(x), **{f"p/{k_}": np.asarray(v) for k_, v in params.items()})
            pathlib.Path(case_json).write_text(
                json.dumps(
                    {
                        "model": spec["model"],
                        "cfg": cfg,
                        "peer_methods": list(spec["peer"]),
                        "budget_s": budget_s,
                    }
                )
            )
            proc = subprocess.run(
                [peer_python, str(HERE / "nt_peer.py"), case_npz, case_json, out_npz],
                capture_output=True,
                text=True,
                cwd=HERE,
                env={**os.environ, "JAX_PLATFORMS": "cpu"},
            )
            for line in proc.stdout.splitlines():
                if line.startswith("{"):
                    rec = json.loads(line)
                    results[rec.pop("peer")] = rec
            if proc.returncode != 0:
                print(proc.stderr[-2000:], file=sys.stderr)
            if os.path.exists(out_npz):
                with np.load(out_npz) as peer_kernels:
                    for m in peer_kernels.files:
                        kernels[f"neural-tangents {m}"] = peer_kernels[m].reshape(n, n, k, k)
    ref_name = "ldjax jacobian" if "ldjax jacobian" in kernels else "ldjax structured"
    own = {m: r["median_s"] for m, r in results.items() if m.startswith("ldjax ") and m != "ldjax auto"}
    if "ldjax auto" in results and own:
        best = min(own, key=own.get)
        results["ldjax auto"].update(
            best_method=best, ratio_auto_best=results["ldjax auto"]["median_s"] / own[best]
        )
    ref = kernels[ref_name]
    peers = {m: r for m, r in results.items() if m.startswith("neural-tangents") and "median_s" in r}
    best_peer = min(peers, key=lambda m: peers[m]["median_s"]) if peers else None
    for impl, rec in results.items():
        line = {**base, "impl": impl, **rec, "reference": ref_name}
        if impl in kernels:
            line["max_rel_diff"] = rel_diff(kernels[impl], ref)
        if impl.startswith("ldjax") or impl == "by hand":
            method = impl.split(" ", 1)[1] if impl.startswith("ldjax") else "structured"
            match = f"neural-tangents {method}"
            if match in peers:
                line.update(
                    peer=match,
                    peer_median_s=peers[match]["median_s"],
                    ratio=rec["median_s"] / peers[match]["median_s"],
                )
            if best_peer is not None:
                line.update(
                    best_peer=best_peer,
                    best_peer_median_s=peers[best_peer]["median_s"],
                    ratio_best=rec["median_s"] / peers[best_peer]["median_s"],
                )
            if impl == "ldjax structured" and "by hand" in results:
                line["ratio_by_hand"] = rec["median_s"] / results["by hand"]["median_s"]
            if impl == "ldjax structured" and name in ("fcn16", "fcn128", "lenet5", "resnet", "gpt"):
                line["routes"] = structured.site_report(apply_fn, params, x)
        if "xla_flops" in rec:
            rate = matmul_rate()
            line.update(
                matmul_flops_per_s=rate,
                flop_time_s=rec["xla_flops"] / rate,
                ratio_flop_time=rec["median_s"] / (rec["xla_flops"] / rate),
            )
        emit(line)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--no-peer", action="store_true", help="skip neural-tangents")
    parser.add_argument("--peer-python", default=str(HERE / ".nt-venv" / "bin" / "python"))
    parser.add_argument("--budget", type=float, default=3.0, help="seconds of repeats per timing")
    parser.add_argument("--out", default=None, help="also append the JSON lines to this file")
    parser.add_argument("--methods", default=",".join(ALL_METHODS), help="subset of methods (both sides)")
    args = parser.parse_args(argv)
    peer = None
    if not args.no_peer:
        if not os.path.exists(args.peer_python):
            print(
                f"neural-tangents venv missing ({args.peer_python}): run bash benchmarks/setup_nt_env.sh",
                file=sys.stderr,
            )
        else:
            peer = args.peer_python
    out = open(args.out, "a") if args.out else None

    def emit(line):
        text = json.dumps(line)
        print(text, flush=True)
        if out:
            out.write(text + "\n")
            out.flush()

    keep = set(args.methods.split(","))
    for name in args.cases.split(","):
        t0 = time.perf_counter()
        spec = dict(CASES[name])
        spec["methods"] = tuple(m for m in spec["methods"] if m in keep)
        spec["peer"] = tuple(m for m in spec["peer"] if m in keep)
        run_case(name, spec, peer, args.budget, emit)
        print(f"# case {name} done in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()

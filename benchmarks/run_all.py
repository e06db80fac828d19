"""Run every benchmark (``make bench``) and print the Markdown tables kept in RESULTS.md.

Usage:
  python benchmarks/run_all.py                 # builds the neural-tangents venv if missing, runs all
  python benchmarks/run_all.py --no-peer       # ldjax only
  python benchmarks/run_all.py --table FILE    # only render tables from an earlier JSONL file

JSON lines go to ``benchmarks/out/results-<UTC time>.jsonl`` (git-ignored).
"""

from __future__ import annotations

import argparse
import datetime
import json
import pathlib
import platform
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent


def cpu_model() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def fmt_s(x):
    if x is None:
        return "—"
    return f"{x * 1e3:.1f} ms" if x < 1 else f"{x:.2f} s"


def table(lines):
    out = []
    ntk = [d for d in lines if d.get("bench") == "ntk"]
    if ntk:
        out.append(
            "| case | n, k, params | implementation | compile | median | min | max rel. diff | ldjax / same NT method | ldjax / best NT | notes |"
        )
        out.append("|---|---|---|---|---|---|---|---|---|---|")
        for d in ntk:
            notes = []
            if "ratio_auto_best" in d:
                notes.append(
                    f"chose {d['chose']}; {d['ratio_auto_best']:.2f}× the best ldjax method ({d['best_method']})"
                )
            if "ratio_by_hand" in d:
                notes.append(f"{d['ratio_by_hand']:.2f}× by hand")
            if "ratio_flop_time" in d:
                notes.append(
                    f"{d['xla_flops'] / 1e9:.1f} GFLOP (XLA count); {d['ratio_flop_time']:.2f}× the time at {d['matmul_flops_per_s'] / 1e9:.0f} GFLOP/s"
                )
            if "error" in d:
                notes.append("failed: " + d["error"][:80])
            ratio = f"{d['ratio']:.2f}" if "ratio" in d else ""
            ratio_best = (
                f"{d['ratio_best']:.2f} ({d['best_peer'].split(' ', 1)[1]})" if "ratio_best" in d else ""
            )
            diff = f"{d['max_rel_diff']:.1e}" if "max_rel_diff" in d else ""
            out.append(
                f"| {d['case']} | {d['n']}, {d['k']}, {d['params']:,} | {d['impl']} ({d['jax']}) | {d.get('compile_s', 0):.2f} s "
                f"| {fmt_s(d.get('median_s'))} | {fmt_s(d.get('min_s'))} | {diff} | {ratio} | {ratio_best} | {'; '.join(notes)} |"
            )
    pred = [d for d in lines if d.get("bench") == "predict"]
    if pred:
        out.append("")
        out.append(
            "| size | V, T, d, layers, B | params | train step (median) | prediction (median) | time ratio | train peak | prediction peak | memory ratio |"
        )
        out.append("|---|---|---|---|---|---|---|---|---|")
        for d in pred:
            out.append(
                f"| {d['size']} | {d['vocab']}, {d['T']}, {d['d']}, {d['layers']}, {d['B']} | {d['params']:,} | {fmt_s(d['train_median_s'])} "
                f"| {fmt_s(d['predict_median_s'])} | {d['time_ratio']:.2f} | {d['train_peak_bytes'] / 2**20:.1f} MiB "
                f"| {d['predict_peak_bytes'] / 2**20:.1f} MiB | {d['memory_ratio']:.2f} |"
            )
    return "\n".join(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-peer", action="store_true")
    parser.add_argument("--table", default=None, help="render tables from this JSONL file and exit")
    parser.add_argument("--ntk-cases", default=None)
    parser.add_argument("--predict-sizes", default=None)
    args = parser.parse_args(argv)
    if args.table:
        print(table([json.loads(x) for x in open(args.table) if x.startswith("{")]))
        return 0
    (HERE / "out").mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = HERE / "out" / f"results-{stamp}.jsonl"
    print(f"# machine: {cpu_model()}; results -> {out}", flush=True)
    ntk_args = ["--out", str(out)]
    if args.no_peer:
        ntk_args.append("--no-peer")
    else:
        subprocess.run(["bash", str(HERE / "setup_nt_env.sh")], check=True)
    if args.ntk_cases:
        ntk_args += ["--cases", args.ntk_cases]
    subprocess.run([sys.executable, str(HERE / "bench_ntk.py"), *ntk_args], check=True)
    pred_args = ["--out", str(out)]
    if args.predict_sizes:
        pred_args += ["--sizes", args.predict_sizes]
    subprocess.run([sys.executable, str(HERE / "bench_predict.py"), *pred_args], check=True)
    print(table([json.loads(x) for x in open(out)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

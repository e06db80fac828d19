"""The ``ldjax`` command: ``ldjax list``, ``ldjax reproduce``, ``ldjax report``."""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from ldjax._src.experiments import claims
from ldjax._src.experiments import common
from ldjax._src.experiments import registry


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ldjax",
        description="Force analysis of learning dynamics: reproduce the papers' figures.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="show the experiments, their data needs and expected times")
    rep = sub.add_parser("reproduce", help="run experiments and build results/report.html")
    rep.add_argument("names", nargs="*", help="experiments to run (default: all); see `ldjax list`")
    size = rep.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="quick settings (default): minutes on 2 CPU cores")
    size.add_argument("--full", action="store_true", help="full-size settings (a GPU helps)")
    rep.add_argument("--out", default="results", help="output directory (default: results)")
    rep.add_argument(
        "--data-dir", default=None, help="directory with data files (else LDJAX_DATA_DIR, cache)"
    )
    rep.add_argument("--force", action="store_true", help="rerun experiments whose results are complete")
    rep.add_argument("--no-progress", action="store_true", help="hide progress bars")
    rep.add_argument("--no-report", action="store_true", help="do not build report.html")
    report = sub.add_parser("report", help="(re)build results/report.html from finished results")
    report.add_argument("--out", default="results", help="results directory (default: results)")
    return parser


def _list() -> int:
    width = max(len(spec.name) for spec in registry.EXPERIMENTS)
    print(f"{'name':<{width}} {'quick':>7} {'full':>7}  description / data")
    for spec in registry.EXPERIMENTS:
        print(
            f"{spec.name:<{width}} {spec.quick_minutes:>5.1f} m {spec.full_minutes:>5.1f} m  {spec.description}"
        )
        print(f"{'':<{width + 18}}data: {spec.data}")
        if spec.aliases:
            print(f"{'':<{width + 18}}older name: {', '.join(spec.aliases)}")
    return 0


def _selected(names: Sequence[str]) -> list[registry.ExperimentSpec]:
    """The experiments named on the command line (all when none), once each; says what an old name means."""
    if not names:
        return list(registry.EXPERIMENTS)
    specs: list[registry.ExperimentSpec] = []
    for name in names:
        spec = registry.get(name)
        if name != spec.name:
            print(f"[alias] {name} is the older name of {spec.name}: running {spec.name}")
        if spec not in specs:
            specs.append(spec)
    return specs


def _reproduce(args: argparse.Namespace) -> int:
    from ldjax._src.data.errors import DataUnavailable

    specs = _selected(args.names)
    out = Path(args.out)
    status_path = out / "status.json"
    status = json.loads(status_path.read_text()) if status_path.exists() else {}
    failed = []
    bar = common.progress(total=len(specs), desc="ldjax reproduce", enabled=not args.no_progress)
    for spec in specs:
        module = spec.load()
        config = module.FULL if args.full else module.Config()
        target = out / spec.name
        start = time.perf_counter()
        if not args.force and common.is_complete(target, config):
            entry = {"state": "complete", "reason": "already complete (use --force to rerun)"}
            print(f"[skip] {spec.name}: results complete in {target}")
        else:
            try:
                record = common.run_and_save(
                    module, config, target, data_dir=args.data_dir, progress=not args.no_progress
                )
                entry = {"state": "complete", "reason": "", "seconds": time.perf_counter() - start}
                counts = claims.summary(record["fidelity"])
                print(
                    f"[done] {spec.name}: {record['wall_seconds']:.1f} s, {counts['claims_held']}/{counts['claims']} "
                    f"claims hold, {counts['checks_held']}/{counts['checks']} checks pass; {record['dataset']}"
                )
                if hasattr(module, "summary"):
                    print(module.summary(record["results"]))
            except DataUnavailable as err:
                entry = {"state": "skipped", "reason": str(err)}
                print(f"[skipped] {spec.name}: {err}")
            except Exception as err:  # noqa: BLE001 - one experiment must not stop the run
                entry = {"state": "failed", "reason": f"{type(err).__name__}: {err}"}
                failed.append(spec.name)
                traceback.print_exc()
                print(f"[FAILED] {spec.name}: {type(err).__name__}: {err}", file=sys.stderr)
        entry["preset"] = "full" if args.full else "quick"
        status[spec.name] = entry
        common.write_json_atomic(status_path, status)
        bar.update(1)
    bar.close()
    if not args.no_report:
        from ldjax._src.app import report

        path = report.build(out)
        print(f"report: {path}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "list":
        return _list()
    if args.command == "reproduce":
        return _reproduce(args)
    from ldjax._src.app import report

    print(report.build(Path(args.out)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

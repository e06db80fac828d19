"""The ``ldjax`` command: ``ldjax list``, ``ldjax reproduce``, ``ldjax report``.

A mistake in the call (an unknown experiment, an unusable ``--out``, a missing ``--data-dir``, a bad
flag) is one line on stderr and exit code 2; ``--debug`` shows the traceback instead. An experiment
that fails on its own is reported with its traceback and exit code 1; one whose data are missing is
skipped (its reason is in ``status.json`` and the report); one whose data file is corrupt is one line
and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from ldjax._src.experiments import claims
from ldjax._src.experiments import common
from ldjax._src.experiments import registry
from ldjax._src.experiments import storage


def _parser() -> argparse.ArgumentParser:
    parser = common.ArgumentParser(
        prog="ldjax",
        description="Force analysis of learning dynamics: reproduce the papers' figures.",
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    debug = common.ArgumentParser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="show the experiments, their data needs and expected times", parents=[debug])
    rep = sub.add_parser("reproduce", help="run experiments and build results/report.html", parents=[debug])
    rep.add_argument("names", nargs="*", help="experiments to run (default: all); see `ldjax list`")
    size = rep.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="quick settings (default): minutes on 2 CPU cores")
    size.add_argument("--full", action="store_true", help="full-size settings (a GPU helps)")
    rep.add_argument("--out", default="results", help="output directory (default: results)")
    rep.add_argument(
        "--data-dir", default=None, help="directory with data files (else LDJAX_DATA_DIR, cache)"
    )
    rep.add_argument(
        "--force",
        action="store_true",
        help="rerun experiments whose results are complete (each is written anew and swapped in whole)",
    )
    rep.add_argument("--no-progress", action="store_true", help="hide progress bars")
    rep.add_argument("--no-report", action="store_true", help="do not build report.html")
    report = sub.add_parser(
        "report", help="(re)build results/report.html from finished results", parents=[debug]
    )
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
        try:
            spec = registry.get(name)
        except ValueError as err:
            raise storage.UsageError(str(err)) from None
        if name != spec.name:
            print(f"[alias] {name} is the older name of {spec.name}: running {spec.name}")
        if spec not in specs:
            specs.append(spec)
    return specs


def _run_one(
    spec: registry.ExperimentSpec, args: argparse.Namespace, out: Path, data_dir: str | None
) -> dict:
    """Run (or reuse) one experiment under its folder's lock; its ``status.json`` entry."""
    from ldjax._src.data.errors import DataCorrupt
    from ldjax._src.data.errors import DataUnavailable

    module = spec.load()
    config = module.FULL if args.full else module.Config()
    target = (out / spec.name).absolute()
    start = time.perf_counter()
    with storage.experiment_lock(target, spec.name):
        reuse, why = (
            (False, "--force")
            if args.force
            else storage.reusable(target, common.config_dict(config), data_dir=data_dir)
        )
        if reuse:
            print(f"[skip] {spec.name}: results complete in {target} ({why}; use --force to rerun)")
            return {"state": "complete", "reason": "already complete (use --force to rerun)"}
        if why not in ("not run yet", "--force"):
            print(f"[rerun] {spec.name}: {why}")
        try:
            record = common.run_and_save(
                module, config, target, data_dir=data_dir, progress=not args.no_progress
            )
        except DataUnavailable as err:
            print(f"[skipped] {spec.name}: {err}")
            return {"state": "skipped", "reason": str(err)}
        except DataCorrupt as err:
            if args.debug:
                raise
            print(f"ldjax: error: {spec.name}: {err}", file=sys.stderr)
            return {"state": "failed", "reason": f"DataCorrupt: {err}", "usage": True}
        except storage.UsageError:
            raise
        except Exception as err:  # noqa: BLE001 - one experiment must not stop the run
            traceback.print_exc()
            print(f"[FAILED] {spec.name}: {type(err).__name__}: {err}", file=sys.stderr)
            return {"state": "failed", "reason": f"{type(err).__name__}: {err}"}
    counts = claims.summary(record["fidelity"])
    print(
        f"[done] {spec.name}: {record['wall_seconds']:.1f} s, {counts['claims_held']}/{counts['claims']} "
        f"claims hold, {counts['checks_held']}/{counts['checks']} checks pass; {record['dataset']}"
    )
    if hasattr(module, "summary"):
        print(module.summary(record["results"]))
    return {"state": "complete", "reason": "", "seconds": time.perf_counter() - start}


def _reproduce(args: argparse.Namespace) -> int:
    specs = _selected(args.names)
    data_dir = storage.check_data_dir(args.data_dir)
    out = storage.check_out_dir(args.out)
    failed, mistakes = [], []
    bar = common.progress(total=len(specs), desc="ldjax reproduce", enabled=not args.no_progress)
    for spec in specs:
        entry = _run_one(spec, args, out, data_dir)
        if entry["state"] == "failed":
            (mistakes if entry.pop("usage", False) else failed).append(spec.name)
        entry["preset"] = "full" if args.full else "quick"
        storage.update_status(out, spec.name, entry)
        bar.update(1)
    bar.close()
    if not args.no_report:
        from ldjax._src.app import report

        path = report.build(out)
        print(f"report: {path}")
    if failed:  # (each mistake was one line already)
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 2 if mistakes else 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "list":
            return _list()
        if args.command == "reproduce":
            return _reproduce(args)
        from ldjax._src.app import report

        print(report.build(storage.check_out_dir(args.out, create=False)))
        return 0
    except storage.UsageError as err:
        if args.debug:
            raise
        print(f"ldjax: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

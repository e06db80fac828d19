"""What every experiment shares: results.json, figures, CLI flags from ``Config``, fidelity rows.

An experiment is one module with ``Config`` (frozen dataclass; defaults are the quick settings),
``FULL`` (the full-size settings), ``run(config, *, data_dir, progress) -> dict``,
``plot(results, out_dir) -> [png paths]``, ``fidelity(results) -> [claims.Row]`` (see :mod:`ldjax._src.experiments.claims`) and ``main(argv)``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import os
import platform
import shutil
import sys
import time
from collections.abc import Iterable
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ldjax._src.experiments import claims
from ldjax._src.experiments import storage


def environment() -> dict[str, Any]:
    """Versions and device, recorded in every results.json."""
    import jax

    import ldjax

    devices = jax.devices()
    return {
        "ldjax": ldjax.__version__,
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "device": devices[0].device_kind if devices else "none",
        "device_count": len(devices),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def save_figure(fig: Any, out_dir: str | Path, stem: str) -> Path:
    """Save a matplotlib figure as ``stem.png`` and ``stem.pdf`` atomically, close it, return the PNG."""
    import io

    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    png = out_dir / f"{stem}.png"
    for suffix, kwargs in ((".png", {"dpi": 120}), (".pdf", {})):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=suffix[1:], bbox_inches="tight", **kwargs)
        storage.write_atomic(out_dir / f"{stem}{suffix}", buffer.getvalue())
    plt.close(fig)
    return png


def shown_terms(step: Any) -> dict[str, np.ndarray]:
    """The predicted and actual Δ log π and the A, K, G of a ``one_step`` result on ONE update example, as
    arrays for the figures: ``k`` is ``[n_o, k, k]`` and ``g`` ``[k]``."""
    return {
        "predicted": np.asarray(step.predicted),
        "actual": np.asarray(step.actual),
        "a": np.asarray(step.a),
        "k": np.asarray(step.k[:, 0]),
        "g": np.asarray(step.g[0]),
    }


def use_agg() -> None:
    """Select the non-interactive Agg backend (call at the top of every ``plot``)."""
    import matplotlib

    matplotlib.use("Agg", force=True)


def progress(
    iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", enabled: bool = True
):
    """A tqdm progress bar, or the plain iterable when disabled."""
    if not enabled:
        return iterable if iterable is not None else _NullBar()
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False)


class _NullBar:
    def update(self, n: int = 1) -> None:
        del n

    def close(self) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        del s


def config_dict(config: Any) -> dict[str, Any]:
    return storage.to_jsonable(dataclasses.asdict(config))


def _listing(folder: Path) -> list[str]:
    return sorted(entry.name for entry in folder.iterdir())


def run_and_save(
    module: ModuleType,
    config: Any,
    out_dir: str | Path,
    *,
    data_dir: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run an experiment into a fresh folder, then swap it in for ``out_dir`` whole.

    The run, its figures and ``results.json`` (written last) go to a hidden folder beside ``out_dir``,
    which then replaces ``out_dir`` in two renames: a run killed at any moment leaves the old results or
    the new ones, never new figures beside an old ``results.json``. Call it under
    :func:`storage.experiment_lock` when other runs may write the same folder. ``out_dir`` must be absent,
    empty or an earlier ldjax result (:func:`storage.check_replaceable`).

    Returns the saved record: ``experiment``, ``config``, ``dataset``, ``data_files`` (the files read, with
    their SHA-256; ``None`` when the experiment reads none), ``request`` (the data directory asked for and
    what the loaders could see, see :func:`storage.reusable`), ``environment``, ``wall_seconds``,
    ``fidelity``, ``figures`` (file names relative to ``out_dir``), ``files`` and ``results``.
    """
    out_dir = Path(out_dir).absolute()
    storage.check_replaceable(out_dir)
    storage.remove_leftovers(out_dir)
    folder = storage.new_dir(out_dir)
    try:
        start = time.perf_counter()
        results = module.run(config, data_dir=data_dir, progress=progress)
        run_seconds = time.perf_counter() - start
        if "dataset" not in results:
            raise ValueError(f"{module.__name__}.run must report the data set it used under 'dataset'")
        figures = [Path(p).name for p in module.plot(results, folder)]
        rows = [row._asdict() for row in module.fidelity(results)]
        record = {
            "experiment": module.__name__.rsplit(".", 1)[-1],
            "complete": True,
            "config": config_dict(config),
            "dataset": results["dataset"],
            "data_files": results.get("data_files"),
            "request": storage.request(data_dir, reads_files="data_files" in results),
            "environment": environment(),
            "wall_seconds": run_seconds,
            "fidelity": rows,
            "figures": figures,
            "files": [*_listing(folder), storage.RESULTS_FILE],
            "results": results,
        }
        storage.write_json_atomic(folder / storage.RESULTS_FILE, record)
        storage.replace_dir(folder, out_dir)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return storage.to_jsonable(record)


def _parse_value(text: str, default: Any) -> Any:
    if isinstance(default, bool):
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")
    if isinstance(default, tuple):
        kind = type(default[0]) if default else str
        return tuple(_parse_value(part.strip(), kind()) for part in text.split(",") if part.strip())
    if default is None:
        return text
    return type(default)(text)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error (``prog: error: ...``, exit code 2) instead of usage + error."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def config_parser(config_cls: type, *, prog: str, description: str = "") -> argparse.ArgumentParser:
    """An argparse parser with one ``--field`` flag per ``Config`` field (tuples comma-separated)."""
    parser = ArgumentParser(prog=prog, description=description)
    parser.add_argument("--out", default=None, help="output directory (default results/<experiment>)")
    parser.add_argument("--data-dir", default=None, help="directory holding the data files")
    parser.add_argument("--full", action="store_true", help="use the full-size settings (FULL)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    defaults = config_cls()
    for field in dataclasses.fields(config_cls):
        default = getattr(defaults, field.name)
        flag = "--" + field.name.replace("_", "-")
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        parse = functools.partial(_parse_value, default=default)
        parse.__name__ = "true/false" if isinstance(default, bool) else type(default).__name__  # type: ignore[attr-defined]
        parser.add_argument(flag, dest=field.name, default=None, type=parse, help=f"(default {shown})")
    return parser


def config_from_args(module: ModuleType, args: argparse.Namespace) -> Any:
    base = module.FULL if args.full else module.Config()
    overrides = {
        field.name: getattr(args, field.name)
        for field in dataclasses.fields(module.Config)
        if getattr(args, field.name) is not None
    }
    return dataclasses.replace(base, **overrides)


def main(module: ModuleType, argv: Sequence[str] | None = None) -> int:
    """CLI of one experiment: flags from ``Config``; writes results.json and figures.

    A mistake in the call (a bad ``--out`` or ``--data-dir``, missing or corrupt data) is one line on
    stderr and exit code 2; ``--debug`` shows the traceback instead.
    """
    from ldjax._src.data.errors import DataCorrupt
    from ldjax._src.data.errors import DataUnavailable

    name = module.__name__.rsplit(".", 1)[-1]
    prog = f"python -m ldjax.experiments.{name}"
    parser = config_parser(module.Config, prog=prog, description=module.__doc__)
    args = parser.parse_args(argv)
    try:
        try:
            config = config_from_args(module, args)
        except (TypeError, ValueError) as err:
            raise storage.UsageError(f"bad settings: {err}") from err
        data_dir = storage.check_data_dir(args.data_dir)
        out_dir = storage.check_out_dir(Path("results") / name if args.out is None else args.out).absolute()
        storage.check_replaceable(out_dir)
        with storage.experiment_lock(out_dir, name):
            record = run_and_save(module, config, out_dir, data_dir=data_dir, progress=not args.no_progress)
    except (storage.UsageError, DataUnavailable, DataCorrupt) as err:
        if args.debug:
            raise
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    print(f"{name}: {record['dataset']}; {record['wall_seconds']:.1f} s; results in {out_dir}")
    for row in map(claims.normalise, record["fidelity"]):
        mark = "holds" if row["holds"] else "MISSED"
        spread = f" ± {row['spread']:.2g}" if isinstance(row.get("spread"), int | float) else ""
        print(
            f"  [{row['kind']} {mark}] {row['id']} {row['statement']}: {row['value']}{spread} ({row['criterion']})"
        )
    return 0

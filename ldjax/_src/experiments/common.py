"""What every experiment shares: results.json, figures, CLI flags from ``Config``, fidelity rows.

An experiment is one module with ``Config`` (frozen dataclass; defaults are the quick settings),
``FULL`` (the full-size settings), ``run(config, *, data_dir, progress) -> dict``,
``plot(results, out_dir) -> [png paths]``, ``fidelity(results) -> [Fidelity]`` and ``main(argv)``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import tempfile
import time
from collections.abc import Iterable
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any
from typing import NamedTuple

import numpy as np

from ldjax._src.experiments import claims

RESULTS_FILE = "results.json"


class Fidelity(NamedTuple):
    """One target from the papers/issues and whether this run reproduces it.

    Attributes:
      claim: what is asserted, in words (e.g. "predicted vs actual correlation >= 0.99").
      paper: the paper's value or the target, as text (e.g. "0.834" or "> 0").
      value: the value this run obtained (number or text).
      holds: whether the claim holds in this run.
      note: context (sizes, why it may differ).
    """

    claim: str
    paper: str
    value: Any
    holds: bool
    note: str = ""


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


def to_jsonable(obj: Any) -> Any:
    """numpy/jax arrays → lists, NamedTuples/dataclasses → dicts, non-finite floats → None."""
    if isinstance(obj, dict):
        return {str(key): to_jsonable(value) for key, value in obj.items()}
    if hasattr(obj, "_asdict"):
        return to_jsonable(obj._asdict())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, list | tuple):
        return [to_jsonable(value) for value in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "__array__") and not isinstance(obj, str | bytes):
        array = np.asarray(obj)
        if array.ndim == 0:
            return to_jsonable(array.item())
        return to_jsonable(array.tolist())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    return obj


def write_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same directory and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """Write ``obj`` as JSON (see :func:`to_jsonable`) atomically."""
    return write_atomic(path, json.dumps(to_jsonable(obj), indent=1).encode())


def save_figure(fig: Any, out_dir: str | Path, stem: str) -> Path:
    """Save a matplotlib figure as ``stem.png`` and ``stem.pdf`` atomically, close it, return the PNG."""
    import io

    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    png = out_dir / f"{stem}.png"
    for suffix, kwargs in ((".png", {"dpi": 120}), (".pdf", {})):
        buffer = io.BytesIO()
        fig.savefig(buffer, format=suffix[1:], bbox_inches="tight", **kwargs)
        write_atomic(out_dir / f"{stem}{suffix}", buffer.getvalue())
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
    return to_jsonable(dataclasses.asdict(config))


def is_complete(out_dir: str | Path, config: Any) -> bool:
    """Whether ``out_dir`` holds a finished run of exactly ``config``."""
    path = Path(out_dir) / RESULTS_FILE
    if not path.exists():
        return False
    try:
        saved = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    figures_ok = all((Path(out_dir) / name).exists() for name in saved.get("figures", []))
    return bool(saved.get("complete")) and saved.get("config") == config_dict(config) and figures_ok


def run_and_save(
    module: ModuleType,
    config: Any,
    out_dir: str | Path,
    *,
    data_dir: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run an experiment, write its figures, then ``results.json`` (written last, atomically).

    Returns the saved record: ``experiment``, ``config``, ``dataset``, ``environment``,
    ``wall_seconds``, ``fidelity``, ``figures`` (file names relative to ``out_dir``), ``results``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results = module.run(config, data_dir=data_dir, progress=progress)
    run_seconds = time.perf_counter() - start
    if "dataset" not in results:
        raise ValueError(f"{module.__name__}.run must report the data set it used under 'dataset'")
    figures = [Path(p).name for p in module.plot(results, out_dir)]
    rows = [row._asdict() for row in module.fidelity(results)]
    record = {
        "experiment": module.__name__.rsplit(".", 1)[-1],
        "complete": True,
        "config": config_dict(config),
        "dataset": results["dataset"],
        "environment": environment(),
        "wall_seconds": run_seconds,
        "fidelity": rows,
        "figures": figures,
        "results": results,
    }
    write_json_atomic(out_dir / RESULTS_FILE, record)
    return to_jsonable(record)


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


def config_parser(config_cls: type, *, prog: str, description: str = "") -> argparse.ArgumentParser:
    """An argparse parser with one ``--field`` flag per ``Config`` field (tuples comma-separated)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--out", default=None, help="output directory (default results/<experiment>)")
    parser.add_argument("--data-dir", default=None, help="directory holding the data files")
    parser.add_argument("--full", action="store_true", help="use the full-size settings (FULL)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    defaults = config_cls()
    for field in dataclasses.fields(config_cls):
        default = getattr(defaults, field.name)
        flag = "--" + field.name.replace("_", "-")
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        parser.add_argument(
            flag,
            dest=field.name,
            default=None,
            type=lambda text, d=default: _parse_value(text, d),
            help=f"(default {shown})",
        )
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
    """CLI of one experiment: flags from ``Config``; writes results.json and figures."""
    name = module.__name__.rsplit(".", 1)[-1]
    parser = config_parser(
        module.Config, prog=f"python -m ldjax.experiments.{name}", description=module.__doc__
    )
    args = parser.parse_args(argv)
    config = config_from_args(module, args)
    out_dir = Path(args.out or Path("results") / name)
    record = run_and_save(module, config, out_dir, data_dir=args.data_dir, progress=not args.no_progress)
    print(f"{name}: {record['dataset']}; {record['wall_seconds']:.1f} s; results in {out_dir}")
    for row in map(claims.normalise, record["fidelity"]):
        mark = "holds" if row["holds"] else "MISSED"
        spread = f" ± {row['spread']:.2g}" if isinstance(row.get("spread"), int | float) else ""
        print(
            f"  [{row['kind']} {mark}] {row['id']} {row['statement']}: {row['value']}{spread} ({row['criterion']})"
        )
    return 0

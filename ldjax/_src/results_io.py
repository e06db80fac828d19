"""Results users can keep: ``.npz`` files with a JSON metadata entry (never pickle).

A file holds one of: an array (a kernel), a dict of arrays (per-layer kernels), or one of ldjax's result
NamedTuples whose fields are arrays or ``None`` (:class:`ldjax.OneStepResult`, :class:`ldjax.LogProbChange`,
:class:`ldjax.PreconditionedStep`). The entry ``__meta__`` is a JSON string: the format version, ldjax's
version, the type, the field names, which fields were ``None``, and the caller's metadata.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import tempfile
from collections.abc import Callable
from collections.abc import Iterable
from typing import Any
from typing import NamedTuple

import numpy as np

_FORMAT = 1
_META = "__meta__"


def _result_types() -> dict[str, type]:
    from ldjax._src.one_step import OneStepResult
    from ldjax._src.optimizer_kernels import PreconditionedStep
    from ldjax._src.predict import LogProbChange

    return {t.__name__: t for t in (OneStepResult, LogProbChange, PreconditionedStep)}


class Loaded(NamedTuple):
    """Result of :func:`load_results`: the object as saved and the caller's metadata (a dict)."""

    result: Any
    metadata: dict[str, Any]


def save_results(path: str | os.PathLike, result: Any, **metadata: Any) -> pathlib.Path:
    """Save a kernel, a dict of kernels or a result NamedTuple to ``path`` (``.npz``) with JSON ``metadata``.

    The file is written to a temporary name and renamed, so it is either complete or absent.

    Args:
      path: the file (``.npz`` is appended when missing).
      result: an array, a ``{str: array}`` dict, or an ``OneStepResult`` / ``LogProbChange`` /
        ``PreconditionedStep``.
      **metadata: JSON-serialisable values kept with it (e.g. ``learning_rate=0.1, model="lenet5"``).

    Returns:
      The path written.

    Example:
      >>> import jax.numpy as jnp, ldjax, tempfile, os
      >>> path = os.path.join(tempfile.mkdtemp(), "kernel.npz")
      >>> _ = ldjax.save_results(path, jnp.eye(2), note="identity")
      >>> loaded = ldjax.load_results(path)
      >>> loaded.result.tolist(), loaded.metadata
      ([[1.0, 0.0], [0.0, 1.0]], {'note': 'identity'})
    """
    from ldjax import __version__

    path = pathlib.Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    arrays: dict[str, np.ndarray] = {}
    types = _result_types()
    if isinstance(result, tuple) and hasattr(result, "_fields"):
        kind = type(result).__name__
        if kind not in types:
            raise ValueError(
                f"result is a {kind}: save_results keeps {sorted(types)}, arrays or dicts of arrays"
            )
        fields = list(result._fields)
        none = [f for f in fields if getattr(result, f) is None]
        for f in fields:
            if f not in none:
                arrays[f"field/{f}"] = _array(getattr(result, f), f"result.{f}")
    elif isinstance(result, dict):
        kind, fields, none = "dict", [str(k) for k in result], []
        for k, v in result.items():
            arrays[f"dict/{k}"] = _array(v, f"result[{k!r}]")
    else:
        kind, fields, none = "array", [], []
        arrays["array"] = _array(result, "result")
    try:
        meta = json.dumps(
            {
                "format": _FORMAT,
                "ldjax": __version__,
                "type": kind,
                "fields": fields,
                "none": none,
                "metadata": metadata,
            }
        )
    except TypeError as err:
        raise ValueError(f"metadata must be JSON-serialisable: {err}") from err
    arrays[_META] = np.array(meta)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: np.savez(f, allow_pickle=False, **arrays))
    return path


def atomic_write(path: pathlib.Path, write: Callable[[Any], Any]) -> None:
    """``write(file)`` to a temporary file in ``path``'s directory, then rename it onto ``path``: the file
    is either complete or absent, even if the process is interrupted."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def fingerprint(arrays: Iterable[Any], options: dict[str, Any]) -> str:
    """SHA-256 of the JSON of ``options`` and of each array's dtype, shape and bytes: the key under which
    resumable computations (kernel blocks, attribution chunks) keep their finished parts on disk."""
    digest = hashlib.sha256(json.dumps(options, sort_keys=True).encode())
    for array in arrays:
        value = np.ascontiguousarray(np.asarray(array))
        digest.update(f"{value.dtype.str}{value.shape}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _array(value: Any, name: str) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype == object:
        raise ValueError(
            f"{name} is not an array of numbers (got {type(value).__name__}): it cannot be saved"
        )
    return array


def load_results(path: str | os.PathLike) -> Loaded:
    """Load what :func:`save_results` wrote (without pickle): ``Loaded(result, metadata)``.

    Arrays come back as numpy arrays; a result NamedTuple as its own type.

    Example:
      >>> import jax.numpy as jnp, ldjax, tempfile, os
      >>> path = ldjax.save_results(os.path.join(tempfile.mkdtemp(), "k"), {"w": jnp.ones(2)})
      >>> ldjax.load_results(path).result["w"].tolist()
      [1.0, 1.0]
    """
    with np.load(path, allow_pickle=False) as data:
        if _META not in data.files:
            raise ValueError(f"{str(path)!r} has no {_META} entry: it was not written by ldjax.save_results")
        meta = json.loads(str(data[_META]))
        if meta.get("format") != _FORMAT:
            raise ValueError(
                f"{str(path)!r} has format {meta.get('format')!r}; this ldjax reads format {_FORMAT}"
            )
        kind = meta["type"]
        if kind == "array":
            result: Any = data["array"]
        elif kind == "dict":
            result = {k: data[f"dict/{k}"] for k in meta["fields"]}
        else:
            types = _result_types()
            if kind not in types:
                raise ValueError(f"{str(path)!r} holds a {kind}, which this ldjax does not know")
            result = types[kind](
                **{f: (None if f in meta["none"] else data[f"field/{f}"]) for f in meta["fields"]}
            )
    return Loaded(result, meta["metadata"])

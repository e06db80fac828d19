"""Streaming over the updates in chunks: a progress bar, and chunks kept on disk so that an interrupted
run resumes where it stopped.

With a ``directory``, every finished chunk is written there as ``chunk_<index>.npz`` (numpy's format,
no pickle), to a temporary name first and then renamed, so a chunk on disk is always complete. A
``meta.json`` holds a fingerprint of everything the result depends on (parameters, data, probes,
options, and what the model and the loss compute: the probes' logits and the first update's forces) and
the chunk size; a later call with the same inputs reuses the chunks already there (with
the stored chunk size), and a call with different inputs is refused instead of mixing results. Under
several processes only process 0 writes; the directory must be one that every process reads.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Callable
from collections.abc import Iterable
from typing import Any

import jax
import numpy as np

from ldjax._src import results_io
from ldjax._src.results_io import atomic_write

_FORMAT = 1


def fingerprint(arrays: Iterable[Any], options: dict[str, Any]) -> str:
    """The store's key: :func:`ldjax._src.results_io.fingerprint` with this format's version."""
    return results_io.fingerprint(arrays, {"format": _FORMAT, **options})


class ChunkStore:
    """Finished chunks of one computation in ``directory`` (see the module doc)."""

    def __init__(self, directory: str | os.PathLike, key: str, chunk_steps: int, meta: dict[str, Any]):
        self.path = pathlib.Path(directory)
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"directory {str(self.path)!r} is a file: expected a directory for the chunks")
        self.writer = jax.process_index() == 0
        meta_file = self.path / "meta.json"
        if meta_file.exists():
            try:
                stored = json.loads(meta_file.read_text())
            except (OSError, ValueError) as err:
                raise ValueError(f"directory {str(self.path)!r} has an unreadable meta.json: {err}") from err
            if stored.get("fingerprint") != key:
                raise ValueError(
                    f"directory {str(self.path)!r} holds the chunks of a different computation (other "
                    f"parameters, data, probes or options): pass a new directory or empty this one"
                )
            self.chunk_steps = int(stored["chunk_steps"])
        else:
            self.chunk_steps = chunk_steps
            if self.writer:
                self.path.mkdir(parents=True, exist_ok=True)
                atomic_write(
                    meta_file,
                    lambda f: f.write(
                        json.dumps(
                            {"format": _FORMAT, "fingerprint": key, "chunk_steps": chunk_steps, **meta},
                            indent=1,
                        ).encode()
                    ),
                )

    def _file(self, index: int) -> pathlib.Path:
        return self.path / f"chunk_{index:06d}.npz"

    def has(self, index: int) -> bool:
        return self._file(index).exists()

    def load(self, index: int) -> np.ndarray:
        with np.load(self._file(index), allow_pickle=False) as data:
            return data["scores"]

    def save(self, index: int, scores: np.ndarray) -> None:
        if self.writer:
            atomic_write(self._file(index), lambda f: np.savez(f, scores=scores))


def stream(
    compute: Callable[[int, int], np.ndarray],
    n_steps: int,
    chunk_steps: int,
    store: ChunkStore | None,
    *,
    examples_per_step: int,
    progress: bool,
    callback: Callable[[int, int], None] | None,
) -> list[tuple[int, np.ndarray]]:
    """``[(start, compute(start, stop))]`` over chunks of ``chunk_steps`` updates, reusing stored chunks.

    ``callback(index, n_chunks)`` runs after each chunk is finished (and saved).
    """
    starts = list(range(0, n_steps, chunk_steps))
    done = [i for i in range(len(starts)) if store is not None and store.has(i)]
    bar = None
    if progress and jax.process_index() == 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_steps * examples_per_step, desc="force_attribution", unit="example", leave=False)
    out = []
    for index, start in enumerate(starts):
        stop = min(start + chunk_steps, n_steps)
        if index in done:
            assert store is not None
            scores = store.load(index)
        else:
            scores = compute(start, stop)
            if store is not None:
                store.save(index, scores)
        out.append((start, scores))
        if bar is not None:
            bar.update((stop - start) * examples_per_step)
        if callback is not None:
            callback(index, len(starts))
    if bar is not None:
        bar.close()
    return out

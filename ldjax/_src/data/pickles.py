"""Unpickling untrusted files: only numpy arrays and plain data, bounded in size and nesting, without recursion.

Pickles can run arbitrary code when loaded, and even a pickle of plain data can hurt: a tuple
nested 200,000 deep is built fine by the (iterative) unpickler, but hashing or printing it
recurses in C and kills the interpreter; a file of one-byte ``EMPTY_LIST`` opcodes becomes 56
bytes of Python object per byte. :class:`RestrictedUnpickler` therefore

1. scans the opcodes first (:func:`pickletools.genops`, a flat loop), simulating the unpickler's
   stack with the nesting depth of each item, and refuses more than :data:`MAX_OPCODES` opcodes
   or a structure deeper than :data:`MAX_DEPTH` before any object is built;
2. admits only the numpy and builtin globals that pickled arrays need, with their arguments checked;
3. walks the loaded object once more with an explicit stack (a container reached through the memo
   and filled later escapes the scan's estimate) and refuses depth beyond :data:`MAX_DEPTH`,
   a container that holds itself, and arrays of Python objects.
"""

from __future__ import annotations

import math
import pickle
import pickletools
from typing import Any
from typing import BinaryIO

import numpy as np

#: Deepest nesting accepted. An official CIFAR batch is 5 deep (dict → array → its reduce arguments).
MAX_DEPTH = 16
#: Most opcodes accepted: an official CIFAR batch (10,000 labels and file names) has fewer than 100,000.
MAX_OPCODES = 500_000
#: Largest array ``numpy``'s reconstructor may allocate before its data arrive (pickles use shape ``(0,)``).
_MAX_RECONSTRUCT_BYTES = 1 << 16

# Opcodes that fill the container below their arguments in place, and those that only move items.
_IN_PLACE = frozenset({"APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "BUILD"})
_PUT = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
_GET = frozenset({"GET", "BINGET", "LONG_BINGET"})


class RefusedGlobal(pickle.UnpicklingError):
    """A pickle named a global that :class:`RestrictedUnpickler` does not admit."""


class RefusedStructure(pickle.UnpicklingError):
    """A pickle's structure is too deep, too large, self-referential or malformed."""


class _ArrayType:
    """Stands for ``numpy.ndarray`` inside a pickle: an argument of the reconstructor, not a callable."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise RefusedGlobal(
            "refusing to call numpy.ndarray directly (it would allocate uninitialised memory)"
        )


_ARRAY_TYPE = _ArrayType()


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    try:
        from numpy._core.multiarray import _reconstruct as numpy_reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct as numpy_reconstruct
    if subtype is not _ARRAY_TYPE:
        raise RefusedGlobal(f"refusing numpy's array reconstructor for {type(subtype).__name__}")
    try:
        nbytes = math.prod(shape) * np.dtype(dtype).itemsize
    except (TypeError, ValueError):
        nbytes = -1
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape) or nbytes < 0:
        raise RefusedStructure(f"array reconstructor called with shape {shape!r} and dtype {dtype!r}")
    if nbytes > _MAX_RECONSTRUCT_BYTES:
        raise RefusedStructure(f"array reconstructor asked to allocate {nbytes} bytes before the data")
    return numpy_reconstruct(np.ndarray, shape, dtype)


def _frombuffer():
    try:
        from numpy._core.numeric import _frombuffer as numpy_frombuffer
    except ImportError:  # numpy < 2
        from numpy.core.numeric import _frombuffer as numpy_frombuffer
    return numpy_frombuffer


def _latin1_encode(text: Any, encoding: str = "latin1") -> bytes:
    """How Python 3 pickles ``bytes`` at protocol <= 2: ``_codecs.encode(text, "latin1")``; no other codec."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise RefusedGlobal(
            f"refusing _codecs.encode with encoding {encoding!r}: only latin1 text is allowed"
        )
    return text.encode("latin1")


# (module, name) -> a function returning the object. Nothing else may be loaded.
_ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): lambda: _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): lambda: _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): lambda: _ARRAY_TYPE,
    ("numpy", "dtype"): lambda: np.dtype,
    ("_codecs", "encode"): lambda: _latin1_encode,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler for untrusted files: plain data and numpy arrays, bounded in size and nesting.

    Admitted globals: ``numpy.ndarray`` and ``numpy.dtype``, the numpy array reconstructors
    (``numpy[._]core.multiarray._reconstruct``, checked to allocate nothing large before the data,
    and ``numpy[._]core.numeric._frombuffer``) and ``_codecs.encode`` with the latin1 codec (how
    Python 3 pickles ``bytes`` at protocol 2). A pickle naming any other global (``os.system``,
    ``builtins.eval``, ...) raises :class:`pickle.UnpicklingError` BEFORE the global is imported or
    called. :meth:`load` first scans the opcodes and refuses, before building anything, more than
    :data:`MAX_OPCODES` opcodes or nesting deeper than :data:`MAX_DEPTH`; after loading it refuses
    self-referential containers and arrays of Python objects. No step recurses. The file must be
    seekable (it is read twice).

    Example:
      >>> import io, pickle, numpy as np
      >>> from ldjax.data import RestrictedUnpickler
      >>> blob = pickle.dumps({"data": np.arange(3, dtype=np.uint8)}, protocol=2)
      >>> RestrictedUnpickler(io.BytesIO(blob)).load()["data"].tolist()
      [0, 1, 2]
      >>> deep = b"\\x80\\x02K\\x00" + b"\\x85" * 1000 + b"."  # a 1-tuple nested 1000 deep
      >>> RestrictedUnpickler(io.BytesIO(deep)).load()
      Traceback (most recent call last):
      ...
      ldjax._src.data.pickles.RefusedStructure: nesting deeper than 16 levels (refused before unpickling)
    """

    def __init__(self, file: BinaryIO, **kwargs: Any):
        super().__init__(file, **kwargs)
        self._source = file

    def find_class(self, module: str, name: str) -> Any:
        factory = _ALLOWED.get((module, name))
        if factory is None:
            raise RefusedGlobal(
                f"refusing to load global {module}.{name}: only numpy arrays and plain data are allowed"
            )
        return factory()

    def persistent_load(self, pid: Any) -> Any:
        raise RefusedGlobal("refusing to load a persistent id: only plain data is allowed")

    def load(self) -> Any:
        start = self._source.tell()
        scan(self._source)
        self._source.seek(start)
        obj = super().load()
        check_plain(obj)
        return obj


def scan(stream: BinaryIO, *, max_depth: int = MAX_DEPTH, max_opcodes: int = MAX_OPCODES) -> None:
    """Refuse a pickle with too many opcodes or too deep a structure, without building any object.

    The unpickler's stack is simulated with, for each item, the depth of the structure it would be
    (0 for a scalar, 1 + the deepest item for a container). One flat loop over the opcodes.

    Raises:
      RefusedStructure: too many opcodes, too deep, or malformed (stack or memo misuse).
    """
    stack: list[int] = []
    marks: list[int] = []
    memo: dict[Any, int] = {}
    count = 0
    try:
        for op, arg, _ in pickletools.genops(stream):
            count += 1
            if count > max_opcodes:
                raise RefusedStructure(f"more than {max_opcodes} pickle opcodes (refused before unpickling)")
            name = op.name
            if name == "MARK":
                marks.append(len(stack))
            elif name in _PUT:
                memo[arg] = stack[-1]
            elif name == "MEMOIZE":
                memo[len(memo)] = stack[-1]
            elif name in _GET:
                stack.append(memo[arg])
            elif name == "DUP":
                stack.append(stack[-1])
            else:
                _apply(op, stack, marks)
                if stack and stack[-1] > max_depth:
                    raise RefusedStructure(
                        f"nesting deeper than {max_depth} levels (refused before unpickling)"
                    )
    except (IndexError, KeyError) as error:
        raise RefusedStructure(f"malformed pickle (stack or memo misuse: {type(error).__name__})") from None
    except ValueError as error:
        raise RefusedStructure(f"malformed pickle ({error})") from None


def _apply(op: pickletools.OpcodeInfo, stack: list[int], marks: list[int]) -> None:
    """Pop ``op``'s arguments (down to the mark when it takes one) and push its results' depths."""
    before = op.stack_before
    if pickletools.markobject in before:
        start = marks.pop()
        items = stack[start:]
        del stack[start:]
        below = [stack.pop() for _ in range(before.index(pickletools.markobject))][::-1]
    else:
        items = [stack.pop() for _ in range(len(before))][::-1]
        below = []
    if not op.stack_after:
        return
    if op.name in _IN_PLACE:  # the container (first argument) gains the items as children
        container, children = (below or items)[0], items if below else items[1:]
        stack.append(max(container, 1 + max(children, default=-1)))
    else:
        stack.append(1 + max(below + items, default=-1))


def check_plain(obj: Any, *, max_depth: int = MAX_DEPTH) -> None:
    """Refuse nesting beyond ``max_depth``, a container holding itself, or an array of Python objects.

    An explicit-stack walk over lists, tuples, dicts and sets; a container shared by several parents
    is walked again only when reached deeper than before, so at most ``max_depth`` times.

    Raises:
      RefusedStructure: what was found, and at which depth.
    """
    deepest: dict[int, int] = {}  # id -> the greatest depth a container was walked at
    stack: list[tuple[Any, int, bool]] = [(obj, 0, False)]
    path: set[int] = set()
    while stack:
        item, depth, leaving = stack.pop()
        if leaving:
            path.discard(id(item))
            continue
        if isinstance(item, np.ndarray) and item.dtype.hasobject:
            raise RefusedStructure("an array of Python objects (only numeric arrays are allowed)")
        if not isinstance(item, list | tuple | dict | set | frozenset):
            continue
        if id(item) in path:
            raise RefusedStructure("a container that holds itself")
        if deepest.get(id(item), -1) >= depth:  # walked already at this depth or deeper
            continue
        if depth >= max_depth:
            raise RefusedStructure(f"nesting deeper than {max_depth} levels")
        deepest[id(item)] = depth
        path.add(id(item))
        stack.append((item, depth, True))
        children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
        stack.extend((child, depth + 1, False) for child in children)

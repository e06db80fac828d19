"""Data sets: real MNIST / CIFAR-10 / CIFAR-10H from official files, offline fallbacks, synthetic tasks."""

from ldjax._src.data.errors import DataCorrupt
from ldjax._src.data.errors import DataUnavailable

# One import line per public name; each data module adds its own lines below.

__all__: tuple[str, ...] = ("DataCorrupt", "DataUnavailable")

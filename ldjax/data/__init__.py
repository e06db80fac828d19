"""Data sets: real MNIST / CIFAR-10 / CIFAR-10H from official files, offline fallbacks, synthetic tasks.

Every real-data loader checks each file's header before reading its data, refuses anything that is
not the official data set (a smaller "subset" only with ``allow_subset=True``), raises
:class:`DataCorrupt` or :class:`DataUnavailable` naming the file, and records the files it read:
``Dataset.files`` / ``SoftLabels.files`` / ``Cifar3.files`` hold :class:`DataFile` records (absolute
path, SHA-256, size), and ``provenance(train, test, ...)`` turns them into JSON-ready dicts for
``results.json``.
"""

from ldjax._src.data.cifar3 import Cifar3
from ldjax._src.data.cifar3 import load_cifar3
from ldjax._src.data.cifar3 import renormalise
from ldjax._src.data.cifar10 import load_cifar10
from ldjax._src.data.cifar10 import read_cifar_batch
from ldjax._src.data.cifar10h import load_cifar10h
from ldjax._src.data.dataset import DataFile
from ldjax._src.data.dataset import Dataset
from ldjax._src.data.dataset import SoftLabels
from ldjax._src.data.dataset import provenance
from ldjax._src.data.errors import DataCorrupt
from ldjax._src.data.errors import DataUnavailable
from ldjax._src.data.files import cache_dir
from ldjax._src.data.gaussian import GaussianToy
from ldjax._src.data.gaussian import gaussian_p_star
from ldjax._src.data.gaussian import gaussian_toy
from ldjax._src.data.gaussian import split_toy
from ldjax._src.data.gaussian import symmetric_label_noise
from ldjax._src.data.graph_walks import GraphWalks
from ldjax._src.data.graph_walks import walk_rewards
from ldjax._src.data.language import PROBE_TYPES
from ldjax._src.data.language import Language
from ldjax._src.data.language import preference_language
from ldjax._src.data.language_world import Prompt
from ldjax._src.data.mnist import load_digits
from ldjax._src.data.mnist import load_mnist
from ldjax._src.data.mnist import load_mnist_or_digits
from ldjax._src.data.mnist import parse_idx
from ldjax._src.data.pickles import RestrictedUnpickler

# One import line per public name; each data module adds its own lines below.

__all__: tuple[str, ...] = ("DataCorrupt", "DataUnavailable")
__all__ += ("Dataset", "SoftLabels", "RestrictedUnpickler", "cache_dir", "parse_idx", "read_cifar_batch")
__all__ += ("DataFile", "provenance")
__all__ += ("load_cifar10", "load_cifar10h", "load_digits", "load_mnist", "load_mnist_or_digits")
__all__ += ("Cifar3", "GaussianToy", "gaussian_p_star", "gaussian_toy", "load_cifar3", "renormalise")
__all__ += ("split_toy", "symmetric_label_noise")
__all__ += ("PROBE_TYPES", "Language", "Prompt", "preference_language")
__all__ += ("GraphWalks", "walk_rewards")

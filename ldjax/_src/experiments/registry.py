"""The experiments that ``ldjax reproduce`` knows, imported lazily by module path."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import NamedTuple


class ExperimentSpec(NamedTuple):
    """One registered experiment.

    Attributes:
      name: the CLI name (``ldjax reproduce NAME``).
      module: import path of the module (Config / FULL / run / plot / fidelity / main).
      description: one line.
      data: what data it needs and what happens without it.
      quick_minutes: wall time of ``--quick`` measured on 2 idle CPU cores (real MNIST/CIFAR).
      full_minutes: expected wall time of ``--full`` (GPU where noted).
    """

    name: str
    module: str
    description: str
    data: str
    quick_minutes: float
    full_minutes: float

    def load(self) -> ModuleType:
        return importlib.import_module(self.module)


EXPERIMENTS: tuple[ExperimentSpec, ...] = (
    ExperimentSpec(
        "demo",
        "ldjax._src.experiments.demo",
        "one SGD step on a real handwritten digit: predicted vs actual Δ log π and the A, K, G terms",
        "scikit-learn's bundled 8x8 digits (no download)",
        0.2,
        0.5,
    ),
    ExperimentSpec(
        "mnist",
        "ldjax._src.experiments.mnist_force",
        "learn a 4, watch the other digits move (LeNet-5 on MNIST)",
        "MNIST from LDJAX_DATA_DIR / cache / download; scikit-learn digits otherwise",
        0.6,
        20.0,
    ),
    ExperimentSpec(
        "gaussian",
        "ldjax._src.experiments.gaussian_paths",
        "learning paths on the 3-class Gaussian toy with exact p*; OHT/LS/GT/KD/ESKD/Filter-KD table",
        "synthetic (no files)",
        0.6,
        8.0,
    ),
    ExperimentSpec(
        "cifar3",
        "ldjax._src.experiments.cifar3_paths",
        "zig-zag paths of mislabelled examples on noisy CIFAR-3 with human p* (CIFAR-10H)",
        "CIFAR-10 test set + CIFAR-10H (cifar10_test.npz / cifar10h_probs.npy or the official files)",
        1.0,
        30.0,
    ),
    ExperimentSpec(
        "filterkd",
        "ldjax._src.experiments.filter_kd",
        "Filter-KD vs OHT / LS / ESKD at 0%, 20%, 40% label noise",
        "synthetic Gaussian toy; CIFAR-3 when CIFAR-10 + CIFAR-10H are available",
        6.5,
        40.0,
    ),
    ExperimentSpec(
        "llm",
        "ldjax._src.experiments.llm_dynamics",
        "SFT / DPO / IPO / extend on a tiny transformer: probe log-probs, hallucination, squeezing",
        "synthetic preference language (no files)",
        0.9,
        8.0,
    ),
    ExperimentSpec(
        "squeeze",
        "ldjax._src.experiments.squeeze",
        "the squeezing effect of a negative gradient on a linear softmax head (closed form vs step)",
        "none",
        0.1,
        0.3,
    ),
)


def get(name: str) -> ExperimentSpec:
    for spec in EXPERIMENTS:
        if spec.name == name:
            return spec
    known = ", ".join(spec.name for spec in EXPERIMENTS)
    raise ValueError(f"unknown experiment {name!r}: expected one of {known}")

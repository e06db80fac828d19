"""The experiments that ``ldjax reproduce`` knows, imported lazily by module path.

An experiment's name is its module's name: ``ldjax reproduce mnist_force`` runs
``ldjax._src.experiments.mnist_force`` (public wrapper ``ldjax.experiments.mnist_force``, notebook
``notebooks/mnist_force.ipynb``) and writes ``results/mnist_force/``. The short names of earlier versions
(``mnist``, ``gaussian``, ...) still work as aliases.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import NamedTuple

PACKAGE = "ldjax._src.experiments"


class ExperimentSpec(NamedTuple):
    """One registered experiment.

    Attributes:
      name: the module's name, also the CLI name (``ldjax reproduce NAME``) and the results folder.
      description: one line.
      data: what data it needs and what happens without it.
      quick_minutes: wall time of ``--quick`` measured on 2 CPU cores (real MNIST/CIFAR; one
        ``ldjax reproduce --quick`` at load ≈ 1.5, 12 min 20 s in all).
      full_minutes: expected wall time of ``--full`` (GPU where noted).
      aliases: older CLI names that still select it.
      module: import path of the module (Config / FULL / run / plot / fidelity / main); by default
        ``ldjax._src.experiments.<name>``.
    """

    name: str
    description: str
    data: str
    quick_minutes: float
    full_minutes: float
    aliases: tuple[str, ...] = ()
    module: str | None = None

    @property
    def module_path(self) -> str:
        return self.module or f"{PACKAGE}.{self.name}"

    def load(self) -> ModuleType:
        return importlib.import_module(self.module_path)


EXPERIMENTS: tuple[ExperimentSpec, ...] = (
    ExperimentSpec(
        "demo",
        "one SGD step on a real handwritten digit: predicted vs actual Δ log π and the A, K, G terms",
        "scikit-learn's bundled 8x8 digits (no download)",
        0.2,
        0.5,
    ),
    ExperimentSpec(
        "mnist_force",
        "learn a 4, watch the other digits move (LeNet-5 on MNIST)",
        "MNIST from LDJAX_DATA_DIR / cache / download; scikit-learn digits otherwise",
        0.9,
        20.0,
        aliases=("mnist",),
    ),
    ExperimentSpec(
        "gaussian_paths",
        "learning paths on the 3-class Gaussian toy with exact p*; OHT/LS/GT/KD/ESKD/Filter-KD table",
        "synthetic (no files)",
        1.1,
        8.0,
        aliases=("gaussian",),
    ),
    ExperimentSpec(
        "cifar3_paths",
        "zig-zag paths of mislabelled examples on noisy CIFAR-3 with human p* (CIFAR-10H)",
        "CIFAR-10 test set + CIFAR-10H (cifar10_test.npz / cifar10h_probs.npy or the official files)",
        2.4,
        30.0,
        aliases=("cifar3",),
    ),
    ExperimentSpec(
        "filter_kd",
        "Filter-KD vs OHT / LS / ESKD at 0%, 20%, 40% label noise",
        "synthetic Gaussian toy; CIFAR-3 when CIFAR-10 + CIFAR-10H are available",
        3.9,
        40.0,
        aliases=("filterkd",),
    ),
    ExperimentSpec(
        "llm_dynamics",
        "SFT / DPO / IPO / extend on a tiny transformer: probe log-probs, hallucination, squeezing",
        "synthetic preference language (no files)",
        1.5,
        8.0,
        aliases=("llm",),
    ),
    ExperimentSpec(
        "compositional",
        "compositional vs random bijections of a two-factor toy (thesis ch. 7): cooperating vs contradicting forces",
        "synthetic (no files)",
        0.4,
        3.0,
    ),
    ExperimentSpec(
        "squeeze",
        "the squeezing effect of a negative gradient on a linear softmax head (closed form vs step)",
        "none",
        0.1,
        0.3,
    ),
    ExperimentSpec(
        "head_probing",
        "head probing before fine-tuning (ch. 6): the energy p − e_y, the feature change, downstream accuracy",
        "MNIST from LDJAX_DATA_DIR / cache / download; scikit-learn digits otherwise",
        0.5,
        3.0,
    ),
    ExperimentSpec(
        "grpo_exploration",
        "GRPO raises pass@1 but lowers pass@256 (probability squeezed into the top-1); SimKO vs GRPO",
        "synthetic layered-graph walks (no files)",
        1.4,
        10.0,
    ),
)


def get(name: str) -> ExperimentSpec:
    """The experiment called ``name`` or, for an older CLI name, the one it now means."""
    for spec in EXPERIMENTS:
        if name == spec.name or name in spec.aliases:
            return spec
    known = ", ".join(spec.name for spec in EXPERIMENTS)
    old = ", ".join(f"{alias} = {spec.name}" for spec in EXPERIMENTS for alias in spec.aliases)
    raise ValueError(f"unknown experiment {name!r}: expected one of {known} (older names: {old})")

"""The settings of :mod:`ldjax._src.experiments.mnist_force`: :class:`Config`, ``FULL``, ``TINY`` and their checks."""

from __future__ import annotations

import dataclasses

NUM_CLASSES = 10
SIDE = 28
#: Config.model → the LeNet5 variant.
MODELS = {"lenet_tanh": "tanh", "lenet_relu": "relu"}


@dataclasses.dataclass(frozen=True)
class Config:
    """Quick settings (defaults): about a minute on 2 CPU cores.

    Attributes:
      seed: the first seed; seed ``seed + i`` draws run ``i``'s subsets, initialisation and minibatch order.
      seeds: independent runs the claims are decided over.
      dataset: ``"auto"`` (MNIST if found; scikit-learn digits only when no data location is configured),
        ``"mnist"`` or ``"digits"``.
      download: allow downloading MNIST when it is not found locally.
      model: ``"lenet_tanh"`` (the authors': tanh, average pooling, 60-42) or ``"lenet_relu"`` (ReLU,
        max-pooling, 120-84).
      standardise: standardise pixels with the training subset's mean and std (the authors: [0, 1]).
      n_train: training images (a random subset of the training split).
      n_probes: held-out probe images (a random subset of the test split); also the evaluation set.
      n_accumulate: probes (the first of the probe set) on which forces are summed every update.
      epochs: passes over the training subset.
      batch_size, learning_rate, momentum, weight_decay: the optimizer (SGD, PyTorch-style decay).
      schedule: ``"cosine"`` (per epoch, down to ``final_learning_rate``) or ``"constant"``.
      final_learning_rate: the cosine schedule's floor (PyTorch's ``eta_min``).
      checkpoint_fractions: where the one-step analyses happen, as fractions of the epochs
        (rounded to whole epochs; 0 means the initialisation).
      step_learning_rate: η of the plain-SGD updates analysed at each checkpoint.
      update_class: the label of the single analysed update image x_u.
      probe_classes: the labels of the three probes whose A, K, G are shown.
      force_map_updates: training images per class averaged in the class x class force map.
    """

    seed: int = 0
    seeds: int = 3
    dataset: str = "auto"
    download: bool = False
    model: str = "lenet_tanh"
    standardise: bool = False
    n_train: int = 2000
    n_probes: int = 1000
    n_accumulate: int = 64
    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 1e-2
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    final_learning_rate: float = 1e-6
    checkpoint_fractions: tuple[float, ...] = (0.1, 0.5, 1.0)
    step_learning_rate: float = 1e-3
    update_class: int = 4
    probe_classes: tuple[int, ...] = (4, 9, 0)
    force_map_updates: int = 150


#: The authors' schedule (100 epochs at 1e-3), all 10,000 test images as probes, 5 seeds: one GPU.
FULL = Config(seeds=5, epochs=100, learning_rate=1e-3, n_probes=10000, n_accumulate=1000)

#: The tiny run shared by the smoke test and the notebook under ``LDJAX_NOTEBOOK_TINY``.
TINY = Config(
    seeds=2,
    n_train=256,
    n_probes=200,
    n_accumulate=16,
    epochs=2,
    force_map_updates=8,
    checkpoint_fractions=(1.0,),
)


def check_config(config: Config) -> None:
    if config.dataset not in ("auto", "mnist", "digits"):
        raise ValueError(f"dataset must be 'auto', 'mnist' or 'digits', got {config.dataset!r}")
    if config.model not in MODELS:
        raise ValueError(f"model must be one of {', '.join(MODELS)}, got {config.model!r}")
    if config.schedule not in ("cosine", "constant"):
        raise ValueError(f"schedule must be 'cosine' or 'constant', got {config.schedule!r}")
    if not 0 <= config.update_class < NUM_CLASSES:
        raise ValueError(f"update_class must be a digit 0..9, got {config.update_class}")
    if any(not 0 <= c < NUM_CLASSES for c in config.probe_classes) or not config.probe_classes:
        raise ValueError(f"probe_classes must be digits 0..9, got {config.probe_classes}")
    if any(not 0.0 <= f <= 1.0 for f in config.checkpoint_fractions) or not config.checkpoint_fractions:
        raise ValueError(f"checkpoint_fractions must lie in [0, 1], got {config.checkpoint_fractions}")
    for name in ("seeds", "n_train", "n_probes", "n_accumulate", "epochs", "batch_size", "force_map_updates"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(config, name)}")
    if config.batch_size > config.n_train:
        raise ValueError(f"batch_size must be <= n_train={config.n_train}, got {config.batch_size}")


def checkpoint_epochs(config: Config) -> list[int]:
    """The epochs of the one-step analyses (``checkpoint_fractions`` rounded to whole epochs)."""
    return sorted(
        {min(config.epochs, max(0, round(fr * config.epochs))) for fr in config.checkpoint_fractions}
    )

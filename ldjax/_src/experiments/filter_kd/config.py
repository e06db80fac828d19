"""The settings of :mod:`ldjax._src.experiments.filter_kd` (quick and ``FULL``) and the CIFAR-3 split and model
settings they select from :mod:`~ldjax._src.experiments.cifar3_paths`."""

from __future__ import annotations

import dataclasses

from ldjax._src.experiments.cifar3_paths import config as cifar3_config

#: The rows of the comparison: one-hot training read at its best-validation and at its final epoch.
METHODS = ("OHT-ES", "OHT-final", "ESKD", "FilterKD")


@dataclasses.dataclass(frozen=True)
class Config:
    """Quick settings (defaults)."""

    seed: int = 0
    num_seeds: int = 3
    data_seed: int = 0
    classes: tuple[str, ...] = ("airplane", "bird", "ship")
    noises: tuple[float, ...] = (0.2, 0.4)
    temperatures: tuple[float, ...] = (1.0,)
    ema_decay: float = 0.95
    distill_scale: float = 2.0
    train_size: int = 300
    val_size: int = 200
    # 0: every image not in train / val (2,500 at the quick sizes); n > 0: the first n of them
    test_size: int = 0
    widths: tuple[int, ...] = (8, 16, 32)
    blocks: tuple[int, ...] = (1, 1, 1)
    epochs: int = 24
    batch_size: int = 25
    learning_rate: float = 0.1
    final_learning_rate: float = 1e-5
    momentum: float = 0.9
    weight_decay: float = 5e-4
    augment: bool = True


FULL = Config(
    num_seeds=5,
    noises=(0.0, 0.2, 0.4),
    temperatures=(10.0, 4.0, 2.0, 1.0, 0.5),
    train_size=2000,
    val_size=500,
    widths=(32, 64, 128, 256),
    blocks=(2, 2, 2, 2),
    epochs=40,
    batch_size=128,
)

#: The tiny run shared by the smoke test and the notebook under ``LDJAX_NOTEBOOK_TINY``: every phase, in seconds;
#: the split, the ResNet and the training length of ``cifar3_paths.TINY``, one noise level, two temperatures.
TINY = Config(
    **{
        name: getattr(cifar3_config.TINY, name)
        for name in (
            "train_size",
            "val_size",
            "test_size",
            "widths",
            "blocks",
            "epochs",
            "batch_size",
            "num_seeds",
        )
    },
    noises=(0.4,),
    temperatures=(1.0, 4.0),
)


def data_config(config: Config) -> cifar3_config.Config:
    """The CIFAR-3 split and model settings of this comparison."""
    return dataclasses.replace(
        cifar3_config.Config(),
        data_seed=config.data_seed,
        classes=config.classes,
        train_size=config.train_size,
        val_size=config.val_size,
        test_size=config.test_size,
        widths=config.widths,
        blocks=config.blocks,
    )

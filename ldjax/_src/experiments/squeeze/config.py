"""The settings of :mod:`ldjax._src.experiments.squeeze` and its five cases."""

from __future__ import annotations

import dataclasses

CASES = ("positive", "negative_flat", "negative_peak", "negative_valley", "paired_valley")


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings (seconds on a laptop CPU).

    Attributes:
      seed: the first seed; seed ``seed + i`` draws run ``i``'s feature, logits and ``W``.
      seeds: independent draws the claims are decided over.
      vocab_sizes: the vocabularies V of the four cases.
      feature_dim: the dimension of the feature ``x`` (unit norm).
      learning_rate: η; the step on the logits is ``c = η‖x‖² = η``.
      peaky_scale: standard deviation of the logits of a peaky π.
      flat_scale: standard deviation of the logits of a flat π.
      sweep_vocab: V of the sweep.
      sweep_steps: the step sizes ``c`` of the sweep.
      sweep_scales: the logit scales (peakiness) of the sweep.
    """

    seed: int = 0
    seeds: int = 5
    vocab_sizes: tuple[int, ...] = (50, 1000)
    feature_dim: int = 16
    learning_rate: float = 2.0
    peaky_scale: float = 3.0
    flat_scale: float = 0.1
    sweep_vocab: int = 50
    sweep_steps: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
    sweep_scales: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0)


FULL = Config(seeds=20, vocab_sizes=(50, 1000, 50000))

#: The tiny run shared by the smoke test and the notebook under ``LDJAX_NOTEBOOK_TINY``.
TINY = Config(vocab_sizes=(20,), feature_dim=4, sweep_steps=(0.5, 2.0, 8.0), sweep_scales=(0.0, 1.0, 4.0))


def check_config(config: Config) -> None:
    """Raise a ValueError that names the setting when ``config`` cannot run."""
    if config.seeds < 1 or config.feature_dim < 1:
        raise ValueError(f"seeds and feature_dim must be >= 1, got {config.seeds}, {config.feature_dim}")
    if not config.vocab_sizes or min(config.vocab_sizes) < 10 or config.sweep_vocab < 10:
        raise ValueError(
            f"vocab_sizes and sweep_vocab must be >= 10 (a peak, a median and a valley token), got "
            f"{config.vocab_sizes}, {config.sweep_vocab}"
        )
    if not config.sweep_steps or not config.sweep_scales:
        raise ValueError("sweep_steps and sweep_scales must not be empty")

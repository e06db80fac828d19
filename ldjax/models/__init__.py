"""Flax NNX models used by the experiments; turn one into ``(apply_fn, params)`` with ``ldjax.from_nnx``."""

# One import line per public name; each model file adds its own lines below.
from ldjax._src.models.lenet import LeNet5
from ldjax._src.models.mlp import MLP
from ldjax._src.models.resnet import ResNet
from ldjax._src.models.transformer import TinyTransformer

__all__: tuple[str, ...] = ()
__all__ += ("LeNet5", "MLP")
__all__ += ("TinyTransformer",)
__all__ += ("ResNet",)

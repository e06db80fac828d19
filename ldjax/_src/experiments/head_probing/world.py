"""Settings, data, model and pre-training of :mod:`ldjax._src.experiments.head_probing`."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jaxtyping import Array
from jaxtyping import Float

from ldjax._src.adapters import from_nnx
from ldjax._src.data.dataset import Dataset
from ldjax._src.data.mnist import load_digits
from ldjax._src.data.mnist import load_mnist
from ldjax._src.data.mnist import load_mnist_or_digits
from ldjax._src.losses.classification import cross_entropy
from ldjax._src.models.mlp import MLP
from ldjax._src.training import epoch_batches
from ldjax._src.training import train

PAPER_TAUS = (0, 1, 2, 4, 8, 16, 32, 50, 100, 199)


@dataclasses.dataclass(frozen=True)
class Config:
    """Quick settings (defaults).

    Attributes:
      seeds: independent runs (a new head's initialisation and the minibatch order), paired across τ.
      pretrain_seed: seeds the pre-trained backbone (fixed for all seeds) and the data subsets.
      dataset: ``"auto"`` (MNIST if found, else scikit-learn's 8x8 digits), ``"mnist"`` or ``"digits"``.
      download: allow downloading MNIST when it is not found locally.
      n_pretrain: pre-training images of the source digits 0–4 (a random subset).
      pretrain_epochs, pretrain_learning_rate: pre-training (SGD, momentum, cosine decay).
      hidden, feature_dim: the MLP backbone ``d → hidden → feature_dim`` (ReLU after both: the feature h).
      n_train, n_val: downstream (digits 5–9) training and validation images.
      n_probes: validation images (the first ``n_probes``) on which the feature measures are taken.
      batch_size: minibatch size of head probing and fine-tuning.
      hp_epochs: the head-probing durations τ (the authors' sweep); 0 is no probing, the last "converged".
      hp_learning_rate: head probing's SGD learning rate (constant, momentum).
      ft_epochs, ft_learning_rate: fine-tuning (SGD, momentum, cosine decay to 0).
      momentum: SGD momentum of all three stages.
      n_step_probes: validation images on which the first FT update is decomposed.
    """

    seeds: int = 5
    pretrain_seed: int = 0
    dataset: str = "auto"
    download: bool = False
    n_pretrain: int = 5000
    pretrain_epochs: int = 3
    pretrain_learning_rate: float = 0.05
    hidden: int = 256
    feature_dim: int = 256
    n_train: int = 1000
    n_val: int = 1000
    n_probes: int = 500
    batch_size: int = 32
    hp_epochs: tuple[int, ...] = PAPER_TAUS
    hp_learning_rate: float = 0.05
    ft_epochs: int = 10
    ft_learning_rate: float = 0.003
    momentum: float = 0.9
    n_step_probes: int = 64


#: Full-size settings, for one GPU (well under 10 minutes there; not timed in this session).
FULL = Config(
    n_pretrain=30000, pretrain_epochs=10, hidden=512, n_train=5000, n_val=2000, n_probes=1000, ft_epochs=50
)
#: The tiny settings of the smoke test and of the notebook under ``LDJAX_NOTEBOOK_TINY`` (same programs).
TINY = Config(
    seeds=3,
    dataset="digits",
    n_pretrain=300,
    pretrain_epochs=2,
    hidden=32,
    feature_dim=16,
    n_train=128,
    n_val=128,
    n_probes=64,
    hp_epochs=(0, 1, 4, 16),
    ft_epochs=2,
    ft_learning_rate=0.01,
    n_step_probes=8,
)

SOURCE_CLASSES = (0, 1, 2, 3, 4)
TARGET_CLASSES = (5, 6, 7, 8, 9)


class TransferNet(nnx.Module):
    """An MLP backbone whose ReLU output is the feature ``h``, and a linear task head.

    Example:
      >>> import jax.numpy as jnp
      >>> from flax import nnx
      >>> from ldjax._src.experiments.head_probing import TransferNet
      >>> net = TransferNet(64, 8, 4, 5, rngs=nnx.Rngs(0))
      >>> net.features(jnp.ones((2, 8, 8))).shape, net(jnp.ones((2, 8, 8))).shape
      ((2, 4), (2, 5))
    """

    def __init__(self, in_features: int, hidden: int, feature_dim: int, classes: int, *, rngs: nnx.Rngs):
        self.backbone = MLP(in_features, (hidden,), feature_dim, rngs=rngs)
        self.head = nnx.Linear(feature_dim, classes, rngs=rngs)

    def features(self, x: Float[Array, " b *d"]) -> Float[Array, "b f"]:
        return jax.nn.relu(self.backbone(x))

    def __call__(self, x: Float[Array, " b *d"]) -> Float[Array, "b k"]:
        return self.head(self.features(x))


def check_config(config: Config) -> None:
    """Refuse settings the experiment cannot run, naming the setting."""
    if config.dataset not in ("auto", "mnist", "digits"):
        raise ValueError(f"dataset must be 'auto', 'mnist' or 'digits', got {config.dataset!r}")
    for name in ("seeds", "n_pretrain", "pretrain_epochs", "hidden", "feature_dim", "n_train", "n_val"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(config, name)}")
    for name in ("n_probes", "batch_size", "ft_epochs", "n_step_probes"):
        if getattr(config, name) < 1:
            raise ValueError(f"{name} must be >= 1, got {getattr(config, name)}")
    taus = config.hp_epochs
    if len(taus) < 3 or list(taus) != sorted(set(taus)) or taus[0] != 0:
        raise ValueError(
            f"hp_epochs must be at least 3 increasing durations starting with 0 (no probing), got {taus}"
        )
    if config.batch_size > config.n_train:
        raise ValueError(f"batch_size must be <= n_train={config.n_train}, got {config.batch_size}")


def load_data(config: Config, data_dir: str | None) -> tuple[Dataset, Dataset, str]:
    """The split that holds pre-training, downstream training and validation images, the test split, a name.

    ``"auto"`` is :func:`ldjax.data.load_mnist_or_digits`: the digits stand in only when no data location
    was named.
    """
    if config.dataset == "digits":
        train_split, test_split = load_digits("train"), load_digits("test")
    else:
        load = load_mnist if config.dataset == "mnist" else load_mnist_or_digits
        train_split = load("train", path=data_dir, download=config.download)
        test_split = load("test", path=data_dir, download=config.download)
    return train_split, test_split, f"{train_split.name} / {test_split.name}"


def _subset(rng: np.random.Generator, labels: np.ndarray, classes: tuple[int, ...]) -> np.ndarray:
    """The indices of ``classes`` among ``labels``, in a random order."""
    return rng.permutation(np.flatnonzero(np.isin(labels, classes)))


class Splits(NamedTuple):
    """The standardised images (``[n, d]``) and labels (``0..4`` within their digits) of every split."""

    x_pre: Array  # pre-training: source digits
    y_pre: Array
    x_ft: Array  # downstream training: target digits
    y_ft: Array
    x_val: Array  # downstream validation
    y_val: Array
    x_test: Array  # test images of the target digits
    y_test: Array
    x_src: Array  # test images of the source digits (the pre-trained accuracy)
    y_src: Array
    n_test: int
    n_probes: int  # validation images on which the feature measures are taken


def make_splits(config: Config, train_split: Dataset, test_split: Dataset) -> Splits:
    """Random subsets (seeded by ``pretrain_seed``) of source and target digits, standardised by the
    pre-training images' mean and standard deviation."""
    rng = np.random.default_rng(config.pretrain_seed)
    x_all = np.asarray(train_split.x, np.float32).reshape(len(train_split.y), -1) / 255.0
    y_all = np.asarray(train_split.y, np.int32)
    source, target = _subset(rng, y_all, SOURCE_CLASSES), _subset(rng, y_all, TARGET_CLASSES)
    n_pretrain = min(config.n_pretrain, len(source))
    n_train = min(config.n_train, len(target) // 2)
    n_val = min(config.n_val, len(target) - n_train)
    pre_idx, ft_idx, val_idx = source[:n_pretrain], target[:n_train], target[n_train : n_train + n_val]
    mean, std = x_all[pre_idx].mean(), x_all[pre_idx].std()
    x_test_all = np.asarray(test_split.x, np.float32).reshape(len(test_split.y), -1) / 255.0
    y_test_all = np.asarray(test_split.y, np.int32)

    def split(x, y, classes):  # standardised images, labels 0..4 within ``classes``
        return jnp.asarray((x - mean) / std, jnp.float32), jnp.asarray(y - classes[0], jnp.int32)

    test_mask, source_test = np.isin(y_test_all, TARGET_CLASSES), np.isin(y_test_all, SOURCE_CLASSES)
    return Splits(
        *split(x_all[pre_idx], y_all[pre_idx], SOURCE_CLASSES),
        *split(x_all[ft_idx], y_all[ft_idx], TARGET_CLASSES),
        *split(x_all[val_idx], y_all[val_idx], TARGET_CLASSES),
        *split(x_test_all[test_mask], y_test_all[test_mask], TARGET_CLASSES),
        *split(x_test_all[source_test], y_test_all[source_test], SOURCE_CLASSES),
        n_test=int(test_mask.sum()),
        n_probes=min(config.n_probes, n_val),
    )


class Model(NamedTuple):
    """The network split into the feature map and the head (both over the same params), batched."""

    apply_fn: Callable[..., Array]  # one image -> logits
    feature_fn: Callable[..., Array]  # one image -> feature h
    head_fn: Callable[..., Array]  # one feature -> logits
    logits: Callable[..., Array]  # the three over a batch
    features: Callable[..., Array]
    heads: Callable[..., Array]


def build_model(config: Config, d_in: int, k: int) -> tuple[Model, Any]:
    """:class:`TransferNet` for ``d_in`` inputs and ``k`` classes (seeded by ``pretrain_seed``), its params."""
    net = TransferNet(d_in, config.hidden, config.feature_dim, k, rngs=nnx.Rngs(config.pretrain_seed))
    apply_fn, params = from_nnx(net, example_shape=(d_in,))
    feature_fn, _ = from_nnx(net, method=lambda m, x: m.features(x), example_shape=(d_in,))
    head_fn, _ = from_nnx(net, method=lambda m, h: m.head(h))
    batched = lambda f: jax.vmap(f, (None, 0))  # noqa: E731
    return Model(
        apply_fn, feature_fn, head_fn, batched(apply_fn), batched(feature_fn), batched(head_fn)
    ), params


def _source_loss(model: Model, p: Any, idx: Array, d: dict[str, Array]) -> Array:
    return cross_entropy(model.logits(p, d["x"][idx]), d["y"][idx])


def pretrain(config: Config, model: Model, params: Any, splits: Splits, progress: bool) -> Any:
    """Pre-training on the source digits (one fixed backbone: the "public checkpoint"): SGD, momentum,
    cosine decay; returns ``ldjax.train``'s result."""
    n_pretrain = splits.x_pre.shape[0]
    keys = jax.random.split(jax.random.key(config.pretrain_seed), 2)
    pre_batches = epoch_batches(keys[0], n_pretrain, min(64, n_pretrain), config.pretrain_epochs)
    pre_opt = optax.sgd(
        optax.cosine_decay_schedule(config.pretrain_learning_rate, len(pre_batches)), momentum=config.momentum
    )
    return train(
        functools.partial(_source_loss, model), params, pre_opt, pre_batches,
        data={"x": splits.x_pre, "y": splits.y_pre}, progress=progress, desc="pre-train",
    )  # fmt: skip

"""The 3-class Gaussian toy of Ren, Guo & Sutherland (ICLR 2022), whose true label distribution p* is exact.

Class means are drawn from ``{-1, 0, 1}^d``; ``x ~ N(μ_y, σ²·I)`` with ``y`` uniform; then
``p*(x) = softmax_k(−‖x − μ_k‖² / (2σ²))`` (the Bayes posterior, equal class priors). The observed
label ``y`` is the class that generated ``x``, so it disagrees with ``argmax p*`` on a sizeable
fraction of samples: the toy has label "noise" built in.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike
from jaxtyping import Array
from jaxtyping import Float
from jaxtyping import Int


class GaussianToy(NamedTuple):
    """Samples of the Gaussian toy.

    Attributes:
      x: inputs ``[n, d]``.
      y: the generating class of each sample, ``int32 [n]``.
      p_star: the exact class posterior ``p*(x)``, ``[n, k]`` (rows sum to 1).
      means: the class means ``[k, d]`` with entries in ``{-1, 0, 1}``.
    """

    x: Array
    y: Array
    p_star: Array
    means: Array


class Split(NamedTuple):
    """Train / validation / test parts of a data set (each a :class:`GaussianToy`)."""

    train: GaussianToy
    val: GaussianToy
    test: GaussianToy


def gaussian_p_star(
    x: Float[ArrayLike, "n d"], means: Float[ArrayLike, "k d"], variance: float = 6.0
) -> Float[Array, "n k"]:
    r"""Exact posterior :math:`p^*_k(x) = \mathrm{softmax}_k(-\|x-\mu_k\|^2 / 2\sigma^2)` under equal priors.

    Args:
      x: inputs ``[n, d]``.
      means: class means ``[k, d]``.
      variance: the isotropic variance σ² of every class.

    Returns:
      ``[n, k]``, rows summing to 1.

    Example:
      >>> import jax.numpy as jnp
      >>> from ldjax.data import gaussian_p_star
      >>> gaussian_p_star(jnp.zeros((1, 2)), jnp.array([[1.0, 0.0], [-1.0, 0.0]])).tolist()
      [[0.5, 0.5]]
    """
    if variance <= 0:
        raise ValueError(f"variance must be positive, got {variance}")
    x = jnp.asarray(x)
    means = jnp.asarray(means, x.dtype)
    if x.ndim != 2 or means.ndim != 2 or x.shape[1] != means.shape[1]:
        raise ValueError(
            f"x must be [n, d] and means [k, d] with the same d, got {x.shape} and {means.shape}"
        )
    sq = jnp.sum((x[:, None, :] - means[None, :, :]) ** 2, axis=-1)
    return jax.nn.softmax(-sq / (2.0 * variance), axis=-1)


def gaussian_toy(
    *, key: jax.Array, n: int = 100_000, num_classes: int = 3, dim: int = 30, variance: float = 6.0
) -> GaussianToy:
    """Draw ``n`` samples of the Gaussian toy (means, labels and inputs from ``key``).

    Args:
      key: PRNG key.
      n: number of samples.
      num_classes: k.
      dim: d.
      variance: σ² of every class (the paper: 6, so p* = softmax(−‖x−μ‖²/12)).

    Returns:
      :class:`GaussianToy` with float32 ``x`` and ``p_star``.

    Example:
      >>> import jax
      >>> from ldjax.data import gaussian_toy
      >>> toy = gaussian_toy(key=jax.random.key(0), n=10)
      >>> toy.x.shape, toy.p_star.shape, toy.means.shape
      ((10, 30), (10, 3), (3, 30))
    """
    if n < 1 or num_classes < 2 or dim < 1:
        raise ValueError(
            f"need n >= 1, num_classes >= 2, dim >= 1; got n={n}, num_classes={num_classes}, dim={dim}"
        )
    k_mean, k_y, k_x = jax.random.split(key, 3)
    means = jax.random.randint(k_mean, (num_classes, dim), -1, 2).astype(jnp.float32)
    y = jax.random.randint(k_y, (n,), 0, num_classes).astype(jnp.int32)
    x = means[y] + jnp.sqrt(variance) * jax.random.normal(k_x, (n, dim), jnp.float32)
    return GaussianToy(x=x, y=y, p_star=gaussian_p_star(x, means, variance), means=means)


def split_toy(toy: GaussianToy, fractions: tuple[float, float] = (0.05, 0.05)) -> Split:
    """Split in order into train / validation / test (the rest); the paper uses 5% / 5% / 90%.

    Example:
      >>> import jax
      >>> from ldjax.data import gaussian_toy, split_toy
      >>> s = split_toy(gaussian_toy(key=jax.random.key(0), n=100))
      >>> s.train.x.shape[0], s.val.x.shape[0], s.test.x.shape[0]
      (5, 5, 90)
    """
    n = toy.x.shape[0]
    n_train, n_val = round(fractions[0] * n), round(fractions[1] * n)
    if n_train < 1 or n_val < 1 or n_train + n_val >= n:
        raise ValueError(f"fractions {fractions} leave an empty split of n={n} samples")

    def part(lo: int, hi: int) -> GaussianToy:
        return GaussianToy(x=toy.x[lo:hi], y=toy.y[lo:hi], p_star=toy.p_star[lo:hi], means=toy.means)

    return Split(part(0, n_train), part(n_train, n_train + n_val), part(n_train + n_val, n))


def symmetric_label_noise(
    labels: Int[ArrayLike, " n"], num_classes: int, rate: float, *, key: jax.Array
) -> tuple[Int[Array, " n"], Array]:
    """Flip exactly ``round(rate * n)`` labels, each to a uniformly drawn DIFFERENT class.

    Unlike redrawing labels uniformly (which keeps the true label a 1/k of the time), every flipped
    label really changes.

    Args:
      labels: ``int [n]`` in ``[0, num_classes)``.
      num_classes: k >= 2.
      rate: fraction of labels to flip, in ``[0, 1]``.
      key: PRNG key.

    Returns:
      ``(noisy_labels int32 [n], flipped bool [n])``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ldjax.data import symmetric_label_noise
      >>> noisy, flipped = symmetric_label_noise(jnp.zeros(10, jnp.int32), 3, 0.3, key=jax.random.key(0))
      >>> int(flipped.sum()), bool(jnp.all((noisy != 0) == flipped))
      (3, True)
    """
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be in [0, 1], got {rate}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2 to flip labels, got {num_classes}")
    labels = jnp.asarray(labels).astype(jnp.int32)
    if labels.ndim != 1:
        raise ValueError(f"labels must be [n], got shape {labels.shape}")
    n = labels.shape[0]
    m = round(rate * n)
    k_pick, k_shift = jax.random.split(key)
    chosen = jax.random.permutation(k_pick, n)[:m]
    flipped = jnp.zeros(n, bool).at[chosen].set(True)
    shift = jax.random.randint(k_shift, (n,), 1, num_classes)  # 1..k-1: never the same class
    noisy = jnp.where(flipped, (labels + shift) % num_classes, labels)
    return noisy.astype(jnp.int32), flipped

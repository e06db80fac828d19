"""The built-in demonstration: one SGD step on a real handwritten "4", seen through A·K·G.

Set-up: an MLP 64-64-64-10 with tanh hidden layers (a plain ``apply_fn``, no framework; weights
N(0, 1/fan_in), zero biases) is trained with plain SGD (learning rate 0.1, batch 32, 15 epochs) on 1,000 of
scikit-learn's bundled 1,797 real 8x8 digits (no download, pixels in [0, 1]); the other 797 are the probes.
Then ONE plain-SGD update of η = 0.01 is taken on the training 4 the model finds hardest (the lowest
log π(4), so the largest force G), and for every held-out digit the predicted change ``−η·A·K·G`` of log π
(:func:`ldjax.one_step_fn`) is compared with the actual change after the real update. The residual's order
in η is measured by a log-log fit over η = 0.001 … 0.016 on 200 probes in float64, which must be 2.

The demo reproduces no paper figure: its rows are checks of the decomposition (``demo.correlation``,
``demo.residual_slope``, ``demo.fours_gain``); the paper's MNIST claims are in
:mod:`ldjax._src.experiments.mnist_force`.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array
from jaxtyping import Float
from jaxtyping import Int

import ldjax
import ldjax.data
from ldjax._src.experiments import claims
from ldjax._src.experiments import common
from ldjax._src.training import epoch_batches
from ldjax._src.training import train


@dataclasses.dataclass(frozen=True)
class Config:
    """Settings of the demo (seconds on a laptop CPU)."""

    seed: int = 0
    n_train: int = 1000
    hidden: int = 64
    epochs: int = 15
    batch_size: int = 32
    train_learning_rate: float = 0.1
    step_learning_rate: float = 0.01
    update_class: int = 4
    probe_classes: tuple[int, ...] = (4, 9, 0)
    slope_learning_rates: tuple[float, ...] = (0.001, 0.002, 0.004, 0.008, 0.016)


FULL = Config()

#: The tiny run shared by the notebook under ``LDJAX_NOTEBOOK_TINY``.
TINY = Config(epochs=2, n_train=300)


def mlp_init(key: jax.Array, sizes: tuple[int, ...]) -> dict[str, dict[str, jax.Array]]:
    params = {}
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        key, sub = jax.random.split(key)
        params[f"dense{i}"] = {
            "kernel": jax.random.normal(sub, (fan_in, fan_out)) / np.sqrt(fan_in),
            "bias": jnp.zeros(fan_out),
        }
    return params


def mlp_apply(params: dict[str, Any], x: jax.Array) -> jax.Array:
    """One example ``[64] -> [10]`` logits: tanh hidden layers, linear read-out."""
    layers = sorted(params, key=lambda name: int(name.removeprefix("dense")))
    for name in layers[:-1]:
        x = jnp.tanh(x @ params[name]["kernel"] + params[name]["bias"])
    return x @ params[layers[-1]]["kernel"] + params[layers[-1]]["bias"]


class DigitSplit(NamedTuple):
    """The demo's data: flattened 8x8 digits in [0, 1], a training part and held-out probes.

    Attributes:
      x_train: ``[n, 64]``.
      y_train: ``[n]``.
      x_probe: ``[n_p, 64]``.
      y_probe: ``[n_p]``.
      train_index: the rows of the digits data set drawn for training ``[n]``.
      name: the data set's name.
    """

    x_train: Float[Array, "n 64"]
    y_train: Int[Array, " n"]
    x_probe: Float[Array, "n_p 64"]
    y_probe: Int[Array, " n_p"]
    train_index: Int[Array, " n"]
    name: str


def split_digits(n_train: int, key: jax.Array) -> DigitSplit:
    """scikit-learn's 1,797 digits, flattened to ``[64]`` in [0, 1], split at random into train and probes."""
    data = ldjax.data.load_digits()
    x = jnp.asarray(data.x.reshape(len(data.x), -1), jnp.float32) / 255.0
    y = jnp.asarray(data.y, jnp.int32)
    perm = jax.random.permutation(key, len(x))
    train_idx, probe_idx = perm[:n_train], perm[n_train:]
    return DigitSplit(x[train_idx], y[train_idx], x[probe_idx], y[probe_idx], train_idx, data.name)


def fit(config: Config, data: DigitSplit, key_init: jax.Array, key_batches: jax.Array, *, progress: bool):
    """Train the MLP with plain SGD (:func:`ldjax.train`); returns the :class:`ldjax.TrainResult`."""
    params = mlp_init(key_init, (data.x_train.shape[1], config.hidden, config.hidden, 10))
    f = jax.vmap(mlp_apply, in_axes=(None, 0))

    def loss_fn(p, idx):
        return ldjax.losses.cross_entropy(f(p, data.x_train[idx]), data.y_train[idx])

    batches = epoch_batches(key_batches, config.n_train, config.batch_size, config.epochs)
    return train(
        loss_fn, params, optax.sgd(config.train_learning_rate), batches, progress=progress, desc="demo"
    )


def hardest_example(params: dict[str, Any], data: DigitSplit, label: int) -> int:
    """The training example of class ``label`` with the lowest log π(label): the largest force G."""
    log_probs = jax.nn.log_softmax(jax.vmap(mlp_apply, in_axes=(None, 0))(params, data.x_train))[:, label]
    return int(jnp.argmin(jnp.where(data.y_train == label, log_probs, jnp.inf)))


def residual_slope(
    params: dict[str, Any],
    x_o: Float[Array, "n_o 64"],
    x_u: Float[Array, "1 64"],
    y_u: Int[Array, " 1"],
    learning_rates: tuple[float, ...],
) -> tuple[list[float], float]:
    """‖actual − predicted‖ at each η (float64) and the slope of its log-log fit (2 for an O(η²) residual).

    One compiled step (:func:`ldjax.one_step_fn`) serves every η: the learning rate is an argument.
    """
    with jax.enable_x64(True):
        step = ldjax.one_step_fn(mlp_apply, ldjax.losses.cross_entropy, terms=False)
        p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
        xo64, xu64 = jnp.asarray(x_o, jnp.float64), jnp.asarray(x_u, jnp.float64)
        residuals = [
            float(jnp.linalg.norm(step(p64, xo64, xu64, y_u, learning_rate=lr).residual))
            for lr in learning_rates
        ]
    slope = float(np.polyfit(np.log(learning_rates), np.log(residuals), 1)[0])
    return residuals, slope


def run(config: Config, *, data_dir: str | None = None, progress: bool = True) -> dict[str, Any]:
    """Train the MLP, take one SGD step on the hardest 4, compare predicted and actual Δ log π, fit the η slope."""
    del data_dir  # the demo needs no files
    key_perm, key_init, key_batches = jax.random.split(jax.random.key(config.seed), 3)
    data = split_digits(config.n_train, key_perm)
    trained = fit(config, data, key_init, key_batches, progress=progress)
    params = trained.params
    x_probe, y_probe = data.x_probe, data.y_probe
    test_accuracy = float(
        jnp.mean(jnp.argmax(jax.vmap(mlp_apply, (None, 0))(params, x_probe), -1) == y_probe)
    )

    u = hardest_example(params, data, config.update_class)
    x_u, y_u = data.x_train[u : u + 1], data.y_train[u : u + 1]
    loss = ldjax.losses.cross_entropy
    step = ldjax.one_step_fn(mlp_apply, loss, terms=False)(
        params, x_probe, x_u, y_u, learning_rate=config.step_learning_rate
    )
    shown = [int(jnp.argmax(y_probe == c)) for c in config.probe_classes]
    terms = ldjax.one_step_fn(mlp_apply, loss)(
        params, x_probe[jnp.array(shown)], x_u, y_u, learning_rate=config.step_learning_rate
    )
    pred, act = np.asarray(step.predicted).ravel(), np.asarray(step.actual).ravel()
    correlation = float(np.corrcoef(pred, act)[0, 1])
    true_class_change = np.asarray(step.actual)[np.arange(len(y_probe)), np.asarray(y_probe)]
    by_class = [float(true_class_change[np.asarray(y_probe) == c].mean()) for c in range(10)]
    residuals, slope = residual_slope(params, x_probe[:200], x_u, y_u, config.slope_learning_rates)

    return {
        "dataset": f"{data.name}: {config.n_train} train / {len(y_probe)} held-out probes",
        "test_accuracy": test_accuracy,
        "update_index": int(data.train_index[u]),
        "update_label": int(y_u[0]),
        "probe_labels": np.asarray(y_probe),
        "correlation": correlation,
        "mean_true_class_change_by_class": by_class,
        "shown_probe_classes": list(config.probe_classes),
        "shown": common.shown_terms(terms),
        "predicted": np.asarray(step.predicted),
        "actual": np.asarray(step.actual),
        "step_learning_rate": config.step_learning_rate,
        "slope_learning_rates": list(config.slope_learning_rates),
        "residual_norms": residuals,
        "residual_slope": slope,
        "train_loss_first_last": [float(trained.losses[0]), float(trained.losses[-1])],
    }


def fidelity(results: dict[str, Any]) -> list[claims.Row]:
    """Three self-checks of the decomposition on one seed (no paper claim: the demo shows the tool)."""
    r = results
    fours = r["mean_true_class_change_by_class"][r["update_label"]]
    return [
        claims.check(
            "demo.correlation",
            "predicted −ηAKG vs actual Δ log π after one SGD step (all probes, all classes)",
            value=round(r["correlation"], 5),
            holds=r["correlation"] >= 0.99,
            criterion="Pearson r >= 0.99",
            note=f"η = {r['step_learning_rate']}; {len(r['probe_labels'])} probes",
        ),
        claims.check(
            "demo.residual_slope",
            "the residual actual − predicted is O(η²): slope of log ‖residual‖ against log η",
            value=round(r["residual_slope"], 3),
            holds=abs(r["residual_slope"] - 2) <= 0.2,
            criterion="|slope − 2| <= 0.2",
            note=f"float64, 200 probes, η in {r['slope_learning_rates']}",
        ),
        claims.check(
            "demo.fours_gain",
            f"one step on a {r['update_label']} raises log π({r['update_label']}) of held-out {r['update_label']}s "
            "on average",
            value=round(fours, 6),
            holds=fours > 0,
            criterion="mean actual Δ log π(label) over the held-out probes of that label > 0",
            note="the sign of one step on one example; the class-averaged version is mnist.four_raises_fours",
        ),
    ]


def plot(results: dict[str, Any], out_dir: Path) -> list[Path]:
    common.use_agg()
    import matplotlib.pyplot as plt

    shown = results["shown"]
    fig, axes = plt.subplots(2, 3, figsize=(12, 7.5), layout="constrained")
    for col, cls in enumerate(results["shown_probe_classes"]):
        ax = axes[0, col]
        pos = np.arange(10)
        ax.bar(pos - 0.2, np.asarray(shown["predicted"][col]), 0.4, label="predicted −ηAKG")
        ax.bar(pos + 0.2, np.asarray(shown["actual"][col]), 0.4, label="actual")
        ax.set_title(f"probe labelled {cls}: Δ log π")
        ax.set_xticks(pos)
        ax.axhline(0, color="k", lw=0.5)
        if col == 0:
            ax.legend(fontsize=8)
        kernel = np.asarray(shown["k"][col])
        scale = float(np.abs(kernel).max())
        image = axes[1, col].imshow(kernel, cmap="RdBu_r", vmin=-scale, vmax=scale)
        fig.colorbar(image, ax=axes[1, col], shrink=0.8)
        axes[1, col].set_title(f"K(x_o, x_u), probe {cls}")
        axes[1, col].set_xlabel("class at x_u")
        axes[1, col].set_ylabel("class at x_o")
    fig.suptitle(f"One SGD step on a {results['update_label']} — {results['dataset']}")
    paths = [common.save_figure(fig, out_dir, "demo_terms")]

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    pred, act = np.ravel(results["predicted"]), np.ravel(results["actual"])
    ax1.scatter(pred, act, s=3, alpha=0.4)
    lim = [min(pred.min(), act.min()), max(pred.max(), act.max())]
    ax1.plot(lim, lim, "k--", lw=0.8)
    ax1.set_xlabel("predicted Δ log π")
    ax1.set_ylabel("actual Δ log π")
    ax1.set_title(f"all probes × classes, r = {results['correlation']:.4f}")
    ax2.loglog(results["slope_learning_rates"], results["residual_norms"], "o-")
    ax2.set_xlabel("learning rate η")
    ax2.set_ylabel("‖actual − predicted‖")
    ax2.set_title(f"residual slope {results['residual_slope']:.2f} (expect 2)")
    paths.append(common.save_figure(fig, out_dir, "demo_scatter_slope"))
    return paths


def summary(results: dict[str, Any]) -> str:
    """Text table printed by ``ldjax reproduce demo``."""
    lines = [f"One SGD step (η = step learning rate) on a {results['update_label']}; {results['dataset']}"]
    shown = results["shown"]
    lines.append(f"G at x_u: {np.array2string(np.asarray(shown['g']), precision=3, suppress_small=True)}")
    for col, cls in enumerate(results["shown_probe_classes"]):
        lines.append(f"probe labelled {cls}:  class  predicted    actual")
        for c in range(10):
            p, a = shown["predicted"][col][c], shown["actual"][col][c]
            lines.append(f"                  {c}  {float(p):+.6f}  {float(a):+.6f}")
    lines.append(f"correlation over all probes: {results['correlation']:.5f}")
    lines.append(f"residual slope in η (float64): {results['residual_slope']:.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    return common.main(sys.modules[__name__], argv)


if __name__ == "__main__":
    raise SystemExit(main())

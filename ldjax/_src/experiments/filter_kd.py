"""Filter-KD vs one-hot training, label smoothing and early-stopped KD at 0%, 20%, 40% label noise.

Filter-KD (Ren, Guo & Sutherland, ICLR 2022): train a teacher with one-hot labels while keeping,
for every training example, an exponential moving average of its prediction,
``q ← 0.95·q + 0.05·softmax(z/τ)`` (once per epoch, recorded inside the compiled loop by
:func:`ldjax.train`); then train a student on ``q``. Because mislabelled examples first move
towards p* and are only later memorised (the zig-zag), the average keeps much of the early,
better supervision. Compared with OHT (the teacher itself), LS and ESKD (distilling the teacher
at its best-validation epoch) on

* the 3-class Gaussian toy (settings of :mod:`ldjax._src.experiments.gaussian_paths`, label noise
  on top of the toy's inherent noise), and
* noisy CIFAR-3 (settings of :mod:`ldjax._src.experiments.cifar3_paths`), when CIFAR-10 and
  CIFAR-10H are available (otherwise that part is skipped and ``dataset`` says so).

Test accuracy (against the clean / generating labels) and expected calibration error, mean ± std
over seeds, every model read at its epoch of best validation accuracy (noisy validation labels).

Quick settings (the defaults): toy 3 seeds; CIFAR-3 2 seeds, 300 training images, 20 epochs (Adam
1e-3, as in :mod:`~ldjax._src.experiments.cifar3_paths`); about 12-16 minutes on 2 busy CPU cores
(the toy part alone, ``--cifar false``: about 3 minutes). ``FULL``: toy 5 seeds, CIFAR-3 3 seeds, 2,000 training images,
ResNet 32-64-128, 100 epochs: about 30 minutes on one GPU.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import jax
import numpy as np

from ldjax._src import paths as paths_lib
from ldjax._src.data.errors import DataUnavailable
from ldjax._src.data.gaussian import symmetric_label_noise
from ldjax._src.experiments import cifar3_paths as c3
from ldjax._src.experiments import common
from ldjax._src.experiments import gaussian_paths as gp
from ldjax._src.experiments.fitting import Fit
from ldjax._src.experiments.fitting import probabilities

METHODS = ("OHT", "LS", "ESKD", "FilterKD")


@dataclasses.dataclass(frozen=True)
class Config:
    """Quick settings (defaults)."""

    seed: int = 0
    noises: tuple[float, ...] = (0.0, 0.2, 0.4)
    ema_decay: float = 0.95
    temperature: float = 1.0
    smoothing: float = 0.05
    toy_seeds: int = 3
    toy_n: int = 100_000
    toy_epochs: int = 100
    cifar: bool = True
    cifar_seeds: int = 2
    cifar_train_size: int = 300
    cifar_val_size: int = 200
    cifar_epochs: int = 20
    cifar_widths: tuple[int, ...] = (8, 16, 32)
    cifar_blocks: tuple[int, ...] = (1, 1, 1)
    cifar_learning_rate: float = 1e-3


FULL = Config(
    toy_seeds=5,
    cifar_seeds=3,
    cifar_train_size=2000,
    cifar_val_size=500,
    cifar_epochs=100,
    cifar_widths=(32, 64, 128),
    cifar_blocks=(2, 2, 2),
)


def _summary(values: list[float]) -> dict[str, Any]:
    a = np.asarray(values, float)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0, "values": a}


def toy_table(config: Config, *, progress: bool) -> dict[str, Any]:
    gcfg = dataclasses.replace(
        gp.Config(),
        n=config.toy_n,
        epochs=config.toy_epochs,
        smoothing=config.smoothing,
        temperature=config.temperature,
        ema_decay=config.ema_decay,
        methods=METHODS,
    )
    data = gp.make_data(gcfg)
    out: dict[str, Any] = {}
    for noise in common.progress(config.noises, desc="toy noise", enabled=progress):
        labels = data.train.y
        if noise > 0:
            labels, _ = symmetric_label_noise(
                labels, 3, noise, key=jax.random.key(1000 + int(round(noise * 100)))
            )
        per = {m: {"accuracy": [], "ece": []} for m in METHODS}
        for s in range(config.seed, config.seed + config.toy_seeds):
            res = gp.compare_methods(gcfg, data, labels, key=jax.random.key(s), methods=METHODS)
            for m in METHODS:
                per[m]["accuracy"].append(res[m]["accuracy"])
                per[m]["ece"].append(res[m]["ece"])
        out[f"{noise:g}"] = {
            m: {"accuracy": _summary(v["accuracy"]), "ece": _summary(v["ece"])} for m, v in per.items()
        }
    return out


def cifar_config(config: Config) -> c3.Config:
    """The CIFAR-3 settings of this comparison."""
    return dataclasses.replace(
        c3.Config(),
        train_size=config.cifar_train_size,
        val_size=config.cifar_val_size,
        epochs=config.cifar_epochs,
        widths=config.cifar_widths,
        blocks=config.cifar_blocks,
        learning_rate=config.cifar_learning_rate,
    )


def cifar_seed(
    config: Config, ccfg: c3.Config, tr: c3.Split, va: c3.Split, te: c3.Split, *, seed: int
) -> dict[str, dict[str, float]]:
    """Teacher, LS, ESKD and Filter-KD from one shared initialisation and data order: test accuracy, ECE."""
    k = len(ccfg.classes)
    k_init, k_batches = jax.random.split(jax.random.key(seed))
    apply_fn, params0 = c3.make_resnet(ccfg, k, key=k_init)
    onehot = np.eye(k)[tr.y]

    def train_on(targets: np.ndarray, temperature: float = 1.0) -> Fit:
        return c3.train_images(
            ccfg,
            apply_fn,
            params0,
            tr,
            targets,
            va,
            key=k_batches,
            records_per_epoch=1,
            temperature=temperature,
        )

    teacher = train_on(onehot, config.temperature)
    runs = {
        "OHT": teacher,
        "LS": train_on((1 - config.smoothing) * onehot + config.smoothing / k),
        "ESKD": train_on(teacher.train_probs[teacher.best]),
        "FilterKD": train_on(
            np.asarray(paths_lib.filter_targets(teacher.train_probs, decay=config.ema_decay))
        ),
    }
    out = {}
    for m, r in runs.items():
        probs = probabilities(apply_fn, r.best_params, te.x)
        out[m] = {
            "accuracy": float(np.mean(np.argmax(probs, -1) == te.y_true)),
            "ece": float(paths_lib.expected_calibration_error(probs, te.y_true)),
        }
    return out


def cifar_table(config: Config, *, data_dir: str | None, progress: bool) -> tuple[dict[str, Any], str]:
    """Test accuracy and ECE of every method at every noise level on noisy CIFAR-3, over seeds."""
    ccfg = cifar_config(config)
    out: dict[str, Any] = {}
    name = ""
    for noise in common.progress(config.noises, desc="cifar3 noise", enabled=progress):
        tr, va, te, name = c3.make_splits(ccfg, data_dir, noise=noise)
        per = {m: {"accuracy": [], "ece": []} for m in METHODS}
        for s in range(config.seed, config.seed + config.cifar_seeds):
            res = cifar_seed(config, ccfg, tr, va, te, seed=s)
            for m in METHODS:
                per[m]["accuracy"].append(res[m]["accuracy"])
                per[m]["ece"].append(res[m]["ece"])
        out[f"{noise:g}"] = {
            m: {"accuracy": _summary(v["accuracy"]), "ece": _summary(v["ece"])} for m, v in per.items()
        }
    return out, name


def run(config: Config, *, data_dir: str | None = None, progress: bool = True) -> dict[str, Any]:
    results: dict[str, Any] = {"methods": list(METHODS), "noises": list(config.noises)}
    results["toy"] = toy_table(config, progress=progress)
    dataset = (
        f"synthetic 3-class Gaussian toy (d=30, variance 6, {int(0.05 * config.toy_n)} training samples)"
    )
    results["cifar3"] = None
    if config.cifar:
        try:
            results["cifar3"], name = cifar_table(config, data_dir=data_dir, progress=progress)
            dataset += f"; {name}, {config.cifar_train_size} train / {config.cifar_val_size} val"
        except DataUnavailable as err:
            dataset += f"; CIFAR-3 part skipped ({err})"
    results["dataset"] = dataset
    return results


def plot(results: dict[str, Any], out_dir: Path) -> list[Path]:
    common.use_agg()
    import matplotlib.pyplot as plt

    parts = [("toy", "Gaussian toy")] + ([("cifar3", "noisy CIFAR-3")] if results.get("cifar3") else [])
    fig, axes = plt.subplots(2, len(parts), figsize=(5.5 * len(parts), 7), squeeze=False)
    noises = results["noises"]
    for col, (key, title) in enumerate(parts):
        for row, metric in enumerate(("accuracy", "ece")):
            ax = axes[row, col]
            for i, m in enumerate(results["methods"]):
                mean = [results[key][f"{nz:g}"][m][metric]["mean"] for nz in noises]
                std = [results[key][f"{nz:g}"][m][metric]["std"] for nz in noises]
                ax.errorbar(
                    np.asarray(noises) + 0.004 * (i - 1.5), mean, yerr=std, marker="o", capsize=3, label=m
                )
            ax.set_xlabel("label noise")
            ax.set_ylabel(f"test {metric}")
            ax.set_title(title)
            ax.legend(fontsize=7)
    out = [common.save_figure(fig, out_dir, "filterkd_noise")]
    plt.close(fig)
    return out


def fidelity(results: dict[str, Any]) -> list[common.Fidelity]:
    rows = []
    for key, title in (("toy", "Gaussian toy"), ("cifar3", "CIFAR-3")):
        table = results.get(key)
        if not table:
            continue
        for nz in results["noises"]:
            row = table[f"{nz:g}"]
            fkd, oht = row["FilterKD"]["accuracy"]["mean"], row["OHT"]["accuracy"]["mean"]
            eskd = row["ESKD"]["accuracy"]["mean"]
            seeds = len(row["OHT"]["accuracy"]["values"])
            rows.append(
                common.Fidelity(
                    f"{title}, noise {nz:.0%}: Filter-KD test accuracy >= OHT",
                    "Filter-KD best (paper)",
                    f"FilterKD {fkd:.3f} vs OHT {oht:.3f}, ESKD {eskd:.3f}",
                    fkd >= oht,
                    f"mean over {seeds} seeds",
                )
            )
            fe, oe = row["FilterKD"]["ece"]["mean"], row["OHT"]["ece"]["mean"]
            rows.append(
                common.Fidelity(
                    f"{title}, noise {nz:.0%}: Filter-KD calibration error <= OHT",
                    "lower ECE (paper)",
                    f"ECE FilterKD {fe:.3f} vs OHT {oe:.3f}",
                    fe <= oe,
                    f"15-bin top-label ECE, mean over {seeds} seeds",
                )
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    return common.main(sys.modules[__name__], argv)

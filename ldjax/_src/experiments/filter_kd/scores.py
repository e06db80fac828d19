"""The comparison of :mod:`ldjax._src.experiments.filter_kd`: every method's test accuracy and ECE per noise
level (each distillation method at the τ of best validation accuracy), and how far the teachers memorised."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ldjax._src import paths as paths_lib
from ldjax._src.experiments.cifar3_paths.data import Split
from ldjax._src.experiments.cifar3_paths.data import Splits
from ldjax._src.experiments.cifar3_paths.data import make_splits
from ldjax._src.experiments.filter_kd.config import Config
from ldjax._src.experiments.filter_kd.config import data_config
from ldjax._src.experiments.filter_kd.phases import Phases
from ldjax._src.experiments.filter_kd.phases import train_all
from ldjax._src.experiments.fitting import member
from ldjax._src.experiments.fitting import predict_fn
from ldjax._src.typing import Params


def memorised(predict: Callable, params: Params, train: Split) -> float:
    """Fraction of the flipped training examples predicted as their (wrong) label: how far the
    teacher has memorised the noise (``nan`` without noise)."""
    flipped = np.asarray(train.flipped)
    if not flipped.any():
        return float("nan")
    probs = predict(params, train.x[flipped])
    return float(np.mean(np.argmax(probs, -1) == train.y[flipped]))


def score(predict: Callable, params: Params, split: Splits) -> tuple[float, float]:
    """Test accuracy and ECE (clean test labels) of one member."""
    probs = predict(params, split.test.x)
    return (
        float(np.mean(np.argmax(probs, -1) == split.test.y_true)),
        float(paths_lib.expected_calibration_error(probs, split.test.y_true)),
    )


def scores(predict: Callable, params: Params, members: list[int], split: Splits) -> dict[str, np.ndarray]:
    """Test accuracy and ECE ``[S]`` of the given members of a stacked ``params``."""
    pairs = [score(predict, member(params, m), split) for m in members]
    return {"accuracy": np.array([a for a, _ in pairs]), "ece": np.array([e for _, e in pairs])}


def noise_row(
    config: Config, phases: Phases, predict: Callable, split: Splits, noise: float, num_seeds: int
) -> dict[str, Any]:
    """Every method's test accuracy and ECE at one noise level; each distillation method at the τ of
    best mean validation accuracy, with every τ under ``by_tau``."""
    teachers = phases.teachers
    members_t = [phases.pairs.index((noise, i)) for i in range(num_seeds)]
    row: dict[str, Any] = {
        "OHT-ES": scores(predict, teachers.best_params, members_t, split),
        "OHT-final": scores(predict, teachers.params, members_t, split),
    }
    for name, run_ in (("ESKD", phases.eskd), ("FilterKD", phases.filterkd)):
        by_tau = {}
        for tau in config.temperatures:
            ms = [phases.students.index((noise, i, tau)) for i in range(num_seeds)]
            val = np.array([run_.val_accuracy[run_.best[m], m] for m in ms])
            by_tau[f"{tau:g}"] = {**scores(predict, run_.best_params, ms, split), "val": val}
        chosen = max(by_tau, key=lambda t: float(np.mean(by_tau[t]["val"])))
        row[name] = {**by_tau[chosen], "tau": float(chosen), "by_tau": by_tau}
    row["teacher_best_epoch"] = np.array([int(teachers.best[m]) for m in members_t])
    row["teacher_memorised"] = {
        when: np.array([memorised(predict, member(params, m), split.train) for m in members_t])
        for when, params in (("best", teachers.best_params), ("final", teachers.params))
    }
    return row


def compare(config: Config, *, data_dir: str | None, progress: bool) -> dict[str, Any]:
    """Teachers, ESKD and Filter-KD students for every noise, seed and τ; test accuracy and ECE of each."""
    seeds = list(range(config.seed, config.seed + config.num_seeds))
    splits = {noise: make_splits(data_config(config), data_dir, noise=noise) for noise in config.noises}
    phases = train_all(config, splits, seeds, progress=progress)
    predict = predict_fn(phases.apply_fn, chunk=100)
    first = splits[config.noises[0]]
    return {
        "seeds": seeds,
        "temperatures": list(config.temperatures),
        "table": {
            f"{nz:g}": noise_row(config, phases, predict, splits[nz], nz, len(seeds)) for nz in config.noises
        },
        "dataset": f"{first.name}; {first.train.x.shape[0]} train / {first.val.x.shape[0]} val / "
        f"{first.test.x.shape[0]} test",
        "data_files": first.files,
    }

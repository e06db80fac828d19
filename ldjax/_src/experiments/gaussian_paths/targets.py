"""Which targets generalise (the paper's Hypothesis 1): every method and noisy target trained from each
seed's shared initialisation and data order, scored on the test set, with its target's distance to p*."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from ldjax._src import paths as paths_lib
from ldjax._src.data.gaussian import Split
from ldjax._src.experiments.fitting import Fit
from ldjax._src.experiments.fitting import initial_members
from ldjax._src.experiments.fitting import member
from ldjax._src.experiments.fitting import predict_fn
from ldjax._src.experiments.gaussian_paths.claims import PAPER_ACCURACY
from ldjax._src.experiments.gaussian_paths.claims import PAPER_DISTANCE
from ldjax._src.experiments.gaussian_paths.toy import Config
from ldjax._src.experiments.gaussian_paths.toy import SeedData
from ldjax._src.experiments.gaussian_paths.toy import mix_name
from ldjax._src.experiments.gaussian_paths.training import make_mlp
from ldjax._src.experiments.gaussian_paths.training import train_members
from ldjax._src.typing import Params


def student_targets(config: Config, data: SeedData, teacher: Fit, m: int) -> dict[str, jax.Array]:
    """The targets ``[n, k]`` of every method but OHT, for the seed whose teacher is member ``m``."""
    k = data.split.train.p_star.shape[1]
    onehot = jax.nn.one_hot(data.labels, k)
    p_star = data.split.train.p_star
    tau, b = config.temperature, int(teacher.best[m])
    logits = teacher.train_logits[:, m]
    out = {
        "LS": (1 - config.smoothing) * onehot + config.smoothing / k,
        "GT": p_star,
        "KD": jax.nn.softmax(logits[-1] / tau, -1),
        "ESKD": jax.nn.softmax(logits[b] / tau, -1),
        # the table as saved at the teacher's best-validation epoch: visits of epochs 1..b
        "FilterKD": paths_lib.filter_targets(
            jax.nn.softmax(teacher.visits[:b, m] / tau, -1), decay=config.ema_decay, seen=teacher.seen[:b, m]
        ),
    }
    for eta in config.mixes:
        out[mix_name(eta)] = eta * onehot + (1 - eta) * p_star
    return out


def rms_distance(targets: np.ndarray, p_star: np.ndarray) -> float:
    """Root-mean-square distance of targets to p* over examples: ``‖T − P*‖_F / √n``."""
    diff = np.asarray(targets, np.float64) - np.asarray(p_star, np.float64)
    return float(np.sqrt(np.mean(np.sum(diff**2, axis=-1))))


def score(predict: Callable, params: Params, split: Split) -> dict[str, float]:
    """Test accuracy and ECE of one member."""
    probs = predict(params, split.test.x)
    return {
        "accuracy": float(np.mean(np.argmax(probs, -1) == np.asarray(split.test.y))),
        "ece": float(paths_lib.expected_calibration_error(probs, split.test.y)),
    }


def compare_targets(
    config: Config, datas: list[SeedData], seeds: list[int], *, progress: bool
) -> tuple[dict[str, Any], Fit]:
    """Every method and noisy target on every seed: per-seed test accuracy, ECE and target distance.

    Returns ``({name: {"accuracy": [S], "ece": [S], "distance": [S], "best_epoch": [S]}}, teachers)``.
    """
    split0 = datas[0].split
    dim, k = split0.train.x.shape[1], split0.train.p_star.shape[1]
    apply_fn, params, keys = initial_members(functools.partial(make_mlp, dim, config.hidden, k), seeds)
    onehots = [jax.nn.one_hot(d.labels, k) for d in datas]
    teachers = train_members(
        config,
        apply_fn,
        params,
        keys,
        datas,
        onehots,
        progress=progress,
        desc="OHT",
        record_train=True,
        record_visits=True,
        keep_params=True,
    )
    names = [m for m in config.methods if m != "OHT"] + [mix_name(e) for e in config.mixes]
    index, targets_all, owners = [], [], []
    for i, data in enumerate(datas):
        targets = student_targets(config, data, teachers, i)
        for name in names:
            index.append((name, i))
            targets_all.append(targets[name])
            owners.append(i)
    students = train_members(
        config,
        apply_fn,
        [params[i] for i in owners],
        [keys[i] for i in owners],
        [datas[i] for i in owners],
        targets_all,
        progress=progress,
        desc="students",
        keep_params=True,
    )
    predict = predict_fn(apply_fn)
    rows: list[tuple[str, Params, jax.Array, int, SeedData]] = []
    if "OHT" in config.methods or config.mixes:
        rows += [
            ("OHT", member(teachers.best_params, i), onehots[i], int(teachers.best[i]), d)
            for i, d in enumerate(datas)
        ]
    rows += [
        (name, member(students.best_params, j), targets_all[j], int(students.best[j]), datas[i])
        for j, (name, i) in enumerate(index)
    ]
    return score_rows(predict, rows), teachers


def score_rows(predict: Callable, rows: list[tuple[str, Params, jax.Array, int, SeedData]]) -> dict[str, Any]:
    """Per method (in seed order): test accuracy, ECE, RMS target distance to p* and best epoch ``[S]``."""
    out: dict[str, dict[str, list]] = {}
    for name, params, targets, best, data in rows:
        row = out.setdefault(name, {"accuracy": [], "ece": [], "distance": [], "best_epoch": []})
        res = score(predict, params, data.split)
        row["accuracy"].append(res["accuracy"])
        row["ece"].append(res["ece"])
        row["distance"].append(rms_distance(targets, data.split.train.p_star))
        row["best_epoch"].append(best)
    return {name: {key: np.asarray(v) for key, v in row.items()} for name, row in out.items()}


def method_table(per_method: dict[str, Any], methods: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Mean and spread over seeds of every method's test accuracy, ECE and target distance, with the
    authors' numbers (information, not a claim)."""
    table = {}
    for m in methods:
        row = per_method[m]
        accs, eces, dist = row["accuracy"], row["ece"], row["distance"]
        table[m] = {
            "accuracy_mean": float(accs.mean()),
            "accuracy_std": float(accs.std(ddof=1)) if len(accs) > 1 else 0.0,
            "ece_mean": float(eces.mean()),
            "ece_std": float(eces.std(ddof=1)) if len(eces) > 1 else 0.0,
            "distance_mean": float(dist.mean()),
            "accuracy": accs,
            "ece": eces,
            "distance": dist,
            "best_epoch": row["best_epoch"],
            "paper": PAPER_ACCURACY.get(m),
            "paper_distance": PAPER_DISTANCE.get(m),
        }
    return table

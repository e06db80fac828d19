"""What :mod:`ldjax._src.experiments.cifar3_paths` reads off a run: each seed's zig-zag, early-stop and pull
statistics, the test scores, and the paths and images behind the figures."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ldjax._src import paths as paths_lib
from ldjax._src.experiments.cifar3_paths.config import Config
from ldjax._src.experiments.cifar3_paths.data import Split
from ldjax._src.experiments.cifar3_paths.data import Splits
from ldjax._src.experiments.fitting import Fit
from ldjax._src.experiments.fitting import member
from ldjax._src.typing import Params


def pull_summary(
    config: Config, pull: Callable, params_r: Params, tr: Split, probs_r: np.ndarray, o: int
) -> dict[str, Any]:
    """The training examples pulling flipped example ``o`` hardest towards (and away from) p*."""
    dpi = pull(params_r, jnp.asarray(tr.x[o]), jnp.asarray(tr.x), jnp.asarray(tr.y))
    direction = tr.p_star[o] - probs_r[o]
    direction = direction / max(np.linalg.norm(direction), 1e-12)
    towards = dpi @ direction
    self_pull = float(towards[o])
    towards[o] = 0.0  # the example itself pulls towards its own (wrong) label; listed separately
    top = np.argsort(-towards)[: config.num_pull]
    away = np.argsort(towards)[: config.num_pull // 2]
    return {
        "observed": o,
        "observed_id": int(tr.index[o]),
        "observed_label": int(tr.y[o]),
        "observed_true": int(tr.y_true[o]),
        "observed_p_star": tr.p_star[o],
        "observed_prediction": probs_r[o],
        "self_pull": self_pull,
        "total_towards_p_star": float(towards.sum()),
        "top": top,
        "top_pull": towards[top],
        "away": away,
        "away_pull": towards[away],
        "top_label_is_p_star_argmax_fraction": float(np.mean(tr.y[top] == np.argmax(tr.p_star[o]))),
        "top_same_true_class_fraction": float(np.mean(tr.y_true[top] == tr.y_true[o])),
        "away_label_is_its_label_fraction": float(np.mean(tr.y[away] == tr.y[o])),
    }


def observed_examples(zz: paths_lib.ZigZag, flipped: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` flipped examples with the clearest zig-zag (largest smaller move), zig-zagging ones first."""
    f = np.flatnonzero(flipped)
    score = np.minimum(np.asarray(zz.to_p_star), np.asarray(zz.to_label))[f]
    order = np.lexsort((-score, ~np.asarray(zz.zigzag)[f]))
    return f[order[:count]]


def seed_summary(config: Config, run_: Fit, splits: Splits, m: int, pull: Callable) -> dict[str, Any]:
    """Zig-zag, early-stop and pull statistics of seed member ``m``."""
    tr = splits.train
    k = len(config.classes)
    probs = np.asarray(jax.nn.softmax(run_.train_logits[:, m], -1))  # [R, n, k]
    zz = paths_lib.zigzag(probs, tr.p_star, tr.y, margin=config.zigzag_margin)
    zig = np.asarray(zz.zigzag)
    label_gap = np.linalg.norm(np.eye(k)[tr.y] - tr.p_star, axis=-1)
    best = int(run_.best[m])
    es_gap = np.linalg.norm(probs[best] - tr.p_star, axis=-1)
    flipped, clean = tr.flipped, ~tr.flipped
    pulls = []
    for o in observed_examples(zz, flipped, config.num_observed):
        r = int(zz.t_min[o])
        params_r = jax.tree.map(lambda a, r=r: a[r, m], run_.params_records)
        pulls.append({"record": r, **pull_summary(config, pull, params_r, tr, probs[r], int(o))})
    d_star = np.asarray(paths_lib.distances(probs, tr.p_star))
    return {
        "best_record": best,
        "zigzag_flipped": float(np.mean(zig[flipped])),
        "zigzag_clean": float(np.mean(zig[clean])),
        "early_stop_gain_flipped": float(np.mean((label_gap - es_gap)[flipped])),
        "pull_label_is_p_star_argmax": float(
            np.mean([p["top_label_is_p_star_argmax_fraction"] for p in pulls])
        ),
        "train_fit_final": float(np.mean(np.argmax(probs[-1], -1) == tr.y)),
        "flipped_turn_record": np.asarray(zz.t_min)[flipped],
        "flipped_mean_distance_p_star": d_star[:, flipped].mean(1),
        "clean_mean_distance_p_star": d_star[:, clean].mean(1),
        "pulls": pulls,
        "probs": probs,
        "zigzag": zz,
    }


def path_group(tr: Split, probs: np.ndarray, ids: np.ndarray) -> dict[str, Any]:
    """The paths of training examples ``ids`` with their CIFAR-10 test indices, p* and labels."""
    return {
        "ids": tr.index[ids],
        "paths": probs[:, ids],
        "p_star": tr.p_star[ids],
        "label": tr.y[ids],
        "true": tr.y_true[ids],
    }


def test_scores(predict: Callable, run_: Fit, test: Split) -> tuple[np.ndarray, np.ndarray]:
    """Test accuracy and ECE (clean labels) of every member at its best-validation record ``[S]``."""
    acc, ece = [], []
    for m in range(len(run_.best)):
        probs = predict(member(run_.best_params, m), test.x)
        acc.append(float(np.mean(np.argmax(probs, -1) == test.y_true)))
        ece.append(float(paths_lib.expected_calibration_error(probs, test.y_true)))
    return np.array(acc), np.array(ece)


def gallery(tr: Split, pulls: list[dict[str, Any]], rec_epochs: np.ndarray) -> list[dict[str, Any]]:
    """The images, IDs and labels of the observed examples and their largest pullers, for the figure."""
    out = []
    for p in pulls:
        extra = {
            f"{key}_{what}": getattr(tr, attr)[p[key]]
            for key in ("top", "away")
            for what, attr in (("ids", "index"), ("labels", "y"), ("images", "images"))
        }
        out.append(
            {
                **p,
                **extra,
                "observed_image": tr.images[p["observed"]],
                "epoch": float(rec_epochs[p["record"]]),
            }
        )
    return out

"""The MNIST force experiment: the tiny run shared with the notebook, the claims' counter-examples, the data rule."""

from __future__ import annotations

import copy
import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ldjax
from ldjax._src.experiments import mnist_force
from ldjax._src.experiments.mnist_force import analysis
from ldjax._src.experiments.mnist_force import claims as stats
from ldjax._src.experiments.mnist_force import data as mnist_data
from ldjax._src.experiments.mnist_force import training as mnist_training
from ldjax.data import DataUnavailable
from ldjax.experiments.mnist_force import TINY
from ldjax.experiments.mnist_force import Config
from ldjax.experiments.mnist_force import fidelity
from ldjax.experiments.mnist_force import main
from ldjax.experiments.mnist_force import run

from notebook_runner import notebook_fixture
from notebook_runner import replay_plot

REAL = bool(os.environ.get("LDJAX_DATA_DIR"))
IDS = [
    "mnist.nine_pulled_most",
    "mnist.four_raises_fours",
    "mnist.pull_accumulates",
    "mnist.one_step_correlation",
    "mnist.epoch_accumulation",
]


notebook = notebook_fixture("mnist_force")


@pytest.fixture(scope="module")
def small(notebook):
    """The experiment at TINY, run by its notebook (one run for the notebook and the smoke test)."""
    assert notebook["config"] == TINY and notebook["results"] is not None
    return notebook["results"]


def test_smoke_run_and_fidelity(small):
    r = small
    n, n_acc, seeds = r["n_probes"], r["n_accumulate"], TINY.seeds
    assert r["dataset"].startswith("MNIST train (official" if REAL else "scikit-learn digits 8x8 upsampled")
    assert n == TINY.n_probes and n_acc == TINY.n_accumulate and r["n_train"] == TINY.n_train
    assert r["seeds"] == [0, 1] and len(r["per_seed"]) == seeds and r["checkpoint_epochs"] == [2]
    assert all(f["path"] and len(f["sha256"]) == 64 for f in r["data_files"])
    for s in r["per_seed"]:
        assert np.asarray(s["force_map_towards_updating_class"]).shape == (10, 10)
        assert np.asarray(s["mean_distribution_by_epoch"]).shape == (TINY.epochs + 1, 10, 10)
        np.testing.assert_allclose(np.asarray(s["mean_distribution_by_epoch"]).sum(-1), 1.0, rtol=1e-5)
    for cp in r["checkpoints"]:
        assert cp["predicted"].shape == cp["actual"].shape == (n, 10)
        assert cp["shown"]["k"].shape == (3, 10, 10) and cp["shown"]["a"].shape == (3, 10, 10)
        # the shown probes are rows of the full probe set: their predictions agree (different code paths)
        shown = [int(np.flatnonzero(r["probe_labels"] == c)[0]) for c in r["probe_classes"]]
        np.testing.assert_allclose(cp["shown"]["predicted"], cp["predicted"][shown], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(cp["shown"]["actual"], cp["actual"][shown], rtol=1e-4, atol=1e-6)
        # predicted = −η A K G from the explicit terms
        explicit = ldjax.decomposition(
            jnp.asarray(cp["shown"]["a"]),
            jnp.asarray(cp["shown"]["k"])[:, None],
            jnp.asarray(cp["shown"]["g"])[None],
            TINY.step_learning_rate,
        )
        np.testing.assert_allclose(explicit, cp["shown"]["predicted"], rtol=1e-3, atol=1e-6)
    assert np.asarray(r["accumulation"]["true_class_change_predicted"]).shape == (TINY.epochs, n_acc)
    rows = fidelity(r)
    assert [row.id for row in rows] == IDS
    assert [row.kind for row in rows] == ["claim"] * 3 + ["check"] * 2
    assert all(row.seeds == seeds for row in rows[:3]) and all(isinstance(row.holds, bool) for row in rows)
    assert rows[3].holds and rows[4].holds  # the first-order prediction, even at this size


def test_main_writes_results_json(small, notebook, tmp_path, monkeypatch):
    seen = []

    def fake_run(config, *, data_dir=None, progress=True):
        seen.append((config, data_dir))
        return small

    monkeypatch.setattr(mnist_force, "run", fake_run)
    monkeypatch.setattr(mnist_force, "plot", replay_plot(notebook["out"]))  # the notebook drew them
    argv = ["--out", str(tmp_path), "--epochs", "2", "--seeds", "2", "--model", "lenet_relu"]
    assert main([*argv, "--no-progress", "--data-dir", str(tmp_path)]) == 0
    assert seen == [(dataclasses.replace(Config(), epochs=2, seeds=2, model="lenet_relu"), str(tmp_path))]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["dataset"] == small["dataset"] and [row["id"] for row in saved["fidelity"]] == IDS
    # plot(): (a) at the last checkpoint, (b), (c), (d) force map, accumulation, final heat map; PNG and PDF each
    assert len(saved["figures"]) == 6
    assert all(
        (tmp_path / name).exists() and (tmp_path / name).with_suffix(".pdf").exists()
        for name in saved["figures"]
    )


# ------------------------------------------------------------------------------ the claims can fail


def _with_maps(results, maps, distributions=None):
    """``results`` with each seed's force map (and, optionally, mean prediction per class) replaced."""
    out = copy.deepcopy(results)
    for s, seed in enumerate(out["per_seed"]):
        seed["force_map_towards_updating_class"] = maps[s]
        if distributions is not None:
            seed["mean_distribution_by_epoch"] = distributions[s]
    return out


def _rows(results):
    return {row.id: row for row in fidelity(results)}


def _nine_led_map(lead: float) -> np.ndarray:
    f = np.ones((10, 10))
    f[4, 9] = 1.0 + lead
    return f


def _nines_lean_on(cls: int, mass: float) -> np.ndarray:
    p = np.full((10, 10), 0.05)
    p[9, 9] = 0.5
    p[9, cls] = mass
    return np.stack([np.full((10, 10), 0.1), p])  # before training (uniform), after


def test_nine_pulled_most_is_missed_when_another_digit_leads(small):
    seeds = len(small["per_seed"])
    held = _rows(_with_maps(small, [_nine_led_map(0.5)] * seeds))["mnist.nine_pulled_most"]
    assert held.holds and held.value == pytest.approx(stats.pull_lead(_nine_led_map(0.5)))
    eight = np.ones((10, 10))
    eight[4, 8] = 1.5  # 8 is pulled most
    assert not _rows(_with_maps(small, [eight] * seeds))["mnist.nine_pulled_most"].holds
    # a tie (no margin) is missed too
    assert not _rows(_with_maps(small, [_nine_led_map(0.0)] * seeds))["mnist.nine_pulled_most"].holds
    assert stats.most_pulled(eight) == 8 and stats.most_pulled(_nine_led_map(0.5)) == 9


def test_four_raises_fours_is_missed_when_the_fours_are_pushed_down(small):
    seeds = len(small["per_seed"])
    down = np.ones((10, 10))
    down[4, 4] = -1.0
    assert _rows(_with_maps(small, [np.ones((10, 10))] * seeds))["mnist.four_raises_fours"].holds
    assert not _rows(_with_maps(small, [down] * seeds))["mnist.four_raises_fours"].holds


def test_pull_accumulates_is_missed_when_the_nines_lean_elsewhere(small):
    seeds = len(small["per_seed"])
    maps = [np.ones((10, 10))] * seeds
    on_four = _rows(_with_maps(small, maps, [_nines_lean_on(4, 0.2)] * seeds))["mnist.pull_accumulates"]
    assert on_four.holds and on_four.value == pytest.approx(4.0)
    on_seven = _with_maps(small, maps, [_nines_lean_on(7, 0.2)] * seeds)
    assert not _rows(on_seven)["mnist.pull_accumulates"].holds
    barely = _with_maps(small, maps, [_nines_lean_on(4, 0.06)] * seeds)  # 4 leads by 20%: inside the margin
    assert not _rows(barely)["mnist.pull_accumulates"].holds


def test_statistics_against_direct_formulas():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(10, 10))
    others = [c for c in range(10) if c not in (4, 9)]
    expected = (f[4, 9] - max(f[4, c] for c in others)) / np.mean(np.abs(f[4]))
    assert stats.pull_lead(f) == pytest.approx(expected)
    assert stats.self_pull(f) == pytest.approx(f[4, 4] / np.mean(np.abs(f[4])))
    p = rng.dirichlet(np.ones(10), size=10)
    assert stats.confusion_lead(p) == pytest.approx(p[9, 4] / max(p[9, c] for c in others))


# --------------------------------------------------------------------------------- the pieces


@pytest.mark.float64
@pytest.mark.float64
def test_class_force_map_is_the_mean_of_single_updates():
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    params = {"w1": jax.random.normal(k1, (6, 8)), "w2": jax.random.normal(k2, (8, 10))}
    f = lambda p, x: jnp.tanh(x @ p["w1"]) @ p["w2"]  # noqa: E731
    x = jax.random.normal(k3, (10, 3, 6))  # 3 examples of each of 10 classes
    x_o = x[0]
    got = jax.jit(lambda p: analysis.class_force_map(f, p, x_o, x, learning_rate=1e-3))(params)
    step = ldjax.one_step_fn(f, ldjax.losses.cross_entropy, terms=False)
    for c in (0, 4, 9):
        singles = [
            step(params, x_o, x[c, j : j + 1], jnp.array([c]), learning_rate=1e-3).predicted for j in range(3)
        ]
        np.testing.assert_allclose(got[c], np.mean(singles, axis=0), rtol=1e-10, atol=1e-14)
    maps = analysis.force_maps(np.asarray(got), np.arange(3) * 3)  # probes of classes 0, 3, 6
    np.testing.assert_allclose(maps["towards_updating_class"][4, 3], got[4, 1, 4])
    np.testing.assert_allclose(maps["true_class"][4, 6], got[4, 2, 6])
    assert np.isnan(maps["true_class"][4, 1])  # no probe of class 1


def test_schedule_is_pytorch_cosine_annealing_per_epoch():
    config = Config(learning_rate=0.1, final_learning_rate=1e-6, epochs=4)
    schedule = mnist_training.learning_rate_schedule(config, steps_per_epoch=3)
    got = [float(schedule(jnp.int32(step))) for step in range(12)]
    # torch.optim.lr_scheduler.CosineAnnealingLR(T_max=4, eta_min=1e-6), stepped once per epoch
    per_epoch = [1e-6 + (0.1 - 1e-6) * (1 + np.cos(np.pi * e / 4)) / 2 for e in range(4)]
    np.testing.assert_allclose(got, np.repeat(per_epoch, 3), rtol=1e-6)


def test_data_choice_and_config_errors(tmp_path, monkeypatch):
    # a configured data location without MNIST raises: no silent fallback to the digits
    with pytest.raises(DataUnavailable, match="no fallback to the scikit-learn digits"):
        mnist_data.load_data(Config(), str(tmp_path))
    monkeypatch.setenv("LDJAX_DATA_DIR", str(tmp_path))
    with pytest.raises(DataUnavailable, match="no fallback to the scikit-learn digits"):
        mnist_data.load_data(Config(), None)
    monkeypatch.delenv("LDJAX_DATA_DIR")
    monkeypatch.setenv("LDJAX_CACHE_DIR", str(tmp_path / "cache"))
    train, test, name = mnist_data.load_data(Config(), None)  # nothing configured: the digits, said so
    assert name == "scikit-learn digits 8x8 upsampled to 28x28 (offline fallback)"
    assert mnist_data.images(test.x[:2]).shape == (2, 28, 28, 1)
    with pytest.raises(DataUnavailable, match=r"MNIST train: none of"):
        mnist_data.load_data(Config(dataset="mnist"), str(tmp_path))
    with pytest.raises(ValueError, match=r"dataset must be 'auto', 'mnist' or 'digits', got 'cifar'"):
        run(Config(dataset="cifar"))
    with pytest.raises(ValueError, match=r"model must be one of lenet_tanh, lenet_relu, got 'vgg'"):
        run(Config(model="vgg"))
    with pytest.raises(ValueError, match=r"update_class must be a digit 0..9, got 10"):
        run(Config(update_class=10))
    with pytest.raises(ValueError, match=r"batch_size must be <= n_train=32, got 64"):
        run(Config(n_train=32))

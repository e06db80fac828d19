"""The MNIST force experiment: a small run shared by the smoke test and the phenomenon checks."""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ldjax
from ldjax._src.experiments import mnist_force
from ldjax.data import DataUnavailable
from ldjax.experiments.mnist_force import Config
from ldjax.experiments.mnist_force import fidelity
from ldjax.experiments.mnist_force import main
from ldjax.experiments.mnist_force import run

REAL = bool(os.environ.get("LDJAX_DATA_DIR"))
# Small enough for the CI budget; a larger training learning rate so that 2 epochs give a model that has learned.
SMALL = Config(
    dataset="mnist" if REAL else "digits",
    n_train=512,
    n_probes=300,
    n_accumulate=16,
    epochs=2,
    learning_rate=0.01,
    force_map_updates=2,
    checkpoint_fractions=(0.5, 1.0),
)


@pytest.fixture(scope="module")
def small():
    return run(SMALL, progress=False)


def test_smoke_run_and_fidelity(small):
    r = small
    n, n_acc = r["n_probes"], r["n_accumulate"]
    assert r["dataset"].startswith("MNIST train (official" if REAL else "scikit-learn digits 8x8 upsampled")
    assert n == 300 and n_acc == 16 and r["n_train"] == 512
    assert [cp["epoch"] for cp in r["checkpoints"]] == [1, 2]
    for cp in r["checkpoints"]:
        assert cp["predicted"].shape == cp["actual"].shape == (n, 10)
        assert cp["shown"]["k"].shape == (3, 10, 10) and cp["shown"]["a"].shape == (3, 10, 10)
        assert np.asarray(cp["force_map_true_class"]).shape == (10, 10)
        # the shown probes are rows of the full probe set: their predictions agree (different code paths)
        shown = [int(np.flatnonzero(r["probe_labels"] == c)[0]) for c in r["probe_classes"]]
        np.testing.assert_allclose(cp["shown"]["predicted"], cp["predicted"][shown], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(cp["shown"]["actual"], cp["actual"][shown], rtol=1e-4, atol=1e-6)
        # predicted = −η A K G from the explicit terms
        explicit = ldjax.decomposition(
            jnp.asarray(cp["shown"]["a"]),
            jnp.asarray(cp["shown"]["k"])[:, None],
            cp["shown"]["g"][None],
            1e-3,
        )
        np.testing.assert_allclose(explicit, cp["shown"]["predicted"], rtol=1e-3, atol=1e-6)
    acc = r["accumulation"]
    assert np.asarray(acc["true_class_change_predicted"]).shape == (2, n_acc)
    np.testing.assert_allclose(np.asarray(r["final_mean_distribution_by_class"]).sum(axis=1), 1.0, rtol=1e-5)
    rows = fidelity(r)
    assert len(rows) == 4 and all(isinstance(row.holds, bool) for row in rows)


def test_main_writes_results_json(small, tmp_path, monkeypatch):
    seen = []

    def fake_run(config, *, data_dir=None, progress=True):
        seen.append((config, data_dir))
        return small

    monkeypatch.setattr(mnist_force, "run", fake_run)
    argv = ["--out", str(tmp_path), "--epochs", "2", "--n-probes", "300", "--checkpoint-fractions", "0.5,1.0"]
    assert main([*argv, "--no-progress", "--data-dir", str(tmp_path)]) == 0
    assert seen == [
        (
            dataclasses.replace(Config(), epochs=2, n_probes=300, checkpoint_fractions=(0.5, 1.0)),
            str(tmp_path),
        )
    ]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["dataset"] == small["dataset"] and len(saved["fidelity"]) == 4
    # plot(): (a) per checkpoint, (b), (c), (d), accumulation, final heat map; PNG and PDF each
    assert len(saved["figures"]) == 2 + 5
    assert all(
        (tmp_path / name).exists() and (tmp_path / name).with_suffix(".pdf").exists()
        for name in saved["figures"]
    )


@pytest.mark.skipif(not REAL, reason="LDJAX_DATA_DIR is not set (CI sets it to ../shared/data)")
def test_phenomenon_on_real_mnist(small):
    assert "MNIST" in small["dataset"]
    for cp in small["checkpoints"]:
        assert cp["correlation"] >= 0.99, cp["correlation"]
        assert cp["mean_true_class_change_actual"][4] > 0  # after learning a 4, held-out 4s gain log π(4)
    assert min(small["accumulation"]["epoch_correlation"]) >= 0.9


@pytest.mark.float64
def test_class_force_map_is_the_mean_of_single_updates():
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    params = {"w1": jax.random.normal(k1, (6, 8)), "w2": jax.random.normal(k2, (8, 10))}
    f = lambda p, x: jnp.tanh(x @ p["w1"]) @ p["w2"]  # noqa: E731
    x = jax.random.normal(k3, (10, 3, 6))  # 3 examples of each of 10 classes
    x_o = x[0]
    got = jax.jit(lambda p: mnist_force.class_force_map(f, p, x_o, x, learning_rate=1e-3))(params)
    loss = ldjax.losses.cross_entropy
    single = jax.jit(
        lambda x_u, y_u: (
            ldjax.one_step(f, params, x_o, x_u, y_u, loss=loss, learning_rate=1e-3, terms=False).predicted
        )
    )
    for c in (0, 4, 9):
        singles = [single(x[c, j : j + 1], jnp.array([c])) for j in range(3)]
        np.testing.assert_allclose(got[c], np.mean(singles, axis=0), rtol=1e-10, atol=1e-14)


def test_data_choice_and_config_errors(tmp_path):
    train, test, name = mnist_force.load_data(Config(), str(tmp_path))  # empty directory: digits fallback
    assert name == "scikit-learn digits 8x8 upsampled to 28x28 (offline fallback)"
    assert mnist_force._images(test.x[:2]).shape == (2, 28, 28, 1)
    with pytest.raises(DataUnavailable, match=r"MNIST train: none of"):
        mnist_force.load_data(Config(dataset="mnist"), str(tmp_path))
    with pytest.raises(ValueError, match=r"dataset must be 'auto', 'mnist' or 'digits', got 'cifar'"):
        run(Config(dataset="cifar"))
    with pytest.raises(ValueError, match=r"update_class must be a digit 0..9, got 10"):
        run(Config(update_class=10))
    with pytest.raises(ValueError, match=r"batch_size must be <= n_train=32, got 64"):
        run(Config(n_train=32))

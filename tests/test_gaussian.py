"""The Gaussian toy: exact p*, label noise, the zig-zag of hard samples, and the experiment's smoke run."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ldjax import paths
from ldjax.data import gaussian_p_star
from ldjax.data import gaussian_toy
from ldjax.data import split_toy
from ldjax.data import symmetric_label_noise


@pytest.mark.float64
def test_p_star_matches_bayes_rule_in_float64():
    toy = gaussian_toy(key=jax.random.key(0), n=50, dim=4, variance=2.0)
    x, means = np.asarray(toy.x, np.float64), np.asarray(toy.means, np.float64)
    got = np.asarray(jax.jit(gaussian_p_star, static_argnums=2)(x, means, 2.0))
    # Bayes' rule with equal priors and explicit Gaussian densities.
    dens = np.array(
        [[np.exp(-np.sum((xi - m) ** 2) / (2 * 2.0)) / (2 * np.pi * 2.0) ** 2 for m in means] for xi in x]
    )
    ref = dens / dens.sum(1, keepdims=True)
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(got.sum(1), 1.0, rtol=1e-12)


def test_toy_shapes_means_and_split():
    toy = gaussian_toy(key=jax.random.key(1), n=1000)
    assert toy.x.shape == (1000, 30) and toy.p_star.shape == (1000, 3)
    assert set(np.unique(np.asarray(toy.means)).tolist()) <= {-1.0, 0.0, 1.0}
    np.testing.assert_allclose(np.asarray(toy.p_star).sum(1), 1.0, rtol=1e-5)
    s = split_toy(toy)
    assert (s.train.x.shape[0], s.val.x.shape[0], s.test.x.shape[0]) == (50, 50, 900)
    # the class variance is 6: residuals around the generating mean
    resid = np.asarray(toy.x - toy.means[toy.y])
    assert abs(resid.var() - 6.0) < 0.3
    with pytest.raises(ValueError, match="variance"):
        gaussian_p_star(toy.x, toy.means, variance=0.0)


@pytest.mark.parametrize("rate", [0.0, 0.2, 0.4, 1.0])
def test_label_noise_flips_exactly_and_always_changes(rate):
    labels = jnp.asarray(np.random.default_rng(0).integers(0, 3, size=501), jnp.int32)
    noisy, flipped = jax.jit(symmetric_label_noise, static_argnums=(1, 2))(
        labels, 3, rate, key=jax.random.key(4)
    )
    noisy, flipped, labels = np.asarray(noisy), np.asarray(flipped), np.asarray(labels)
    assert flipped.sum() == round(rate * 501)
    np.testing.assert_array_equal(noisy != labels, flipped)  # every flip really changes the label
    assert noisy.min() >= 0 and noisy.max() < 3
    if rate == 1.0:  # new labels spread over both other classes
        assert len(np.unique((noisy - labels) % 3)) == 2


def test_label_noise_rejects_bad_input():
    with pytest.raises(ValueError, match="rate must be in"):
        symmetric_label_noise(jnp.zeros(3, jnp.int32), 3, 1.5, key=jax.random.key(0))
    with pytest.raises(ValueError, match="num_classes"):
        symmetric_label_noise(jnp.zeros(3, jnp.int32), 1, 0.5, key=jax.random.key(0))


def test_hard_samples_zigzag_on_small_toy():
    """Hard samples (label far from p*) first move towards p*, then towards e_y: a majority must zig-zag."""
    from ldjax._src.experiments import gaussian_paths as gp

    config = gp.Config(n=20_000, epochs=30, batch_size=32, learning_rate=2e-3, hidden=64, data_seed=13)
    data = gp.make_data(config)
    p_star, labels = np.asarray(data.train.p_star), np.asarray(data.train.y)
    groups = gp.group_indices(p_star, labels, config)
    hard = groups["hard"]
    assert len(hard) == 20
    rec = gp.record_paths(config, data, data.train.y, hard, key=jax.random.key(0))
    assert rec.shape == (30 * (1000 // 32) + 1, 20, 3)
    zz = paths.zigzag(rec, p_star[hard], labels[hard], margin=0.02)
    both = np.asarray(zz.turned) & np.asarray(zz.towards_label_after)
    assert both.mean() > 0.5, f"only {both.mean():.0%} of hard samples zig-zag"
    # and their labels really are far from p*: the label disagrees with argmax p* for most of them
    assert np.mean(np.argmax(p_star[hard], 1) != labels[hard]) > 0.5


def test_gaussian_experiment_smoke(tmp_path):
    from ldjax.experiments import gaussian_paths as gp

    methods = ("OHT", "LS", "GT", "ESKD", "FilterKD")
    argv = [
        "--out",
        str(tmp_path),
        "--n",
        "4000",
        "--num-seeds",
        "1",
        "--epochs",
        "3",
        "--hidden",
        "16",
        "--plot-every",
        "2",
        "--methods",
        ",".join(methods),
        "--no-progress",
    ]
    assert gp.main(argv) == 0
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["complete"] and "Gaussian" in saved["dataset"]
    res = saved["results"]
    assert set(res["table"]) == set(methods)
    for row in res["table"].values():
        assert 0.3 < row["accuracy_mean"] <= 1.0 and len(row["accuracy"]) == 1
    assert len(saved["figures"]) == 3 and all((tmp_path / f).exists() for f in saved["figures"])
    assert {r["claim"].split()[0] for r in saved["fidelity"]} >= {"OHT", "GT", "hard"}
    steps = 3 * (200 // 32)
    assert len(res["groups"]["hard"]["mean_distance_p_star"]) == steps // 2 + 1


def test_filter_kd_smoke_toy(tmp_path):
    from ldjax.experiments import filter_kd

    argv = [
        "--out",
        str(tmp_path),
        "--noises",
        "0.4",
        "--toy-n",
        "4000",
        "--toy-seeds",
        "1",
        "--toy-epochs",
        "2",
        "--cifar",
        "false",
        "--no-progress",
    ]
    assert filter_kd.main(argv) == 0
    saved = json.loads((tmp_path / "results.json").read_text())
    table = saved["results"]["toy"]["0.4"]
    assert set(table) == {"OHT", "LS", "ESKD", "FilterKD"}
    for row in table.values():
        assert len(row["accuracy"]["values"]) == 1 and 0.0 <= row["ece"]["mean"] <= 1.0
    assert saved["results"]["cifar3"] is None and len(saved["figures"]) == 1


@pytest.mark.slow
def test_filter_kd_smoke_with_cifar(tmp_path):
    import os
    from pathlib import Path

    from ldjax.experiments import filter_kd

    data = os.environ.get("LDJAX_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    argv = [
        "--out",
        str(tmp_path),
        "--data-dir",
        data,
        "--noises",
        "0.2",
        "--toy-n",
        "4000",
        "--toy-seeds",
        "1",
        "--toy-epochs",
        "2",
        "--cifar-seeds",
        "1",
        "--cifar-train-size",
        "100",
        "--cifar-val-size",
        "100",
        "--cifar-epochs",
        "2",
        "--cifar-widths",
        "4,8",
        "--cifar-blocks",
        "1,1",
        "--no-progress",
    ]
    assert filter_kd.main(argv) == 0
    saved = json.loads((tmp_path / "results.json").read_text())
    assert "CIFAR-10H" in saved["dataset"]
    assert set(saved["results"]["cifar3"]["0.2"]) == {"OHT", "LS", "ESKD", "FilterKD"}

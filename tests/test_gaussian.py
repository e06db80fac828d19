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

from notebook_runner import flags
from notebook_runner import notebook_fixture
from notebook_runner import replay_plot
from notebook_runner import replay_run


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


def test_spearman_matches_the_rank_definition():
    rng = np.random.default_rng(0)
    from ldjax._src.experiments.learning_paths import spearman

    for _ in range(5):
        a = rng.integers(0, 5, size=9).astype(float)  # ties on purpose
        b = rng.normal(size=9)

        def avg_ranks(v):
            return np.array([np.sum(v < x) + (np.sum(v == x) + 1) / 2 for x in v])

        ra, rb = avg_ranks(a), avg_ranks(b)
        ref = np.corrcoef(ra, rb)[0, 1]
        np.testing.assert_allclose(spearman(a, b), ref, rtol=1e-12)
    assert spearman([1, 2, 3], [3, 2, 1]) == -1.0
    assert np.isnan(spearman([1, 1, 1], [1, 2, 3]))


def test_update_split_adds_up_to_the_path():
    from ldjax._src.experiments.learning_paths import update_split

    rng = np.random.default_rng(1)
    path = rng.dirichlet(np.ones(3), size=11)
    own = rng.random(10) < 0.3
    p_star, label = np.array([0.6, 0.3, 0.1]), 2
    got = update_split(path, own, p_star, label)
    d_star = np.linalg.norm(path - p_star, axis=-1)
    d_label = np.linalg.norm(path - np.eye(3)[label], axis=-1)
    np.testing.assert_allclose(
        got["own_p_star"][-1] + got["other_p_star"][-1], d_star[-1] - d_star[0], rtol=1e-12
    )
    np.testing.assert_allclose(
        got["own_label"][-1] + got["other_label"][-1], d_label[-1] - d_label[0], rtol=1e-12
    )
    ref = sum(d_star[t + 1] - d_star[t] for t in range(10) if own[t])
    np.testing.assert_allclose(got["own_p_star"][-1], ref, rtol=1e-12)


def test_claims_report_counter_examples_as_missed():
    """Every claim of the experiment, fed a counter-example, comes out missed (and its example holds)."""
    from ldjax._src.experiments import gaussian_paths as gp
    from ldjax._src.experiments import learning_paths as lp

    methods = gp.METHODS
    distance = np.tile(np.array([0.47, 0.46, 0.0, 0.23, 0.11, 0.15]), (3, 1))
    good = 0.84 - 0.03 * distance + np.array([[0.0], [0.0005], [-0.0005]])
    assert gp.method_order_claim(good, distance, methods).holds
    reversed_order = 0.84 + 0.03 * distance  # farther targets generalise better
    assert not gp.method_order_claim(reversed_order, distance, methods).holds
    grid = np.tile(np.linspace(0.47, 0.0, 5), (3, 1))
    assert gp.noisy_targets_claim(0.84 - 0.02 * grid, grid, 15).holds
    assert not gp.noisy_targets_claim(0.84 + 0.02 * grid, grid, 15).holds  # accuracy rises with distance
    hard, easy, gain = np.array([0.9, 0.8, 0.85]), np.array([0.05, 0.1, 0.0]), np.array([0.6, 0.5, 0.7])
    kw = {"margin": 0.1, "section": "Figure 3", "what": "hard samples"}
    assert all(row.holds for row in lp.path_claims("gaussian", "hard", "easy", hard, easy, gain, **kw))
    rows = lp.path_claims(
        "gaussian", "hard", "easy", hard, hard - 0.1, gain, **kw
    )  # easy ones zig-zag as often
    assert rows[0].holds and not rows[1].holds
    rows = lp.path_claims("gaussian", "hard", "easy", np.array([0.3, 0.2, 0.4]), easy, gain, **kw)
    assert not rows[0].holds  # a minority zig-zags
    # early-stopped predictions no nearer to p* than the labels
    assert not lp.path_claims("gaussian", "hard", "easy", hard, easy, np.array([0.05, -0.1, 0.1]), **kw)[
        2
    ].holds


def test_zigzag_fractions_tell_a_zigzag_from_a_straight_path():
    from ldjax._src.experiments.learning_paths import zigzag_fractions

    p_star = np.array([[[0.7, 0.2, 0.1]]])
    u = [1 / 3, 1 / 3, 1 / 3]
    zig = np.array([[u], [[0.7, 0.2, 0.1]], [[0.0, 0.0, 1.0]]])[:, None]  # [t, S=1, m=1, k]
    straight = np.array([[u], [[1 / 6, 1 / 6, 2 / 3]], [[0.0, 0.0, 1.0]]])[:, None]
    assert zigzag_fractions(zig, p_star, np.array([[2]]), margin=0.1).tolist() == [1.0]
    assert zigzag_fractions(straight, p_star, np.array([[2]]), margin=0.1).tolist() == [0.0]


@pytest.mark.slow
def test_hard_samples_zigzag_on_small_toy():
    """Hard samples (label far from p*) first move towards p*, then towards e_y: a majority must zig-zag."""
    from ldjax._src.experiments import gaussian_paths as gp

    config = gp.Config(
        n=20_000, epochs=30, batch_size=32, learning_rate=2e-3, hidden=64, num_seeds=1, path_seeds=1
    )
    data = gp.seed_data(config, 0)
    paths_run, idx, _ = gp.record_paths(config, [data], [0], progress=False)
    hard = data.groups["hard"]
    assert len(hard) == 20 and paths_run.shape == (30 * (1000 // 32) + 1, 1, 60, 3)
    sub = paths_run[:, 0, 40:]
    np.testing.assert_array_equal(idx[0, 40:], hard)
    p_star, labels = np.asarray(data.split.train.p_star)[hard], data.labels[hard]
    both = np.asarray(paths.zigzag(sub, p_star, labels, margin=0.05).zigzag)
    assert both.mean() > 0.5, f"only {both.mean():.0%} of hard samples zig-zag"
    # and their labels really are far from p*: the label disagrees with argmax p* for most of them
    assert np.mean(np.argmax(p_star, 1) != labels) > 0.5


notebook = notebook_fixture("gaussian_paths")


def test_gaussian_experiment_smoke(notebook, tmp_path, monkeypatch):
    """The experiment at TINY, run by its notebook; ``main`` turns the flags into TINY and saves that run."""
    from ldjax._src.experiments import gaussian_paths as gp

    assert notebook["config"] == gp.TINY
    monkeypatch.setattr(gp, "run", replay_run(notebook["results"], gp.TINY))
    monkeypatch.setattr(gp, "plot", replay_plot(notebook["out"]))  # the notebook drew them
    argv = ["--out", str(tmp_path), "--no-progress", *flags(gp.TINY, gp.Config())]
    assert gp.main(argv) == 0
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["complete"] and "Gaussian" in saved["dataset"]
    res = saved["results"]
    assert set(res["table"]) == set(gp.Config().methods)
    for row in res["table"].values():
        assert 0.2 < row["accuracy_mean"] <= 1.0 and len(row["accuracy"]) == 2
    assert res["scatter"]["names"] == ["OHT", "mix0.5", "GT"]
    assert len(saved["figures"]) == 4 and all((tmp_path / f).exists() for f in saved["figures"])
    ids = {r["id"] for r in saved["fidelity"]}
    assert ids == {
        "gaussian.method_order",
        "gaussian.noisy_targets",
        "gaussian.zigzag_hard",
        "gaussian.zigzag_hard_vs_easy",
        "gaussian.early_stop_near_p_star",
    }
    assert all(r["kind"] == "claim" and r["seeds"] >= 1 for r in saved["fidelity"])
    steps = 3 * (200 // 32)
    assert len(res["groups"]["hard"]["mean_distance_p_star"]) == steps // 2 + 1
    pic = res["update_picture"]
    assert (
        len(pic["own_steps"]) <= 3
    )  # at most one minibatch per epoch (200 = 6·32 + 8: an epoch may drop it)


def test_method_spread_note_counts_the_closest_target_first_and_the_others_range():
    from ldjax._src.experiments import gaussian_paths as gp

    distance = np.tile(np.array([0.5, 0.0, 0.2]), (3, 1))
    accuracy = np.array([[0.80, 0.85, 0.81], [0.80, 0.79, 0.806], [0.80, 0.90, 0.80]])
    note = gp.method_spread_note(accuracy, distance)
    assert "best accuracy in 2 of 3 seeds" in note and "within 0.010 of each other" in note

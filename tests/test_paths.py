"""Simplex-path analysis against slow, obvious float64 references (loops over examples and records)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ldjax import paths

from typechecking import ill_typed


def random_paths(seed, t=7, n=5, k=3):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(k), size=(t, n))
    p_star = rng.dirichlet(np.ones(k), size=n)
    labels = rng.integers(0, k, size=n)
    return p, p_star, labels


def test_simplex_coordinates_corners_and_barycentre():
    corners = paths.simplex_coordinates(np.eye(3))
    np.testing.assert_allclose(corners, [[0, 0], [1, 0], [0.5, np.sqrt(0.75)]], atol=1e-15)
    np.testing.assert_allclose(
        paths.simplex_coordinates(np.full(3, 1 / 3)), [0.5, np.sqrt(0.75) / 3], atol=1e-15
    )
    with pytest.raises(ValueError, match="3 classes"), ill_typed():
        paths.simplex_coordinates(np.ones((2, 4)) / 4)


@pytest.mark.float64
def test_distances_and_zigzag_match_loop_reference():
    p, p_star, labels = random_paths(0)
    d = jax.jit(paths.distances)(jnp.asarray(p), jnp.asarray(p_star))
    zz = jax.jit(functools.partial(paths.zigzag, margin=0.01))(
        jnp.asarray(p), jnp.asarray(p_star), jnp.asarray(labels)
    )
    t, n, k = p.shape
    for i in range(n):
        ref = [np.sqrt(sum((p[s, i, c] - p_star[i, c]) ** 2 for c in range(k))) for s in range(t)]
        np.testing.assert_allclose(np.asarray(d)[:, i], ref, rtol=1e-12)
        s_min = int(np.argmin(ref))
        assert int(zz.t_min[i]) == s_min
        assert bool(zz.turned[i]) == (min(ref) < ref[0] - 0.01 and min(ref) < ref[-1] - 0.01)
        e_y = np.eye(k)[labels[i]]
        towards = np.linalg.norm(p[-1, i] - e_y) < np.linalg.norm(p[s_min, i] - e_y) - 0.01
        assert bool(zz.towards_label_after[i]) == towards


def test_zigzag_hand_example():
    # start at uniform, pass through p* exactly, end at e_y: a textbook zig-zag.
    p_star = np.array([[0.7, 0.2, 0.1]])
    path = np.array([[[1 / 3, 1 / 3, 1 / 3]], [[0.7, 0.2, 0.1]], [[0.0, 0.0, 1.0]]])
    zz = paths.zigzag(path, p_star, np.array([2]))
    assert bool(zz.turned[0]) and bool(zz.towards_label_after[0]) and int(zz.t_min[0]) == 1
    # a path moving monotonically to p* does not "turn".
    straight = np.array([[[0.0, 0.0, 1.0]], [[0.35, 0.1, 0.55]], [[0.7, 0.2, 0.1]]])
    assert not bool(paths.zigzag(straight, p_star, np.array([2])).turned[0])


def test_zigzag_rejects_bad_shapes():
    p, p_star, labels = random_paths(1)
    with pytest.raises(ValueError, match="labels must be"), ill_typed():
        paths.zigzag(p, p_star, labels[:2])
    with pytest.raises(ValueError, match="paths must be"), ill_typed():
        paths.distances(p[0], p_star)


@pytest.mark.float64
def test_ece_matches_loop_reference():
    rng = np.random.default_rng(2)
    probs = rng.dirichlet(np.ones(4) * 0.5, size=200)
    labels = rng.integers(0, 4, size=200)
    got = float(jax.jit(functools.partial(paths.expected_calibration_error, num_bins=10))(probs, labels))
    conf, pred = probs.max(1), probs.argmax(1)
    ref = 0.0
    for b in range(10):
        lo, hi = b / 10, (b + 1) / 10
        members = [i for i in range(200) if (lo < conf[i] <= hi) or (b == 0 and conf[i] == 0)]
        if members:
            acc = np.mean([pred[i] == labels[i] for i in members])
            ref += len(members) / 200 * abs(acc - np.mean(conf[members]))
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    with pytest.raises(ValueError, match="num_bins"):
        paths.expected_calibration_error(probs, labels, num_bins=0)


@pytest.mark.float64
def test_filter_targets_is_the_recursive_average():
    rng = np.random.default_rng(3)
    rec = rng.dirichlet(np.ones(3), size=(6, 4))
    got = np.asarray(jax.jit(functools.partial(paths.filter_targets, decay=0.9))(rec))
    init = np.full((4, 3), 1 / 3)
    got_init = np.asarray(paths.filter_targets(rec, decay=0.9, initial=init))
    weights = 0.9 ** np.arange(5, -1, -1)  # record t has weight α^(T-1-t), normalised
    q = sum(w * r for w, r in zip(weights, rec, strict=True)) / weights.sum()
    np.testing.assert_allclose(got, q, rtol=1e-12)
    q = init.copy()
    for s in range(6):
        q = 0.9 * q + 0.1 * rec[s]
    np.testing.assert_allclose(got_init, q, rtol=1e-12)
    np.testing.assert_allclose(got.sum(-1), 1.0, rtol=1e-12)
    with pytest.raises(ValueError, match="decay"):
        paths.filter_targets(rec, decay=1.0)

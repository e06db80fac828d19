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
        e_y = np.eye(k)[labels[i]]
        to_p_star = ref[0] - min(ref)
        to_label = np.linalg.norm(p[s_min, i] - e_y) - np.linalg.norm(p[-1, i] - e_y)
        np.testing.assert_allclose(float(zz.to_p_star[i]), to_p_star, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(float(zz.to_label[i]), to_label, rtol=1e-12, atol=1e-15)
        assert bool(zz.zigzag[i]) == (to_p_star > 0.01 and to_label > 0.01)


def test_zigzag_needs_both_moves():
    p_star = np.array([[0.7, 0.2, 0.1]])
    label = np.array([2])
    uniform = [1 / 3, 1 / 3, 1 / 3]
    # uniform -> p* -> e_y: the textbook zig-zag
    zig = np.array([[uniform], [[0.7, 0.2, 0.1]], [[0.0, 0.0, 1.0]]])
    zz = paths.zigzag(zig, p_star, label, margin=0.1)
    assert bool(zz.zigzag[0]) and int(zz.t_min[0]) == 1
    # straight to the label: the distance to p* never falls (no first move)
    straight = np.array([[uniform], [[1 / 6, 1 / 6, 2 / 3]], [[0.0, 0.0, 1.0]]])
    zz = paths.zigzag(straight, p_star, label, margin=0.1)
    assert not bool(zz.zigzag[0]) and int(zz.t_min[0]) == 0
    # to p* and staying there (no second move)
    settle = np.array([[uniform], [[0.6, 0.25, 0.15]], [[0.7, 0.2, 0.1]]])
    assert not bool(paths.zigzag(settle, p_star, label, margin=0.1).zigzag[0])
    # an easy sample (label ≈ p*) going straight through p* to its label: the second move is below the margin
    easy_p = np.array([[0.02, 0.03, 0.95]])
    through = np.array([[uniform], [[0.02, 0.03, 0.95]], [[0.0, 0.0, 1.0]]])
    assert not bool(paths.zigzag(through, easy_p, label, margin=0.1).zigzag[0])


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
def test_filter_targets_is_the_authors_table_update():
    """The authors' rule: the first visit sets q, every later visit moves q to α·q + (1 − α)·π; unvisited rows keep q."""
    rng = np.random.default_rng(3)
    rec = rng.dirichlet(np.ones(3), size=(6, 4))
    seen = rng.random((6, 4)) < 0.7
    seen[:, 3] = False  # never visited: stays uniform
    got = np.asarray(jax.jit(functools.partial(paths.filter_targets, decay=0.9))(rec, seen=seen))
    got_all = np.asarray(paths.filter_targets(rec, decay=0.9))
    init = np.full((4, 3), 1 / 3)
    got_init = np.asarray(paths.filter_targets(rec, decay=0.9, initial=init))
    for i in range(4):
        q = None
        for t in range(6):
            if seen[t, i]:
                q = rec[t, i].copy() if q is None else 0.9 * q + 0.1 * rec[t, i]
        np.testing.assert_allclose(got[i], np.full(3, 1 / 3) if q is None else q, rtol=1e-12)
        q = rec[0, i].copy()
        for t in range(1, 6):
            q = 0.9 * q + 0.1 * rec[t, i]
        np.testing.assert_allclose(got_all[i], q, rtol=1e-12)
        q = init[i].copy()
        for t in range(6):
            q = 0.9 * q + 0.1 * rec[t, i]
        np.testing.assert_allclose(got_init[i], q, rtol=1e-12)
    np.testing.assert_allclose(got.sum(-1), 1.0, rtol=1e-12)
    with pytest.raises(ValueError, match="decay"):
        paths.filter_targets(rec, decay=1.0)
    with pytest.raises(ValueError, match="seen must be"), ill_typed():
        paths.filter_targets(rec, seen=seen[:, :2])

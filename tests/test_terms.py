"""A and G terms and the classification losses against autodiff / explicit definitions (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ldjax


def test_a_term_is_the_jacobian_of_log_softmax_and_annihilates_constants():
    with jax.enable_x64(True):
        logits = jax.random.normal(jax.random.key(0), (4, 6), jnp.float64) * 3
        a = jax.jit(ldjax.a_term)(logits)
        want = jax.vmap(jax.jacobian(lambda z: jax.nn.log_softmax(z)))(logits)
        np.testing.assert_allclose(a, want, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(a @ jnp.ones(6), 0.0, atol=1e-12)  # A·1 = 0
        probs = jax.nn.softmax(logits)
        np.testing.assert_allclose(a, jnp.eye(6) - probs[:, None, :], atol=1e-14)


def test_a_term_keeps_position_axes():
    logits = jax.random.normal(jax.random.key(1), (2, 3, 5))
    assert ldjax.a_term(logits).shape == (2, 3, 5, 5)


def _slow_softmax_minus_one_hot(logits, labels):
    """π − e_y written out row by row in numpy."""
    z = np.asarray(logits).reshape(-1, logits.shape[-1])
    y = np.asarray(labels).reshape(-1)
    out = np.empty_like(z)
    for row, (zi, yi) in enumerate(zip(z, y, strict=True)):
        p = np.exp(zi - zi.max())
        p /= p.sum()
        p[yi] -= 1.0
        out[row] = p
    return out.reshape(logits.shape)


@pytest.mark.parametrize("shape", [(5, 4), (3, 6, 7)])
def test_cross_entropy_closed_form_equals_autodiff(shape):
    with jax.enable_x64(True):
        k1, k2 = jax.random.split(jax.random.key(2))
        logits = jax.random.normal(k1, shape, jnp.float64) * 2
        labels = jax.random.randint(k2, shape[:-1], 0, shape[-1])
        got = jax.jit(ldjax.g_term, static_argnums=0)(ldjax.losses.cross_entropy, logits, labels)
        np.testing.assert_allclose(got, ldjax.losses.cross_entropy_g(logits, labels), rtol=1e-12, atol=1e-15)
        # the shared π − e_y and log π_y of every closed-form force, against loops
        pi_minus_e = jax.jit(ldjax.losses.softmax_minus_one_hot)(logits, labels)
        np.testing.assert_allclose(
            pi_minus_e, _slow_softmax_minus_one_hot(logits, labels), rtol=1e-12, atol=1e-15
        )
        np.testing.assert_allclose(got * labels.size, pi_minus_e, rtol=1e-12, atol=1e-15)
        probs = np.asarray(jax.nn.softmax(logits))
        want_logp = np.log(np.take_along_axis(probs, np.asarray(labels)[..., None], -1))[..., 0]
        np.testing.assert_allclose(ldjax.losses.token_log_probs(logits, labels), want_logp, rtol=1e-12)
        # and the loss itself against the definition
        logp = jax.nn.log_softmax(logits)
        want = -np.mean(np.take_along_axis(np.asarray(logp), np.asarray(labels)[..., None], -1))
        np.testing.assert_allclose(ldjax.losses.cross_entropy(logits, labels), want, rtol=1e-12)


def test_soft_cross_entropy_closed_form_equals_autodiff_for_smoothing_and_distillation():
    with jax.enable_x64(True):
        k1, k2, k3 = jax.random.split(jax.random.key(3), 3)
        logits = jax.random.normal(k1, (5, 4), jnp.float64)
        smoothed = ldjax.losses.smooth_labels(jax.random.randint(k2, (5,), 0, 4), 4, 0.1)
        teacher = jax.nn.softmax(jax.random.normal(k3, (5, 4), jnp.float64))
        for targets in (smoothed, teacher):
            got = ldjax.g_term(ldjax.losses.soft_cross_entropy, logits, targets)
            np.testing.assert_allclose(got, ldjax.losses.soft_cross_entropy_g(logits, targets), rtol=1e-12)
        np.testing.assert_allclose(smoothed.sum(-1), 1.0)
        assert np.isclose(float(smoothed.max()), 0.9 + 0.1 / 4)


def test_g_term_works_for_any_user_loss():
    with jax.enable_x64(True):
        logits = jax.random.normal(jax.random.key(4), (3, 4), jnp.float64)

        def squared(z, t):
            return 0.5 * jnp.sum((z - t) ** 2)

        target = jnp.ones((3, 4))
        np.testing.assert_allclose(ldjax.g_term(squared, logits, target), logits - target, rtol=1e-12)


def test_g_term_rejects_a_loss_that_does_not_return_a_scalar():
    with pytest.raises(ValueError, match=r"loss_fn must return a scalar .* got shape \(3,\)"):
        ldjax.g_term(lambda z, t: jnp.sum(z, axis=1), jnp.zeros((3, 4)), None)


def test_smooth_labels_rejects_bad_smoothing():
    with pytest.raises(ValueError, match=r"smoothing must be in \[0, 1\]"):
        ldjax.losses.smooth_labels(jnp.array([0]), 3, 1.5)

"""The loss protocol: with_target_check and bind (softmax_minus_one_hot is tested in test_terms.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ldjax
from ldjax import losses


def test_bind_keeps_the_check_and_the_value():
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        logits = jnp.asarray(rng.normal(size=(4, 3, 5)))
        target = losses.PreferenceTarget(
            jnp.asarray(rng.integers(0, 5, (4, 3)), jnp.int32),
            jnp.ones((4, 3)),
            jnp.asarray(rng.normal(size=4)),
        )
        bound = losses.bind(losses.dpo, beta=0.7)
        assert bound.__name__ == "dpo(beta=0.7)"
        assert bound.check_target is losses.dpo.check_target
        np.testing.assert_allclose(
            jax.jit(bound)(logits, target), losses.dpo(logits, target, beta=0.7), rtol=1e-15
        )
        np.testing.assert_allclose(
            jax.grad(bound)(logits, target), losses.dpo_g(logits, target, beta=0.7), rtol=1e-10, atol=1e-14
        )
        # a loss without a check stays without one
        plain = losses.bind(lambda z, t, *, scale: scale * jnp.sum((z - t) ** 2), scale=2.0)
        assert not hasattr(plain, "check_target")
        assert float(plain(jnp.ones(3), jnp.zeros(3))) == 6.0


def test_with_target_check_is_what_one_step_calls():
    def check(out_shape, target, name):
        if np.shape(target)[1:] != out_shape:
            raise ValueError(f"{name} has shape {np.shape(target)}: expected [n, *{out_shape}]")

    @losses.with_target_check(check)
    def squared(logits, target):
        return 0.5 * jnp.mean(jnp.sum((logits - target) ** 2, axis=-1))

    assert squared.check_target is check
    params = {"w": jnp.ones((3, 2))}
    x = jnp.ones((2, 3))
    with pytest.raises(ValueError, match=r"y_u has shape \(2, 3\): expected \[n, \*\(2,\)\]"):
        ldjax.one_step(
            lambda p, v: v @ p["w"], params, x, x, jnp.zeros((2, 3)), loss=squared, learning_rate=0.1
        )


@pytest.mark.parametrize(
    "loss",
    [
        losses.cross_entropy,
        losses.soft_cross_entropy,
        losses.sft,
        losses.dpo,
        losses.ipo,
        losses.slic,
        losses.grpo,
        losses.simko,
        losses.dpo_fn(0.1),
        losses.ipo_fn(0.1),
        losses.slic_fn(1.0),
        losses.simko_fn(),
    ],
    ids=lambda loss: loss.__name__,
)
def test_every_builtin_loss_carries_a_target_check(loss):
    assert callable(loss.check_target)


def test_shared_id_check_names_the_argument():
    from ldjax._src.checks import check_ids

    kwargs = {"what": "class labels", "short": "labels", "bound": "the model has k=3 classes"}
    with pytest.raises(
        ValueError, match=r"y_u must hold integer class labels in \[0, 3\), got dtype float32"
    ):
        check_ids(jnp.zeros(2), 3, "y_u", **kwargs)
    with pytest.raises(ValueError, match=r"y_u holds labels in \[-1, 2\] but the model has k=3 classes"):
        check_ids(jnp.array([-1, 2]), 3, "y_u", **kwargs)
    check_ids(jnp.array([0, 2]), 3, "y_u", **kwargs)
    jax.jit(lambda y: check_ids(y, 3, "y_u", **kwargs) or y)(jnp.array([0, 5]))  # traced: no value check

"""The in-loop recorder of ``ldjax.train`` returns what evaluating the saved parameters afterwards gives."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import ldjax

from problems import mlp_apply
from problems import mlp_problem


def _setup(n=12, d=5, k=4, steps_epochs=3, batch=4, dtype=jnp.float64):
    params, x, _ = mlp_problem(jax.random.key(0), n1=n, n2=1, d=d, k=k, dtype=dtype)
    y = jax.random.randint(jax.random.key(1), (n,), 0, k)
    batches = ldjax.epoch_batches(jax.random.key(2), n, batch, steps_epochs)
    logits = jax.vmap(mlp_apply, (None, 0))

    def loss_fn(p, idx):
        return ldjax.losses.cross_entropy(logits(p, x[idx]), y[idx])

    return params, x, y, batches, logits, loss_fn


def test_recorder_equals_replaying_the_updates_in_float64():
    every = 3
    with jax.enable_x64(True):
        params, x, _, batches, logits, loss_fn = _setup()
        opt = optax.sgd(0.3, momentum=0.9)
        out = ldjax.train(
            loss_fn,
            params,
            opt,
            batches,
            every=every,
            progress=False,
            record=lambda p, step: jax.nn.softmax(logits(p, x), -1),
        )

        # Slow reference: a plain Python loop of optax steps, evaluating the saved parameters afterwards.
        @jax.jit
        def step(p, state, idx):
            u, state = opt.update(jax.grad(loss_fn)(p, idx), state, p)
            return optax.apply_updates(p, u), state

        predict = jax.jit(lambda q: jax.nn.softmax(logits(q, x), -1))
        p, state, saved = params, opt.init(params), [params]
        for s in range(batches.shape[0]):
            p, state = step(p, state, batches[s])
            if (s + 1) % every == 0:
                saved.append(p)
        ref = np.stack([np.asarray(predict(q)) for q in saved])
        final = np.asarray(predict(out.params))
    assert out.records.shape == (batches.shape[0] // every + 1, x.shape[0], 4)
    np.testing.assert_allclose(np.asarray(out.records), ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.asarray(out.records[-1]), final, rtol=1e-10, atol=1e-12)


def test_recorded_predictions_equal_recorded_params_evaluated_later():
    params, x, _, batches, logits, loss_fn = _setup(steps_epochs=4, dtype=jnp.float32)
    out = ldjax.train(
        loss_fn,
        params,
        optax.adam(1e-2),
        batches,
        every=3,
        progress=False,
        record=lambda p, step: {"probs": jax.nn.softmax(logits(p, x), -1), "params": p, "step": step},
    )
    later = jax.vmap(lambda p: jax.nn.softmax(logits(p, x), -1))(out.records["params"])
    np.testing.assert_allclose(np.asarray(out.records["probs"]), np.asarray(later), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(out.records["step"]), np.arange(0, batches.shape[0] + 1, 3))
    assert not np.allclose(
        out.records["probs"][0], out.records["probs"][-1]
    )  # training moved the predictions


def test_recorder_rejects_a_period_that_does_not_divide_the_steps():
    params, x, _, batches, logits, loss_fn = _setup(dtype=jnp.float32)
    with pytest.raises(ValueError, match="every must be a positive divisor"):
        ldjax.train(
            loss_fn,
            params,
            optax.sgd(0.1),
            batches,
            every=5,
            progress=False,
            record=lambda p, step: logits(p, x),
        )


def test_update_fn_is_the_step_train_scans():
    """``update_fn`` (for loops train cannot express, e.g. on-policy RL) takes train's steps, float64."""
    from ldjax._src.training import update_fn

    with jax.enable_x64(True):
        params, _, _, batches, _, loss_fn = _setup()
        optimizer = optax.adam(0.05)
        want = ldjax.train(loss_fn, params, optimizer, batches, progress=False)
        update = jax.jit(update_fn(loss_fn, optimizer))
        carry, losses = (params, optimizer.init(params)), []
        for batch in batches:
            carry, (loss, acc) = update(carry, batch)
            losses.append(loss)
        assert acc is None
        np.testing.assert_allclose(np.asarray(losses), want.losses, rtol=1e-12)
        for got, ref in zip(jax.tree.leaves(carry[0]), jax.tree.leaves(want.params), strict=True):
            np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)

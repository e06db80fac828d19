"""Squeezing effect: the closed form π'_i ∝ π_i exp(c π_i) against an actual SGD step (float64); smoke run."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ldjax._src.experiments import squeeze


@pytest.mark.float64
@pytest.mark.parametrize("negative", [True, False])
@pytest.mark.parametrize("vocab", [50, 1000])
def test_closed_form_matches_actual_step_float64(negative, vocab):
    rng = np.random.default_rng(vocab + negative)
    w = jnp.asarray(rng.normal(size=(vocab, 7)) * 2.0)
    x = jnp.asarray(rng.normal(size=7))
    token, lr = int(rng.integers(vocab)), 0.3
    step = jax.jit(squeeze.actual_step, static_argnums=(2, 3), static_argnames=("negative",))
    actual = step(w, x, token, lr, negative=negative)
    before = jax.nn.softmax(w @ x)
    c = lr * float(x @ x)
    closed = jax.jit(squeeze.squeezed_probs, static_argnums=(1, 2), static_argnames=("negative",))(
        before, token, c, negative=negative
    )
    np.testing.assert_allclose(closed, actual, rtol=1e-12, atol=1e-15)
    # the ratio form itself: π'_i / π_i ∝ exp(±c π_i) for every i != token
    ratio = np.log(np.asarray(actual) / np.asarray(before)) - (1 if negative else -1) * c * np.asarray(before)
    others = np.arange(vocab) != token
    np.testing.assert_allclose(ratio[others], ratio[others][0], rtol=0, atol=1e-10)


@pytest.mark.float64
def test_valley_squeezes_and_flat_does_not():
    peaky = jax.nn.softmax(jnp.asarray(np.random.default_rng(0).normal(size=200) * 3.0))
    valley = int(jnp.argmin(peaky))
    after = np.asarray(squeeze.squeezed_probs(peaky, valley, 2.0))
    top = int(jnp.argmax(peaky))
    assert after[top] > peaky[top]
    others = np.arange(200) != valley
    assert np.mean(after[others] < np.asarray(peaky)[others]) > 0.9
    flat = jnp.full(200, 1 / 200)
    spread = np.asarray(squeeze.squeezed_probs(flat, 3, 2.0))[np.arange(200) != 3]
    np.testing.assert_allclose(spread, spread[0], rtol=1e-12)  # a flat π stays flat
    with pytest.raises(ValueError, match=r"token must be in \[0, 3\)"):
        squeeze.squeezed_probs(jnp.ones(3) / 3, 3, 1.0)


def test_squeeze_experiment_smoke(tmp_path, monkeypatch):
    config = squeeze.Config(vocab_sizes=(20,), feature_dim=4)
    results = squeeze.run(config, progress=False)
    rows = squeeze.fidelity(results)
    assert rows[0].holds and results["V20_negative_valley"]["closed_form_max_abs_error"] < 1e-12
    assert [p.name for p in squeeze.plot(results, tmp_path)] == ["squeeze_cases.png"]
    monkeypatch.setattr(squeeze, "run", lambda config, data_dir=None, progress=True: results)
    assert squeeze.main(["--vocab-sizes", "20", "--out", str(tmp_path / "cli"), "--no-progress"]) == 0
    saved = json.loads((tmp_path / "cli" / "results.json").read_text())
    assert saved["dataset"].startswith("synthetic")

"""Squeezing effect: the closed form against an actual SGD step (float64), the claims' counter-examples, smoke run."""

import copy
import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ldjax._src.experiments import squeeze

from notebook_runner import notebook_fixture

TINY = squeeze.TINY


notebook = notebook_fixture("squeeze")


@pytest.fixture(scope="module")
def tiny(notebook):
    """The experiment at TINY, run by its notebook (one run for the notebook and the smoke test)."""
    assert notebook["config"] == TINY
    return notebook["results"]


@pytest.mark.float64
@pytest.mark.parametrize("case", ["negative", "positive", "pair"])
@pytest.mark.parametrize("vocab", [50, 1000])
def test_closed_form_matches_actual_step_float64(case, vocab):
    rng = np.random.default_rng(vocab + len(case))
    w = jnp.asarray(rng.normal(size=(vocab, 7)) * 2.0)
    x = jnp.asarray(rng.normal(size=7))
    token, plus, lr = 3, (11 if case == "pair" else None), 0.3
    negative = case != "positive"
    step = jax.jit(squeeze.actual_step, static_argnums=(2, 3), static_argnames=("negative", "positive_token"))
    actual = step(w, x, token, lr, negative=negative, positive_token=plus)
    before = jax.nn.softmax(w @ x)
    c = lr * float(x @ x)
    closed = jax.jit(
        squeeze.squeezed_probs, static_argnums=(1, 2), static_argnames=("negative", "positive_token")
    )(before, token, c, negative=negative, positive_token=plus)
    np.testing.assert_allclose(closed, actual, rtol=1e-12, atol=1e-15)
    ratio = np.log(np.asarray(actual) / np.asarray(before))
    others = np.ones(vocab, bool)
    others[[token] + ([plus] if plus is not None else [])] = False
    if case == "pair":  # the π terms cancel: every other entry moves by the same factor 1/Z
        np.testing.assert_allclose(ratio[others], ratio[others][0], rtol=0, atol=1e-10)
        np.testing.assert_allclose(ratio[plus] - ratio[others][0], c, rtol=1e-10)
        np.testing.assert_allclose(ratio[token] - ratio[others][0], -c, rtol=1e-10)
    else:  # π'_i / π_i ∝ exp(±c π_i) for every i != token
        shifted = ratio - (1 if negative else -1) * c * np.asarray(before)
        np.testing.assert_allclose(shifted[others], shifted[others][0], rtol=0, atol=1e-10)


@pytest.mark.float64
def test_valley_squeezes_and_flat_does_not():
    peaky = jax.nn.softmax(jnp.asarray(np.random.default_rng(0).normal(size=200) * 3.0))
    valley = int(jnp.argmin(peaky))
    after = np.asarray(squeeze.squeezed_probs(peaky, valley, 2.0))
    step = squeeze.summarise(np.asarray(peaky), after, (valley,))
    assert step.argmax_after > step.argmax_before and step.frac_others_decreased > 0.9
    flat = jnp.full(200, 1 / 200)
    spread = np.asarray(squeeze.squeezed_probs(flat, 3, 2.0))[np.arange(200) != 3]
    np.testing.assert_allclose(spread, spread[0], rtol=1e-12)  # a flat π stays flat
    with pytest.raises(ValueError, match=r"token must be in \[0, 3\), got 3"):
        squeeze.squeezed_probs(jnp.ones(3) / 3, 3, 1.0)
    with pytest.raises(ValueError, match=r"positive_token must be in \[0, 3\), got -1"):
        squeeze.squeezed_probs(jnp.ones(3) / 3, 0, 1.0, positive_token=-1)


def test_summarise_and_gain_onset_against_direct_counts():
    before = np.array([0.4, 0.3, 0.2, 0.1])
    after = np.array([0.5, 0.25, 0.2, 0.05])
    s = squeeze.summarise(before, after, (3,))
    assert (s.argmax_before, s.argmax_after, s.token_after) == (0.4, 0.5, 0.05)
    assert s.frac_others_decreased == pytest.approx(1 / 3)  # of 0, 1, 2 only 1 loses
    assert squeeze.summarise(before, after, (0,)).argmax_before == 0.3  # the argmax of the OTHER entries
    gain = np.array([[0.0, 0.02, 0.3], [0.0, 0.0, 0.009]])
    assert squeeze.gain_onset((1.0, 2.0, 4.0), gain) == [2.0, None]


# ------------------------------------------------------------------------------ the claims can fail


def _rows(results):
    return {row.id: row for row in squeeze.fidelity(results)}


def test_smoke_run_plots_and_cli(tiny, notebook, tmp_path, monkeypatch):
    rows = _rows(tiny)
    assert len(tiny["per_seed"]) == TINY.seeds == 5
    assert sorted(rows) == sorted(
        [
            f"squeeze.{name}_v20"
            for name in (
                "valley_others_lose",
                "valley_argmax_gains",
                "flat_others_gain",
                "paired_valley_peak_still",
            )
        ]
        + ["squeeze.closed_form_equals_step"]
    )
    assert (
        rows["squeeze.closed_form_equals_step"].kind == "check"
        and rows["squeeze.closed_form_equals_step"].holds
    )
    assert all(row.seeds == 5 for row in rows.values())
    assert np.asarray(tiny["sweep"]["argmax_gain"]).shape == (3, 3)
    assert sorted(p.name for p in notebook["out"].glob("*.png")) == ["squeeze_cases.png", "squeeze_sweep.png"]
    monkeypatch.setattr(squeeze, "run", lambda config, data_dir=None, progress=True: tiny)
    monkeypatch.setattr(squeeze, "plot", lambda results, out_dir: [])  # drawn by the notebook
    assert squeeze.main(["--vocab-sizes", "20", "--out", str(tmp_path / "cli"), "--no-progress"]) == 0
    saved = json.loads((tmp_path / "cli" / "results.json").read_text())
    assert saved["dataset"].startswith("synthetic") and saved["fidelity"][-1]["kind"] == "check"


def test_swapped_flat_and_peaky_logits_miss_the_squeeze_claims():
    """The real counter-example: the 'valley' of a flat π squeezes nothing, a 'flat' π that is peaky does."""
    swapped = squeeze.run(
        dataclasses.replace(TINY, peaky_scale=TINY.flat_scale, flat_scale=TINY.peaky_scale), progress=False
    )
    rows = _rows(swapped)
    for name in ("valley_others_lose", "valley_argmax_gains", "flat_others_gain"):
        assert not rows[f"squeeze.{name}_v20"].holds, rows[f"squeeze.{name}_v20"]


def test_case_d_is_missed_when_the_peak_moves(tiny):
    moved = copy.deepcopy(tiny)
    for seed in moved["per_seed"]:
        seed["V20_paired_valley"]["argmax_after"] = seed["V20_paired_valley"]["argmax_before"] + 0.05
    assert _rows(tiny)["squeeze.paired_valley_peak_still_v20"].holds
    assert not _rows(moved)["squeeze.paired_valley_peak_still_v20"].holds


def test_closed_form_check_is_missed_when_the_step_differs(tiny):
    off = copy.deepcopy(tiny)
    off["per_seed"][2]["V20_positive"]["closed_form_max_abs_error"] = 1e-6
    assert not _rows(off)["squeeze.closed_form_equals_step"].holds


def test_config_errors():
    with pytest.raises(ValueError, match=r"vocab_sizes and sweep_vocab must be >= 10 .* got \(5,\), 50"):
        squeeze.run(squeeze.Config(vocab_sizes=(5,)))
    with pytest.raises(ValueError, match="sweep_steps and sweep_scales must not be empty"):
        squeeze.run(squeeze.Config(sweep_steps=()))

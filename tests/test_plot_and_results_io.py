"""``ldjax.plot`` draws from results without error; ``save_results``/``load_results`` round-trip without pickle."""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ldjax

from problems import mlp_apply
from problems import mlp_problem


@pytest.fixture(scope="module")
def result():
    params, x1, x2 = mlp_problem(jax.random.key(0), n1=4, n2=2, dtype=jnp.float32)
    return ldjax.one_step(
        mlp_apply, params, x1, x2, jnp.array([1, 3]), loss=ldjax.losses.cross_entropy, learning_rate=0.1
    )


def test_import_ldjax_does_not_import_matplotlib():
    code = "import sys, ldjax; ldjax.plot; print('matplotlib' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"
    )


def test_plots_draw_what_they_are_given(result):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes = ldjax.plot.terms(result, 1, class_names=list("abcd"))
    bars = [p.get_height() for p in axes[2].patches]
    np.testing.assert_allclose(bars, np.concatenate([result.predicted[1], result.actual[1]]), rtol=1e-6)
    np.testing.assert_allclose([p.get_height() for p in axes[0].patches], result.g.sum(0), rtol=1e-6)
    matrix = ldjax.plot.class_force_matrix(
        np.arange(8.0).reshape(4, 2), np.array([0, 0, 1, 1]), np.array([1, 0]), 2
    )
    np.testing.assert_allclose(matrix, [[2.0, 1.0], [6.0, 5.0]])  # means of effect[o, u] by class
    ax = ldjax.plot.force_map(matrix, class_names=["zero", "one"])
    assert ax.images[0].get_array().tolist() == matrix.tolist()
    ax = ldjax.plot.log_prob_curves(
        np.log(np.array([[0.5, 0.2], [0.6, 0.1], [0.7, 0.05]])), labels=["y+", "y-"]
    )
    np.testing.assert_allclose(ax.lines[1].get_ydata(), np.log([0.2, 0.1, 0.05]))
    ax = ldjax.plot.simplex_paths(
        plt.figure().gca(),
        np.array([[[0.3, 0.3, 0.4]], [[0.6, 0.2, 0.2]]]),
        np.array([[0.5, 0.25, 0.25]]),
        np.array([0]),
        np.array([7]),
        time=np.arange(2),
        stop_index=1,
    )
    plt.close("all")
    with pytest.raises(ValueError, match=r"call one_step\(..., terms=True\)"):
        ldjax.plot.terms(result._replace(k=None))


def test_save_and_load_round_trip_without_pickle(tmp_path, result):
    path = ldjax.save_results(tmp_path / "step", result, learning_rate=0.1, model="mlp")
    assert path.name == "step.npz" and not list(tmp_path.glob("*.tmp"))
    loaded = ldjax.load_results(path)
    assert type(loaded.result) is ldjax.OneStepResult
    assert loaded.metadata == {"learning_rate": 0.1, "model": "mlp"}
    for name in result._fields:
        np.testing.assert_array_equal(getattr(loaded.result, name), np.asarray(getattr(result, name)))
    with np.load(path, allow_pickle=False) as data:  # plain arrays and a JSON string
        assert json.loads(str(data["__meta__"]))["type"] == "OneStepResult"
    partial = ldjax.save_results(tmp_path / "no_terms.npz", result._replace(a=None, k=None))
    assert ldjax.load_results(partial).result.k is None
    layers = {"w1": np.ones((2, 2)), "b1": np.zeros((2, 2))}
    got = ldjax.load_results(ldjax.save_results(tmp_path / "layers.npz", layers)).result
    assert sorted(got) == ["b1", "w1"] and got["w1"].tolist() == [[1.0, 1.0], [1.0, 1.0]]
    with pytest.raises(ValueError, match="metadata must be JSON-serialisable"):
        ldjax.save_results(tmp_path / "bad.npz", layers, when=object())
    np.savez(tmp_path / "foreign.npz", x=np.ones(2))
    with pytest.raises(ValueError, match="was not written by ldjax.save_results"):
        ldjax.load_results(tmp_path / "foreign.npz")

"""The demo at TINY, run by its notebook: one SGD step on a digit "4" seen through A·K·G."""

import numpy as np

import ldjax
from ldjax._src.experiments import demo

from notebook_runner import notebook_fixture

notebook = notebook_fixture("demo")


def test_tiny_run_predicts_the_step_and_its_checks_hold(notebook):
    config, r = notebook["config"], notebook["results"]
    assert config == demo.TINY
    assert "scikit-learn digits" in r["dataset"] and r["update_label"] == config.update_class
    n_probes = len(r["probe_labels"])
    assert np.shape(r["predicted"]) == np.shape(r["actual"]) == (n_probes, 10)
    # the shown terms multiply out to the prediction of the shown probes
    shown = r["shown"]
    explicit = ldjax.decomposition(
        shown["a"], np.asarray(shown["k"])[:, None], np.asarray(shown["g"])[None], config.step_learning_rate
    )
    np.testing.assert_allclose(explicit, shown["predicted"], rtol=1e-3, atol=1e-6)
    rows = {row.id: row for row in demo.fidelity(r)}
    assert sorted(rows) == ["demo.correlation", "demo.fours_gain", "demo.residual_slope"]
    assert all(row.kind == "check" for row in rows.values())
    assert rows["demo.correlation"].holds and rows["demo.residual_slope"].holds, rows
    assert sorted(p.name for p in notebook["out"].glob("*.png")) == [
        "demo_scatter_slope.png",
        "demo_terms.png",
    ]

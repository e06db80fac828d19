"""Head probing (ch. 6): a tiny run shared by the smoke checks, and a counter-example for every claim."""

import json

import numpy as np
import pytest

from ldjax._src.experiments import head_probing
from ldjax.experiments.head_probing import TINY

from notebook_runner import notebook_fixture

IDS = (
    "ch6.distance_grows_with_energy",
    "ch6.inner_product_rises_then_falls",
    "ch6.mild_hp_beats_none_and_converged",
    "ch6.first_update_first_order",
    "ch6.kernel_direction_energy",
)


notebook = notebook_fixture("head_probing")


@pytest.fixture(scope="module")
def tiny(notebook):
    """The experiment at TINY, run by its notebook (one run for the notebook and the smoke test)."""
    assert notebook["config"] == TINY
    return notebook["results"]


def test_smoke_run_shapes_and_invariants(tiny):
    r = tiny
    seeds, taus = TINY.seeds, len(TINY.hp_epochs)
    assert r["dataset"].startswith("scikit-learn digits") and r["data_files"][0]["sha256"]
    assert r["hp_epochs"] == list(TINY.hp_epochs)
    for name in ("energy", "energy_gap", "train_accuracy", "test_accuracy", "head_norm"):
        assert np.shape(r["start"][name]) == (seeds, taus), name
    for name, curve in r["curves"].items():
        assert np.shape(curve) == (seeds, taus, TINY.ft_epochs + 1), name
    # entry 0 is the start of fine-tuning: the features are the pre-trained ones
    np.testing.assert_allclose(r["curves"]["cos"][..., 0], 1.0, atol=1e-5)
    np.testing.assert_allclose(r["curves"]["distance"][..., 0], 0.0, atol=1e-5)
    np.testing.assert_allclose(r["curves"]["inner"][..., 0], r["h0_inner"], rtol=1e-5)
    # τ = 0 is the fresh head of each seed, so its energy is the largest; probing lowers it
    energies = np.asarray(r["start"]["energy"])
    assert np.all(energies[:, 0] > energies[:, -1])
    assert np.shape(r["test_accuracy"]) == (seeds, taus)
    assert np.all((r["test_accuracy"] >= 0) & (r["test_accuracy"] <= 1))
    for name in ("predicted_norm", "actual_norm", "relative_residual", "correlation", "terms_vs_jvp"):
        assert np.shape(r["first_update"][name]) == (taus,), name


def test_fidelity_rows_plot_and_cli(tiny, notebook, tmp_path, monkeypatch):
    rows = head_probing.fidelity(tiny)
    assert [row.id for row in rows] == list(IDS)
    assert [row.kind for row in rows] == ["claim"] * 3 + ["check"] * 2
    assert all(row.seeds == TINY.seeds for row in rows[:3])
    assert rows[3].holds and rows[4].holds  # the decomposition's self-tests hold at any size
    names = sorted(p.name for p in notebook["out"].glob("*.png"))  # drawn by the notebook's plot cell
    assert names == ["head_probing_accuracy.png", "head_probing_energy_trend.png", "head_probing_epochs.png"]
    monkeypatch.setattr(head_probing, "run", lambda config, data_dir=None, progress=True: tiny)
    monkeypatch.setattr(head_probing, "plot", lambda results, out_dir: [])  # drawn by the notebook
    assert head_probing.main(["--seeds", "3", "--out", str(tmp_path / "cli"), "--no-progress"]) == 0
    saved = json.loads((tmp_path / "cli" / "results.json").read_text())
    assert [row["id"] for row in saved["fidelity"]] == list(IDS)


def synthetic(energy, distance, cos, inner, val, test, correlation=0.999, terms=1e-6):
    """A results dict with the given final measures ``[S, T]`` (what ``fidelity`` reads)."""
    energy = np.asarray(energy, float)
    seeds, taus = energy.shape
    final = {"distance": distance, "cos": cos, "inner": inner, "norm": inner, "val_accuracy": val}
    return {
        "start": {"energy": energy},
        "hp_epochs": list(range(taus)),
        "curves": {
            k: np.stack([np.zeros((seeds, taus)), np.asarray(v, float)], -1) for k, v in final.items()
        },
        "test_accuracy": np.asarray(test, float),
        "h0_inner": 1.0,
        "n_train": 10,
        "n_test": 100,
        "dataset": "synthetic",
        "first_update": {
            "correlation": np.full(taus, correlation),
            "relative_residual": np.zeros(taus),
            "terms_vs_jvp": np.full(taus, terms),
        },
    }


def rows_of(results):
    return {row.id: row for row in head_probing.fidelity(results)}


E = np.tile([0.9, 0.5, 0.3, 0.1], (3, 1))  # energy falls with τ, three seeds
UP = np.tile([4.0, 3.0, 2.0, 1.0], (3, 1))  # grows with the energy
MILD_TEST = np.tile([0.90, 0.93, 0.94, 0.91], (3, 1))
MILD_VAL = np.tile([0.90, 0.93, 0.95, 0.91], (3, 1))


def test_distance_claim_holds_for_growing_and_misses_for_shrinking_distances():
    good = rows_of(synthetic(E, UP, 1 - UP / 10, UP, MILD_VAL, MILD_TEST))
    assert (
        good["ch6.distance_grows_with_energy"].holds and good["ch6.distance_grows_with_energy"].value == 1.0
    )
    bad = rows_of(synthetic(E, UP[:, ::-1], 1 - UP / 10, UP, MILD_VAL, MILD_TEST))  # distance falls
    assert not bad["ch6.distance_grows_with_energy"].holds
    cos_bad = rows_of(
        synthetic(E, UP, 1 - UP[:, ::-1] / 10, UP, MILD_VAL, MILD_TEST)
    )  # cosine distance falls
    assert not cos_bad["ch6.distance_grows_with_energy"].holds


def test_inner_product_claim_needs_an_interior_peak():
    hump = np.tile([1.0, 1.2, 1.1, 1.0], (3, 1))
    assert rows_of(synthetic(E, UP, UP, hump, MILD_VAL, MILD_TEST))[
        "ch6.inner_product_rises_then_falls"
    ].holds
    monotone = rows_of(synthetic(E, UP, UP, UP, MILD_VAL, MILD_TEST))["ch6.inner_product_rises_then_falls"]
    assert not monotone.holds and monotone.value == 0.0 and "highest energy: 3" in monotone.note
    tiny_bump = np.tile([1.0, 1.01, 1.0, 1.0], (3, 1))  # a peak within the 2% margin
    assert not rows_of(synthetic(E, UP, UP, tiny_bump, MILD_VAL, MILD_TEST))[
        "ch6.inner_product_rises_then_falls"
    ].holds


def test_mild_claim_misses_when_an_end_of_the_sweep_is_as_good():
    assert rows_of(synthetic(E, UP, UP, UP, MILD_VAL, MILD_TEST))[
        "ch6.mild_hp_beats_none_and_converged"
    ].holds
    none_best = np.tile([0.95, 0.93, 0.94, 0.91], (3, 1))
    assert not rows_of(synthetic(E, UP, UP, UP, MILD_VAL, none_best))[
        "ch6.mild_hp_beats_none_and_converged"
    ].holds
    # validation picks the mild τ whose test accuracy is low: the claim is decided on that choice
    misled = np.tile([0.90, 0.99, 0.92, 0.91], (3, 1))
    low = np.tile([0.90, 0.89, 0.94, 0.91], (3, 1))
    row = rows_of(synthetic(E, UP, UP, UP, misled, low))["ch6.mild_hp_beats_none_and_converged"]
    assert not row.holds and row.value == pytest.approx(0.89 - 0.91)
    assert "[1, 1, 1]" in row.note


def test_checks_miss_on_a_bad_decomposition():
    rows = rows_of(synthetic(E, UP, UP, UP, MILD_VAL, MILD_TEST, correlation=0.9, terms=1e-2))
    assert not rows["ch6.first_update_first_order"].holds and not rows["ch6.kernel_direction_energy"].holds


def test_statistics_against_slow_references():
    rng = np.random.default_rng(0)
    for _ in range(5):
        a, b = rng.normal(size=8), rng.normal(size=8)
        rank = lambda x: np.argsort(np.argsort(x))  # noqa: E731 - no ties in continuous draws
        assert head_probing.spearman(a, b) == pytest.approx(np.corrcoef(rank(a), rank(b))[0, 1])
    assert head_probing.spearman([1, 1, 1], [1, 2, 3]) == 0.0
    assert head_probing.spearman([1, 2, 2, 3], [1, 2, 2, 3]) == pytest.approx(1.0)  # tied ranks averaged
    assert head_probing.rise_then_fall([0.3, 0.1, 0.2], [5.0, 1.0, 7.0], 2.0) == pytest.approx(1.0)
    assert head_probing.mild_margin([0.1, 0.5, 0.9, 0.2], [0.5, 0.6, 0.4, 0.55]) == pytest.approx(-0.15)


def test_config_is_checked():
    with pytest.raises(ValueError, match="hp_epochs must be at least 3 increasing durations starting with 0"):
        head_probing.run(head_probing.Config(hp_epochs=(1, 2, 4)))
    with pytest.raises(ValueError, match="dataset must be 'auto', 'mnist' or 'digits'"):
        head_probing.run(head_probing.Config(dataset="cifar"))

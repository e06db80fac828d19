"""Noisy CIFAR-3: renormalised human p*, exact label noise, the im2col ResNet, and the experiment's smoke run."""

import dataclasses
import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import ldjax
from ldjax.data import DataUnavailable
from ldjax.data import load_cifar3
from ldjax.data import renormalise
from ldjax.models import ResNet

from notebook_runner import flags
from notebook_runner import notebook_fixture
from notebook_runner import replay_plot
from notebook_runner import replay_run

DATA = os.environ.get("LDJAX_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
HAVE_CIFAR = (Path(DATA) / "cifar10_test.npz").exists() and (Path(DATA) / "cifar10h_probs.npy").exists()
needs_cifar = pytest.mark.skipif(not HAVE_CIFAR, reason=f"CIFAR-10 / CIFAR-10H not in {DATA}")


def test_renormalise_hand_computed():
    probs = np.array([[0.1, 0.2, 0.3, 0.4], [0.0, 0.5, 0.5, 0.0], [0.25, 0.0, 0.0, 0.75]])
    got = renormalise(probs, [0, 2, 3])
    # row 0: (0.1, 0.3, 0.4) / 0.8; row 1: (0, 0.5, 0) / 0.5; row 2: (0.25, 0, 0.75) / 1
    np.testing.assert_allclose(got, [[0.125, 0.375, 0.5], [0.0, 1.0, 0.0], [0.25, 0.0, 0.75]], rtol=1e-15)
    # no mass on the chosen classes: uniform
    np.testing.assert_allclose(renormalise(np.array([[0.0, 1.0, 0.0]]), [0, 2]), [[0.5, 0.5]])
    with pytest.raises(ValueError, match="classes must be distinct"):
        renormalise(probs, [0, 0])


@needs_cifar
def test_load_cifar3_p_star_and_exact_noise():
    d = load_cifar3(noise=0.2, key=jax.random.key(0), path=DATA)
    assert d.x.shape == (3000, 32, 32, 3) and d.classes == ("airplane", "bird", "ship")
    np.testing.assert_allclose(d.p_star.sum(1), 1.0, rtol=1e-12)
    assert d.flipped.sum() == 600 and np.all((d.y != d.y_true) == d.flipped)
    # p* is CIFAR-10H restricted to classes (0, 2, 8) and renormalised, row by row
    human = ldjax.data.load_cifar10h(path=DATA, download=False).probs
    i = 17
    row = human[d.index[i], [0, 2, 8]]
    np.testing.assert_allclose(d.p_star[i], row / row.sum(), rtol=1e-12)
    # the true labels are the official ones, and p* mostly agrees with them
    official = ldjax.data.load_cifar10("test", path=DATA, download=False).y[d.index]
    np.testing.assert_array_equal(np.array([0, 2, 8])[d.y_true], official)
    assert np.mean(d.p_star.argmax(1) == d.y_true) > 0.95


def test_load_cifar3_missing_data_raises(tmp_path):
    with pytest.raises(DataUnavailable):
        load_cifar3(key=jax.random.key(0), path=tmp_path)
    with pytest.raises(ValueError, match="unknown CIFAR-10 class"):
        load_cifar3(("airplane", "unicorn", "ship"), key=jax.random.key(0), path=tmp_path)


@pytest.mark.float64
def test_patch_conv_equals_lax_conv():
    from ldjax._src.models.resnet import PatchConv

    for size, stride in ((3, 1), (3, 2), (1, 2)):
        conv = PatchConv(3, 5, size, stride, rngs=nnx.Rngs(0))
        x = jax.random.normal(jax.random.key(1), (2, 8, 8, 3), jnp.float64)
        w = jnp.asarray(conv.kernel[...], jnp.float64)
        conv.kernel[...] = w
        pad = (size - 1) // 2
        ref = jax.lax.conv_general_dilated(
            x,
            w,
            (stride, stride),
            [(pad, pad), (pad, pad)],
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=jax.lax.Precision.HIGHEST,
        )
        np.testing.assert_allclose(
            np.asarray(jax.jit(lambda v, c=conv: c(v))(x)), np.asarray(ref), rtol=1e-12, atol=1e-12
        )


def test_resnet_logits_do_not_depend_on_the_rest_of_the_batch():
    model = ResNet(3, widths=(4, 8), blocks=(1, 1), rngs=nnx.Rngs(0))
    apply_fn, params = ldjax.from_nnx(model, example_shape=(8, 8, 3))
    x = jax.random.normal(jax.random.key(0), (4, 8, 8, 3))
    together = jax.jit(lambda p, v: ldjax.to_nnx(model, p)(v))(params, x)
    alone = jax.jit(jax.vmap(apply_fn, (None, 0)))(params, x)
    np.testing.assert_allclose(np.asarray(together), np.asarray(alone), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="widths and blocks"):
        ResNet(3, widths=(8, 16), blocks=(1,), rngs=nnx.Rngs(0))


def test_pull_matches_explicit_kernel():
    """The per-example pull equals −η/B · A · K(x_o, x_j) · G_j with K from ldjax.empirical_ntk."""
    from ldjax._src.experiments import learning_paths as lp

    model = ResNet(3, widths=(4, 8), blocks=(1, 1), rngs=nnx.Rngs(0))
    apply_fn, params = ldjax.from_nnx(model, example_shape=(8, 8, 3))
    x = jax.random.normal(jax.random.key(2), (5, 8, 8, 3))
    y = jnp.array([0, 1, 2, 1, 0])
    got = lp.pull_on(apply_fn, params, x[0], x, y, learning_rate=0.1, batch_size=4)

    @jax.jit
    def reference(params, x):
        k = ldjax.empirical_ntk(apply_fn, params, x[:1], x)[0]  # [n, 3, 3]
        z = jax.vmap(apply_fn, (None, 0))(params, x)
        g = jax.nn.softmax(z, -1) - jax.nn.one_hot(y, 3)
        dlog = -(0.1 / 4) * jnp.einsum("ab,nbc,nc->na", ldjax.a_term(z[0]), k, g)
        return jax.nn.softmax(z[0]) * dlog

    np.testing.assert_allclose(got, np.asarray(reference(params, x)), rtol=2e-4, atol=1e-8)


cifar3_notebook = notebook_fixture("cifar3_paths", env={"LDJAX_DATA_DIR": DATA})
filter_kd_notebook = notebook_fixture("filter_kd", env={"LDJAX_DATA_DIR": DATA})


def test_observed_examples_prefer_clear_zigzags():
    from ldjax._src.experiments import cifar3_paths as cp
    from ldjax._src.paths import ZigZag

    to_p = np.array([0.5, 0.3, 0.9, 0.0, 0.6])
    to_y = np.array([0.5, 0.8, 0.05, 0.9, 0.4])
    zz = ZigZag(*(np.zeros(5),) * 4, to_p, to_y, (to_p > 0.1) & (to_y > 0.1))
    flipped = np.array([True, True, True, True, False])
    # zig-zagging flipped examples first (by their smaller move), then the rest; never a clean one
    np.testing.assert_array_equal(cp.observed_examples(zz, flipped, 4), [0, 1, 2, 3])
    np.testing.assert_array_equal(cp.observed_examples(zz, flipped, 1), [0])


def test_cifar3_claims_report_counter_examples_as_missed():
    from ldjax._src.experiments import cifar3_paths as cp
    from ldjax._src.experiments import learning_paths as lp

    flipped, clean, gain = np.array([0.7, 0.6, 0.8]), np.array([0.1, 0.05, 0.1]), np.array([0.7, 0.6, 0.8])
    kw = {"margin": 0.1, "section": "Section 3", "what": "mislabelled examples"}
    rows = lp.path_claims("cifar3", "flipped", "clean", flipped, clean, gain, **kw)
    assert [r.id for r in rows] == [
        "cifar3.zigzag_flipped",
        "cifar3.zigzag_flipped_vs_clean",
        "cifar3.early_stop_near_p_star",
    ]
    assert all(row.holds for row in rows)
    rows = lp.path_claims(
        "cifar3", "flipped", "clean", flipped, flipped - 0.05, gain, **kw
    )  # clean ones as often
    assert rows[0].holds and not rows[1].holds
    assert not lp.path_claims("cifar3", "flipped", "clean", np.array([0.2, 0.3, 0.1]), clean, gain, **kw)[
        0
    ].holds
    assert not lp.path_claims("cifar3", "flipped", "clean", flipped, clean, np.array([0.1, 0.0, -0.2]), **kw)[
        2
    ].holds
    assert cp.pull_claim(np.array([0.8, 0.7, 0.9]), 4, 8).holds
    assert not cp.pull_claim(np.array([0.3, 0.4, 0.35]), 4, 8).holds  # pullers at chance


def test_filter_kd_claims_report_counter_examples_as_missed():
    from ldjax._src.experiments import filter_kd

    def results(fkd, oht_final, oht_es, eskd):
        row = {
            "FilterKD": {"accuracy": np.array(fkd), "tau": 1.0},
            "OHT-final": {"accuracy": np.array(oht_final)},
            "OHT-ES": {"accuracy": np.array(oht_es)},
            "ESKD": {"accuracy": np.array(eskd)},
        }
        return {"noises": [0.0, 0.2], "table": {"0": row, "0.2": row}}

    good = filter_kd.fidelity(results([0.80] * 5, [0.70] * 5, [0.78] * 5, [0.79] * 5))
    assert [r.id for r in good] == [
        "filter_kd.beats_final_oht_20",
        "filter_kd.beats_early_stopped_20",
        "filter_kd.beats_eskd_20",
    ]
    assert all(r.holds for r in good) and all(r.seeds == 5 for r in good)
    # Filter-KD no better than memorised one-hot training, early-stopped training or ESKD: all missed
    bad = filter_kd.fidelity(results([0.70] * 5, [0.705] * 5, [0.75] * 5, [0.72] * 5))
    assert not any(r.holds for r in bad)


def test_filter_table_is_saved_at_the_best_epoch():
    """The table averages the visits of epochs 1..best only (the authors save it with the best checkpoint)."""
    from ldjax._src import paths
    from ldjax._src.experiments import filter_kd
    from ldjax._src.experiments.fitting import Fit

    rng = np.random.default_rng(0)
    visits = rng.normal(size=(5, 2, 4, 3))
    seen = rng.random((5, 2, 4)) < 0.8
    run = Fit(*([None] * 13))._replace(best=np.array([2, 5]), visits=visits, seen=seen)
    got = filter_kd.filter_table(run, 0, temperature=2.0, decay=0.9)
    ref = paths.filter_targets(jax.nn.softmax(visits[:2, 0] / 2.0, -1), decay=0.9, seen=seen[:2, 0])
    np.testing.assert_allclose(got, np.asarray(ref), rtol=1e-6)


@needs_cifar
def test_test_size_takes_the_first_images_of_the_test_part():
    from ldjax._src.experiments import cifar3_paths as cp
    from ldjax._src.experiments.cifar3_paths.data import make_splits

    config = cp.Config(train_size=100, val_size=100)
    every, first = make_splits(config, DATA), make_splits(dataclasses.replace(config, test_size=50), DATA)
    assert len(every.test.index) == 2800 and len(first.test.index) == 50
    np.testing.assert_array_equal(first.test.index, every.test.index[:50])
    np.testing.assert_array_equal(first.train.y, every.train.y)  # train and val are untouched
    with pytest.raises(ValueError, match=r"test_size must be in \[0, 2800\]"):
        make_splits(dataclasses.replace(config, test_size=2801), DATA)


@needs_cifar
def test_cifar3_experiment_smoke(cifar3_notebook, tmp_path, monkeypatch):
    """The experiment at TINY, run by its notebook; ``main`` turns the flags into TINY and saves that run."""
    from ldjax._src.experiments import cifar3_paths as cp

    assert cifar3_notebook["config"] == cp.TINY
    monkeypatch.setattr(cp, "run", replay_run(cifar3_notebook["results"], cp.TINY))
    monkeypatch.setattr(cp, "plot", replay_plot(cifar3_notebook["out"]))  # the notebook drew them
    argv = ["--out", str(tmp_path), "--data-dir", DATA, "--no-progress", *flags(cp.TINY, cp.Config())]
    assert cp.main(argv) == 0
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["complete"] and "CIFAR-10H" in saved["dataset"]
    res = saved["results"]
    assert res["num_flipped"] == 20  # 20% of the 100 training images, exactly
    assert len(res["flipped_mean_distance_p_star"]) == 2 + 1  # records: start + 1 per epoch
    assert len(res["per_seed"]["zigzag_flipped"]) == 2 and len(res["pulls"][1]) == 2
    assert {f["path"].rsplit("/", 1)[-1] for f in res["data_files"]} >= {"cifar10h_probs.npy"}
    assert len(saved["figures"]) == 3 and all((tmp_path / f).exists() for f in saved["figures"])
    assert {r["id"] for r in saved["fidelity"]} == {
        "cifar3.zigzag_flipped",
        "cifar3.zigzag_flipped_vs_clean",
        "cifar3.early_stop_near_p_star",
        "cifar3.pulls_from_p_star_class",
    }


@needs_cifar
def test_filter_kd_smoke(filter_kd_notebook, tmp_path, monkeypatch):
    """The experiment at TINY, run by its notebook; ``main`` turns the flags into TINY and saves that run."""
    from ldjax._src.experiments import filter_kd

    assert filter_kd_notebook["config"] == filter_kd.TINY
    monkeypatch.setattr(filter_kd, "run", replay_run(filter_kd_notebook["results"], filter_kd.TINY))
    monkeypatch.setattr(filter_kd, "plot", replay_plot(filter_kd_notebook["out"]))  # the notebook drew them
    argv = [
        "--out",
        str(tmp_path),
        "--data-dir",
        DATA,
        "--no-progress",
        *flags(filter_kd.TINY, filter_kd.Config()),
    ]
    assert filter_kd.main(argv) == 0
    saved = json.loads((tmp_path / "results.json").read_text())
    assert "CIFAR-10H" in saved["dataset"] and saved["results"]["data_files"]
    table = saved["results"]["table"]["0.4"]
    assert set(table) >= {"OHT-ES", "OHT-final", "ESKD", "FilterKD"}
    assert set(table["FilterKD"]["by_tau"]) == {"1", "4"} and table["FilterKD"]["tau"] in (1.0, 4.0)
    for m in ("OHT-ES", "OHT-final", "ESKD", "FilterKD"):
        assert len(table[m]["accuracy"]) == 2 and 0.0 <= np.mean(table[m]["ece"]) <= 1.0
    assert set(saved["results"]["table"]) == {"0.4"}  # TINY: one noise level
    assert [r["id"] for r in saved["fidelity"]] == [
        "filter_kd.beats_final_oht_40",
        "filter_kd.beats_early_stopped_40",
        "filter_kd.beats_eskd_40",
    ]
    assert len(saved["figures"]) == 1

"""Thesis ch. 7 (compositional mappings): the task, every update's decomposition against an explicit float64
Jacobian, the claims against counter-examples, the checks against a bad prediction, and the smoke run."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from ldjax._src.experiments import compositional
from ldjax._src.experiments.compositional import forces
from ldjax._src.experiments.compositional import report
from ldjax._src.experiments.compositional import task as task_lib
from ldjax._src.losses.classification import cross_entropy

from notebook_runner import notebook_fixture


def test_the_mappings_are_bijections_and_the_split_is_balanced():
    config = task_lib.Config(values=6, heldout_per_value=2, noise_fraction=0.25)
    g, x = task_lib.objects(6)
    t = task_lib.make_task(config, 3)
    compositional_labels, random_labels, noisy_labels = t["labels"]
    for labels in (compositional_labels, random_labels):  # every message exactly once
        assert len({tuple(row) for row in labels}) == 36
    for factor in (0, 1):  # the compositional answer's token i depends on factor i only, one-to-one
        pairs = {(a, b) for a, b in zip(g[:, factor], compositional_labels[:, factor], strict=True)}
        assert len(pairs) == 6
    held = np.ones(36, bool)
    held[t["train_idx"]] = False
    for factor in (0, 1):
        np.testing.assert_array_equal(np.bincount(g[held, factor], minlength=6), np.full(6, 2))
    noisy = t["noisy"]
    assert noisy.sum() == round(0.25 * 24) and not np.any(noisy & held)
    assert np.all(noisy_labels[noisy] != compositional_labels[noisy])  # both tokens wrong
    np.testing.assert_array_equal(noisy_labels[~noisy], compositional_labels[~noisy])
    np.testing.assert_array_equal(x.sum(1), np.full(36, 2.0))
    with pytest.raises(ValueError, match=r"heldout_per_value must be in \[1, values=6\)"):
        task_lib.make_task(task_lib.Config(values=6, heldout_per_value=6), 0)


def _log_softmax(z):
    return z - np.log(np.sum(np.exp(z), -1, keepdims=True))


@pytest.mark.float64
def test_update_forces_and_influence_map_match_an_explicit_jacobian_float64():
    config = task_lib.Config(values=3, heldout_per_value=1, hidden=(8,), noise_fraction=0.34)
    t = task_lib.make_task(config, 0)
    apply_fn, params = task_lib.build_model(config, 0)
    flat, unravel = ravel_pytree(params)
    flat = jnp.asarray(flat, jnp.float64) + 0.3 * jax.random.normal(
        jax.random.key(1), flat.shape, jnp.float64
    )
    params = unravel(flat)
    g, x = task_lib.objects(3)
    x = np.asarray(x, np.float64)
    labels = t["labels"][2]  # the noisy mapping: both parts of the force are present
    train = np.zeros(9)
    train[t["train_idx"]] = 1.0
    noisy = t["noisy"].astype(float)
    clean_train = [i for i in t["train_idx"] if not noisy[i]]
    batch = np.array([clean_train[0], np.flatnonzero(noisy)[0], clean_train[-1]])  # one mislabelled row
    eta = 0.05
    loss = lambda p: cross_entropy(jax.vmap(apply_fn, (None, 0))(p, x[batch]), labels[batch])  # noqa: E731
    updates = optax.sgd(eta).update(jax.grad(loss)(params), optax.sgd(eta).init(params))[0]
    data = {key: jnp.asarray(v) for key, v in dict(x=x, labels=labels, train=train, noisy=noisy).items()}
    got = jax.jit(functools.partial(forces.update_forces, apply_fn, eta))(params, batch, updates, data)

    # reference: explicit Jacobian of the flattened parameters, the force and A written out by hand
    f = lambda w: jax.vmap(apply_fn, (None, 0))(unravel(w), x)  # noqa: E731
    jac = np.asarray(jax.jacrev(f)(flat))  # [C, 2, V, p]
    z = np.asarray(f(flat))
    probs = np.exp(_log_softmax(z))
    onehot = np.eye(3)[labels]

    def picked(change):  # [C, 2, V] -> [C]
        return np.take_along_axis(change, labels[..., None], -1)[..., 0].sum(-1)

    def first_order(force_rows):  # the force on the batch rows [B, 2, V] -> predicted Δ log π [C, 2, V]
        u = -eta * np.einsum("btvp,btv->p", jac[batch], force_rows)
        dz = jac @ u
        return dz - np.sum(probs * dz, -1, keepdims=True)  # A = I - 1 πᵀ per token

    force = (probs[batch] - onehot[batch]) / (len(batch) * 2)
    parts = [picked(first_order(force * w[:, None, None])) for w in (1 - noisy[batch], noisy[batch])]
    in_batch = np.zeros(9)
    in_batch[batch] = 1.0
    others = train * (1 - in_batch)
    want_self = [np.sum(parts[0] * in_batch * (1 - noisy)), np.sum(parts[1] * in_batch * noisy)]
    np.testing.assert_allclose(got["self"], want_self, rtol=1e-10)
    np.testing.assert_allclose(got["others"], [p @ others for p in parts], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(got["heldout"], [p @ (1 - train) for p in parts], rtol=1e-10, atol=1e-14)
    actual = picked(_log_softmax(np.asarray(f(flat + ravel_pytree(updates)[0]))) - _log_softmax(z))
    np.testing.assert_allclose(got["actual_others"], actual @ others, rtol=1e-10)
    np.testing.assert_allclose(got["actual_self"], actual @ in_batch, rtol=1e-10)
    np.testing.assert_allclose(got["abs_error"], np.abs(parts[0] + parts[1] - actual).sum(), rtol=1e-8)
    assert got["abs_error_tenth"] < got["abs_error"] / 50  # the residual is second order

    # the pairwise map: row u = a step of size η on object u's own loss, alone
    maps = forces.influence_map(apply_fn, eta, params, data, jnp.asarray(t["train_idx"]))
    for row, u in enumerate(t["train_idx"][:3]):
        batch = np.array([u])
        want = picked(first_order((probs[batch] - onehot[batch]) / 2))
        np.testing.assert_allclose(maps[row], want, rtol=1e-9, atol=1e-14)


def test_relation_means_and_learned_epochs_by_hand():
    g = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    trained = np.array([True, True, True, False])
    influence = np.array([[9.0, 1.0, 2.0, 3.0], [4.0, 9.0, 5.0, 6.0]])
    got = forces.relation_means(influence, g, np.array([0, 1]), trained)
    np.testing.assert_allclose(got, [(1.0 + 4.0) / 2, 2.0, 5.0, (3.0 + 6.0) / 2])
    correct = np.array([[0, 1, 0], [1, 1, 0], [0, 1, 1], [1, 1, 1]], bool)[:, None]  # [R=4, S=1, C=3]
    np.testing.assert_array_equal(report.learned_epochs(correct), [[3, 0, 2]])
    np.testing.assert_array_equal(report.learned_epochs(correct[:3]), [[3, 0, 2]])  # wrong at the end: R


# ------------------------------------------------------------------------------------------------ claims


def synthetic(speedup=6.0, coop=0.7, random_coop=-0.5, slowdown=4.0, noisy_coop=-0.5, seeds=5):
    """Results with the paper's pattern (the defaults); each argument moves one claim's statistic."""
    epochs, objects = 40, 16
    r = np.arange(epochs + 1)[:, None] * np.ones(seeds)
    full = {"compositional": 4, "random": int(round(4 * speedup)), "noisy": 30}
    train_acc = np.stack([np.minimum(r / full[name], 1.0) for name in compositional.MAPS])
    own = np.exp(-np.arange(epochs) / 8.0)[:, None, None] * np.ones((epochs, seeds, 2))
    own[..., 1] *= 0.2
    ratio = {"compositional": (coop, 0.0), "random": (random_coop, 0.0), "noisy": (0.2, noisy_coop)}
    others = np.stack([own * np.array(ratio[name]) for name in compositional.MAPS])
    own = np.stack([own * np.array([1.0, name == "noisy"]) for name in compositional.MAPS])
    train = np.ones((seeds, objects), bool)
    train[:, :4] = False
    noisy = np.zeros((seeds, objects), bool)
    noisy[:, 4:7] = True
    learned = np.where(noisy, 5.0 * slowdown, 5.0)[None].repeat(3, 0)
    whole = own.sum(-1)
    return {
        "train_accuracy": train_acc,
        "self": own,
        "others": others,
        "heldout": 0.1 * own,
        "actual_self": 0.95 * whole,
        "actual_others": 1.2 * others.sum(-1),
        "abs_error": 0.05 * whole,
        "abs_error_tenth": 0.0005 * whole,
        "abs_actual": whole,
        "learned_epoch": learned,
        "train": train,
        "noisy": noisy,
    }


COUNTER_EXAMPLES = {
    "ch7.compositional_learned_faster": {"speedup": 1.0},
    "ch7.compositional_forces_cooperate": {"coop": 0.02},
    "ch7.random_forces_contradict": {"random_coop": 0.05},
    "ch7.clean_faster_than_noisy": {"slowdown": 1.2},
    "ch7.noisy_forces_contradict": {"noisy_coop": -0.05},
}


@pytest.mark.parametrize("claim_id", list(report.CLAIMS))
def test_each_claim_holds_on_the_papers_pattern_and_is_missed_on_its_counter_example(claim_id):
    assert set(report.CLAIMS) == set(report.STATISTICS) == set(COUNTER_EXAMPLES)
    held = {row.id: row.holds for row in report.fidelity(synthetic())}
    assert all(held.values()), held
    missed = {row.id: row.holds for row in report.fidelity(synthetic(**COUNTER_EXAMPLES[claim_id]))}
    assert not missed[claim_id]
    assert all(
        ok for key, ok in missed.items() if key != claim_id
    )  # the counter-example moves only its claim


def test_checks_catch_a_bad_prediction():
    good = synthetic()
    error = 0.5 * good["abs_actual"]
    bad = dict(
        good,
        abs_error=error,
        abs_error_tenth=error / 10,  # an error that is first order in the step
        actual_others=-good["actual_others"] + 0.3,
    )
    held = {row.id: row.holds for row in report.checks(bad)}
    assert held == {
        "ch7.residual_is_second_order": False,
        "ch7.first_order_matches_actual": False,
        "ch7.others_track_actual": False,
        "ch7.cooperation_sign_matches_actual": False,
    }


# ------------------------------------------------------------------------------------------------ smoke run


notebook = notebook_fixture("compositional")


def test_tiny_run_records_decomposes_and_plots(notebook, tmp_path, monkeypatch):
    """The experiment at TINY, run by its notebook (one run for the notebook and the smoke test)."""
    config, r = notebook["config"], notebook["results"]
    assert config == compositional.TINY
    maps, records, seeds = len(compositional.MAPS), config.epochs + 1, config.seeds
    assert np.shape(r["train_accuracy"]) == (maps, records, seeds)
    assert np.shape(r["others"]) == (maps, config.epochs, seeds, 2)
    assert np.all(np.asarray(r["self"])[:2, ..., 1] == 0)  # no mislabelled rows outside the noisy run
    assert np.all(np.asarray(r["self"])[..., 0] > 0)  # each update raises its own labels, to first order
    rows = compositional.fidelity(r)
    assert [row.id for row in rows if row.kind == "claim"] == list(report.CLAIMS)
    assert all(row.seeds == seeds for row in rows if row.kind == "claim")
    assert all(row.holds for row in rows if row.kind == "check"), [row for row in rows if not row.holds]
    names = sorted(p.name for p in notebook["out"].glob("*.png"))  # drawn by the notebook's plot cell
    assert names == ["compositional_force_map.png", "compositional_forces.png", "compositional_learning.png"]
    monkeypatch.setattr(compositional, "run", lambda config, data_dir=None, progress=True: r)
    monkeypatch.setattr(compositional, "plot", lambda results, out_dir: [])  # drawn by the notebook
    assert compositional.main(["--seeds", "2", "--out", str(tmp_path / "cli"), "--no-progress"]) == 0
    saved = json.loads((tmp_path / "cli" / "results.json").read_text())
    assert (
        "two-factor" in saved["dataset"] and saved["fidelity"][0]["id"] == "ch7.compositional_learned_faster"
    )


@pytest.mark.slow
def test_quick_run_claims():
    """The quick settings: every claim and check holds (5 paired seeds; values in docs/forces.md)."""
    rows = compositional.fidelity(compositional.run(compositional.Config(), progress=False))
    assert all(row.holds for row in rows), [row for row in rows if not row.holds]

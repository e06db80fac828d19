"""force_attribution against slow float64 references: explicit gradients on the flattened parameters, the
structured kernel product −η·A·K·G, and the projected route converging to the exact one as the rank grows."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import ldjax
from ldjax._src.attribution import streaming

import problems
from problems import cnn_apply
from problems import cnn_problem
from problems import draws
from problems import mlp_apply
from problems import mlp_problem
from problems import seq_apply
from problems import seq_problem
from typechecking import ill_typed


def temperature_mlp(p, x):
    """The tanh MLP of ``problems`` with its logits scaled by exp(t): ``t`` is used non-linearly (the Jacobian
    fallback)."""
    return mlp_apply(p, x) * jnp.exp(p["t"])


def temperature_problem(key, n=7, n_o=3, k=4, dtype=jnp.float64):
    params, x, probe_x = mlp_problem(key, n1=n, n2=n_o, k=k, dtype=dtype)
    _, integers = draws(jax.random.fold_in(key, 1), dtype)
    y = integers(k, (n,))
    return {**params, "t": jnp.asarray(0.3, dtype)}, x, y, probe_x


def reference_pushes(apply_fn, step_params, x, y, probe_x, tokens, mask, loss, batches, rates):
    """Σ over updates of −η·<∇θ Σ_t m_t log π_t(y_t | x_o), ∇θ L(batch) through example j only>, by jax.grad
    on the flattened parameters, one probe and one example at a time."""
    n_o, n = len(probe_x), len(jax.tree.leaves(x)[0])
    scores = np.zeros((n_o, n))

    _, unravel = ravel_pytree(step_params[0])  # the same layout at every step

    def log_prob(theta, xo, t, m):
        z = jax.nn.log_softmax(apply_fn(unravel(theta), xo), axis=-1)
        return jnp.sum(m * jnp.take_along_axis(z, t[..., None], axis=-1)[..., 0])

    def batch_loss(theta, z_fixed, position, xj, yb):
        return loss(z_fixed.at[position].set(apply_fn(unravel(theta), xj)), yb)

    # compiled once each (op by op, the loops below would compile every operation of the model separately)
    probe_grad, share_grad = jax.jit(jax.grad(log_prob)), jax.jit(jax.grad(batch_loss))
    forward = jax.jit(jax.vmap(apply_fn, (None, 0)))
    for params, batch, rate in zip(step_params, batches, rates, strict=True):
        flat, _ = ravel_pytree(params)
        probe_grads = [probe_grad(flat, probe_x[o], tokens[o], mask[o]) for o in range(n_o)]
        xb = jax.tree.map(lambda a, b=batch: a[b], x)
        yb = jax.tree.map(lambda a, b=batch: a[b], y)
        z_fixed = forward(params, xb)
        for position, j in enumerate(batch):
            xj = jax.tree.map(lambda a, j=j: a[j], x)
            share = np.asarray(share_grad(flat, z_fixed, position, xj, yb))
            for o in range(n_o):
                scores[o, j] += -rate * float(np.asarray(probe_grads[o]) @ share)
    return scores


@pytest.mark.float64
@pytest.mark.parametrize("method", ["exact", "projected"])
def test_matches_float64_gradients_with_a_trace(method):
    """A trace of 3 updates of 2 examples with the parameters of each update; projected at full rank is exact."""
    params, x, y, probe_x = temperature_problem(jax.random.key(0))
    steps = [jax.tree.map(lambda a, s=s: a + 0.05 * s, params) for s in range(3)]
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *steps)
    batches, rates = np.array([[0, 3], [5, 1], [3, 6]]), np.array([0.1, 0.05, 0.2])
    probe_y = jnp.array([0, 3, 1])
    got = ldjax.force_attribution(
        temperature_mlp, None, x, y, probe_x, probe_y,
        loss=ldjax.losses.cross_entropy, trace=ldjax.TrainingTrace(batches, rates, stacked),
        method=method, rank=8, progress=False, chunk_size=4,
    )  # fmt: skip
    ref = reference_pushes(
        temperature_mlp,
        steps,
        x,
        y,
        probe_x,
        probe_y,
        jnp.ones(3),
        ldjax.losses.cross_entropy,
        batches,
        rates,
    )
    assert got.method == method and got.scores.shape == (3, 7)
    np.testing.assert_allclose(got.scores, ref, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(sum(got.per_layer.values()), got.scores, rtol=1e-12, atol=1e-15)
    assert np.all(got.scores[:, [2, 4]] == 0)  # in no update
    assert np.abs(got.per_layer["t"]).max() > 1e-3  # the fallback leaf contributes


@pytest.mark.float64
def test_exact_equals_structured_kernel_product():
    """Sequence model, SFT with a response mask, masked sequence probes: −η·Σ_t [A·K·G]_{t, y_t} per example."""
    params, probe_x, x = seq_problem(jax.random.key(1), n1=2, n2=5, t=3, vocab=4)
    tokens = problems.randint(jax.random.key(2), (5, 3), 0, 4)
    mask = jnp.array([[0, 1, 1], [1, 1, 1], [0, 0, 1], [0, 1, 1], [1, 0, 1]], jnp.float64)
    probe = ldjax.losses.SequenceTarget(
        jnp.array([[1, 2, 3], [0, 0, 2]]), jnp.array([[0.0, 1, 1], [1, 1, 0]])
    )
    eta = 0.3
    got = ldjax.force_attribution(
        seq_apply, params, x, ldjax.losses.SequenceTarget(tokens, mask), probe_x, probe,
        loss=ldjax.losses.sft, learning_rate=eta, method="exact", progress=False,
    )  # fmt: skip
    k = ldjax.empirical_ntk(seq_apply, params, probe_x, x, method="structured")  # [2, 5, T, V, T, V]
    z_o = jax.vmap(seq_apply, (None, 0))(params, probe_x)
    a = ldjax.a_term(z_o)  # [2, T, V, V]
    g = jnp.stack(
        [
            ldjax.g_term(ldjax.losses.sft, seq_apply(params, x[j])[None], ldjax.losses.SequenceTarget(tokens[j : j + 1], mask[j : j + 1]))[0]
            for j in range(5)
        ]
    )  # fmt: skip
    change = -eta * jnp.einsum("otab,ojtbsc,jsc->ojta", a, k, g)  # [n_o, n, T, V]
    picked = jnp.take_along_axis(change, probe.tokens[:, None, :, None], axis=-1)[..., 0]
    expected = jnp.sum(picked * probe.mask[:, None, :], axis=-1)
    np.testing.assert_allclose(got.scores, expected, rtol=1e-10, atol=1e-14)
    full = ldjax.force_attribution(
        seq_apply,
        params,
        x,
        ldjax.losses.SequenceTarget(tokens, mask),
        probe_x,
        probe,
        loss=ldjax.losses.sft,
        learning_rate=eta,
        method="projected",
        rank=4,
        progress=False,
    )  # fmt: skip: rank 4 >= V, d, T: nothing is projected
    np.testing.assert_allclose(full.scores, expected, rtol=1e-10, atol=1e-14)


@pytest.mark.float64
def test_projected_converges_to_exact_as_the_rank_grows():
    """Convolutions (patches) and dense layers: the mean relative error over projection keys falls with the
    rank, and is round-off at full rank."""
    params, probe_x, x = cnn_problem(jax.random.key(3), n1=3, n2=12, k=3)
    y = jnp.arange(12) % 3
    kwargs = dict(loss=ldjax.losses.cross_entropy, learning_rate=0.1, progress=False, per_layer=False)
    exact = ldjax.force_attribution(cnn_apply, params, x, y, probe_x, method="exact", **kwargs).scores
    errors = []
    for rank in (1, 3, 18):  # 18 = the widest side (c2 patches: 2·2·3 = 12, dense: 18 inputs)
        err = [
            np.linalg.norm(
                ldjax.force_attribution(
                    cnn_apply, params, x, y, probe_x, method="projected", rank=rank, key=jax.random.key(s), **kwargs
                ).scores
                - exact
            )
            / np.linalg.norm(exact)
            for s in range(3)
        ]  # fmt: skip
        errors.append(np.mean(err))
    assert errors[0] > errors[1] > 1e-3, errors
    assert errors[2] < 1e-12, errors


@pytest.mark.float64
def test_resumes_after_an_interruption(tmp_path):
    params, x, y, probe_x = temperature_problem(jax.random.key(4), n=9)
    kwargs = dict(loss=ldjax.losses.cross_entropy, method="projected", rank=2, chunk_size=2, progress=False)
    whole = ldjax.force_attribution(temperature_mlp, params, x, y, probe_x, **kwargs)

    def interrupt(index, n_chunks):
        assert n_chunks == 5
        if index == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ldjax.force_attribution(
            temperature_mlp, params, x, y, probe_x, directory=tmp_path, callback=interrupt, **kwargs
        )
    saved = sorted(tmp_path.glob("chunk_*.npz"))
    assert [p.name for p in saved] == ["chunk_000000.npz", "chunk_000001.npz"]
    stamps = [p.stat().st_mtime_ns for p in saved]
    resumed = ldjax.force_attribution(temperature_mlp, params, x, y, probe_x, directory=tmp_path, **kwargs)
    assert [p.stat().st_mtime_ns for p in saved] == stamps  # reused, not recomputed
    assert len(list(tmp_path.glob("chunk_*.npz"))) == 5 and not list(tmp_path.glob(".*tmp"))
    np.testing.assert_array_equal(resumed.scores, whole.scores)
    with pytest.raises(ValueError, match="holds the chunks of a different computation"):
        ldjax.force_attribution(temperature_mlp, params, x, y, probe_x[:2], directory=tmp_path, **kwargs)
    # another loss or model function of the same name is another computation
    halved = lambda z, t: 0.5 * ldjax.losses.cross_entropy(z, t)  # noqa: E731
    halved.__name__ = ldjax.losses.cross_entropy.__name__
    with pytest.raises(ValueError, match="holds the chunks of a different computation"):
        ldjax.force_attribution(
            temperature_mlp, params, x, y, probe_x, directory=tmp_path, **{**kwargs, "loss": halved}
        )
    doubled = lambda p, xi: 2 * temperature_mlp(p, xi)  # noqa: E731
    doubled.__name__ = temperature_mlp.__name__
    with pytest.raises(ValueError, match="holds the chunks of a different computation"):
        ldjax.force_attribution(doubled, params, x, y, probe_x, directory=tmp_path, **kwargs)


def test_fingerprint_sees_values():
    a = np.arange(6.0)
    assert streaming.fingerprint([a], {"m": 1}) == streaming.fingerprint([a.copy()], {"m": 1})
    assert streaming.fingerprint([a], {"m": 1}) != streaming.fingerprint([a + 1e-12], {"m": 1})
    assert streaming.fingerprint([a], {"m": 1}) != streaming.fingerprint([a], {"m": 2})


def test_auto_takes_the_projected_route_when_exact_does_not_fit(capsys):
    params, x, y, probe_x = temperature_problem(jax.random.key(5), n=4, dtype=jnp.float32)
    common = dict(loss=ldjax.losses.cross_entropy, progress=False)
    whole = ldjax.force_attribution(temperature_mlp, params, x, y, probe_x, **{**common, "progress": True})
    assert whole.method == "exact" and "force_attribution" in capsys.readouterr().err  # the progress bar
    # the budget bounds the chunk: (fixed 1,740 + 700 bytes per example) -> 2 examples per chunk, same scores
    chunks = []
    small = ldjax.force_attribution(
        temperature_mlp, params, x, y, probe_x, method="exact", memory_budget=3_500,
        callback=lambda i, n: chunks.append(n), **common,
    )  # fmt: skip
    assert chunks == [2, 2]
    np.testing.assert_allclose(small.scores, whole.scores, rtol=1e-6, atol=1e-9)
    tight = ldjax.force_attribution(
        temperature_mlp, params, x, y, probe_x, memory_budget=4_000, rank=1, **common
    )
    assert tight.method == "projected" and tight.rank == (1, 1)


def test_errors_name_the_argument():
    params, x, y, probe_x = temperature_problem(jax.random.key(6), n=4, dtype=jnp.float32)
    f = temperature_mlp
    ce = dict(loss=ldjax.losses.cross_entropy, progress=False)
    with pytest.raises(ValueError, match="method must be 'auto', 'exact' or 'projected'"), ill_typed():
        ldjax.force_attribution(f, params, x, y, probe_x, method="fast", **ce)
    with pytest.raises(ValueError, match="rank must be a positive int"):
        ldjax.force_attribution(f, params, x, y, probe_x, rank=0, **ce)
    with pytest.raises(ValueError, match="chunk_size must be a positive int"):
        ldjax.force_attribution(f, params, x, y, probe_x, chunk_size=0, **ce)
    with pytest.raises(ValueError, match=r"probe_y has shape \(2,\)"):
        ldjax.force_attribution(f, params, x, y, probe_x, jnp.array([0, 1]), **ce)
    with pytest.raises(ValueError, match="probe_y holds labels in"):
        ldjax.force_attribution(f, params, x, y, probe_x, jnp.array([0, 1, 9]), **ce)
    with pytest.raises(ValueError, match="learning_rate must be finite and > 0"):
        ldjax.force_attribution(f, params, x, y, probe_x, learning_rate=-1.0, **ce)
    with pytest.raises(ValueError, match=r"trace.batches holds indices in \[0, 4\] but train_x has n=4"):
        ldjax.force_attribution(
            f, params, x, y, probe_x, trace=ldjax.TrainingTrace(np.array([[0, 4]]), 0.1), **ce
        )
    with pytest.raises(ValueError, match="trace must be a ldjax.TrainingTrace.*got tuple"), ill_typed():
        ldjax.force_attribution(f, params, x, y, probe_x, trace=(np.array([[0]]), 0.1), **ce)
    with pytest.raises(ValueError, match="give the learning rates as trace.learning_rates"):
        ldjax.force_attribution(
            f, params, x, y, probe_x, learning_rate=0.1, trace=ldjax.TrainingTrace(np.array([[0]]), 0.1), **ce
        )
    with pytest.raises(ValueError, match="params must be None when trace.params"):
        stacked = jax.tree.map(lambda a: a[None], params)
        ldjax.force_attribution(
            f, params, x, y, probe_x, trace=ldjax.TrainingTrace(np.array([[0]]), 0.1, stacked), **ce
        )
    with pytest.raises(ValueError, match="one logit per example"):
        ldjax.force_attribution(lambda p, xi: f(p, xi)[:1], params, x, y, probe_x, **ce)
    with pytest.raises(ValueError, match="memory budget"):
        ldjax.force_attribution(f, params, x, y, probe_x, memory_budget=100, **ce)
    with pytest.raises(ValueError, match="axis 'data' is not an axis of the mesh"):
        mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("probe",))
        ldjax.force_attribution(f, params, x, y, probe_x, mesh=mesh, axis="data", **ce)


def test_a_pair_loss_needs_a_trace():
    params, tokens, _ = seq_problem(jax.random.key(7), n1=4, n2=1, t=3, vocab=4, dtype=jnp.float32)
    target = ldjax.losses.PreferenceTarget(tokens, jnp.ones((4, 3)), jnp.zeros(4))
    dpo = ldjax.losses.dpo_fn(0.1)
    with pytest.raises(ValueError, match="a loss over pairs or groups needs trace=TrainingTrace"):
        ldjax.force_attribution(seq_apply, params, tokens, target, tokens[:1], loss=dpo, progress=False)
    pairs = ldjax.TrainingTrace(np.array([[0, 2], [1, 3]]), 0.1)  # chosen row first, then its rejected row
    r = ldjax.force_attribution(
        seq_apply, params, tokens, target, tokens[:1], loss=dpo, trace=pairs, progress=False
    )
    assert r.scores.shape == (1, 4) and np.all(np.isfinite(r.scores))

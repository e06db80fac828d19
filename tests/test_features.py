"""The feature decomposition against float64 references: finite differences, a real optimizer step, η² residuals."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.flatten_util import ravel_pytree

import ldjax
from ldjax._src.features import head_direction

from problems import finite_difference_ntk
from problems import mlp_problem

CE = ldjax.losses.cross_entropy
F64 = {"rtol": 1e-6, "atol": 1e-9}  # against central differences with eps = 1e-6 in float64
EXACT = {"rtol": 1e-10, "atol": 1e-13}  # two exact float64 computations of the same quantity


def feature_fn(params, x):
    """The penultimate layer of ``problems.mlp_apply``: ``[d] -> [hidden]``."""
    h = jnp.tanh(x @ params["w1"] + params["b1"])
    return jnp.tanh(h @ params["w2"] + params["b2"])


def head_fn(params, h):
    """Its linear head: ``[hidden] -> [k]``."""
    return h @ params["w3"] + params["b3"]


def problem(seed=0, n_o=5, n_u=3, dtype=jnp.float64):
    params, x_o, x_u = mlp_problem(jax.random.key(seed), n1=n_o, n2=n_u, dtype=dtype)
    return params, x_o, x_u, jnp.array([0, 2, 3, 1, 1][:n_u])


def features(params, x):
    return jax.vmap(feature_fn, (None, 0))(params, x)


def loss_at(params, x, y):
    return CE(jax.vmap(lambda xi: head_fn(params, feature_fn(params, xi)))(x), y)


def test_terms_and_prediction_match_float64_finite_differences_and_a_real_sgd_step():
    with jax.enable_x64(True):
        params, x_o, x_u, y_u = problem()
        lr = 1e-2
        r = ldjax.feature_step(feature_fn, head_fn, params, x_o, x_u, y_u, loss=CE, learning_rate=lr)
        assert r.predicted.shape == r.actual.shape == r.h_o.shape == (5, 6)
        assert r.kernel.shape == (5, 3, 6, 6) and r.direction.shape == (3, 4, 6) and r.energy.shape == (3, 4)
        # kernel: finite-difference Jacobians of the feature map on the flattened parameters
        np.testing.assert_allclose(r.kernel, finite_difference_ntk(feature_fn, params, x_o, x_u), **F64)
        # direction: central differences of the head in its input, at h(x_u)
        h_u, eps = features(params, x_u), 1e-6
        head = jax.vmap(head_fn, (None, 0))
        columns = jax.jit(
            jax.vmap(lambda e: (head(params, h_u + eps * e) - head(params, h_u - eps * e)) / (2 * eps))
        )
        np.testing.assert_allclose(r.direction, np.moveaxis(np.asarray(columns(jnp.eye(6))), 0, -1), **F64)
        # energy: (π − e_y) / n_u for the mean cross-entropy
        z_u = head(params, h_u)
        np.testing.assert_allclose(r.energy, (jax.nn.softmax(z_u) - jax.nn.one_hot(y_u, 4)) / 3, **EXACT)
        # SGD: the JVP prediction is −η Σ K Dᵀ G (the head's parameters do not enter the feature map)
        np.testing.assert_allclose(
            r.predicted, ldjax.feature_decomposition(r.kernel, r.direction, r.energy, lr), **EXACT
        )

        @jax.jit
        def by_hand(params):  # the SGD update written out, h(x_o) moved along it: central difference, step
            flat, unravel = ravel_pytree(params)
            u = -lr * ravel_pytree(jax.grad(loss_at)(params, x_u, y_u))[0]
            along = (features(unravel(flat + eps * u), x_o) - features(unravel(flat - eps * u), x_o)) / (
                2 * eps
            )
            return along, features(unravel(flat + u), x_o) - features(params, x_o), loss_at(params, x_u, y_u)

        along, moved, loss = by_hand(params)
        np.testing.assert_allclose(r.predicted, along, **F64)
        np.testing.assert_allclose(r.actual, moved, **EXACT)
        np.testing.assert_allclose(r.residual, r.actual - r.predicted, **EXACT)
        assert float(r.loss) == pytest.approx(float(loss), rel=1e-12)


def warm(opt, params):
    """An optimizer state with history: two earlier updates from random gradients (one compiled program)."""

    @jax.jit
    def history(params):
        state = opt.init(params)
        for seed in (10, 11):
            g = jax.tree.map(lambda p, s=seed: jax.random.normal(jax.random.key(s), p.shape, p.dtype), params)
            _, state = opt.update(g, state, params)
        return state

    return history(params)


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_residual_shrinks_like_eta_squared_after_a_real_optimizer_step(name):
    with jax.enable_x64(True):
        params, x_o, x_u, y_u = problem(seed=1, n_o=6, n_u=2)
        rates, norms, predictions = [1e-3, 3e-3, 1e-2, 3e-2, 1e-1], [], []
        opt = (
            None
            if name == "sgd"
            else optax.inject_hyperparams(optax.adam)(learning_rate=0.0, b1=0.8, b2=0.95)
        )
        step = ldjax.feature_step_fn(feature_fn, head_fn, CE, optimizer=opt, terms=False)  # compiled once
        for lr in rates:
            if name == "sgd":
                r = step(params, x_o, x_u, y_u, learning_rate=lr)
            else:
                state = warm(opt, params)
                state.hyperparams["learning_rate"] = jnp.asarray(lr * 0.1)
                r = step(params, x_o, x_u, y_u, opt_state=state)
            norms.append(float(jnp.linalg.norm(r.residual)))
            predictions.append(r.predicted)
        slope = np.polyfit(np.log(rates), np.log(norms), 1)[0]
        assert abs(slope - 2.0) < 0.2, (slope, norms)
        # one held program for every η: the SGD prediction is linear in η
        if name == "sgd":
            np.testing.assert_allclose(10 * predictions[0], predictions[2], **EXACT)
    if name == "adam":  # the actual change is the real Adam update with that state
        with jax.enable_x64(True):
            opt = optax.adam(1e-3, b1=0.8, b2=0.95)
            state = warm(opt, params)
            r = ldjax.feature_step(
                feature_fn, head_fn, params, x_o, x_u, y_u, loss=CE, optimizer=opt, opt_state=state
            )
            updates, _ = opt.update(jax.grad(loss_at)(params, x_u, y_u), state, params)
            moved = features(optax.apply_updates(params, updates), x_o) - features(params, x_o)
            np.testing.assert_allclose(r.actual, moved, **EXACT)


class Net(nnx.Module):
    """A flax NNX model with a backbone and a head, as a user would write it."""

    def __init__(self, rngs):
        self.backbone = nnx.Linear(5, 6, param_dtype=jnp.float64, rngs=rngs)
        self.head = nnx.Linear(6, 3, param_dtype=jnp.float64, rngs=rngs)

    def features(self, x):
        return jnp.tanh(self.backbone(x))

    def __call__(self, x):
        return self.head(self.features(x))


def test_flax_nnx_feature_and_head_through_from_nnx_method():
    with jax.enable_x64(True):
        model = Net(nnx.Rngs(0))
        apply_fn, params = ldjax.from_nnx(model)
        f, p_f = ldjax.from_nnx(model, method=lambda m, x: m.features(x), example_shape=(5,))
        g, p_g = ldjax.from_nnx(model, method=lambda m, h: m.head(h))
        assert jax.tree.structure(p_f) == jax.tree.structure(p_g) == jax.tree.structure(params)
        x = jax.random.normal(jax.random.key(3), (4, 5), jnp.float64)
        np.testing.assert_allclose(g(params, f(params, x[0])), apply_fn(params, x[0]), **EXACT)
        r = ldjax.feature_step(f, g, params, x, x[:2], jnp.array([0, 2]), loss=CE, learning_rate=1e-2)
        np.testing.assert_allclose(r.kernel, finite_difference_ntk(f, params, x, x[:2]), **F64)
        np.testing.assert_allclose(
            r.predicted, ldjax.feature_decomposition(r.kernel, r.direction, r.energy, 1e-2), **EXACT
        )
        kernel = np.asarray(params["head"]["kernel"]).T  # the direction of a linear head is its weight
        np.testing.assert_allclose(r.direction, np.broadcast_to(kernel, (2, 3, 6)), **EXACT)
        grads = jax.grad(lambda p: CE(jax.vmap(apply_fn, (None, 0))(p, x[:2]), jnp.array([0, 2])))(params)
        moved = jax.tree.map(lambda a, b: a - 1e-2 * b, params, grads)
        np.testing.assert_allclose(r.actual, jax.vmap(f, (None, 0))(moved, x) - r.h_o, **EXACT)
        with pytest.raises(
            ValueError,
            match=r"x_u has shape \(2, 4\) but feature_fn expects one example of shape \(5,\)",
        ):
            ldjax.feature_step(
                f, g, params, x, jnp.ones((2, 4)), jnp.array([0, 2]), loss=CE, learning_rate=1e-2
            )


def test_energy_against_a_numpy_reference():
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        for shape in ((7,), (2, 3)):
            logits = rng.normal(size=(*shape, 5)) * 2
            labels = rng.integers(0, 5, size=shape)
            e = ldjax.energy(jnp.asarray(logits), jnp.asarray(labels))
            probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
            onehot = np.eye(5)[labels]
            norm = np.sqrt(((probs - onehot) ** 2).sum(-1))
            gap = 1 - np.take_along_axis(probs, labels[..., None], -1)[..., 0]
            np.testing.assert_allclose(e.norm, norm, **EXACT)
            np.testing.assert_allclose(e.gap, gap, **EXACT)
            assert float(e.mean) == pytest.approx(norm.mean(), rel=1e-12)
            assert float(e.mean_gap) == pytest.approx(gap.mean(), rel=1e-12)
        # the energy of a correct, confident data set is small; of a uniform one it is sqrt(1 - 1/k)
        assert float(ldjax.energy(jnp.array([[20.0, 0.0]]), jnp.array([0])).mean) < 1e-8
        assert float(ldjax.energy(jnp.zeros((3, 4)), jnp.array([0, 1, 2])).mean) == pytest.approx(
            np.sqrt(0.75)
        )


def test_errors_name_the_argument():
    params, x_o, x_u, y_u = problem(dtype=jnp.float32)
    with pytest.raises(ValueError, match=r"head_fn failed on a feature of shape \(6,\)"):
        ldjax.feature_step(
            feature_fn, lambda p, h: h @ p["w1"], params, x_o, x_u, y_u, loss=CE, learning_rate=0.1
        )
    with pytest.raises(ValueError, match=r"feature_fn failed on one example of x_u"):
        ldjax.feature_step(
            lambda p, x: x @ p["w2"], head_fn, params, x_o, x_u, y_u, loss=CE, learning_rate=0.1
        )
    cube = lambda p, x: jnp.broadcast_to(feature_fn(p, x), (2, 2, 6))  # noqa: E731
    with pytest.raises(ValueError, match=r"features of shape \(2, 2, 6\).*pass terms=False"):
        ldjax.feature_step(
            cube, lambda p, h: head_fn(p, h[0, 0]), params, x_o, x_u, y_u, loss=CE, learning_rate=0.1
        )
    with pytest.raises(ValueError, match="learning_rate must be None when optimizer is given"):
        ldjax.feature_step(
            feature_fn, head_fn, params, x_o, x_u, y_u, loss=CE, learning_rate=0.1, optimizer=optax.sgd(0.1)
        )
    with pytest.raises(ValueError, match=r"labels has shape \(2,\) but logits has shape \(3, 4\)"):
        ldjax.energy(jnp.zeros((3, 4)), jnp.array([0, 1]))
    with pytest.raises(ValueError, match=r"labels holds labels in \[0, 4\] but the logits have k=4 classes"):
        ldjax.energy(jnp.zeros((2, 4)), jnp.array([0, 4]))
    with pytest.raises(ValueError, match=r"direction has shape \(3, 4, 6\) but energy has shape \(3, 5\)"):
        ldjax.feature_decomposition(jnp.zeros((2, 3, 6, 6)), jnp.zeros((3, 4, 6)), jnp.zeros((3, 5)), 0.1)
    with pytest.raises(ValueError, match=r"kernel has shape \(2, 3, 5, 5\): expected \[n_o, n_u, \*f, \*f\]"):
        ldjax.feature_decomposition(jnp.zeros((2, 3, 5, 5)), jnp.zeros((3, 4, 6)), jnp.zeros((3, 4)), 0.1)


def test_head_direction_of_a_nonlinear_head_is_its_input_jacobian():
    with jax.enable_x64(True):
        w = jax.random.normal(jax.random.key(4), (3, 2), jnp.float64)
        h = jax.random.normal(jax.random.key(5), (4, 2), jnp.float64)
        got = head_direction(lambda p, hi: jnp.tanh(p @ hi), w, h)
        expected = (1 - jnp.tanh(h @ w.T) ** 2)[:, :, None] * w[None]  # d tanh(W h) / dh = diag(1 − z²) W
        np.testing.assert_allclose(got, expected, **EXACT)

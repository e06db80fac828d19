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


def problem(seed=0, n_o=5, n_u=3, dtype=np.float64, d=5, hidden=6, k=4):
    """The MLP of ``problems.mlp_problem``, drawn with numpy (no random-number programs to compile)."""
    rng = np.random.default_rng(seed)
    shapes = {
        "w1": (d, hidden),
        "b1": (hidden,),
        "w2": (hidden, hidden),
        "b2": (hidden,),
        "w3": (hidden, k),
        "b3": (k,),
    }
    scale = {"w1": d**-0.5, "w2": hidden**-0.5, "w3": hidden**-0.5}
    params = {
        name: jnp.asarray(rng.normal(size=shape) * scale.get(name, 0.1), dtype)
        for name, shape in shapes.items()
    }
    x_o, x_u = (jnp.asarray(rng.normal(size=(n, d)), dtype) for n in (n_o, n_u))
    return params, x_o, x_u, jnp.array([0, 2, 3, 1, 1][:n_u])


def features(params, x):
    return jax.vmap(feature_fn, (None, 0))(params, x)


def loss_at(params, x, y):
    return CE(jax.vmap(lambda xi: head_fn(params, feature_fn(params, xi)))(x), y)


def test_terms_and_prediction_match_float64_finite_differences_and_a_real_sgd_step():
    with jax.enable_x64(True):
        params, x_o, x_u, y_u = problem()
        lr, eps = 1e-2, 1e-6
        r = ldjax.feature_step(feature_fn, head_fn, params, x_o, x_u, y_u, loss=CE, learning_rate=lr)
        assert r.predicted.shape == r.actual.shape == r.h_o.shape == (5, 6)
        assert r.kernel.shape == (5, 3, 6, 6) and r.direction.shape == (3, 4, 6) and r.energy.shape == (3, 4)
        # kernel: finite-difference Jacobians of the feature map on the flattened parameters
        np.testing.assert_allclose(r.kernel, finite_difference_ntk(feature_fn, params, x_o, x_u), **F64)

        @jax.jit
        def by_hand(params):
            """Central differences of the head at h(x_u); (π − e_y)/n_u; the SGD update written out."""
            head = jax.vmap(head_fn, (None, 0))
            h_u = features(params, x_u)
            columns = jax.vmap(
                lambda e: (head(params, h_u + eps * e) - head(params, h_u - eps * e)) / (2 * eps)
            )
            force = (jax.nn.softmax(head(params, h_u)) - jax.nn.one_hot(y_u, 4)) / 3
            flat, unravel = ravel_pytree(params)
            u = -lr * ravel_pytree(jax.grad(loss_at)(params, x_u, y_u))[0]
            along = (features(unravel(flat + eps * u), x_o) - features(unravel(flat - eps * u), x_o)) / (
                2 * eps
            )
            moved = features(unravel(flat + u), x_o) - features(params, x_o)
            return jnp.moveaxis(columns(jnp.eye(6)), 0, -1), force, along, moved, loss_at(params, x_u, y_u)

        direction, force, along, moved, loss = by_hand(params)
        np.testing.assert_allclose(r.direction, direction, **F64)
        np.testing.assert_allclose(r.energy, force, **EXACT)
        # SGD: the JVP prediction is −η Σ K Dᵀ G (the head's parameters do not enter the feature map) ...
        terms = ldjax.feature_decomposition(r.kernel, r.direction, r.energy, lr)
        np.testing.assert_allclose(r.predicted, terms, **EXACT)
        # ... and the central difference of h(x_o) along the update; actual = the step itself
        np.testing.assert_allclose(r.predicted, along, **F64)
        np.testing.assert_allclose(r.actual, moved, **EXACT)
        np.testing.assert_allclose(r.residual, r.actual - r.predicted, **EXACT)
        assert float(r.loss) == pytest.approx(float(loss), rel=1e-12)


def warm(opt, params):
    """An optimizer state with history: two earlier updates from fixed, non-trivial gradients."""
    state = opt.init(params)
    for shift in (0.3, -0.7):
        _, state = opt.update(jax.tree.map(lambda p, c=shift: jnp.sin(3 * p + c), params), state, params)
    return state


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
        history = None if opt is None else warm(opt, params)
        for lr in rates:
            if opt is None:
                r = step(params, x_o, x_u, y_u, learning_rate=lr)
            else:  # Adam with moments from earlier steps, at learning rate lr / 10
                state = history._replace(
                    hyperparams={**history.hyperparams, "learning_rate": jnp.asarray(lr / 10)}
                )
                r = step(params, x_o, x_u, y_u, opt_state=state)
            norms.append(float(jnp.linalg.norm(r.residual)))
            predictions.append(r.predicted)
        slope = np.polyfit(np.log(rates), np.log(norms), 1)[0]
        assert abs(slope - 2.0) < 0.2, (slope, norms)
        if opt is None:  # one held program for every η: the SGD prediction is linear in η; works under jit
            np.testing.assert_allclose(10 * predictions[0], predictions[2], **EXACT)
            inside = jax.jit(lambda p: step(p, x_o, x_u, y_u, learning_rate=1e-3).predicted)(params)
            np.testing.assert_allclose(inside, predictions[0], **EXACT)
        else:  # the actual change is the real Adam update with that state (the last η)
            updates, _ = jax.jit(opt.update)(jax.grad(loss_at)(params, x_u, y_u), state, params)
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
        x = jnp.asarray(np.random.default_rng(3).normal(size=(4, 5)))
        y = jnp.array([0, 2])
        r = ldjax.feature_step(f, g, params, x, x[:2], y, loss=CE, learning_rate=1e-2)

        @jax.jit
        def by_hand(params):  # the composition is the module; one SGD step on the module's loss
            grads = jax.grad(lambda p: CE(jax.vmap(apply_fn, (None, 0))(p, x[:2]), y))(params)
            moved = jax.tree.map(lambda a, b: a - 1e-2 * b, params, grads)
            composed = jax.vmap(lambda xi: g(params, f(params, xi)))(x)
            return composed, jax.vmap(apply_fn, (None, 0))(params, x), jax.vmap(f, (None, 0))(moved, x)

        composed, direct, after = by_hand(params)
        np.testing.assert_allclose(composed, direct, **EXACT)
        np.testing.assert_allclose(r.actual, after - r.h_o, **EXACT)
        terms = ldjax.feature_decomposition(r.kernel, r.direction, r.energy, 1e-2)
        np.testing.assert_allclose(r.predicted, terms, **EXACT)
        kernel = np.asarray(params["head"]["kernel"]).T  # the direction of a linear head is its weight
        np.testing.assert_allclose(r.direction, np.broadcast_to(kernel, (2, 3, 6)), **EXACT)
        with pytest.raises(
            ValueError, match=r"x_u has shape \(2, 4\) but feature_fn expects one example of shape \(5,\)"
        ):
            ldjax.feature_step(f, g, params, x, jnp.ones((2, 4)), y, loss=CE, learning_rate=1e-2)


def test_energy_against_a_numpy_reference():
    with jax.enable_x64(True):
        rng = np.random.default_rng(0)
        for shape in ((7,), (2, 3)):
            logits = rng.normal(size=(*shape, 5)) * 2
            labels = rng.integers(0, 5, size=shape)
            e = jax.jit(ldjax.energy)(jnp.asarray(logits), jnp.asarray(labels))
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
    params, x_o, x_u, y_u = problem(dtype=np.float32)
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
    with pytest.raises(
        ValueError, match=r"feature_step\(terms=True, method='auto'\) would need about .*kernel"
    ):
        ldjax.feature_step(
            feature_fn, head_fn, params, x_o, x_u, y_u, loss=CE, learning_rate=0.1, memory_budget=1
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

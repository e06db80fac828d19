"""flax NNX / linen adapters give the same kernels and steps as the underlying model."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import ldjax

from problems import finite_difference_ntk


class NnxNet(nnx.Module):
    def __init__(self, rngs):
        self.conv = nnx.Conv(
            1, 2, kernel_size=(3, 3), strides=(2, 2), padding="SAME", param_dtype=jnp.float64, rngs=rngs
        )
        self.norm = nnx.LayerNorm(2 * 3 * 3, param_dtype=jnp.float64, rngs=rngs)
        self.dense = nnx.Linear(2 * 3 * 3, 3, param_dtype=jnp.float64, rngs=rngs)

    def __call__(self, x):  # [b, 6, 6, 1]
        h = jnp.tanh(self.conv(x)).reshape(x.shape[0], -1)
        return self.dense(self.norm(h))


class LinenNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        h = jnp.tanh(nn.Dense(4, param_dtype=jnp.float64)(x))
        return nn.Dense(3, param_dtype=jnp.float64)(h)


def test_nnx_adapter_kernel_matches_finite_differences_and_leaves_module_untouched():
    with jax.enable_x64(True):
        model = NnxNet(nnx.Rngs(0))
        before = jax.tree.map(np.array, nnx.to_pure_dict(nnx.state(model, nnx.Param)))
        apply_fn, params = ldjax.from_nnx(model, example_shape=(6, 6, 1))
        assert sorted(params) == ["conv", "dense", "norm"]
        x = jax.random.normal(jax.random.key(1), (3, 6, 6, 1), jnp.float64)
        np.testing.assert_allclose(jax.vmap(apply_fn, (None, 0))(params, x), model(x), rtol=1e-12)
        kernel = jax.jit(lambda p, a, b: ldjax.empirical_ntk(apply_fn, p, a, b))(params, x, x[:2])
        np.testing.assert_allclose(
            kernel, finite_difference_ntk(apply_fn, params, x, x[:2]), rtol=1e-6, atol=1e-8
        )
        # a step through one_step and back into a module with to_nnx
        r = ldjax.one_step(
            apply_fn, params, x, x[:1], jnp.array([2]), loss=ldjax.losses.cross_entropy, learning_rate=1e-3
        )
        np.testing.assert_allclose(
            r.predicted, ldjax.decomposition(r.a, r.k, r.g, 1e-3), rtol=1e-10, atol=1e-15
        )
        assert float(jnp.abs(r.residual).max()) < 0.01 * float(jnp.abs(r.actual).max())
        moved = jax.tree.map(lambda p: p + 1.0, params)
        new_model = ldjax.to_nnx(model, moved)
        np.testing.assert_allclose(new_model.dense.bias[...], params["dense"]["bias"] + 1.0)
        after = jax.tree.map(np.array, nnx.to_pure_dict(nnx.state(model, nnx.Param)))
        jax.tree.map(np.testing.assert_array_equal, before, after)


def test_nnx_adapter_knows_the_example_shape():
    model = nnx.Linear(5, 2, rngs=nnx.Rngs(0))
    apply_fn, params = ldjax.from_nnx(model, example_shape=(5,))
    with pytest.raises(
        ValueError, match=r"x1 has shape \(2, 3, 5\) but apply_fn expects one example of shape \(5,\)"
    ):
        ldjax.empirical_ntk(apply_fn, params, jnp.ones((2, 3, 5)))


def test_linen_adapter_kernel_matches_finite_differences():
    with jax.enable_x64(True):
        module = LinenNet()
        x = jax.random.normal(jax.random.key(2), (3, 5), jnp.float64)
        variables = module.init(jax.random.key(3), x)
        apply_fn, params = ldjax.from_linen(module, variables)
        np.testing.assert_allclose(
            jax.vmap(apply_fn, (None, 0))(params, x), module.apply(variables, x), rtol=1e-12
        )
        for method in ("jacobian", "vector_products"):
            kernel = ldjax.empirical_ntk(apply_fn, params, x, method=method)
            np.testing.assert_allclose(
                kernel, finite_difference_ntk(apply_fn, params, x, x), rtol=1e-6, atol=1e-8
            )


def test_linen_adapter_requires_params():
    with pytest.raises(ValueError, match="variables must hold a 'params' collection"):
        ldjax.from_linen(LinenNet(), {"batch_stats": {}})

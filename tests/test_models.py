"""Models: shapes, adapters, and forward passes against plain numpy references in float64."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import ldjax
from ldjax.models import MLP
from ldjax.models import LeNet5

from typechecking import ill_typed

# ---------------------------------------------------------------- MLP / LeNet5 (issue 4)


def numpy_mlp(params: dict, x: np.ndarray, activation) -> np.ndarray:
    h = x.reshape(x.shape[0], -1)
    layers = [params["layers"][i] for i in sorted(params["layers"])]
    for i, layer in enumerate(layers):
        h = h @ np.asarray(layer["kernel"]) + np.asarray(layer["bias"])
        if i < len(layers) - 1:
            h = activation(h)
    return h


def numpy_conv(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray, pad: int) -> np.ndarray:
    """Direct 2-D cross-correlation, NHWC input, HWIO kernel, stride 1."""
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    kh, kw = kernel.shape[:2]
    out_h, out_w = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    out = np.zeros((x.shape[0], out_h, out_w, kernel.shape[3]))
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("bhwc,co->bhwo", x[:, i : i + out_h, j : j + out_w, :], kernel[i, j])
    return out + bias


def numpy_pool(x: np.ndarray, reduce=np.max) -> np.ndarray:
    b, h, w, c = x.shape
    return reduce(x[:, : h // 2 * 2, : w // 2 * 2].reshape(b, h // 2, 2, w // 2, 2, c), axis=(2, 4))


def numpy_lenet(p: dict, x: np.ndarray, act=lambda v: np.maximum(v, 0.0), reduce=np.max) -> np.ndarray:
    a = {k: {n: np.asarray(v) for n, v in layer.items()} for k, layer in p.items()}
    h = numpy_pool(act(numpy_conv(x, a["conv1"]["kernel"], a["conv1"]["bias"], pad=2)), reduce)
    h = numpy_pool(act(numpy_conv(h, a["conv2"]["kernel"], a["conv2"]["bias"], pad=0)), reduce)
    h = h.reshape(h.shape[0], -1)
    h = act(h @ a["fc1"]["kernel"] + a["fc1"]["bias"])
    h = act(h @ a["fc2"]["kernel"] + a["fc2"]["bias"])
    return h @ a["fc3"]["kernel"] + a["fc3"]["bias"]


@pytest.mark.float64
@pytest.mark.parametrize("activation", [jax.nn.relu, jnp.tanh])
def test_mlp_matches_numpy_reference_float64(activation):
    model = MLP(12, (7, 5), 3, rngs=nnx.Rngs(0), activation=activation)
    apply_fn, params = ldjax.from_nnx(model, example_shape=(3, 4))
    params = jax.tree.map(lambda v: v.astype(jnp.float64), params)
    x = np.random.default_rng(0).normal(size=(4, 3, 4))
    got = jax.jit(jax.vmap(apply_fn, (None, 0)))(params, jnp.asarray(x))
    np_act = (lambda v: np.maximum(v, 0.0)) if activation is jax.nn.relu else np.tanh
    np.testing.assert_allclose(got, numpy_mlp(params, x, np_act), rtol=1e-12, atol=1e-12)
    assert sorted(params["layers"]) == [0, 1, 2]


@pytest.mark.float64
@pytest.mark.parametrize("input_size, in_channels", [(28, 1)])
def test_lenet_matches_numpy_reference_float64(input_size, in_channels):
    model = LeNet5(num_classes=10, in_channels=in_channels, rngs=nnx.Rngs(1), input_size=input_size)
    apply_fn, params = ldjax.from_nnx(model, example_shape=(input_size, input_size, in_channels))
    params = jax.tree.map(lambda v: v.astype(jnp.float64), params)
    x = np.random.default_rng(1).uniform(size=(2, input_size, input_size, in_channels))
    got = jax.jit(jax.vmap(apply_fn, (None, 0)))(params, jnp.asarray(x))
    assert got.shape == (2, 10)
    np.testing.assert_allclose(got, numpy_lenet(params, x), rtol=1e-10, atol=1e-12)
    assert params["fc1"]["kernel"].shape == (16 * ((input_size // 2 - 4) // 2) ** 2, 120)


@pytest.mark.float64
def test_authors_lenet_tanh_average_pooling_60_42_float64():
    """Ren & Sutherland's MNIST LeNet: tanh, average pooling, 400-60-42-10, PyTorch's uniform ±1/√fan_in init."""
    model = LeNet5(rngs=nnx.Rngs(2), variant="tanh")
    apply_fn, params = ldjax.from_nnx(model, example_shape=(28, 28, 1))
    shapes = {name: tuple(layer["kernel"].shape) for name, layer in params.items()}
    assert shapes == {
        "conv1": (5, 5, 1, 6),
        "conv2": (5, 5, 6, 16),
        "fc1": (400, 60),
        "fc2": (60, 42),
        "fc3": (42, 10),
    }
    fan_in = {"conv1": 25, "conv2": 150, "fc1": 400, "fc2": 60, "fc3": 42}
    for name, layer in params.items():
        for leaf in layer.values():
            bound = 1 / np.sqrt(fan_in[name])
            assert np.abs(leaf).max() <= bound and np.abs(leaf).max() > 0.8 * bound, name
    params = jax.tree.map(lambda v: v.astype(jnp.float64), params)
    x = np.random.default_rng(2).uniform(size=(2, 28, 28, 1))
    got = jax.jit(jax.vmap(apply_fn, (None, 0)))(params, jnp.asarray(x))
    np.testing.assert_allclose(got, numpy_lenet(params, x, np.tanh, np.mean), rtol=1e-10, atol=1e-12)
    with (
        pytest.raises(ValueError, match=r"variant must be one of \['relu', 'tanh'\], got 'sigmoid'"),
        ill_typed(),
    ):
        LeNet5(rngs=nnx.Rngs(0), variant="sigmoid")


def test_model_input_errors():
    small = LeNet5(3, 3, rngs=nnx.Rngs(0), input_size=16)
    assert small(jnp.ones((2, 16, 16, 3))).shape == (2, 3)
    with pytest.raises(ValueError, match=r"input_size must be >= 12 .* got 8; upsample small images"):
        LeNet5(rngs=nnx.Rngs(0), input_size=8)
    with (
        pytest.raises(
            ValueError, match=r"x must be a batch \[b, 16, 16, 3\] \(NHWC\), got shape \(2, 16, 16\)"
        ),
        ill_typed(),
    ):
        small(jnp.ones((2, 16, 16)))
    with pytest.raises(ValueError, match=r"x has 10 features per example .* expects in_features=12"):
        MLP(12, (4,), 2, rngs=nnx.Rngs(0))(jnp.ones((2, 10)))
    with pytest.raises(ValueError, match=r"must be positive widths, got 12, \(0,\), 2"):
        MLP(12, (0,), 2, rngs=nnx.Rngs(0))

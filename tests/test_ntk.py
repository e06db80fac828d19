"""empirical_ntk / ntk_vector_product / jacobian against finite differences (float64)."""

import functools
import typing

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ldjax
from ldjax._src import ntk

from problems import NTK_METHODS
from problems import cnn_apply
from problems import cnn_problem
from problems import finite_difference_ntk
from problems import mlp_apply
from problems import mlp_problem
from problems import seq_apply
from problems import seq_problem
from typechecking import ill_typed

PROBLEMS = {
    "mlp": (mlp_apply, mlp_problem),
    "cnn": (cnn_apply, cnn_problem),
    "seq": (seq_apply, seq_problem),
}
METHODS = list(NTK_METHODS)


@pytest.mark.float64
@pytest.mark.parametrize("model", sorted(PROBLEMS))
@pytest.mark.parametrize("method", METHODS)
def test_ntk_matches_finite_differences(model, method):
    apply_fn, problem = PROBLEMS[model]
    params, x1, x2 = problem(jax.random.key(0))
    got = jax.jit(functools.partial(ldjax.empirical_ntk, apply_fn, method=method))(params, x1, x2)
    want = finite_difference_ntk(apply_fn, params, x1, x2)
    assert got.dtype == jnp.float64
    assert got.shape == want.shape
    assert np.abs(want).max() > 1e-2  # a kernel that could be wrong
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)


@pytest.mark.float64
def test_sequence_kernel_layout_positions_and_vocabulary():
    """[n1, n2, T, V, T, V]: K[i, j, t, a, s, b] couples logit a at position t with b at s; causal zeros."""
    params, x1, x2 = seq_problem(jax.random.key(1), t=3, vocab=4)
    kernel = ldjax.empirical_ntk(seq_apply, params, x1, x2)
    assert kernel.shape == (2, 2, 3, 4, 3, 4)
    # Position 0 of x1 depends only on token 0; its kernel with position 2 of x2 is still non-zero
    # (shared embedding/weights), so check the explicit definition entry by entry instead.
    i, j, t, a, s, b = 1, 0, 2, 3, 1, 2
    g1 = jax.grad(lambda p: seq_apply(p, x1[i])[t, a])(params)
    g2 = jax.grad(lambda p: seq_apply(p, x2[j])[s, b])(params)
    direct = sum(jnp.vdot(u, v) for u, v in zip(jax.tree.leaves(g1), jax.tree.leaves(g2), strict=True))
    np.testing.assert_allclose(kernel[i, j, t, a, s, b], direct, rtol=1e-10)


@pytest.mark.float64
@pytest.mark.parametrize("method", METHODS)
def test_trace_is_the_trace_of_the_full_kernel(method):
    params, x1, x2 = mlp_problem(jax.random.key(2))
    full = ldjax.empirical_ntk(mlp_apply, params, x1, x2, method=method)
    traced = ldjax.empirical_ntk(mlp_apply, params, x1, x2, method=method, trace=True)
    np.testing.assert_allclose(traced, jnp.trace(full, axis1=2, axis2=3), rtol=1e-10)


@pytest.mark.float64
def test_gram_matrix_is_symmetric_psd():
    params, x1, _ = cnn_problem(jax.random.key(3), n1=4)
    kernel = ldjax.empirical_ntk(cnn_apply, params, x1)
    n, k = kernel.shape[0], kernel.shape[2]
    gram = np.asarray(kernel.transpose(0, 2, 1, 3).reshape(n * k, n * k))
    np.testing.assert_allclose(gram, gram.T, rtol=1e-12, atol=1e-12)
    eig = np.linalg.eigvalsh(gram)
    assert eig.min() > -1e-10 * eig.max()
    assert eig.max() > 0


@pytest.mark.float64
def test_ntk_vector_product_equals_kernel_times_vector():
    params, x1, x2 = mlp_problem(jax.random.key(4))
    v = jax.random.normal(jax.random.key(5), (x2.shape[0], 4), jnp.float64)
    kernel = ldjax.empirical_ntk(mlp_apply, params, x1, x2)
    got = jax.jit(functools.partial(ldjax.ntk_vector_product, mlp_apply))(params, x1, x2, v)
    np.testing.assert_allclose(got, jnp.einsum("ijab,jb->ia", kernel, v), rtol=1e-10)


@pytest.mark.float64
def test_per_example_gradients_sum_to_batch_gradient():
    params, x, _ = mlp_problem(jax.random.key(6), n1=5)
    labels = jnp.array([0, 3, 1, 1, 2])

    @jax.jit  # compiled whole, not op by op
    def summed_and_batch(params):
        jac = ldjax.jacobian(mlp_apply, params, x)  # leaves [n, k, *leaf]
        g = ldjax.losses.cross_entropy_g(jax.vmap(mlp_apply, (None, 0))(params, x), labels)
        per_example = jax.tree.map(lambda j: jnp.einsum("nk,nk...->n...", g, j), jac)
        batch = jax.grad(lambda p: ldjax.losses.cross_entropy(jax.vmap(mlp_apply, (None, 0))(p, x), labels))(
            params
        )
        return jax.tree.map(lambda a: a.sum(0), per_example), batch

    summed, batch = summed_and_batch(params)
    chex.assert_trees_all_close(summed, batch, rtol=1e-10, atol=1e-14)


def test_precision_is_highest_by_default_and_can_be_left_to_the_platform():
    params, x1, x2 = mlp_problem(jax.random.key(7), dtype=jnp.float32)
    text = jax.jit(functools.partial(ldjax.empirical_ntk, mlp_apply)).lower(params, x1, x2).as_text()
    assert "precision = [HIGHEST, HIGHEST]" in text
    text = (
        jax.jit(functools.partial(ldjax.empirical_ntk, mlp_apply, precision=None))
        .lower(params, x1, x2)
        .as_text()
    )
    assert "HIGHEST" not in text


def test_ntk_errors_name_the_argument():
    params, x1, x2 = mlp_problem(jax.random.key(8), dtype=jnp.float32)
    with (
        pytest.raises(
            ValueError, match=r"x1 holds examples of shape \(5,\) but x2 holds examples of shape \(3,\)"
        ),
        ill_typed(),
    ):
        ldjax.empirical_ntk(mlp_apply, params, x1, x2[:, :3])
    with (
        pytest.raises(ValueError, match="method must be 'auto' or 'jacobian' or 'vector_products'"),
        ill_typed(),
    ):
        ldjax.empirical_ntk(mlp_apply, params, x1, method="magic")
    with pytest.raises(ValueError, match="x1 is an empty batch"):
        ldjax.empirical_ntk(mlp_apply, params, x1[:0])


def test_the_tests_method_list_covers_every_ntk_method():
    assert sorted(NTK_METHODS) == sorted(ntk.KERNELS_BY_METHOD)
    assert sorted(typing.get_args(ntk.NtkMethod)) == sorted([*ntk.KERNELS_BY_METHOD, "auto"])
    assert ntk.DEFAULT_METHOD == "auto"  # chooses among NTK_METHODS (tests/test_kernel_interface.py)


@pytest.mark.float64
@pytest.mark.parametrize("method", METHODS)
def test_empirical_ntk_fn_is_compiled_once_and_matches_empirical_ntk(method):
    traces = []

    def counted(params, x):
        traces.append(1)
        return mlp_apply(params, x)

    params, x1, x2 = mlp_problem(jax.random.key(9))
    kernel_fn = ldjax.empirical_ntk_fn(counted, method=method)
    got = kernel_fn(params, x1, x2)
    traced_once = len(traces)
    again = kernel_fn(jax.tree.map(lambda a: a + 1.0, params), x1 + 1.0, x2)  # same shapes: no retrace
    assert len(traces) == traced_once > 0
    assert got.dtype == jnp.float64
    np.testing.assert_allclose(got, ldjax.empirical_ntk(mlp_apply, params, x1, x2, method=method), rtol=1e-12)
    assert not np.allclose(again, got)
    gram = kernel_fn(params, x1)
    np.testing.assert_allclose(gram, ldjax.empirical_ntk(mlp_apply, params, x1, method=method), rtol=1e-12)
    per_layer = ldjax.empirical_ntk_fn(mlp_apply, method=method, per_layer=True, trace=True)(params, x1, x2)
    want = ldjax.empirical_ntk(mlp_apply, params, x1, x2, method=method, per_layer=True, trace=True)
    assert sorted(per_layer) == sorted(want)
    for name in want:
        np.testing.assert_allclose(per_layer[name], want[name], rtol=1e-12, err_msg=name)


def test_empirical_ntk_fn_checks_its_options_when_made_and_its_batches_when_called():
    with (
        pytest.raises(
            ValueError, match="method must be 'auto' or 'jacobian' or 'vector_products' or 'structured'"
        ),
        ill_typed(),
    ):
        ldjax.empirical_ntk_fn(mlp_apply, method="magic")
    with pytest.raises(ValueError, match="precision must be one of"), ill_typed():
        ldjax.empirical_ntk_fn(mlp_apply, precision="fast")
    params, x1, x2 = mlp_problem(jax.random.key(10), dtype=jnp.float32)
    with pytest.raises(
        ValueError, match=r"x1 holds examples of shape \(5,\) but x2 holds examples of shape \(3,\)"
    ):
        ldjax.empirical_ntk_fn(mlp_apply)(params, x1, x2[:, :3])

"""Sharded kernels and predictions equal the single-device results (4 fake CPU devices in a subprocess)."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ldjax

from problems import mlp_apply
from problems import mlp_problem
from typechecking import ill_typed

SCRIPT = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    import ldjax
    from problems import mlp_apply, mlp_problem

    assert jax.device_count() == 4, jax.devices()
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("probe",))
    params, x1, x2 = mlp_problem(jax.random.key(0), n1=10, n2=3)  # 10 probes: not a multiple of 4
    got = jax.jit(lambda p, a, b: ldjax.sharded_ntk(mlp_apply, p, a, b, mesh=mesh))(params, x1, x2)
    ref = ldjax.empirical_ntk(mlp_apply, params, x1, x2)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)
    assert len(got.sharding.device_set) == 4, got.sharding
    y = jnp.array([0, 2, 1])
    got = ldjax.sharded_log_prob_change(mlp_apply, params, x1, x2, y, mesh=mesh, loss=ldjax.losses.cross_entropy,
                                        learning_rate=0.01)
    ref = ldjax.predict_log_prob_change(mlp_apply, params, x1, x2, y, loss=ldjax.losses.cross_entropy,
                                        learning_rate=0.01).predicted
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-15)
    # jax.make_mesh: Explicit axes (its default) and Auto axes; 10 probes (padded) and 8 (even split)
    ref = ldjax.empirical_ntk(mlp_apply, params, x1, x2, trace=True)
    for types in (jax.sharding.AxisType.Explicit, jax.sharding.AxisType.Auto):
        made = jax.make_mesh((4,), ("probe",), axis_types=(types,))
        for n in (10, 8):
            got = jax.jit(lambda p, a, b: ldjax.sharded_ntk(mlp_apply, p, a, b, mesh=made, trace=True))(
                params, x1[:n], x2
            )
            np.testing.assert_allclose(got, ref[:n], rtol=1e-12, atol=1e-12)
        got = ldjax.sharded_log_prob_change(mlp_apply, params, x1[:8], x2, y, mesh=made,
                                            loss=ldjax.losses.cross_entropy, learning_rate=0.01)
        assert len(got.sharding.device_set) == 4, got.sharding
    print("SHARDED-OK")
    """
)


def test_four_devices_equal_one_device():
    env = {
        **os.environ,
        "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": os.pathsep.join([str(pathlib.Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,  # hang guard
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "SHARDED-OK" in proc.stdout


def test_mesh_errors():
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("probe",))
    params, x1, _ = mlp_problem(jax.random.key(1), n1=3, n2=2, dtype=jnp.float32)
    with pytest.raises(ValueError, match="axis 'batch' is not an axis of the mesh"):
        ldjax.sharded_ntk(mlp_apply, params, x1, mesh=mesh, axis="batch")
    with pytest.raises(ValueError, match="mesh must be a jax.sharding.Mesh"), ill_typed():
        ldjax.sharded_ntk(mlp_apply, params, x1, mesh=None)

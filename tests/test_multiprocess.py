"""Multi-process JAX: two CPU processes of two devices each under ``jax.distributed`` (a coordinator on
localhost) compute ``sharded_ntk`` and ``force_attribution`` over one mesh of the four devices; the results
equal those of this single process."""

from __future__ import annotations

import os
import pathlib
import socket
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

WORKER = textwrap.dedent(
    """
    import sys
    import jax, numpy as np
    process, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=2, process_id=process)
    jax.config.update("jax_enable_x64", True)
    from jax.experimental import multihost_utils
    import ldjax
    from problems import mlp_apply, mlp_problem

    assert jax.process_count() == 2 and jax.device_count() == 4 and jax.local_device_count() == 2
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
    params, x1, x2 = mlp_problem(jax.random.key(0), n1=10, n2=3)  # the same numbers in every process
    kernel = ldjax.sharded_ntk(mlp_apply, params, x1, x2, mesh=mesh)
    assert not kernel.is_fully_addressable  # rows live on both processes
    kernel = multihost_utils.process_allgather(kernel, tiled=True)
    y = np.arange(10) % 4
    scores = ldjax.force_attribution(
        mlp_apply, params, x1, y, x2, loss=ldjax.losses.cross_entropy, learning_rate=0.1, method="exact",
        mesh=mesh, chunk_size=4, progress=False,
    ).scores
    # chunks kept by a one-device run (3 updates each) do not split over the 4 devices of the mesh
    directory = out + ".chunks"
    kwargs = dict(loss=ldjax.losses.cross_entropy, learning_rate=0.1, method="exact", progress=False)
    if process == 0:
        with jax.default_device(jax.local_devices()[0]):
            ldjax.force_attribution(mlp_apply, params, x1, y, x2, chunk_size=3, directory=directory, **kwargs)
    multihost_utils.sync_global_devices("chunks written")
    try:
        ldjax.force_attribution(mlp_apply, params, x1, y, x2, mesh=mesh, directory=directory, **kwargs)
        raise AssertionError("resuming on another mesh was not refused")
    except ValueError as err:
        assert "holds chunks of 3 update(s), which do not split over the 4 devices" in str(err), err
    if process == 0:
        np.savez(out, kernel=np.asarray(kernel), scores=scores)
    print("PROCESS-OK", process)
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_equal_one_process(tmp_path):
    env = {
        **os.environ,
        "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=2",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": os.pathsep.join([str(pathlib.Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
    }
    port, out = _free_port(), tmp_path / "out.npz"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(i), str(port), str(out)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    try:
        results = [p.communicate(timeout=600) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for i, (p, (stdout, stderr)) in enumerate(zip(procs, results, strict=True)):
        assert p.returncode == 0, f"process {i}: {stderr[-3000:]}"
        assert f"PROCESS-OK {i}" in stdout
    with jax.enable_x64(True):
        params, x1, x2 = mlp_problem(jax.random.key(0), n1=10, n2=3)
        kernel = ldjax.empirical_ntk(mlp_apply, params, x1, x2)
        scores = ldjax.force_attribution(
            mlp_apply, params, x1, jnp.arange(10) % 4, x2, loss=ldjax.losses.cross_entropy,
            learning_rate=0.1, method="exact", progress=False,
        ).scores  # fmt: skip
    with np.load(out) as got:
        np.testing.assert_allclose(got["kernel"], kernel, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(got["scores"], scores, rtol=1e-12, atol=1e-15)

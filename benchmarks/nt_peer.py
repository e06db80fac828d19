"""The peer side of ``bench_ntk.py``: neural-tangents 0.6.5 on JAX 0.4.23, in its own venv.

Usage (called by bench_ntk.py): ``.nt-venv/bin/python nt_peer.py CASE.npz CASE.json OUT.npz``.
Reads the model name, config, weights and inputs written by the driver, computes the full
empirical NTK (``trace_axes=()``) with each of neural-tangents' three implementations, and writes
the kernels plus a JSON line per implementation (compile, median, min seconds, or the error).
"""

from __future__ import annotations

import json
import sys
import traceback

import jax
import numpy as np

jax.config.update("jax_default_matmul_precision", "highest")
import models  # noqa: E402
import neural_tangents as nt  # noqa: E402
from timing import device_name  # noqa: E402
from timing import time_fn  # noqa: E402

IMPLEMENTATIONS = {
    "jacobian": nt.NtkImplementation.JACOBIAN_CONTRACTION,
    "vector_products": nt.NtkImplementation.NTK_VECTOR_PRODUCTS,
    "structured": nt.NtkImplementation.STRUCTURED_DERIVATIVES,
}


def main(case_npz: str, case_json: str, out_npz: str) -> None:
    spec = json.loads(open(case_json).read())
    data = np.load(case_npz)
    params = {k[2:]: jax.numpy.asarray(data[k]) for k in data.files if k.startswith("p/")}
    x = jax.numpy.asarray(data["x"])
    _, apply = models.MODELS[spec["model"]]
    cfg = spec["cfg"]

    def f(p, xb):
        return jax.vmap(lambda xi: apply(p, xi, cfg))(xb)

    kernels = {}
    for name in spec["peer_methods"]:
        line = {"peer": f"neural-tangents {name}", "device": device_name(), "jax": jax.__version__}
        try:
            fn = nt.empirical_ntk_fn(f, trace_axes=(), vmap_axes=0, implementation=IMPLEMENTATIONS[name])
            compile_s, median_s, min_s, reps, k = time_fn(
                lambda p, a, fn=fn: fn(a, None, p), params, x, budget_s=spec["budget_s"]
            )
            kernels[name] = np.asarray(k)
            line.update(compile_s=compile_s, median_s=median_s, min_s=min_s, reps=reps)
        except Exception as err:  # noqa: BLE001 - reported, the driver goes on
            line.update(error=f"{type(err).__name__}: {str(err).splitlines()[0][:300]}")
            traceback.print_exc(file=sys.stderr)
        print(json.dumps(line), flush=True)
    np.savez(out_npz, **kernels)


if __name__ == "__main__":
    main(*sys.argv[1:4])

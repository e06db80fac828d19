r"""Structured empirical NTK: each layer's kernel from its inputs and its output cotangents.

For a parameter :math:`W` used linearly, :math:`y_s = W x_s` at positions :math:`s` that share the
weight (tokens, pixels), the gradient of logit :math:`a` is :math:`\sum_s \delta_{a,s} x_s^\top`, so

.. math:: K_W[i,j,a,b] = \sum_{s,s'} \langle x_{i,s}, x_{j,s'}\rangle\,
          \langle \delta_{i,a,s}, \delta_{j,b,s'}\rangle

never forms a parameter-sized vector per output. The model is traced once with
:func:`jax.make_jaxpr`; the equations are read through the public :mod:`jax.extend` API. Every
equation that consumes a parameter leaf (reached from the leaf only through reshapes, transposes,
broadcasts and dtype conversions) and is linear in it — ``dot_general``, ``conv_general_dilated``,
``gather`` (embedding lookups), ``mul`` (scales), ``add`` (biases) and a few more — is a *site*.
One evaluation of the traced program, with zero probes added to every site's output and
``jax.jacrev`` taken with respect to the probes, yields every site's input and every output
cotangent :math:`\delta`. Each leaf then gets either the structured formula above (dense,
convolution via patches, embedding lookup) or its materialised per-example gradients, whichever
costs fewer FLOPs. Leaves used in any other way (inside a nonlinearity, a loop, a custom
derivative) fall back to Jacobian contraction, so the result is always the exact kernel.

The package, one job per file:

- ``jaxpr.py``: trace once, inline nested calls into a flat program, find the sites, evaluate the
  program with probes (site inputs and cotangents);
- ``plans.py``: per site, which formula applies (``"dot"``, ``"conv"``, ``"lookup"``) with its sizes
  ``(B, S, C, F)`` and the layout of its inputs and cotangents;
- ``routing.py``: the FLOP counts that choose, per leaf, the formula or materialised gradients;
- ``prepare.py``: the one preparation (trace, sites, plans, routes) shared by :func:`structured_ntk`
  and :func:`site_report`;
- ``features.py``: a site's per-example layer inputs and cotangents, or its per-example gradients;
- ``assembly.py``: the kernels: input Grams and bilinear contractions, bias folding, gradient
  contractions, the Jacobian fallback.
"""

from __future__ import annotations

from typing import Any

import jax

from ldjax._src.structured.assembly import assemble
from ldjax._src.structured.prepare import prepare
from ldjax._src.typing import ApplyFn
from ldjax._src.typing import Params


def structured_ntk(
    apply_fn: ApplyFn, params: Params, x1: Any, x2: Any, trace: bool, route: str = "auto", fold: bool = False
) -> dict[str, jax.Array]:
    r"""Per-leaf kernels ``{name: [n1, n2, O, O]}`` (``[n1, n2]`` when ``trace``); see the package doc.

    ``route`` ("auto", "structured", "gradients") overrides the FLOP-count choice (for tests).
    ``fold``: a bias added right after a structured dense layer is folded into that layer's term,
    :math:`(X X^\top + 1) \odot (\Delta \Delta^\top)`, and its own key is dropped (the values still
    sum to the full kernel; only for the total, not for per-layer kernels).
    """
    prepared = prepare(apply_fn, params, x1, jax.tree.leaves(x2)[0].shape[0], route)
    return assemble(prepared, x1, x2, trace, fold)


def site_report(apply_fn: ApplyFn, params: Params, x1: Any, route: str = "auto") -> dict[str, str]:
    """How each parameter leaf would be handled for the batch ``x1`` (for tests and benchmarks).

    Values: ``"dot"``, ``"conv"``, ``"lookup"`` (structured formulas), ``"gradients"`` (materialised
    per-example gradients), ``"fallback"`` (Jacobian contraction) or ``"unused"``.
    """
    prepared = prepare(apply_fn, params, x1, jax.tree.leaves(x1)[0].shape[0], route)
    return dict(zip(prepared.names, prepared.routes, strict=True))

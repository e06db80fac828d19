r"""FLOP-based routing: per parameter leaf, the structured formula or materialised per-example gradients.

For a leaf with one structurable site of sizes ``(B, S, C, F)``, ``n1 x n2`` example pairs, ``O``
logits and ``p`` parameters:

- gradients: one backward pass per (example, logit) to the site's ``B*S*C*F`` products, then a
  Gram matrix of ``[n, O, p]`` gradients;
- structured: the input Gram ``[n1, n2, B, S, S]`` (``C`` contracted), then the cheaper order of the
  bilinear contraction with the cotangents (:func:`bilinear_costs`).
"""

from __future__ import annotations

from typing import Literal

from ldjax._src.structured.jaxpr import Site
from ldjax._src.structured.plans import Plan

Route = Literal["auto", "structured", "gradients"]
ROUTES: tuple[Route, ...] = ("auto", "structured", "gradients")


def check_route(route: str) -> None:
    if route not in ROUTES:
        raise ValueError(f"route must be 'auto', 'structured' or 'gradients', got {route!r}")


def bilinear_costs(n1: int, n2: int, o: int, b: int, s: int, f: int) -> tuple[int, int]:
    """FLOPs of ``Σ_f D1 D2`` weighted by the input Gram in two orders: the Gram times the second
    cotangents first (``via_m``), or all cotangent pairs first (``via_dg``, without the final sum)."""
    via_m = 2 * n1 * n2 * o * b * s * s * f + 2 * n1 * n2 * o * o * b * s * f
    via_dg = 2 * n1 * n2 * o * o * b * s * s * f
    return via_m, via_dg


def gradient_flops(plan: Plan, p: int, n1: int, n2: int, o: int) -> int:
    """Materialised per-example gradients: one VJP per (example, output), then a Gram matrix."""
    assert plan.dims is not None
    b, s, c, f = plan.dims
    per_output = p if plan.kind == "lookup" else b * s * c * f
    return 2 * (n1 + n2) * o * per_output + 2 * n1 * n2 * o * o * p


def structured_flops(plan: Plan, n1: int, n2: int, o: int) -> int:
    """The input Gram, then the cheaper order of the bilinear contraction."""
    assert plan.dims is not None
    b, s, c, f = plan.dims
    via_m, via_dg = bilinear_costs(n1, n2, o, b, s, f)
    return 2 * n1 * n2 * b * s * s * c + min(via_m, via_dg + 2 * n1 * n2 * o * o * b * s * s)


def leaf_route(
    sites: list[Site], plans: dict[Site, Plan], p: int, n1: int, n2: int, o: int, route: str
) -> str:
    """The plan's kind (``"dot"``, ``"conv"``, ``"lookup"``: the structured formula) or
    ``"gradients"`` for a leaf with these ``sites``; ``route`` overrides the FLOP comparison."""
    plan = plans[sites[0]]
    if len(sites) != 1 or plan.kind is None or route == "gradients":
        return "gradients"
    if route == "structured" or structured_flops(plan, n1, n2, o) < gradient_flops(plan, p, n1, n2, o):
        return plan.kind
    return "gradients"

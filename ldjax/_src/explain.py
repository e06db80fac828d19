r"""How a kernel will be computed: every parameter site, its route, and FLOP and memory estimates.

:func:`explain_kernel` traces the model once (the structured package's preparation) and estimates,
for ``n1 x n2`` example pairs with ``O`` logits each and ``p`` parameters, the cost of each NTK method:

- ``"jacobian"``: ``O`` reverse passes per example (about ``2 F`` FLOPs each for a forward cost ``F``:
  the cotangents and the weight gradients),
  the per-example Jacobians ``[n, O, p]`` held in memory, then ``2 n1 n2 O² p`` for the contraction;
- ``"vector_products"``: one VJP and ``n1`` JVPs per kernel column, about ``3 F O n2 (n1 + 1)``, memory
  ``O p``;
- ``"structured"``: ``O`` reverse passes to the layer outputs (the cotangents only, about ``F``), then per leaf
  its structured formula or per-example gradients (:mod:`ldjax._src.structured.routing`), plus a
  Jacobian contraction of the leaves it cannot see through.

``method="auto"`` (:func:`choose_method`) takes the cheapest estimate whose memory fits the budget,
FLOPs of model passes weighted :data:`PASS_WEIGHT` times those of kernel contractions (the passes are
many small operations, the contractions a few large matmuls). The estimates count arithmetic, not memory
traffic: they rank the methods, they do not time them.
"""

import logging
from typing import Any
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from ldjax._src import checks
from ldjax._src import structured
from ldjax._src.structured import routing
from ldjax._src.structured.jaxpr import size
from ldjax._src.structured.plans import KINDS
from ldjax._src.typing import ApplyFn
from ldjax._src.typing import Params

GiB = 1 << 30
logger = logging.getLogger("ldjax")
_HOW = {
    "dot": "structured formula (dense: layer inputs x output cotangents)",
    "conv": "structured formula (convolution patches x output cotangents)",
    "lookup": "structured formula (embedding lookup: equal ids x cotangents)",
    "gradients": "per-example gradients from layer inputs and cotangents",
    "fallback": "Jacobian fallback (materialised per-example Jacobian)",
    "unused": "unused (zero kernel)",
}


class SiteRow(NamedTuple):
    """One parameter leaf in :class:`KernelPlan`.

    Attributes:
      name: its path in ``params`` (``"conv1/kernel"``).
      shape: its shape.
      route: ``"dot"``, ``"conv"``, ``"lookup"`` (structured formulas), ``"gradients"``, ``"fallback"``
        or ``"unused"`` (as the structured method computes it).
      how: the route in words.
      reason: why a fallback leaf could not be structured (``"used by tanh"``), else ``""``.
      layers: the number of layers when the leaf is a stack scanned over (``per_layer`` then splits it
        by layer index), else 0.
      flops: estimated FLOPs of this leaf's kernel by its route (the shared reverse pass excluded).
      bytes: estimated memory of its intermediate arrays.
    """

    name: str
    shape: tuple[int, ...]
    route: str
    how: str
    reason: str
    layers: int
    flops: int
    bytes: int


class MethodCost(NamedTuple):
    """Estimated cost of one method: all FLOPs, the part spent in model passes (forward, reverse, JVP),
    and the memory of its largest intermediate arrays."""

    flops: int
    bytes: int
    pass_flops: int = 0

    @property
    def score(self) -> float:
        """FLOPs with those of model passes weighted by :data:`PASS_WEIGHT` (what ``"auto"`` minimises)."""
        return self.flops + (PASS_WEIGHT - 1) * self.pass_flops


PASS_WEIGHT = 5
"""How much dearer a FLOP of a model pass (per-example forward, reverse and JVP passes: many small
operations) is than a FLOP of a kernel contraction (a few large matmuls). On the CPU benchmark models
(``benchmarks/bench_ntk.py``) the passes ran at about a fifth of the contractions' FLOP rate."""


class KernelPlan(NamedTuple):
    """Result of :func:`explain_kernel`: what each method would cost and which one ``"auto"`` takes.

    Attributes:
      method: the method ``"auto"`` chooses.
      rows: one :class:`SiteRow` per parameter leaf.
      costs: ``{method: MethodCost(flops, bytes)}`` for ``"jacobian"``, ``"vector_products"``, ``"structured"``.
      memory_budget: the memory budget in bytes the choice respected.
      n1, n2, out_size, forward_flops: the sizes the estimates are for.
    """

    method: str
    rows: list[SiteRow]
    costs: dict[str, MethodCost]
    memory_budget: float
    n1: int
    n2: int
    out_size: int
    forward_flops: int

    def __str__(self) -> str:
        lines = [
            f"kernel of {self.n1} x {self.n2} examples, {self.out_size} logits each, "
            f"{self.forward_flops:,} FLOPs per forward pass; memory budget {_gib(self.memory_budget)}",
            f"{'parameter':<36} {'shape':<18} {'route':<10} {'GFLOP':>9} {'memory':>10}  how",
        ]
        for r in self.rows:
            how = (
                r.how + (f" ({r.reason})" if r.reason else "") + (f"; {r.layers} layers" if r.layers else "")
            )
            lines.append(
                f"{r.name:<36} {str(r.shape):<18} {r.route:<10} {r.flops / 1e9:>9.3f} {_gib(r.bytes):>10}  {how}"
            )
        for method, cost in self.costs.items():
            fits = "" if cost.bytes <= self.memory_budget else "  (over the memory budget)"
            mark = "  <- auto" if method == self.method else ""
            lines.append(
                f"method {method:<16} {cost.flops / 1e9:>10.3f} GFLOP {_gib(cost.bytes):>10}{fits}{mark}"
            )
        return "\n".join(lines)


def _gib(n: float) -> str:
    return f"{n / GiB:.3g} GiB" if n >= GiB / 10 else f"{n / (1 << 20):.3g} MiB"


def explain_kernel(
    apply_fn: ApplyFn,
    params: Params,
    x1: Any,
    x2: Any = None,
    *,
    trace: bool = False,
    memory_budget: float | None = None,
) -> KernelPlan:
    """List every parameter leaf, how its kernel is computed, and what each NTK method would cost.

    Traces ``apply_fn`` once on one example (no kernel is computed). The structured method computes
    dense, convolution and embedding-lookup leaves by their structured formula (or per-example
    gradients where that costs fewer FLOPs) and falls back to Jacobian contraction for leaves used any
    other way (inside a nonlinearity, a normalisation's statistics, a ``scan`` over layers); the reason
    is given per leaf. ``print(plan)`` shows the table.

    Args:
      apply_fn: un-batched model, ``apply_fn(params, x) -> [*o]``.
      params: pytree of parameters.
      x1: batch ``[n1, *d]``.
      x2: batch ``[n2, *d]``; ``None`` means ``x1`` (the Gram matrix).
      trace: estimate for the traced kernel ``[n1, n2]``.
      memory_budget: bytes the chosen method may use (default: half of the device's memory, as everywhere).

    Returns:
      :class:`KernelPlan` (``.method`` is what ``method="auto"`` takes).

    Example:
      >>> import jax.numpy as jnp, ldjax
      >>> f = lambda p, x: jnp.tanh(x @ p["w"]) @ p["v"]
      >>> plan = ldjax.explain_kernel(f, {"w": jnp.ones((5, 8)), "v": jnp.ones((8, 3))}, jnp.ones((4, 5)))
      >>> [(r.name, r.route) for r in plan.rows], plan.method
      ([('v', 'dot'), ('w', 'dot')], 'structured')
    """
    checks.check_batch(x1, "x1")
    if x2 is not None:
        checks.check_batch(x2, "x2")
        checks.check_same_examples(x1, "x1", x2, "x2")
    checks.logits_shape(apply_fn, params, x1, "x1")
    n1 = checks.batch_size(x1)
    gram = x2 is None
    n2 = n1 if gram else checks.batch_size(x2)
    prepared = structured.prepare(apply_fn, params, x1, n2, "auto")
    budget = checks.memory_budget(memory_budget)[0]
    return plan_from_prepared(prepared, n1, n2, gram, trace, budget)


def plan_from_prepared(prepared: Any, n1: int, n2: int, gram: bool, trace: bool, budget: float) -> KernelPlan:
    """The :class:`KernelPlan` of a structured preparation for ``n1 x n2`` pairs (``gram``: one batch)."""
    o = prepared.out_size
    itemsize = int(jnp.result_type(*prepared.leaves).itemsize) if prepared.leaves else 4
    n = n1 if gram else n1 + n2
    o_out = 1 if trace else o
    contraction = 2 * n1 * n2 * o * o_out  # per parameter
    rows = [
        _site_row(prepared, leaf, n1, n2, n, contraction, itemsize) for leaf in range(len(prepared.names))
    ]
    costs = _method_costs(prepared, rows, n1, n2, n, o_out, contraction, itemsize)
    return KernelPlan(
        method=choose_method(costs, budget),
        rows=rows,
        costs=costs,
        memory_budget=budget,
        n1=n1,
        n2=n2,
        out_size=o,
        forward_flops=int(prepared.forward_flops),
    )


def _site_row(prepared: Any, leaf: int, n1: int, n2: int, n: int, contraction: int, itemsize: int) -> SiteRow:
    """Leaf ``leaf``'s row: its route and the FLOPs and memory of its kernel by that route (``n`` examples
    in all, ``contraction`` FLOPs per parameter to contract two per-example Jacobians)."""
    name, route = prepared.names[leaf], prepared.routes[leaf]
    o = prepared.out_size
    shape = tuple(np.shape(prepared.leaves[leaf]))
    p = size(shape)
    if route == "fallback":
        flops, nbytes = n * o * p + contraction * p, itemsize * n * o * p
    elif route == "unused":
        flops, nbytes = 0, 0
    elif route in KINDS:
        plan = prepared.plans[prepared.sites[leaf][0]]
        b, s, c, f = plan.dims
        flops = routing.structured_flops(plan, n1, n2, o)
        nbytes = itemsize * (n1 * n2 * b * s * s + n * o * b * s * f)
    else:
        plan = prepared.plans[prepared.sites[leaf][0]]
        flops = (
            routing.gradient_flops(plan, p, n1, n2, o)
            if plan.dims is not None
            else (n * o * p + contraction * p)
        )
        nbytes = itemsize * n * o * p
    return SiteRow(
        name=name,
        shape=shape,
        route=route,
        how=_HOW.get(route, route),
        reason=prepared.reasons.get(leaf, ""),
        layers=prepared.stacked.get(leaf, 0),
        flops=int(flops),
        bytes=int(nbytes),
    )


def _method_costs(
    prepared: Any, rows: list[SiteRow], n1: int, n2: int, n: int, o_out: int, contraction: int, itemsize: int
) -> dict[str, MethodCost]:
    """The :class:`MethodCost` of each method, from the sizes and the structured method's per-leaf rows."""
    o = prepared.out_size
    p_total = sum(size(r.shape) for r in rows)
    p_fallback = sum(size(r.shape) for r in rows if r.route == "fallback")
    kernel_bytes = itemsize * n1 * n2 * o_out * o_out
    # O reverse passes per example: with the weight gradients (Jacobian), or the cotangents alone (structured)
    reverse = 2 * prepared.forward_flops * o * n
    cotangents = prepared.forward_flops * o * n
    vp_passes = 3 * prepared.forward_flops * o * n2 * (n1 + 1)
    structured_passes = cotangents + (reverse if p_fallback else 0)  # the fallback leaves' own Jacobian pass
    return {
        "jacobian": MethodCost(
            reverse + n * o * p_total + contraction * p_total,
            itemsize * n * o * p_total + kernel_bytes,
            reverse,
        ),
        "vector_products": MethodCost(
            vp_passes + 2 * n2 * o * p_total,
            itemsize * (2 * o * p_total + n1 * o * o) + kernel_bytes,
            vp_passes,
        ),
        "structured": MethodCost(
            structured_passes + sum(r.flops for r in rows),
            itemsize * (n * o * p_fallback) + max((r.bytes for r in rows), default=0) + kernel_bytes,
            structured_passes,
        ),
    }


def choose_method(costs: dict[str, MethodCost], budget: float) -> str:
    """The method of lowest :attr:`MethodCost.score` among those whose memory fits ``budget`` (else the
    one of least memory)."""
    fitting = {m: c for m, c in costs.items() if c.bytes <= budget}
    if not fitting:
        return min(costs, key=lambda m: costs[m].bytes)
    return min(fitting, key=lambda m: fitting[m].score)


def pick_method(
    f: ApplyFn,
    p: Any,
    x1: Any,
    x2: Any,
    want_trace: bool,
    method: str,
    per_layer: bool,
    memory_budget: float | None,
) -> tuple[str, Any]:
    """The method to run (``"auto"``'s choice, logged) and the structured preparation when one is needed."""
    budget = checks.memory_budget(memory_budget)[0]
    n1, gram = checks.batch_size(x1), x2 is x1
    prepared = None
    if method in ("auto", "structured") or per_layer:
        prepared = structured.prepare(f, p, x1, checks.batch_size(x2), "auto")
    if method == "auto":
        assert prepared is not None
        plan = plan_from_prepared(prepared, n1, checks.batch_size(x2), gram, want_trace, budget)
        logger.info("empirical_ntk_fn: method='auto' chose %r (%s)", plan.method, _summary(plan))
        return plan.method, prepared
    return method, prepared


def _summary(plan: Any) -> str:
    return ", ".join(
        f"{m}: {c.flops / 1e9:.3g} GFLOP, {c.bytes / 2**20:.3g} MiB" for m, c in plan.costs.items()
    )

r"""Reproduction rows: **claims** (a paper's finding) and **checks** (identities, numerical self-tests).

A claim states a finding of a paper, fixes a criterion in code with a margin, and is decided over
several seeds (paired seeds where methods are compared). A check proves the code, not the phenomenon:
an identity, a predicted-vs-actual correlation, a residual slope. The report shows them in separate
tables and counts claims only.

A criterion is data: :class:`Above`, :class:`Below` or :class:`Within` of a per-seed quantity, decided
on the mean over seeds (and, with ``every_seed=True``, on every seed as well). Its text is generated
from its fields, so the row says exactly what was decided:

>>> from ldjax._src.experiments import claims
>>> row = claims.claim(
...     "sft.chosen_up", "SFT raises log π(y⁺)", source="Ren & Sutherland, ICLR 2025",
...     paper="rises", values=[3.0, 2.5, 2.8],
...     criterion=claims.Above(0.5, "Δ log π(y⁺) (nats)"))
>>> row.holds, row.seeds, row.criterion
(True, 3, 'mean over 3 seeds of Δ log π(y⁺) (nats) > 0.5')
>>> claims.claim("sft.chosen_up", "SFT raises log π(y⁺)", source="", paper="", values=[-1.0, 0.2, 0.1],
...              criterion=claims.Above(0.5, "Δ log π(y⁺) (nats)")).holds
False
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Sequence
from typing import Any
from typing import Literal
from typing import NamedTuple

import numpy as np

Kind = Literal["claim", "check"]
_ID = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)+$")


class Row(NamedTuple):
    """One row of an experiment's ``fidelity`` list in ``results.json``.

    Attributes:
      id: stable ``experiment.short_name`` (bars, notebooks and docs refer to it).
      kind: ``"claim"`` (a paper's finding) or ``"check"`` (an identity or numerical self-test).
      statement: the finding or the check, in words.
      source: the citation (paper, section/figure where checked).
      paper: the paper's number or finding as text ("" where it gives none).
      criterion: the decision rule, with its margin and the number of seeds.
      value: the decided statistic (the mean over seeds for a claim).
      spread: the standard deviation over seeds (``None`` for one seed or a check).
      seeds: how many seeds (independent runs) the value is over.
      holds: whether the criterion is met.
      note: where and why the set-up differs from the paper's, or why a claim is missed.
      values: the per-seed values the claim was decided on.
    """

    id: str
    kind: Kind
    statement: str
    source: str
    paper: str
    criterion: str
    value: Any
    spread: float | None
    seeds: int
    holds: bool
    note: str = ""
    values: tuple[float, ...] = ()


@dataclasses.dataclass(frozen=True)
class Above:
    """Holds when the mean over seeds of ``quantity`` exceeds ``threshold`` (the margin is in it)."""

    threshold: float
    quantity: str
    every_seed: bool = False

    def holds(self, mean: float, values: np.ndarray) -> bool:
        ok = mean > self.threshold
        return bool(ok and (not self.every_seed or np.all(values > self.threshold)))

    def describe(self, seeds: int) -> str:
        extra = " and on every seed" if self.every_seed else ""
        return f"mean over {seeds} seeds of {self.quantity} > {self.threshold:g}{extra}"


@dataclasses.dataclass(frozen=True)
class Below:
    """Holds when the mean over seeds of ``quantity`` is below ``threshold`` (the margin is in it)."""

    threshold: float
    quantity: str
    every_seed: bool = False

    def holds(self, mean: float, values: np.ndarray) -> bool:
        ok = mean < self.threshold
        return bool(ok and (not self.every_seed or np.all(values < self.threshold)))

    def describe(self, seeds: int) -> str:
        extra = " and on every seed" if self.every_seed else ""
        return f"mean over {seeds} seeds of {self.quantity} < {self.threshold:g}{extra}"


@dataclasses.dataclass(frozen=True)
class Within:
    """Holds when the mean over seeds of ``quantity`` lies in ``[low, high]`` (e.g. a paired difference)."""

    low: float
    high: float
    quantity: str

    def holds(self, mean: float, values: np.ndarray) -> bool:
        del values
        return bool(self.low <= mean <= self.high)

    def describe(self, seeds: int) -> str:
        return f"mean over {seeds} seeds of {self.quantity} in [{self.low:g}, {self.high:g}]"


Criterion = Above | Below | Within


def claim(
    id: str,
    statement: str,
    *,
    source: str,
    paper: str,
    values: Sequence[float],
    criterion: Criterion,
    note: str = "",
) -> Row:
    """A paper's finding decided over seeds: value = mean, spread = standard deviation (ddof=1).

    A non-finite per-seed value (a diverged run) makes the claim missed, never silently dropped.

    Args:
      id: ``experiment.short_name``.
      statement: the finding in words.
      source: citation.
      paper: the paper's number or finding ("" where none).
      values: one value per seed (paired differences where methods are compared).
      criterion: :class:`Above`, :class:`Below` or :class:`Within`.
      note: set-up differences, or why the claim is missed.

    Returns:
      :class:`Row` with ``kind="claim"``.
    """
    _check_id(id)
    array = np.asarray(values, dtype=float).reshape(-1)
    if array.size == 0:
        raise ValueError(f"claim {id!r}: values is empty: expected one value per seed")
    finite = bool(np.all(np.isfinite(array)))
    mean = float(np.mean(array)) if finite else float("nan")
    spread = float(np.std(array, ddof=1)) if finite and array.size > 1 else None
    holds = finite and criterion.holds(mean, array)
    if not finite:
        note = (note + " " if note else "") + "a seed gave a non-finite value: missed."
    return Row(
        id=id,
        kind="claim",
        statement=statement,
        source=source,
        paper=paper,
        criterion=criterion.describe(int(array.size)),
        value=mean if finite else None,
        spread=spread,
        seeds=int(array.size),
        holds=bool(holds),
        note=note,
        values=tuple(float(v) for v in array),
    )


def check(
    id: str,
    statement: str,
    *,
    value: Any,
    holds: bool,
    criterion: str,
    source: str = "",
    note: str = "",
    seeds: int = 1,
) -> Row:
    """An identity or numerical self-test (predicted vs actual, a closed form vs a step, a slope).

    Example:
      >>> from ldjax._src.experiments import claims
      >>> claims.check("demo.correlation", "predicted vs actual Δ log π agree", value=0.999,
      ...              holds=True, criterion="Pearson r >= 0.99").kind
      'check'
    """
    _check_id(id)
    if isinstance(value, float) and not math.isfinite(value):
        holds, value = False, None
    return Row(
        id=id,
        kind="check",
        statement=statement,
        source=source,
        paper="",
        criterion=criterion,
        value=value,
        spread=None,
        seeds=seeds,
        holds=bool(holds),
        note=note,
    )


def explain_miss(row: Row, reason: str) -> Row:
    """``row`` with ``"missed: " + reason`` appended to its note when it is missed, unchanged when it holds.

    For a reason that explains a miss (a named limit of the set-up, a finding at this scale): it must not
    appear on a claim that holds.

    Example:
      >>> from ldjax._src.experiments import claims
      >>> row = claims.claim("demo.up", "rises", source="", paper="", values=[0.1, 0.2, 0.0],
      ...                    criterion=claims.Above(0.5, "the rise"), note="tiny model")
      >>> claims.explain_miss(row, "too few updates").note
      'tiny model; missed: too few updates'
    """
    if row.holds or not reason:
        return row
    return row._replace(note=(row.note + "; " if row.note else "") + "missed: " + reason)


def _check_id(id: str) -> None:
    if not _ID.match(id):
        raise ValueError(
            f"row id {id!r} must look like 'experiment.short_name' (lower case, digits, '_', '.')"
        )


def summary(rows: Sequence[Row | dict[str, Any]]) -> dict[str, int]:
    """Counts of claims held / claims in total / checks held / checks in total.

    Example:
      >>> from ldjax._src.experiments import claims
      >>> r = claims.check("x.y", "s", value=1, holds=True, criterion="c")
      >>> claims.summary([r])
      {'claims_held': 0, 'claims': 0, 'checks_held': 1, 'checks': 1}
    """
    as_dicts = [normalise(row) for row in rows]
    claims_ = [row for row in as_dicts if row.get("kind") == "claim"]
    checks_ = [row for row in as_dicts if row.get("kind") == "check"]
    return {
        "claims_held": sum(bool(row["holds"]) for row in claims_),
        "claims": len(claims_),
        "checks_held": sum(bool(row["holds"]) for row in checks_),
        "checks": len(checks_),
    }


def normalise(row: Row | dict[str, Any]) -> dict[str, Any]:
    """A fidelity row as a dict in the claims/checks layout; a row of an older ``results.json`` (no
    ``kind``) is shown as an unclassified claim so that nothing is hidden.

    Example:
      >>> from ldjax._src.experiments import claims
      >>> claims.normalise({"claim": "x > 0", "paper": "> 0", "value": 1.0, "holds": True})["kind"]
      'claim'
    """
    if isinstance(row, Row):
        return row._asdict()
    if "kind" in row:
        return dict(row)
    return {
        "id": "",
        "kind": "claim",
        "statement": row.get("claim", ""),
        "source": "",
        "paper": row.get("paper", ""),
        "criterion": "(unclassified row of an older results.json)",
        "value": row.get("value"),
        "spread": None,
        "seeds": 1,
        "holds": bool(row.get("holds")),
        "note": row.get("note", ""),
    }

"""Reproduction rows: a claim's criterion can fail, checks are kept apart, bad rows are refused."""

import math

import numpy as np
import pytest

from ldjax._src.experiments import claims


@pytest.mark.parametrize(
    ("criterion", "passing", "failing"),
    [
        (claims.Above(0.5, "x"), [1.0, 0.9, 0.8], [0.6, 0.5, 0.3]),
        (claims.Below(-0.1, "x"), [-0.5, -0.3, -0.2], [-0.2, 0.0, 0.1]),
        (claims.Within(-0.02, 0.02, "x"), [0.01, -0.01, 0.0], [0.05, 0.04, 0.03]),
        (claims.Above(0.0, "x", every_seed=True), [0.1, 0.2, 0.3], [1.0, 1.0, -0.1]),
        (claims.Below(0.0, "x", every_seed=True), [-0.1, -0.2, -0.3], [-1.0, -1.0, 0.1]),
    ],
)
def test_criteria_decide_on_the_mean_over_seeds(criterion, passing, failing):
    ok = claims.claim("e.ok", "s", source="", paper="", values=passing, criterion=criterion)
    bad = claims.claim("e.bad", "s", source="", paper="", values=failing, criterion=criterion)
    assert ok.holds and not bad.holds
    assert ok.value == pytest.approx(np.mean(passing))
    assert ok.spread == pytest.approx(np.std(passing, ddof=1))
    assert ok.seeds == 3 and ok.kind == "claim" and "3 seeds" in ok.criterion


def test_a_diverged_seed_makes_the_claim_missed():
    row = claims.claim(
        "e.nan", "s", source="", paper="", values=[1.0, math.nan, 1.0], criterion=claims.Above(0, "x")
    )
    assert not row.holds and row.value is None and "non-finite" in row.note


def test_one_seed_has_no_spread():
    row = claims.claim("e.one", "s", source="", paper="", values=[2.0], criterion=claims.Above(0, "x"))
    assert row.spread is None and row.seeds == 1


def test_checks_are_counted_apart_from_claims():
    rows = [
        claims.claim("e.a", "s", source="", paper="", values=[1.0, 2.0, 3.0], criterion=claims.Above(0, "x")),
        claims.claim("e.b", "s", source="", paper="", values=[1.0, 2.0, 3.0], criterion=claims.Below(0, "x")),
        claims.check("e.c", "s", value=0.99, holds=True, criterion="r >= 0.9"),
        claims.check("e.d", "s", value=math.inf, holds=True, criterion="finite"),
    ]
    assert claims.summary(rows) == {"claims_held": 1, "claims": 2, "checks_held": 1, "checks": 2}


@pytest.mark.parametrize("bad", ["", "noexperiment", "Upper.case", "a..b", "a.b c"])
def test_row_ids_are_refused_unless_experiment_dot_name(bad):
    with pytest.raises(ValueError, match="must look like 'experiment.short_name'"):
        claims.check(bad, "s", value=1, holds=True, criterion="c")


def test_empty_values_are_refused():
    with pytest.raises(ValueError, match="values is empty"):
        claims.claim("e.x", "s", source="", paper="", values=[], criterion=claims.Above(0, "x"))


def test_explain_miss_appends_the_reason_to_a_missed_claim_only():
    kw = {"source": "s", "paper": "p", "criterion": claims.Above(0.5, "the rise"), "note": "set-up"}
    held = claims.claim("exp.up", "rises", values=[1.0, 0.9, 1.1], **kw)
    missed = claims.claim("exp.up", "rises", values=[0.0, 0.1, -0.1], **kw)
    assert claims.explain_miss(held, "too few updates") == held
    assert claims.explain_miss(missed, "too few updates").note == "set-up; missed: too few updates"
    assert claims.explain_miss(missed._replace(note=""), "too few updates").note == "missed: too few updates"
    assert claims.explain_miss(missed, "") == missed

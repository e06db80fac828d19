"""Shared test set-up: warnings are errors (pyproject), float64 references via ``jax.enable_x64``."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    """In CI (``CI`` set) a skipped test is a failure: every check must really run there."""
    if not os.environ.get("CI") or hasattr(session.config, "workerinput"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped and exitstatus == pytest.ExitCode.OK:
        reasons = sorted({str(getattr(report, "longrepr", ""))[-160:] for report in skipped})
        reporter.write_line(
            f"CI: {len(skipped)} test(s) skipped, which CI does not allow: {reasons}", red=True
        )
        session.exitstatus = pytest.ExitCode.TESTS_FAILED

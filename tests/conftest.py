"""Shared test set-up, the equinox/lineax habits.

- Warnings are errors (``filterwarnings`` in pyproject).
- Strict dtype promotion in the test processes: an implicit ``float32 + float64``, ``int32 + int64`` or
  ``int32 + float32`` is an error (Python scalars stay weakly typed, but only within their kind). ldjax runs
  optax's ``update`` under standard promotion, since optax's Adam computes ``1 - b1**count`` with an int count.
- The public API's jaxtyping shape annotations are checked at run time: jaxtyping's import hook instruments
  the core modules of ``ldjax`` with typeguard before anything imports them (the experiments and the app tier
  are not instrumented).
- float64 in ONE place: a test (or module, via ``pytestmark``) marked ``float64`` runs with x64 switched on,
  fixtures included; everything else runs in JAX's default float32, as the library does for users.
- One JAX persistent compilation cache for every process of a run (xdist workers and CLI subprocesses inherit
  it through the environment), kept in ``.pytest_cache/`` between local runs; XLA compiles for CPU without
  LLVM's optimisations (what a program computes is the same, only its speed differs; most of the suite's CPU
  time is compiling small programs once each).
- The notebooks run in the test process (tests/notebook_runner.py): an experiment's notebook is run, at the
  experiment's ``TINY``, by its smoke test, which then checks the notebook's results.
- The CPU time of the run (this process and all its reaped children) is printed at the end, with the 15 tests
  that used the most (their set-up, call and tear-down, subprocesses included); every test's figure is kept
  in ``.pytest_cache/v/ldjax/cpu_seconds_by_test``.
"""

import contextlib
import os
import resource
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]

# Environment first: JAX reads these when it is imported, here and in every subprocess of the run.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(_ROOT / ".pytest_cache" / "jax-compilation-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
# XLA compiles for CPU without LLVM's optimisations: it changes how fast a program runs, not what it computes, and
# compiling many small programs once each is most of the suite's CPU time (−45 % on the CIFAR-3 smoke run).
_FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
os.environ["XLA_FLAGS"] = f"{_FAST_COMPILE} {os.environ.get('XLA_FLAGS', '')}".strip()

import jaxtyping  # noqa: E402

# The core of ldjax, checked at run time against its shape annotations (before any test imports ldjax).
_SRC = _ROOT / "ldjax" / "_src"
_CHECKED_MODULES = [
    f"ldjax._src.{path.relative_to(_SRC).with_suffix('').as_posix().replace('/', '.')}"
    for path in sorted(_SRC.rglob("*.py"))
    if path.relative_to(_SRC).parts[0] not in ("experiments", "app")  # with their subpackages
    and path.name not in ("__init__.py", "typing.py")
]
jaxtyping.install_import_hook(_CHECKED_MODULES, "typechecking.typechecked")

import jax  # noqa: E402
import pytest  # noqa: E402

# In the test processes only (not inherited by notebook kernels or CLI subprocesses).
jax.config.update("jax_numpy_dtype_promotion", "strict")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """Markers that set JAX's configuration for a test, its set-up and tear-down (module fixtures too) included.

    ``float64``: x64 on. ``standard_promotion``: JAX's standard dtype promotion instead of strict.
    """
    with contextlib.ExitStack() as stack:
        if item.get_closest_marker("float64") is not None:
            stack.enter_context(jax.enable_x64(True))
        if item.get_closest_marker("standard_promotion") is not None:
            stack.enter_context(jax.numpy_dtype_promotion("standard"))
        return (yield)


# Modules without shared fixtures whose tests are long and independent: each test is its own unit of work,
# so both xdist workers share them (with ``--dist loadscope`` a module's tests otherwise go to one worker).
_SPREAD_MODULES = ("tests/test_notebooks.py", "tests/test_doctests.py")


class _SpreadScheduler:
    """The xdist hook, registered only when xdist is loaded (``-p no:xdist`` must keep working)."""

    @staticmethod
    def pytest_xdist_make_scheduler(config, log):
        """``--dist loadscope``, except that the tests of ``_SPREAD_MODULES`` are scheduled one by one."""
        if config.getvalue("dist") != "loadscope":
            return None
        from xdist.scheduler import LoadScopeScheduling

        class SpreadScheduling(LoadScopeScheduling):
            def _split_scope(self, nodeid: str) -> str:
                if nodeid.startswith(_SPREAD_MODULES):
                    return nodeid
                return super()._split_scope(nodeid)

        return SpreadScheduling(config, log)


def pytest_configure(config):
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_SpreadScheduler(), "ldjax-spread-scheduler")


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


def _cpu_seconds() -> float:
    """User + sys time of this process and of its children that have ended and been reaped."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    return (yield from _timed(item, "setup"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    return (yield from _timed(item, "call"))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    return (yield from _timed(item, "teardown"))


def _timed(item, phase):
    """Run a phase of a test (the generator of a hook wrapper) and note its CPU seconds in the report."""
    start = _cpu_seconds()
    try:
        return (yield)
    finally:
        item.user_properties.append(("cpu_s", _cpu_seconds() - start))


_CPU_BY_TEST: dict[str, float] = {}


def pytest_runtest_logreport(report):
    if report.when == "teardown":  # its user_properties hold the notes of all three phases
        _CPU_BY_TEST[report.nodeid] = sum(v for k, v in report.user_properties if k == "cpu_s")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """The CPU time (user + sys) of the run, this process and its reaped children (xdist workers, kernels)."""
    if hasattr(config, "workerinput"):
        return
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    own, theirs = me.ru_utime + me.ru_stime, children.ru_utime + children.ru_stime
    if _CPU_BY_TEST and getattr(config, "cache", None) is not None:  # all of them: .pytest_cache/v/ldjax/
        config.cache.set(
            "ldjax/cpu_seconds_by_test", dict(sorted(_CPU_BY_TEST.items(), key=lambda kv: -kv[1]))
        )
    slowest = sorted(_CPU_BY_TEST.items(), key=lambda kv: -kv[1])[:15]
    if slowest:
        terminalreporter.write_sep("=", f"{len(slowest)} tests with the most CPU time")
        for nodeid, seconds in slowest:
            terminalreporter.write_line(f"{seconds:8.1f}s  {nodeid}")
    terminalreporter.write_line(
        f"CPU time of the test run: {own + theirs:.1f} s (user {me.ru_utime + children.ru_utime:.1f} s + "
        f"sys {me.ru_stime + children.ru_stime:.1f} s; pytest {own:.1f} s, its subprocesses {theirs:.1f} s)"
    )

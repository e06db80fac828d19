"""Every notebook is stored without outputs and runs top to bottom.

In ``make test`` the cells run in the test process (tests/notebook_runner.py) at the tiny settings
(``LDJAX_NOTEBOOK_TINY``): an experiment's notebook is run by that experiment's smoke test, which then checks
the notebook's results (one run for both; tests/test_experiment_registry.py checks that each experiment's
notebook is run so); the notebooks that belong to no experiment run here. ``make test-slow`` runs every
notebook in a real Jupyter kernel at its own settings, as a reader does. No per-cell wall-clock limit (a
loaded machine is slow, not wrong); ``HANG_GUARD`` only ends a hung kernel.
"""

import os

import nbformat
import pytest

from ldjax._src.experiments import registry

from notebook_runner import NOTEBOOKS
from notebook_runner import execute_notebook

# Seconds a cell (or the kernel's start) may take before the test gives up: it catches a hang, not a slow machine.
HANG_GUARD = 3600
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
EXPERIMENT_NOTEBOOKS = {spec.name for spec in registry.EXPERIMENTS}
OTHER_NOTEBOOKS = sorted(p.stem for p in PATHS if p.stem not in EXPERIMENT_NOTEBOOKS)


def test_there_are_notebooks():
    assert "use_ldjax_on_your_model" in OTHER_NOTEBOOKS and "force_attribution" in OTHER_NOTEBOOKS


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_is_stripped(path):
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name}: outputs are not stripped"


@pytest.mark.parametrize("name", OTHER_NOTEBOOKS)
def test_notebook_runs(name, tmp_path):
    """At the tiny settings (``LDJAX_NOTEBOOK_TINY``): every cell runs."""
    namespace = execute_notebook(name, tmp_path)
    assert namespace["TINY"] is True


@pytest.mark.slow
@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_notebook_runs_at_its_own_settings(path, tmp_path, monkeypatch):
    """As a reader runs it, in a Jupyter kernel: the experiment's quick settings (minutes each)."""
    from nbclient import NotebookClient

    monkeypatch.delenv("LDJAX_NOTEBOOK_TINY", raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=HANG_GUARD,
        startup_timeout=HANG_GUARD,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute(env=dict(os.environ))  # shuts the kernel down and reaps it (its CPU time counts)
    errors = [
        o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
    ]
    assert not errors

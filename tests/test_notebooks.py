"""Every notebook runs top to bottom (tiny settings via LDJAX_NOTEBOOK_TINY) and is stored without outputs.

The kernel inherits this process's environment, so it shares the run's JAX compilation cache (conftest.py):
a notebook whose tiny settings equal its experiment's smoke test reuses the smoke test's compiled programs.
No per-cell wall-clock limit (a loaded machine is slow, not wrong); ``HANG_GUARD`` only ends a hung kernel.
"""

import os
from pathlib import Path

import nbformat
import pytest

# Seconds a cell (or the kernel's start) may take before the test gives up: it catches a hang, not a slow machine.
HANG_GUARD = 3600
NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert any(p.name == "use_ldjax_on_your_model.ipynb" for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_stripped(path):
    notebook = nbformat.read(path, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{path.name}: outputs are not stripped"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    """At the tiny settings (``LDJAX_NOTEBOOK_TINY``): every cell runs, in seconds."""
    monkeypatch.setenv("LDJAX_NOTEBOOK_TINY", "1")
    run_notebook(path, tmp_path, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_at_its_own_settings(path, tmp_path, monkeypatch):
    """As a reader runs it: the experiment's quick settings (minutes each; ``make test-slow``)."""
    monkeypatch.delenv("LDJAX_NOTEBOOK_TINY", raising=False)
    run_notebook(path, tmp_path, monkeypatch)


def run_notebook(path, tmp_path, monkeypatch):
    from nbclient import NotebookClient

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

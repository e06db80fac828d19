"""Run a notebook's code cells in the test process, through IPython's shell, and keep its namespace.

An experiment's smoke test runs the experiment BY running its notebook (at the experiment's ``TINY``
settings) and then checks the notebook's ``results``: one run covers both, where a notebook executed in a
separate kernel would repeat the smoke test's run and its compilations. The cells run as a reader's kernel
runs them (IPython's shell: magics, ``display``, the last expression's value), in this process, so the
test-suite's strict dtype promotion and runtime shape checks apply to them too. Under ``make test-slow``
the notebooks also run in a real Jupyter kernel at their own settings (tests/test_notebooks.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


class NotebookCellError(AssertionError):
    """A cell raised: its number and source are in the message, the original error is the cause."""


def execute_notebook(name: str, workdir: Path, *, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Runs ``notebooks/<name>.ipynb`` cell by cell in this process; returns the notebook's namespace.

    ``LDJAX_NOTEBOOK_TINY`` is set (the notebook then uses its experiment's ``TINY`` settings); the cells run
    with ``workdir`` as the current directory and ``env`` added to the environment.
    """
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    path = NOTEBOOKS / f"{name}.ipynb"
    notebook = nbformat.read(path, as_version=4)
    settings = Config()
    settings.HistoryManager.enabled = False  # no sqlite history file under ~/.ipython
    shell = InteractiveShell.instance(config=settings)
    shell.reset(new_session=False)  # a fresh namespace for every notebook
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workdir)
        patch.setenv("MPLBACKEND", "Agg")
        patch.setenv("LDJAX_NOTEBOOK_TINY", "1")
        for key, value in (env or {}).items():
            patch.setenv(key, value)
        for number, cell in enumerate(notebook.cells):
            if cell.cell_type != "code":
                continue
            outcome = shell.run_cell(cell.source, store_history=False)
            error = outcome.error_before_exec or outcome.error_in_exec
            if error is not None:
                raise NotebookCellError(f"{path.name}, cell {number}:\n{cell.source}") from error
    return dict(shell.user_ns)


def replay_run(results: dict[str, Any], config: Any):
    """A stand-in for an experiment's ``run`` that returns ``results`` for ``config`` (and fails otherwise).

    For testing ``main`` (flags → ``Config`` → ``results.json`` and figures) on the results of a run that
    has already happened, without running the experiment again.
    """

    def run(received: Any, *, data_dir: str | None = None, progress: bool = True) -> dict[str, Any]:
        del data_dir, progress
        assert received == config, f"main built {received}, expected {config}"
        return results

    return run


def flags(config: Any, base: Any) -> list[str]:
    """The command-line flags that turn ``base`` (a ``Config``) into ``config``: one per differing field."""
    import dataclasses

    argv: list[str] = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if value == getattr(base, field.name):
            continue
        text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
        argv += ["--" + field.name.replace("_", "-"), text]
    return argv


def notebook_fixture(name: str, env: dict[str, str] | None = None):
    """A module-scoped fixture: ``notebooks/<name>.ipynb`` run once at the tiny settings; its namespace."""

    @pytest.fixture(scope="module")
    def notebook(tmp_path_factory):
        return execute_notebook(name, tmp_path_factory.mktemp(f"notebook-{name}"), env=env)

    return notebook


def replay_plot(figures: Path):
    """A stand-in for an experiment's ``plot`` that copies the figures a notebook drew (``figures``, the
    notebook's ``out`` folder: PNGs and their side files) into ``out_dir`` and returns the PNGs' new paths."""
    import shutil

    def plot(results: dict[str, Any], out_dir: Path) -> list[Path]:
        del results
        for path in sorted(figures.iterdir()):
            shutil.copy2(path, Path(out_dir) / path.name)
        return [Path(out_dir) / path.name for path in sorted(figures.glob("*.png"))]

    return plot

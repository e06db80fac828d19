"""Every registered experiment is one module with its public wrapper, notebook and README line."""

import importlib
import re
import runpy
import warnings
from pathlib import Path

import nbformat
import pytest

from ldjax._src.experiments import registry

ROOT = Path(__file__).resolve().parents[1]
NAMES = [spec.name for spec in registry.EXPERIMENTS]
PUBLIC = ("Config", "FULL", "TINY", "run", "plot", "fidelity", "main")
OLD_NAMES = {
    "mnist": "mnist_force",
    "gaussian": "gaussian_paths",
    "cifar3": "cifar3_paths",
    "filterkd": "filter_kd",
    "llm": "llm_dynamics",
}


def test_the_registry_and_the_public_experiments_are_the_same_set():
    wrappers = {p.stem for p in (ROOT / "ldjax" / "experiments").glob("*.py") if p.stem != "__init__"}
    assert sorted(wrappers) == sorted(NAMES)
    assert len(set(NAMES)) == len(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_the_name_is_the_module_name(name):
    spec = registry.get(name)
    assert spec.module is None and spec.module_path == f"ldjax._src.experiments.{name}"
    assert spec.load().__name__ == f"ldjax._src.experiments.{name}"


@pytest.mark.parametrize("name", NAMES)
def test_public_wrapper_reexports_the_experiment(name):
    implementation = registry.get(name).load()
    wrapper = importlib.import_module(f"ldjax.experiments.{name}")
    assert set(PUBLIC) <= set(wrapper.__all__)
    for attr in PUBLIC:
        assert getattr(wrapper, attr) is getattr(implementation, attr), f"ldjax.experiments.{name}.{attr}"


@pytest.mark.parametrize("name", NAMES)
def test_wrapper_runs_with_python_dash_m(name, monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", [name, "--help"])
    with warnings.catch_warnings():  # runpy warns that the module is already imported; that is fine here
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(SystemExit) as exit_info:
            runpy.run_module(f"ldjax.experiments.{name}", run_name="__main__")
    assert exit_info.value.code == 0
    assert f"python -m ldjax.experiments.{name}" in capsys.readouterr().out


@pytest.mark.parametrize("name", NAMES)
def test_implementation_runs_with_python_dash_m(name, monkeypatch):
    """``python -m ldjax._src.experiments.NAME``: a module, or a package with its ``__main__.py``."""
    monkeypatch.setattr("sys.argv", [name, "--help"])
    spec = registry.get(name)
    module = spec.load()
    target = spec.module_path + (".__main__" if hasattr(module, "__path__") else "")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(SystemExit) as exit_info:
            runpy.run_module(target, run_name="__main__", alter_sys=True)
    assert exit_info.value.code == 0


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_the_experiment_by_its_name(name):
    path = ROOT / "notebooks" / f"{name}.ipynb"
    assert path.exists(), f"notebooks/{name}.ipynb is missing"
    cells = nbformat.read(path, as_version=4).cells
    code = "\n".join(cell.source for cell in cells if cell.cell_type == "code")
    text = "\n".join(cell.source for cell in cells if cell.cell_type == "markdown")
    assert f"from ldjax.experiments import {name}" in code
    assert f"`ldjax reproduce {name}`" in text


@pytest.mark.parametrize("name", NAMES)
def test_readme_has_a_line_for_the_experiment(name):
    lines = (ROOT / "README.md").read_text().splitlines()
    rows = [line for line in lines if line.startswith(f"| `{name}` |")]
    assert len(rows) == 1, f"README needs one table row for {name}"
    assert f"(ldjax/experiments/{name}.py)" in rows[0] and f"(notebooks/{name}.ipynb)" in rows[0]


def test_older_names_select_the_experiment_they_mean():
    for old, name in OLD_NAMES.items():
        assert registry.get(old).name == name
    aliases = [alias for spec in registry.EXPERIMENTS for alias in spec.aliases]
    assert sorted(aliases) == sorted(OLD_NAMES) and not set(aliases) & set(NAMES)
    with pytest.raises(ValueError, match=r"unknown experiment 'nope'.*older names: mnist = mnist_force"):
        registry.get("nope")


@pytest.mark.parametrize("name", NAMES)
def test_the_experiments_smoke_test_runs_its_notebook_at_tiny(name):
    """The notebook's tiny settings are the experiment's ``TINY``, and a test runs the notebook so."""
    cells = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4).cells
    code = "\n".join(cell.source for cell in cells if cell.cell_type == "code")
    assert "experiment.TINY if" in code, f"notebooks/{name}.ipynb: tiny settings other than experiment.TINY"
    tests = "\n".join(path.read_text() for path in (ROOT / "tests").glob("test_*.py"))
    assert re.search(rf'notebook_fixture\("{name}"[,)]', tests), f"no test runs notebooks/{name}.ipynb"

"""Package hygiene: a light ``import ldjax``, no JAX internals, a thin public API, ruff clean."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "ldjax"


def test_import_ldjax_is_light():
    code = (
        "import sys, ldjax; heavy = [m for m in ('matplotlib', 'flax', 'ldjax.experiments', 'sklearn', 'tqdm')"
        " if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_models_and_data_are_reachable_after_a_plain_import_and_load_on_first_use():
    code = (
        "import sys, ldjax; before = 'flax' in sys.modules; ok = ldjax.models.MLP and ldjax.data.load_digits; "
        "print(before, 'flax' in sys.modules, 'models' in dir(ldjax), sorted(set(ldjax.__all__) & {'data', 'models'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "True", "['data',", "'models']"], out.stdout
    with pytest.raises(AttributeError, match="module 'ldjax' has no attribute 'modles'"):
        import ldjax

        ldjax.modles  # noqa: B018


def test_no_jax_internals_anywhere():
    pattern = re.compile(r"(?<![\w.])jax\.(core|interpreters|_src)\b")
    offenders = [str(p.relative_to(ROOT)) for p in PACKAGE.rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


@pytest.mark.parametrize(
    "init",
    [
        "ldjax/__init__.py",
        "ldjax/models/__init__.py",
        "ldjax/data/__init__.py",
        "ldjax/losses.py",
        "ldjax/plot.py",
    ],
)
def test_public_modules_only_reexport(init):
    tree = ast.parse((ROOT / init).read_text())
    for node in tree.body:
        allowed = (ast.Import, ast.ImportFrom, ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr)
        lazy = isinstance(node, ast.FunctionDef) and node.name in ("__getattr__", "__dir__")
        assert isinstance(node, allowed) or lazy, f"{init}: {ast.dump(node)[:80]} is more than a re-export"
    module = __import__(init.removesuffix(".py").removesuffix("/__init__").replace("/", "."), fromlist=["*"])
    for name in module.__all__:
        assert hasattr(module, name), f"{init}: __all__ names {name!r} which is not defined"


def test_every_public_function_has_a_docstring_with_an_example():
    import ldjax

    missing = []
    for name in ldjax.__all__:
        obj = getattr(ldjax, name)
        if callable(obj) and not isinstance(obj, type):
            doc = obj.__doc__ or ""
            if ">>>" not in doc:
                missing.append(name)
    assert missing == []


def test_ruff_is_clean():
    out = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "ldjax", "tests", "benchmarks"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr

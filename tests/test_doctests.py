"""The ``>>>`` examples in every implementation module's docstrings run and print what they say."""

import doctest
import importlib
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "ldjax" / "_src"
MODULES = sorted(
    "ldjax._src." + ".".join(path.relative_to(SRC).with_suffix("").parts)
    for path in SRC.rglob("*.py")
    if ">>>" in path.read_text()
)


def test_the_core_modules_have_examples():
    for name in ("ntk", "terms", "one_step", "training", "adapters", "losses.classification"):
        assert f"ldjax._src.{name}" in MODULES


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(
        module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    assert result.attempted > 0
    assert result.failed == 0

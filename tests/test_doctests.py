"""The ``>>>`` examples in the public docstrings run and print what they say."""

import doctest
import importlib

import pytest

MODULES = [
    "ldjax._src.adapters",
    "ldjax._src.ntk",
    "ldjax._src.terms",
    "ldjax._src.one_step",
    "ldjax._src.training",
    "ldjax._src.losses.classification",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0
    assert result.failed == 0

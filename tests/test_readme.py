"""The README's example runs as written and prints what it says."""

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs_as_written():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(blocks[0], "README.md", "exec"), {})
    assert "(8, 3, 3) (8, 1, 3, 3) (1, 3)" in out.getvalue()


def test_readme_shows_the_two_commands():
    text = README.read_text()
    assert "make test" in text and "make reproduce" in text


def test_readme_api_lists_every_public_function():
    import ldjax

    text = README.read_text()
    api = text[text.index("## API") :]
    missing = [
        name
        for name in ldjax.__all__
        if callable(getattr(ldjax, name))
        and not isinstance(getattr(ldjax, name), type)
        and f"ldjax.{name}`" not in api
    ]
    assert missing == []

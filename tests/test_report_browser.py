"""report.html in a real browser (headless Chromium): images decode, nothing overflows at 1280 px."""

import os
import shutil
from pathlib import Path

import pytest

from ldjax._src.app import cli

import browser_check
from test_cli import fake_registry  # noqa: F401 - fixture

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def test_report_renders_in_chromium(fake_registry, tmp_path):  # noqa: F811
    if browser_check.chromium() is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI: .ci/run installs Debian's 'chromium' package")
        pytest.skip("chromium not installed here (CI installs it)")
    cli.main(["reproduce", "--out", str(tmp_path), "--no-progress"])
    page = tmp_path / "report.html"
    assert page.exists()
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    verdict = browser_check.check_page(page, shot)
    assert verdict["images"] >= 1
    assert verdict["broken"] == []
    assert verdict["overflow"] == [], verdict
    assert verdict["scrollWidth"] <= verdict["clientWidth"]
    assert shot.exists() and shot.stat().st_size > 10_000
    shutil.copy(page, ARTIFACTS / "report.html")


def test_a_broken_image_is_detected(tmp_path):
    if browser_check.chromium() is None:
        pytest.skip("chromium not installed")
    page = tmp_path / "bad.html"
    page.write_text(
        "<html><body><img alt='bad' src='data:image/png;base64,AAAA'>"
        "<div style='width:3000px'>wide</div></body></html>"
    )
    verdict = browser_check.check_page(page, tmp_path / "bad.png")
    assert verdict["broken"] == ["bad"]
    assert verdict["overflow"]

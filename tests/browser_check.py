"""Check a report page in a real browser: every image decoded, nothing overflows, a screenshot.

Uses headless Chromium (Debian's ``chromium`` package) with no driver: a copy of the page gets a
small script that measures the page after load and writes a JSON verdict into the DOM, which
``--dump-dom`` returns.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

_PROBE = """
<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const broken = images.filter((img) => !(img.complete && img.naturalWidth > 0)).map((img) => img.alt);
  const width = document.documentElement.clientWidth;
  const overflow = Array.from(document.querySelectorAll("body *"))
    .filter((el) => el.getBoundingClientRect().right > width + 1)
    .map((el) => el.tagName + (el.id ? "#" + el.id : "")).slice(0, 20);
  const verdict = {images: images.length, broken: broken, overflow: overflow,
                   scrollWidth: document.documentElement.scrollWidth, clientWidth: width};
  const pre = document.createElement("pre");
  pre.id = "ldjax-browser-verdict";
  pre.textContent = JSON.stringify(verdict);
  document.body.appendChild(pre);
});
</script>
"""

_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def chromium() -> str | None:
    """Path of a Chromium binary, or ``None``."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def check_page(
    page: str | Path, screenshot: str | Path, *, width: int = 1280, height: int = 2400
) -> dict[str, Any]:
    """Load ``page`` in headless Chromium at ``width`` px; return the verdict and save a screenshot.

    Returns:
      ``{"images": n, "broken": [alt...], "overflow": [element...], "scrollWidth": w, "clientWidth": w}``.
    """
    binary = chromium()
    if binary is None:
        raise FileNotFoundError("chromium not found: install Debian's 'chromium' package")
    page = Path(page).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "page.html"
        probe.write_text(page.read_text().replace("</body>", _PROBE + "</body>"))
        common = [binary, *_FLAGS, f"--user-data-dir={tmp}/profile", f"--window-size={width},{height}"]
        dom = subprocess.run(
            [*common, "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()],
            capture_output=True,
            text=True,
            timeout=180,
            check=True,
        ).stdout
        subprocess.run(
            [*common, f"--screenshot={Path(screenshot).resolve()}", page.as_uri()],
            capture_output=True,
            text=True,
            timeout=180,
            check=True,
        )
    match = re.search(r'<pre id="ldjax-browser-verdict">(.*?)</pre>', dom, flags=re.S)
    if not match:
        raise RuntimeError("the page did not report its verdict (did it load?)")
    return json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))

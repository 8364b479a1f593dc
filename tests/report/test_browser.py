"""The HTML report in a real browser: headless Chromium renders it from file:// with no network,
every image loads and the page logs no error (checked through the DevTools protocol, with the
small standard-library client in cdp.py).

Skipped only where Chromium is not installed (Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cdp import check_page, chromium_devtools, find_chromium, open_page, screenshot

TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def chromium() -> str:
    binary = find_chromium()
    if binary is None:
        pytest.skip("chromium is not installed (/usr/bin/chromium or chromium on PATH); "
                    "on Debian: apt-get install chromium")
    return binary


def test_report_renders_with_every_image_and_no_errors(chromium, built_report, tmp_path):
    url = built_report.index.resolve().as_uri()
    n_images = built_report.index.read_text(encoding="utf-8").count("<img ")
    assert n_images >= 8

    # A broken page proves that the checks below can fail: a missing image, a console error
    # and an uncaught exception must all be caught.
    broken = tmp_path / "broken.html"
    broken.write_text('<!DOCTYPE html><title>broken</title><img src="missing.png">'
                      '<script>console.error("boom"); throw new Error("bang");</script>')

    with chromium_devtools(chromium, tmp_path / "profile", timeout=TIMEOUT_S,
                           extra=["--window-size=1200,900"]) as devtools:
        session = open_page(devtools)
        report = check_page(devtools, session, url)
        bad = check_page(devtools, session, broken.resolve().as_uri())

    assert report["title"].startswith(f"gonomaly report: {built_report.model_name} on")
    assert report["count"] == n_images
    assert report["broken"] == [], f"images that did not load: {report['broken']}"
    assert report["errors"] == [], "the page logged errors:\n" + "\n".join(report["errors"])
    # Laid out within the window: no horizontal scrolling at 1200 px wide.
    assert report["width"] <= 1200, f"the page is {report['width']} px wide"

    assert bad["count"] == 1 and bad["broken"] == ["missing.png"]
    assert any(e.startswith("console.error: boom") for e in bad["errors"]), bad["errors"]
    assert any(e.startswith("exception:") and "bang" in e for e in bad["errors"]), bad["errors"]
    assert any("missing.png" in e or "ERR_FILE_NOT_FOUND" in e for e in bad["errors"]), bad["errors"]


def test_report_screenshot_is_not_blank(chromium, built_report, tmp_path):
    path = tmp_path / "report.png"
    result = screenshot(chromium, tmp_path / "profile", built_report.index.resolve().as_uri(),
                        path, window=(1200, 900), timeout=TIMEOUT_S)
    assert result.returncode == 0, result.stderr.decode("utf-8", "replace")[-2000:]
    assert path.is_file() and path.stat().st_size > 10_000
    with Image.open(path) as im:
        assert im.size == (1200, 900)
        pixels = np.asarray(im.convert("RGB"), dtype=np.int16)
    # Mostly a white page, with dark text, coloured figures and more than a handful of colours.
    assert (pixels.min(axis=2) > 240).mean() > 0.4
    assert (pixels.max(axis=2) < 80).mean() > 0.005
    colours = Image.fromarray(pixels.astype(np.uint8)).getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50
    # The header (title, details, summary cards) is drawn at the top left.
    assert pixels[:300, :600].std() > 20

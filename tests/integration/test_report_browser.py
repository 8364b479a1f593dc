"""The HTML report of a real ``gonomaly run`` in a real browser: headless Chromium (selenium, the
``browser`` fixture in conftest.py) renders it from file:// with no network, every image loads
and the page logs no error.

Skipped only where Chromium or its driver is not installed (Debian: ``apt-get install chromium
chromium-driver``).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gonomaly.cli import main

RUN_SPEC = "mnist-c:corruptions=impulse_noise,stripe,n_train=300,n_test=60"
VIEWPORT_PX = (1200, 900)  # the browser fixture's viewport

IMAGES_JS = """return (() => {
  const images = Array.from(document.images);
  const broken = images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src'));
  return {count: images.length, broken: broken, title: document.title,
          width: document.documentElement.scrollWidth};
})()"""


@pytest.fixture(scope="module")
def run_report(tmp_path_factory) -> Path:
    """``index.html`` of a one-epoch ``gonomaly run`` on 300 real digits (impulse noise and
    stripes against 60 clean test digits)."""
    out = tmp_path_factory.mktemp("browser_run") / "run"
    main(["-q", "run", "--epochs", "1", "--batch-size", "32", "--data", RUN_SPEC, "--out", str(out)])
    index = out / "report" / "index.html"
    assert index.is_file()
    return index


def check_page(driver, url: str) -> dict:
    """Load ``url``, wait for its load event, and report ``count``, ``broken`` (the src of every
    image that did not load), ``title``, ``width`` (of the laid-out page) and ``errors`` (the
    browser log's SEVERE entries: console errors, uncaught exceptions, failed loads)."""
    driver.get_log("browser")  # drop what earlier pages logged
    driver.get(url)
    report = driver.execute_script(IMAGES_JS)
    report["errors"] = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    return report


def test_report_renders_with_every_image_and_no_errors(browser, run_report, tmp_path):
    n_images = run_report.read_text(encoding="utf-8").count("<img ")
    assert n_images >= 8

    # A broken page proves that the checks below can fail: a missing image, a console error
    # and an uncaught exception must all be caught.
    broken = tmp_path / "broken.html"
    broken.write_text('<!DOCTYPE html><title>broken</title><img src="missing.png">'
                      '<script>console.error("boom"); throw new Error("bang");</script>')

    report = check_page(browser, run_report.resolve().as_uri())
    bad = check_page(browser, broken.resolve().as_uri())

    assert report["title"].startswith("gonomaly report: gon on")
    assert report["count"] == n_images
    assert report["broken"] == [], f"images that did not load: {report['broken']}"
    assert report["errors"] == [], "the page logged errors:\n" + "\n".join(report["errors"])
    # Laid out within the window: no horizontal scrolling at 1200 px wide.
    assert report["width"] <= VIEWPORT_PX[0], f"the page is {report['width']} px wide"

    assert bad["count"] == 1 and bad["broken"] == ["missing.png"]
    assert any("boom" in e for e in bad["errors"]), bad["errors"]
    assert any("Uncaught Error: bang" in e for e in bad["errors"]), bad["errors"]
    assert any("missing.png" in e and "ERR_FILE_NOT_FOUND" in e for e in bad["errors"]), bad["errors"]


def test_report_screenshot_is_not_blank(browser, run_report):
    browser.get(run_report.resolve().as_uri())
    with Image.open(io.BytesIO(browser.get_screenshot_as_png())) as im:
        assert im.size == VIEWPORT_PX
        pixels = np.asarray(im.convert("RGB"), dtype=np.int16)
    # Mostly a white page, with dark text, coloured figures and more than a handful of colours.
    assert (pixels.min(axis=2) > 240).mean() > 0.4
    assert (pixels.max(axis=2) < 80).mean() > 0.005
    colours = Image.fromarray(pixels.astype(np.uint8)).getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50
    # The header (title, details, summary cards) is drawn at the top left.
    assert pixels[:300, :600].std() > 20

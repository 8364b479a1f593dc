"""Fixtures for the integration tests: a headless Chromium driven by selenium.

The browser is Debian's ``chromium`` driven through Debian's ``chromedriver`` (package
``chromium-driver``); both paths are given to selenium, so Selenium Manager never looks for or
downloads a browser or a driver. Tests that use :func:`browser` are skipped, with the reason,
where either program is missing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

VIEWPORT_PX = (1200, 900)  # CSS pixels, at one device pixel each
PAGE_LOAD_TIMEOUT_S = 60
CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--hide-scrollbars",
)


def find_program(name: str) -> str | None:
    """``/usr/bin/NAME`` (where Debian installs it) or ``NAME`` on PATH, else None."""
    path = f"/usr/bin/{name}"
    return path if os.access(path, os.X_OK) else shutil.which(name)


@pytest.fixture(scope="session")
def browser(tmp_path_factory) -> Iterator[object]:
    """A headless Chromium ``selenium.webdriver.Chrome`` for the whole session, with a viewport of
    :data:`VIEWPORT_PX` (1200 x 900) and the browser's console log kept (``driver.get_log("browser")``)."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from selenium.webdriver.chrome.service import Service

    chromium, chromedriver = find_program("chromium"), find_program("chromedriver")
    if chromium is None or chromedriver is None:
        missing = " and ".join(n for n, p in (("chromium", chromium), ("chromedriver", chromedriver)) if p is None)
        pytest.skip(f"{missing} not installed (on Debian: apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT_S)
    # An exact viewport (a window size would include the browser's frame): screenshots are
    # VIEWPORT_PX in size, and pages are laid out at that width.
    width, height = VIEWPORT_PX
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
    try:
        yield driver
    finally:
        driver.quit()

"""The web page of ``gonomaly serve`` in headless Debian chromium (selenium, no browser download):
upload a real MNIST digit and the same digit with a pasted square, and check the threshold,
each score, each decision and each heat map the page shows."""

from __future__ import annotations

import re

import numpy as np
import pytest

from serve_helpers import ServerThread, corrupted, png_bytes, train_run_folder


@pytest.fixture(scope="module")
def page_server(tmp_path_factory):
    from gonomaly.detector import ReconstructionDetector
    from gonomaly.serve import ServeSettings, create_app

    run_dir, digits = train_run_folder(tmp_path_factory.mktemp("page") / "run")
    detector = ReconstructionDetector.load(run_dir)
    with ServerThread(create_app(ServeSettings(run_dir=str(run_dir)), detector)) as running:
        yield running, detector, digits


def test_the_page_is_self_contained():
    from gonomaly.serve.page import PAGE_HTML

    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", PAGE_HTML)
    assert "@import" not in PAGE_HTML and "url(" not in PAGE_HTML


def test_page_scores_a_normal_and_a_defective_digit(browser, page_server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    server, detector, digits = page_server
    images = {"normal.png": digits[0], "defective.png": corrupted(digits[0])}
    for name, image in images.items():
        (tmp_path / name).write_bytes(png_bytes(image))
    expected = dict(zip(images, detector.score_samples(np.stack(list(images.values())))))
    assert expected["normal.png"] <= detector.threshold_ < expected["defective.png"]

    browser.get(server.url + "/")
    wait = WebDriverWait(browser, 60)
    threshold = wait.until(lambda driver: driver.find_element(By.ID, "threshold"))
    assert float(threshold.text) == pytest.approx(detector.threshold_, rel=1e-5)
    assert str(detector.threshold_rule_) in browser.find_element(By.ID, "model").text
    browser.find_element(By.ID, "files").send_keys("\n".join(str(tmp_path / n) for n in images))
    wait.until(lambda driver: len(driver.find_elements(By.CSS_SELECTOR, ".result.done")) == 2)

    for name, score in expected.items():
        card = browser.find_element(By.CSS_SELECTOR, f'.result[data-name="{name}"]')
        assert not card.find_elements(By.CLASS_NAME, "error")
        shown = float(card.find_element(By.CLASS_NAME, "score").text.split()[1])
        assert shown == pytest.approx(score, rel=1e-5)
        decision = "anomalous" if score > detector.threshold_ else "normal"
        assert card.find_element(By.CLASS_NAME, "decision").text == decision
        assert float(card.find_element(By.CLASS_NAME, "threshold").text.split()[1]) == pytest.approx(
            detector.threshold_, rel=1e-5)
        heat_map = card.find_element(By.CSS_SELECTOR, "img.overlay")
        size = browser.execute_script("return [arguments[0].complete, arguments[0].naturalWidth, "
                                            "arguments[0].naturalHeight]", heat_map)
        assert size == [True, 28, 28]


def test_page_shows_the_error_of_a_bad_file(browser, page_server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    server, _, _ = page_server
    (tmp_path / "notes.png").write_bytes(b"not an image at all")
    browser.get(server.url + "/")
    browser.find_element(By.ID, "files").send_keys(str(tmp_path / "notes.png"))
    card = WebDriverWait(browser, 60).until(
        lambda driver: driver.find_element(By.CSS_SELECTOR, '.result.done[data-name="notes.png"]'))
    assert card.find_element(By.CLASS_NAME, "error").text.startswith("notes.png: cannot read image")
    assert not card.find_elements(By.CSS_SELECTOR, "img.overlay")

"""The HTML report in a real browser (Debian's chromium): every chart drawn, nothing loaded
but the file itself, and a phone-sized screen without sideways scrolling."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
import time_machine
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By

from tests.browser import chrome, requested_urls
from tests.conftest import Store, local
from tests.report_data import SurveyLedger, three_months

__all__ = ["chrome"]  # the fixture, used by name

NOW = local(2026, 11, 28, 12)
CHARTS = {"trend", "scores", "technicians", "rate"}


@pytest.fixture
def report_file(store: Store, tmp_path: Path) -> Iterator[Path]:
    """An HTML report of three months of surveys, comments included."""
    surveys = SurveyLedger(store)
    three_months(surveys)
    surveys.close()
    path = tmp_path / "report.html"
    with time_machine.travel(NOW, tick=False):
        result = store.cli("report", "--html", str(path))
    assert result.exit_code == 0, result.output
    yield path


def test_the_html_report_draws_every_chart_from_the_file_alone(
    chrome: WebDriver, report_file: Path
) -> None:
    """Each chart renders with its marks, the comments read as text, and the browser's
    request log shows one request: the file."""
    requested_urls(chrome)  # start the log afresh
    chrome.get(report_file.as_uri())

    charts = chrome.find_elements(By.CSS_SELECTOR, "section figure svg")
    assert {
        svg.find_element(By.XPATH, "./ancestor::section").get_attribute("id") for svg in charts
    } == CHARTS
    for svg in charts:
        size = chrome.execute_script(
            "const r = arguments[0].getBoundingClientRect(); return [r.width, r.height];", svg
        )
        assert size[0] > 600 and size[1] > 150, size
        assert len(svg.find_elements(By.CSS_SELECTOR, "path")) > 10
    comments = [q.text for q in chrome.find_elements(By.CSS_SELECTOR, ".comments q")]
    assert "<script>alert('x')</script> & te duur" in comments
    assert set(requested_urls(chrome)) == {report_file.as_uri()}


def png_size(path: Path) -> tuple[int, int]:
    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    return width, height


@pytest.mark.parametrize("chrome", [360], indirect=True)
def test_the_html_report_fits_a_phone_without_sideways_scrolling(
    chrome: WebDriver, report_file: Path, tmp_path: Path
) -> None:
    """At 360 px wide the page is one column: nothing sticks out to scroll sideways to."""
    chrome.get(report_file.as_uri())

    widths = chrome.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.clientWidth,"
        " document.body.scrollWidth, window.innerWidth];"
    )
    screenshot = tmp_path / "phone.png"
    assert chrome.save_screenshot(str(screenshot))
    assert widths[3] == 360 and png_size(screenshot)[0] == 360
    assert max(widths[:3]) <= 360, widths
    for figure in chrome.find_elements(By.CSS_SELECTOR, "figure svg"):
        right = chrome.execute_script("return arguments[0].getBoundingClientRect().right;", figure)
        assert right <= 360

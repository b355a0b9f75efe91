"""A real browser for tests: Debian's chromium, driven through chromedriver by selenium.

``chrome`` yields a selenium WebDriver: headless, a fresh profile, no background networking,
the DevTools performance log on (``requested_urls`` reads what the page loaded). Its width is
1280 px unless a test asks for another, ``@pytest.mark.parametrize("chrome", [360],
indirect=True)``, or calls ``set_width(driver, 360)``: a phone-sized viewport (mobile
emulation, so the page's viewport meta tag applies). The browser is found at
``$SURVEYSYNC_CHROMIUM`` / ``$SURVEYSYNC_CHROMEDRIVER``, else on the PATH (``chromium``,
``chromedriver``). Without one a test skips on a laptop and fails where
``SURVEYSYNC_REQUIRE_SERVICES=1`` (CI installs them: see .ci/run).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver

from tests.conftest import server_missing

DEFAULT_WIDTH = 1280
HEIGHT = 900
_BROWSERS = ("chromium", "chromium-browser", "google-chrome")
_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
)


def _executables() -> tuple[str, str] | None:
    browser = os.environ.get("SURVEYSYNC_CHROMIUM") or next(
        (found for name in _BROWSERS if (found := shutil.which(name))), None
    )
    driver = os.environ.get("SURVEYSYNC_CHROMEDRIVER") or shutil.which("chromedriver")
    if driver is None and os.environ.get("CHROMEWEBDRIVER"):  # set on GitHub's runners
        bundled = Path(os.environ["CHROMEWEBDRIVER"]) / "chromedriver"
        driver = str(bundled) if bundled.is_file() else None
    return (browser, driver) if browser and driver else None


@pytest.fixture
def chrome(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebDriver]:
    """A headless chromium with a fresh profile, ``request.param`` (or 1280) pixels wide."""
    found = _executables()
    if found is None:
        server_missing(
            "chromium and chromedriver", "not installed: apt-get install chromium chromium-driver"
        )
    assert found is not None
    width = int(getattr(request, "param", DEFAULT_WIDTH))
    driver = _start(*found, tmp_path_factory.mktemp("chromium-profile"))
    try:
        set_width(driver, width)
        yield driver
    finally:
        driver.quit()


def _start(browser: str, chromedriver: str, profile: Path) -> WebDriver:
    options = Options()
    options.binary_location = browser
    for flag in (*_FLAGS, f"--user-data-dir={profile}", f"--window-size={DEFAULT_WIDTH},{HEIGHT}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    try:
        return webdriver.Chrome(service=Service(executable_path=chromedriver), options=options)
    except WebDriverException as exc:
        server_missing(f"chromium at {browser}", exc.msg or exc)
        raise


def set_width(driver: WebDriver, width: int, height: int = HEIGHT) -> None:
    """The viewport as a device of that width sees it (a phone below 600 px)."""
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600}
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)


def requested_urls(driver: WebDriver) -> list[str]:
    """Every URL the browser asked for since the last call, from its performance log."""
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls

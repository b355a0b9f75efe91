"""The survey page and the survey email in a real browser: Debian's chromium, driven by
selenium through Debian's chromium-driver (nothing downloaded). Missing, they skip on a
laptop and fail where SURVEYSYNC_REQUIRE_SERVICES=1 (CI)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.wait import WebDriverWait

from surveysync.model import COUNTED
from tests.browser import chrome, set_width
from tests.conftest import Store
from tests.web_kit import BROWSER, SurveyPage, survey_page

__all__ = ["chrome"]  # the fixture, used by name

PHONE_WIDTH = 360


@pytest.fixture
def browser(chrome: WebDriver) -> WebDriver:
    """The shared headless chromium (tests/browser.py), patient with a busy machine."""
    chrome.set_page_load_timeout(60)
    return chrome


def as_phone(driver: WebDriver) -> None:
    set_width(driver, PHONE_WIDTH, 780)


def geometry(driver: WebDriver, selector: str) -> dict[str, Any]:
    """The page's scroll width and the left/right edges of the elements ``selector`` finds."""
    return driver.execute_script(  # type: ignore[no-any-return]
        "const r = [...document.querySelectorAll(arguments[0])]"
        "  .map(e => e.getBoundingClientRect());"
        "return {scroll: document.documentElement.scrollWidth, view: window.innerWidth,"
        " edges: r.map(b => [b.left, b.right, b.width])};",
        selector,
    )


def assert_fits(shape: dict[str, Any], buttons: int = 11) -> None:
    assert shape["view"] == PHONE_WIDTH
    assert shape["scroll"] <= PHONE_WIDTH, f"scrolls sideways: {shape['scroll']} px"
    assert len(shape["edges"]) == buttons
    for left, right, width in shape["edges"]:
        assert left >= 0 and right <= PHONE_WIDTH and width >= 20, shape["edges"]


@pytest.fixture
def page(store: Store) -> Iterator[SurveyPage]:
    with survey_page(store) as running:
        yield running


def answer_in_the_browser(driver: WebDriver, page: SurveyPage, customer: str) -> str:
    """Open score 8 from the email, choose 6 instead, write a comment, send; the heading."""
    driver.get(page.emails[customer].scores[8])
    assert driver.find_element(By.ID, "score-8").is_selected()
    driver.find_element(By.CSS_SELECTOR, "label[for=score-6]").click()
    driver.find_element(By.ID, "comment").send_keys(f"comment from {customer} <b>")
    return send(driver)


def send(driver: WebDriver) -> str:
    """Press Send and wait (60 s at most) for the next page; its heading."""
    form = driver.find_element(By.TAG_NAME, "form")
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    WebDriverWait(driver, 60).until(lambda _: left_behind(form))
    return str(driver.find_element(By.TAG_NAME, "h1").text)


def left_behind(element: WebElement) -> bool:
    """Whether the page that held ``element`` is gone. While the browser swaps documents,
    chromedriver answers a question about an old element either as stale or, at some
    moments, with an inspector error that it belongs to no document: both mean gone."""
    try:
        element.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException as exc:
        if "does not belong to the document" not in str(exc):
            raise
        return True
    return False


def test_a_customer_answers_in_korean_and_in_dutch(
    browser: WebDriver, page: SurveyPage
) -> None:
    """The browser clicks a score, changes it, types a comment and sends; the thank-you
    page is in the customer's language and the ledger holds the answer as typed."""
    assert answer_in_the_browser(browser, page, "C3") == "감사합니다!"
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "ko"
    assert answer_in_the_browser(browser, page, "C2") == "Hartelijk dank!"
    for customer in ("C3", "C2"):
        answer = page.answer(customer)
        assert answer is not None and answer["status"] == "confirmed"
        assert (answer["score"], answer["comment"]) == (6, f"comment from {customer} <b>")


def test_the_page_fits_a_phone_and_works_with_javascript_off(
    browser: WebDriver, page: SurveyPage, tmp_path: Path
) -> None:
    """At 360 px all 11 score buttons show without scrolling sideways, and with JavaScript
    off a tap on 10 and Send still answers."""
    as_phone(browser)
    browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
    browser.get(page.emails["C4"].scores[7])
    browser.save_screenshot(str(tmp_path / "survey-page-360.png"))
    browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": False})
    assert_fits(geometry(browser, ".scale label"))
    browser.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
    browser.find_element(By.CSS_SELECTOR, "label[for=score-10]").click()
    assert send(browser) == "¡Muchas gracias!"
    assert page.answer("C4")["score"] == 10  # type: ignore[index]


def test_the_survey_email_fits_a_phone(
    browser: WebDriver, page: SurveyPage, tmp_path: Path
) -> None:
    """The email's HTML part at 360 px shows all 11 score buttons, 9 and 10 included,
    without scrolling sideways, in every language."""
    as_phone(browser)
    for customer, email in page.emails.items():
        html = tmp_path / f"email-{email.locale}.html"
        html.write_text(email.html, encoding="utf-8")
        browser.get(html.as_uri())
        browser.save_screenshot(str(tmp_path / f"email-{email.locale}-360.png"))
        assert_fits(geometry(browser, 'a[href*="/s/"]')), customer


@pytest.mark.parametrize("agent", ["its own", "a desktop browser's"])
def test_a_headless_browser_scanner_pass_makes_no_answer(
    browser: WebDriver, page: SurveyPage, agent: str
) -> None:
    """A scanner's headless browser opening all 11 links within a second, under its own
    user agent or posing as a person's browser, leaves no answer and no alert."""
    if agent != "its own":
        browser.execute_cdp_cmd("Network.setUserAgentOverride", {"userAgent": BROWSER})
    for link in page.emails["C5"].scores:
        browser.get(link)
        page.clock.advance(seconds=0.09)
    page.clock.advance(days=1)
    page.site.tick()
    answer = page.answer("C5")
    assert answer is not None and answer["status"] not in COUNTED
    assert page.store.ledger_rows("SELECT COUNT(*) FROM alerts") == [(0,)]
    assert page.outcomes("C5") == ["scanner"] * 11

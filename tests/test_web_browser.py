"""The dashboard in a real headless Chromium (Debian's chromium through chromium-driver): a virtual card
tapped at a real gate agent, through Mosquitto and the collector daemon, changes the headcount on an
open page without a reload."""

from __future__ import annotations

import signal
import urllib.request

import pytest

from tests.browser import open_tab
from tests.helpers import CollectorSetup, start_web, stop_process, wait_for

pytestmark = pytest.mark.slow

TOKEN = "site-one-manager-token-0001"
OTHER_SITE = "site-two-manager-token-0002"
BANK = "bank-ops-token-all-sites-0003"
CARD = "04A1B2C3D4E5F6"
NAME = 'Zhang <b>Wei</b> & "Li"'  # user input: must appear as text, never as markup


@pytest.fixture
def browser():
    driver = open_tab(size="412,915", device=False)  # a phone's screen
    yield driver
    driver.quit()


def text_of(driver, element_id: str) -> str:
    return driver.find_element("id", element_id).text


def log_in(driver, token: str) -> None:
    from selenium.webdriver.support import expected_conditions as visible
    from selenium.webdriver.support.ui import WebDriverWait

    box = WebDriverWait(driver, 30).until(visible.visibility_of_element_located(("id", "token")))
    box.send_keys(token)
    driver.find_element("css selector", "#login-form button").click()


def until(driver, condition, message: str, timeout: float = 60):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition, message)


def test_a_tap_changes_the_headcount_on_the_open_page(tmp_path, broker, gate, browser):
    collector = CollectorSetup.create(tmp_path / "collector", broker=broker,
                                      **{"web.tokens": {TOKEN: "S1", OTHER_SITE: "S2", BANK: "*"}})
    collector.run("site", "add", "S1", "--timezone", "Asia/Shanghai", "--name", "Riverside tower")
    collector.run("gate", "add", gate.gate, "--site", gate.site, "--public-key", gate.public_key)
    collector.run("worker", "add", "W1", "--name", NAME, "--employer", "Hua Jian", "--card", CARD, "--site", "S1")
    daemon = collector.start()
    agent = web = None
    try:
        wait_for(lambda: "connected to" in collector.log(), message="collector connected")
        agent = gate.start_agent()
        wait_for(lambda: "connected to" in (gate.directory / "agent.log").read_text(), message="agent connected")
        web, url = start_web(collector)

        browser.get(url + "/sites/S1")
        # A wrong token is refused and asked for again; another site's token is told it is not for here.
        log_in(browser, "not-a-token-of-this-collector")
        until(browser, lambda d: "not accepted" in text_of(d, "login-error"), "the wrong token refused")
        log_in(browser, OTHER_SITE)
        until(browser, lambda d: "for site S2 only" in text_of(d, "problem"), "the other site's token refused")
        browser.find_element("id", "forget").click()
        log_in(browser, TOKEN)

        until(browser, lambda d: text_of(d, "on-site") == "0", "the headcount 0")
        until(browser, lambda d: "north: Online" in text_of(d, "gates"), "gate north online")
        assert "Live" in text_of(browser, "connection")
        assert "Riverside tower" in text_of(browser, "title")
        browser.execute_script("window.sameDocument = true")  # gone if the page reloads

        gate.tap(CARD)
        until(browser, lambda d: text_of(d, "on-site") == "1", "the headcount 1 after the tap")
        assert browser.execute_script("return window.sameDocument") is True
        inside = text_of(browser, "inside")
        assert NAME in inside and "(W1)" in inside and "north" in inside
        assert browser.find_elements("css selector", "#inside b") == []
        until(browser, lambda d: "Inside (open)" in text_of(d, "attendance"), "today's record, open")
        assert NAME in text_of(browser, "attendance")
        until(browser, lambda d: "0 punch(es)" in text_of(d, "gates"), "the gate reporting nothing pending")
        browser.save_screenshot(str(tmp_path / "dashboard.png"))  # left for whoever debugs a failure

        # The token is kept: a reload goes straight to the figures, without asking again.
        browser.refresh()
        until(browser, lambda d: text_of(d, "on-site") == "1", "the headcount after a reload")
        assert not browser.find_element("id", "login").is_displayed()

        request = urllib.request.Request(url + "/metrics", headers={"Authorization": f"Bearer {BANK}"})
        # /metrics counts who is inside from the days the daemon keeps (its days thread follows ingest).
        def scraped() -> str | None:
            text = urllib.request.urlopen(request, timeout=30).read().decode()
            return text if 'collector_site_on_site{site="S1"} 1' in text else None

        metrics = wait_for(scraped, message="the worker inside in /metrics")
        assert "collector_punches_ingested_total 1" in metrics
    finally:
        for process in (web, agent, daemon):
            if process is not None:
                stop_process(process, signal.SIGKILL)
    log = (collector.directory / "serve.log").read_text()
    assert "GET /api/sites/S1/live HTTP/1.1" in log
    for token in (TOKEN, OTHER_SITE, BANK, "not-a-token-of-this-collector"):
        assert token not in log

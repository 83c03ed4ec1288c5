"""The charts in a real headless Chromium over `collector serve`: the foreman's day, the worker's calendar
and the bank's arrears and days on a 412 px phone and at desktop width, each SVG inside the viewport
(bounding boxes), its words legible, no page scrolling sideways, a hostile name drawn as text; and a
chart's printable page on one sheet of A4."""

from __future__ import annotations

import base64
import re
import signal
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from collector.ingest.pipeline import Incoming, Ingestor
from gate_agent.protocol import GateTopics, encode_punches, format_time
from tests.browser import open_tab
from tests.helpers import CollectorSetup, PunchFactory, heartbeat, start_web, stop_process

pytestmark = pytest.mark.slow

SITE_TOKEN, BANK_TOKEN = "site-one-manager-token-0001", "bank-ops-token-all-sites-0003"
HOSTILE = '<script>window.pwned=1</script>\u5f20'
CARDS = {f"W{n}": f"04A1B2C3D4E5{n:02X}" for n in range(1, 5)}
SHANGHAI = ZoneInfo("Asia/Shanghai")
#: Where a chart is, what it must show, and its words: inside the viewport, at least 10 px high.
MEASURE = """
const svg = document.querySelector(arguments[0] + " svg");
if (!svg) return null;
const box = svg.getBoundingClientRect();
const texts = [...svg.querySelectorAll("text")].filter((t) => t.textContent.trim()).map((t) => {
  const b = t.getBoundingClientRect();
  return {left: b.left, right: b.right, height: b.height, text: t.textContent};
});
return {left: box.left, right: box.right, width: box.width, height: box.height, texts: texts,
        viewport: document.documentElement.clientWidth, scrolled: document.documentElement.scrollWidth,
        scripts: document.querySelectorAll(arguments[0] + " script").length, pwned: window.pwned === 1};
"""


class Live:
    """Site S1 now (the pages draw today): W1 came and went, W2 and W4 are inside, W3 (named like a
    script) came and went; both gates heard from."""

    def __init__(self, directory):
        self.setup = CollectorSetup.create(directory, broker=SimpleNamespace(port=1883),
                                           **{"web.tokens": {SITE_TOKEN: "S1", BANK_TOKEN: "*"}})
        north, south = PunchFactory(gate="north"), PunchFactory(gate="south")
        now = datetime.now(UTC).replace(microsecond=0)
        with self.setup.store() as store:
            store.add_site("S1", timezone="Asia/Shanghai", name="江畔大厦")
            store.add_gate("S1", "north", north.public_key)
            store.add_gate("S1", "south", south.public_key)
            for worker, card in CARDS.items():
                store.add_worker(worker, name=HOSTILE if worker == "W3" else f"工人{worker}", employer="华建劳务",
                                 cards=[card], sites=["S1"])
            self.taps = [(direction, now - timedelta(minutes=back)) for back, direction in (
                (300, "in"), (240, "out"), (180, "in"), (120, "in"), (60, "out"), (30, "in"))]
            for worker, (direction, at) in zip(("W1", "W1", "W2", "W3", "W3", "W4"), self.taps, strict=True):
                gate = north if direction == "in" else south
                Ingestor(store).ingest([Incoming(GateTopics("S1", gate.gate).punch, encode_punches([
                    gate.next(card=CARDS[worker], direction=direction, at=at)]), format_time(at + timedelta(seconds=2)))])
            with store.transaction():
                for gate in ("north", "south"):
                    store.save_status("S1", gate, {"v": 1, "state": "online", **heartbeat(gate=gate)}, format_time(now))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    live = Live(tmp_path_factory.mktemp("charts") / "collector")
    process, url = start_web(live.setup)
    live.url = url
    yield live
    stop_process(process, signal.SIGKILL)


def until(driver, condition, message: str, timeout: float = 60):
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2,
                         ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
                         ).until(condition, message)


def measured(driver, selector: str, *, widest: float | None = None) -> dict:
    """The chart's box inside the viewport, every word inside the chart and at least 10 px high, and the
    page not scrolling sideways."""
    found = until(driver, lambda d: d.execute_script(MEASURE, selector), f"the chart {selector} drawn")
    assert found["left"] >= 0 and found["right"] <= found["viewport"] + 0.5, found
    assert found["scrolled"] <= found["viewport"], "the page scrolls sideways"
    assert found["width"] >= (min(found["viewport"] - 60, 330)) and found["height"] > 100, found
    if widest is not None:
        assert found["width"] <= widest + 0.5, found
    for text in found["texts"]:
        assert found["left"] - 1 <= text["left"] and text["right"] <= found["right"] + 1, text
        assert text["height"] >= 10, text
    assert found["scripts"] == 0 and not found["pwned"]
    return found


def with_token(driver, url: str, token: str, page: str) -> None:
    driver.get(url + "/static/dashboard.css")  # the origin, without a script that would ask for a token
    driver.execute_script("localStorage.setItem('collector-token', arguments[0])", token)
    driver.get(url + page)


@pytest.mark.parametrize("size", ["412,915", "1280,900"], ids=["phone", "desktop"])
def test_the_foremans_chart_of_today_fits_the_screen_and_ends_at_the_headcount(served, size):
    driver = open_tab(lang="zh-CN", size=size)
    try:
        with_token(driver, served.url, SITE_TOKEN, "/sites/S1")
        until(driver, lambda d: d.find_element("id", "on-site").text == "2", "the headcount")
        found = measured(driver, "#today-chart", widest=None if size.startswith("412") else 576)
        assert "每小时进场、出场人次" in [t["text"] for t in found["texts"]] and "现在 2 人" in [t["text"] for t in
                                                                                   found["texts"]]
        drawn = driver.execute_script("""return [...document.querySelectorAll('#today-chart rect[data-kind]')]
            .map((r) => [r.dataset.kind, Number(r.dataset.hour), Number(r.dataset.count)]);""")
        today = datetime.now(UTC).astimezone(SHANGHAI).date()
        expected: dict[tuple[str, int], int] = {}
        for direction, at in served.taps:  # today's, at the site's clock (Shanghai keeps no summer time)
            local = at.astimezone(SHANGHAI)
            if local.date() == today:
                expected[(direction, local.hour)] = expected.get((direction, local.hour), 0) + 1
        assert {(kind, hour): count for kind, hour, count in drawn} == expected
        assert driver.execute_script("return document.querySelector('#today-chart [data-now]').dataset.now") == "2"
        driver.find_element("id", "lang-switch").click()
        until(driver, lambda d: "In and out per hour" in d.find_element("id", "today-chart").text, "English")
        measured(driver, "#today-chart")
    finally:
        driver.quit()


@pytest.mark.parametrize("size", ["412,915", "1280,900"], ids=["phone", "desktop"])
def test_the_workers_calendar_fits_the_screen(served, size):
    link = served.setup.json("worker", "link", "--worker", "W2", "--base-url", served.url, "--by", "ops")["url"]
    driver = open_tab(lang="zh-CN", size=size)
    try:
        driver.get(link)
        found = measured(driver, "#calendar", widest=None if size.startswith("412") else 640)
        cells = driver.execute_script("""return [...document.querySelectorAll('#calendar g[data-date]')]
            .map((g) => [g.dataset.date, g.dataset.state]);""")
        today = datetime.now(UTC).astimezone(SHANGHAI).date()
        assert 28 <= len(cells) <= 31 and all(date[:7] == f"{today:%Y-%m}" for date, _ in cells)
        states = dict(cells)
        came = served.taps[2][1].astimezone(SHANGHAI).date().isoformat()  # W2's IN, still inside
        if came[:7] == f"{today:%Y-%m}":
            assert states[came] == "worked", states
        assert "出勤" in " ".join(t["text"] for t in found["texts"])
        driver.find_element("id", "previous").click()
        until(driver, lambda d: d.execute_script(
            "const g = document.querySelector('#calendar g[data-date]'); return g && g.dataset.date") <
            f"{today:%Y-%m}", "the previous month's calendar")
        measured(driver, "#calendar")
    finally:
        driver.quit()


@pytest.mark.parametrize("size", ["412,915", "1280,900"], ids=["phone", "desktop"])
def test_the_banks_charts_on_its_page(served, size):
    driver = open_tab(lang="zh-CN", size=size)
    try:
        with_token(driver, served.url, BANK_TOKEN, "/")
        found = measured(driver, "#arrears-chart")
        # The daemon has not kept this site's arrears yet: the chart says so rather than draw nothing owed.
        assert "未能计算" in [t["text"] for t in found["texts"]]
        until(driver, lambda d: d.find_element("id", "days-site").get_attribute("value") == "S1", "the site offered")
        driver.find_element("css selector", "#days-form button[type=submit]").click()
        found = measured(driver, "#days-chart")
        names = [t["text"] for t in found["texts"]]
        assert any(name.startswith("<script>window.pwned=1</script>") for name in names), names
    finally:
        driver.quit()


def test_a_chart_page_prints_on_one_sheet_of_a4(served, tmp_path):
    out = tmp_path / "days.html"
    month = datetime.now(UTC).astimezone(SHANGHAI).strftime("%Y-%m")
    served.setup.run("chart", "days", "--site", "S1", "--month", month, "--out", str(out))
    driver = open_tab(lang="zh-CN", size="1280,900")
    try:
        driver.get(out.as_uri())
        until(driver, lambda d: d.find_elements("css selector", "svg"), "the page")
        pdf = base64.b64decode(driver.execute_cdp_cmd("Page.printToPDF", {"preferCSSPageSize": True})["data"])
        assert len(re.findall(rb"/Type\s*/Page[^s]", pdf)) == 1
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
        width = driver.execute_script("return document.querySelector('svg').getBoundingClientRect().right")
        assert width <= driver.execute_script("return document.documentElement.clientWidth")
    finally:
        driver.quit()

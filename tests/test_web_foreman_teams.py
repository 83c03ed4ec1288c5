"""The foreman's page in real Chromium, on a 412 px phone and at desktop width (issue 22, items 1, 9, 17): who is
inside counted per team and filtered by team or trade; gates by the names the site calls them, a retired gate
gone unless it still sends; the printed evacuation list dated in the site's time, its tables' columns in line."""

from __future__ import annotations

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
from tests.test_web_browser import log_in, text_of
from tests.test_web_foreman import banner_items, no_sideways_scroll, until

pytestmark = pytest.mark.slow

SHANGHAI = ZoneInfo("Asia/Shanghai")
TOKEN = "site-one-foreman-token-teams-01"
STRANGER = "CAFEBABE"
# (worker, name, employer, team, trade, card)
CREW = [("W1", "张伟", "华建劳务", "钢筋班", "钢筋工", "04A1B2C3D4E5F6"),
        ("W2", "李娜", "华建劳务", "钢筋班", "钢筋工", "04A1B2C3D4E5F7"),
        ("W3", "王强", "中铁劳务", "钢筋班", "电工", "04A1B2C3D4E5F8"),
        ("W4", "赵敏", "中铁劳务", "木工班", "木工", "04A1B2C3D4E5F9"),
        ("W5", "欧阳建国", "中铁劳务", "木工班", "木工", "04A1B2C3D4E5FA"),
        ("W6", "陈刚", None, None, None, "04A1B2C3D4E5FB")]
SIZES = {"phone": "412,915", "desktop": "1280,900"}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Site S1: gate north ("北门") healthy, gate east ("东门") retired and still sending (its punches are
    refused after its deactivation), gate old retired and quiet; six workers of two teams and three trades
    inside (one with neither, nor an employer), and a stranger's card."""
    directory = tmp_path_factory.mktemp("foreman-teams")
    setup = CollectorSetup.create(directory / "collector", broker=SimpleNamespace(port=1883),
                                  **{"web.tokens": {TOKEN: "S1"}})
    gates = {name: PunchFactory(gate=name) for name in ("north", "east", "old")}
    now = datetime.now(UTC).replace(microsecond=0)
    with setup.store() as store:
        store.add_site("S1", timezone="Asia/Shanghai", name="滨江大厦")
        store.add_gate("S1", "north", gates["north"].public_key, display="北门")
        store.add_gate("S1", "east", gates["east"].public_key, display="东门")
        store.add_gate("S1", "old", gates["old"].public_key)
        for worker, name, employer, team, trade, card in CREW:
            store.add_worker(worker, name=name, employer=employer, team=team, trade=trade, cards=[card], sites=["S1"])

        def ingest(gate: str, card: str, when: datetime) -> None:
            Ingestor(store).ingest([Incoming(GateTopics("S1", gate).punch,
                                             encode_punches([gates[gate].next(card=card, at=when)]), format_time(when))])

        for index, (*_, card) in enumerate(CREW):
            ingest("north", card, now - timedelta(minutes=90 - index))
        ingest("north", STRANGER, now - timedelta(minutes=20))
        with store.transaction():
            for gate in ("north", "east", "old"):
                store.save_status("S1", gate, {"v": 1, "state": "online",
                                               **heartbeat(gate=gate, heartbeat_seconds=3600)}, format_time(now))
        store.set_gate_active("S1", "east", False)
        store.set_gate_active("S1", "old", False)
        # The retired east gate still sends: a tap after its deactivation, refused (gate_inactive).
        ingest("east", CREW[0][5], datetime.now(UTC) + timedelta(seconds=1))
    process, base = start_web(setup)
    yield SimpleNamespace(setup=setup, base=base)
    stop_process(process, signal.SIGKILL)


@pytest.fixture(params=sorted(SIZES))
def browser(request):
    # The browser's own zone is not the site's: every time on the page must be the site's all the same.
    driver = open_tab(lang="zh-CN", size=SIZES[request.param])
    driver.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": "America/New_York"})
    driver.width = request.param
    yield driver
    driver.quit()


def open_site(browser, base: str) -> None:
    browser.get(base + "/sites/S1")
    log_in(browser, TOKEN)
    until(browser, lambda d: text_of(d, "on-site") == str(len(CREW)), "the headcount")


def inside(browser) -> list[str]:
    return browser.execute_script(
        "return [...document.querySelectorAll('#inside tr[data-worker]')].map(r => r.dataset.worker).sort()")


def choose(browser, select_id: str, value: str | None) -> None:
    """Pick an option of a team or trade picker by what it stands for (None: everyone)."""
    import json

    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("id", select_id)).select_by_value("" if value is None else json.dumps(value,
                                                                                                   ensure_ascii=False))


def test_who_is_inside_per_team_and_filtered_by_team_or_trade(site, browser):
    open_site(browser, site.base)
    teams = until(browser, lambda d: d.execute_script("""return Object.fromEntries([...document.querySelectorAll(
        '#teams li')].map(li => [li.dataset.team, li.querySelector('.count').textContent]))"""), "team counts")
    assert teams == {"钢筋班": "3", "木工班": "2", "": "1"}
    assert "（未登记班组）" in text_of(browser, "teams")
    counts = browser.execute_script("""return Object.fromEntries([...document.querySelectorAll('#employers li')]
        .map(li => [li.dataset.employer, li.querySelector('.count').textContent]))""")
    assert counts == {"中铁劳务": "3", "华建劳务": "2", "": "1"}  # per employer as before

    # Each inside row names team and trade; the pickers offer what is inside, with how many.
    row = browser.find_element("css selector", "#inside tr[data-worker='W3']")
    assert row.get_attribute("data-team") == "钢筋班" and "电工" in row.text
    options = browser.execute_script("return [...document.querySelectorAll('#filter-trade option')].map(o => o.text)")
    assert options == ["全部工种", "钢筋工 (2)", "木工 (2)", "电工 (1)", "（未登记工种） (1)"]

    choose(browser, "filter-team", "钢筋班")
    until(browser, lambda d: inside(d) == ["W1", "W2", "W3"], "the 钢筋班 only")
    choose(browser, "filter-trade", "钢筋工")
    until(browser, lambda d: inside(d) == ["W1", "W2"], "钢筋班 and 钢筋工")
    choose(browser, "filter-trade", "木工")
    until(browser, lambda d: d.find_element("id", "inside-empty").is_displayed(), "nobody of both said")
    assert "钢筋班" in text_of(browser, "inside-empty") and "木工" in text_of(browser, "inside-empty")
    choose(browser, "filter-team", None)
    until(browser, lambda d: inside(d) == ["W4", "W5"], "every 木工")
    choose(browser, "filter-trade", None)
    # Those without a team recorded are a choice of their own.
    from selenium.webdriver.support.ui import Select

    Select(browser.find_element("id", "filter-team")).select_by_value("null")
    until(browser, lambda d: inside(d) == ["W6"], "those without a team")
    choose(browser, "filter-team", None)
    until(browser, lambda d: len(inside(d)) == len(CREW), "everyone again")

    # A team's count is a button that shows that team.
    button = browser.find_element("css selector", "#teams li[data-team='木工班'] button")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", button)
    button.click()
    until(browser, lambda d: inside(d) == ["W4", "W5"], "the team tapped")
    choose(browser, "filter-team", None)
    # The search box finds a trade or a team by its words too.
    search = browser.find_element("id", "search")
    search.send_keys("电工")
    until(browser, lambda d: inside(d) == ["W3"], "found by trade")
    search.clear()
    search.send_keys("木工班")
    until(browser, lambda d: inside(d) == ["W4", "W5"], "found by team")
    search.clear()
    assert no_sideways_scroll(browser)
    if browser.width == "phone":  # the pickers are thumb-sized
        height = browser.execute_script("return document.getElementById('filter-team').getBoundingClientRect().height")
        assert height >= 40


def test_gates_by_their_names_and_a_retired_gate_only_while_it_still_sends(site, browser):
    open_site(browser, site.base)
    gates = until(browser, lambda d: d.execute_script("""return [...document.querySelectorAll('#gates li')]
        .map(li => [li.dataset.gate, li.dataset.state, li.querySelector('h3').textContent])""")
                  if "东门" in text_of(d, "gates") else None, "the gates")
    # The quiet retired gate has left the page; the one that still sends shows, marked, in red.
    assert gates == [["east", "retired", "✖ 东门（east）: 已停用，但仍在发送"], ["north", "online", "✔ 北门（north）: 在线"]]
    until(browser, lambda d: d.find_element("id", "trouble").get_attribute("data-state") == "bad", "a red banner")
    items = banner_items(browser)
    assert list(items) == ["gate_retired_sending:east"]
    assert items["gate_retired_sending:east"].startswith("闸机 东门（east） 已停用，但仍在发送（最近一次 ")
    assert "old" not in text_of(browser, "trouble") and "old" not in text_of(browser, "gates")
    # Who is inside came through 北门: shown by its name.
    row = browser.find_element("css selector", "#inside tr[data-worker='W1']")
    assert "北门" in row.text and "north" not in row.text
    assert "北门" in browser.find_element("css selector", f"#unknown tr[data-card='{STRANGER}']").text
    assert no_sideways_scroll(browser)


def column_lefts(browser) -> list[list[int]]:
    """Per roll-call table, where each column starts (its header cells and its first row's cells)."""
    return browser.execute_script("""return [...document.querySelectorAll('#rollcall table.rollcall-table')].map(
        t => [...t.tHead.rows[0].cells, ...t.tBodies[0].rows[0].cells].map(c => Math.round(c.getBoundingClientRect().left)))""")


def test_the_printed_list_is_dated_in_the_sites_time_and_its_tables_line_up(site, browser):
    """Reproduction (issue 22, item 17): the printed evacuation list had no date and each employer's table
    sized its columns to its own names, so the columns wandered from table to table."""
    open_site(browser, site.base)
    before = datetime.now(SHANGHAI)
    browser.find_element("id", "rollcall-toggle").click()
    until(browser, lambda d: d.find_element("id", "rollcall").is_displayed(), "the roll-call")
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
    try:
        browser.execute_script("window.dispatchEvent(new Event('beforeprint'))")
        after = datetime.now(SHANGHAI)
        printed = text_of(browser, "rollcall-printed")
        stamp = re.search(r"打印于 (\d{4}/\d{2}/\d{2}) (\d{2}:\d{2})", printed)
        assert stamp, printed
        # The site's date and clock (the browser's own zone is New York's), between the moments around it.
        minutes = {f"{before + timedelta(minutes=n):%Y/%m/%d %H:%M}"
                   for n in range(int((after - before).total_seconds() // 60) + 2)}
        assert f"{stamp[1]} {stamp[2]}" in minutes, (printed, sorted(minutes))
        assert printed.startswith("滨江大厦 (S1) · 场内 7 人")

        lefts = column_lefts(browser)
        assert len(lefts) == 4  # 中铁劳务, 华建劳务, no employer, the unregistered cards
        assert all(len(cells) == 10 for cells in lefts)
        header = lefts[0][:5]
        assert header == sorted(header) and len(set(header)) == 5  # five columns side by side
        for cells in lefts:
            assert cells[:5] == header and cells[5:] == header, lefts  # every table's columns, header and rows
        widths = browser.execute_script("""return [...document.querySelectorAll('#rollcall table.rollcall-table')]
            .map(t => Math.round(t.getBoundingClientRect().width))""")
        assert len(set(widths)) == 1
    finally:
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})

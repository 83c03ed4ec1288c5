"""The worker's page as a worker reported it (issue 22, items 16 and 6), in real Chromium at 412 px and at a
desktop's width: the missing day's site is a full-width choice at least 44 px tall (a list past four
sites), its date is today at the site, a day disputed and not answered yet says 申诉中, reloading the page
makes no new entry or look in the access log, and every time the log shows is the site's, never UTC, the
zone named for a worker whose sites are in more than one."""

from __future__ import annotations

import signal
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from tests.browser import open_tab
from tests.helpers import start_web, stop_process
from tests.test_web_worker import Bank, go_to_october, serve_without_key, until

pytestmark = pytest.mark.slow

SHANGHAI, URUMQI = ZoneInfo("Asia/Shanghai"), ZoneInfo("Asia/Urumqi")
#: The height of a tap target a finger finds (WCAG 2.5.5, Apple's and Android's guidance): 44 CSS px.
TAP = 44


@pytest.fixture
def served(tmp_path):
    bank = Bank(tmp_path / "collector")
    with bank.setup.store() as store:
        # W3 works at five sites; the one they were sent to last is in Xinjiang, on Urumqi's time (UTC+6).
        for number in range(3, 7):
            store.add_site(f"S{number}", timezone="Asia/Shanghai", name=f"{number}号工地")
        store.add_site("S9", timezone="Asia/Urumqi", name="乌鲁木齐项目")
        store.add_worker("W3", name="王五", sites=["S1", "S3", "S4", "S5"])
        store.assign("W3", "S9", by="ops-li", valid_from="2026-11-01T00:00:00.000Z")
    process, url = start_web(serve_without_key(bank.setup))
    bank.url = url
    yield bank
    stop_process(process, signal.SIGKILL)


def box(driver, element) -> dict:
    return driver.execute_script("const r = arguments[0].getBoundingClientRect(); "
                                 "return {width: r.width, height: r.height, left: r.left, right: r.right};", element)


def opened(driver, link: str) -> None:
    driver.get(link)
    until(driver, lambda d: d.find_element("id", "record").is_displayed(), "the record shown")


def reload(driver) -> None:
    driver.refresh()
    until(driver, lambda d: d.find_element("id", "record").is_displayed() and d.find_elements("css selector", "#access li"),
          "the record shown again")


@pytest.mark.parametrize("size", ["412,915", "1280,900"])
def test_the_missing_day_form_is_made_for_a_finger(served, size):
    driver = open_tab(lang="zh-CN", size=size)
    try:
        opened(driver, served.link("W1", served.url))
        before = datetime.now(SHANGHAI).date().isoformat()
        driver.find_element("id", "missing-day").click()
        after = datetime.now(SHANGHAI).date().isoformat()
        form = driver.find_element("id", "missing-day-form")
        assert driver.find_element("id", "missing-sites").is_displayed()
        assert not driver.find_element("id", "missing-site").is_displayed()  # the list is for many sites
        choices = driver.find_elements("css selector", "#missing-sites label.choice")
        assert [c.text for c in choices] == ["江畔大厦"]
        assert choices[0].find_element("tag name", "input").is_selected()
        width = box(driver, form)["width"]
        for element in (choices[0], driver.find_element("id", "missing-date")):
            shape = box(driver, element)
            assert shape["height"] >= TAP and shape["width"] >= width - 1, shape
        # Today at the site (the page is this month's), and no day after it.
        date = driver.find_element("id", "missing-date")
        assert date.get_attribute("value") in (before, after) and date.get_attribute("max") in (before, after)
        if size.startswith("412"):
            assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
            assert width >= 412 - 60  # the card's width less its margins: the whole phone

        # Another month shown: its last day is offered (the worker went there to find the day).
        driver.find_element("css selector", "#missing-day-form .cancel").click()
        go_to_october(driver)
        driver.find_element("id", "missing-day").click()
        assert driver.find_element("id", "missing-date").get_attribute("value") == "2026-10-31"

        # The choice is what is filed.
        driver.find_element("css selector", "#missing-day-form textarea").send_keys("20号卡坏了")
        driver.find_element("css selector", '#missing-day-form button[type="submit"]').click()
        until(driver, lambda d: "已提交" in d.find_element("css selector", ".filed").text, "the missing day filed")
        assert [(d["worker"], d["site"], d["day"]) for d in served.json("disputes")] == [("W1", "S1", "2026-10-31")]
    finally:
        driver.quit()


def test_many_sites_are_a_list_and_another_zone_is_named(served):
    driver = open_tab(lang="zh-CN", size="412,915")
    try:
        opened(driver, served.link("W3", served.url))
        before = datetime.now(URUMQI).date().isoformat()
        driver.find_element("id", "missing-day").click()
        assert not driver.find_element("id", "missing-sites").is_displayed()
        select = driver.find_element("id", "missing-site")
        assert select.is_displayed() and len(select.find_elements("tag name", "option")) == 5
        shape = box(driver, select)
        assert shape["height"] >= TAP and shape["width"] >= box(driver, driver.find_element("id", "missing-day-form"))["width"] - 1
        # Today at the site of the latest assignment: Urumqi's, two hours behind Beijing.
        shown = driver.find_element("id", "missing-date").get_attribute("value")
        assert shown in (before, datetime.now(URUMQI).date().isoformat())
        note = driver.find_element("id", "access-zone")
        assert note.is_displayed() and note.text == "以下时间为乌鲁木齐项目的当地时间（Asia/Urumqi）"
        looked = served.setup.rows("SELECT last_at FROM record_access WHERE worker = 'W3' AND via = 'worker link'")
        (last,), = looked
        local = datetime.fromisoformat(last.replace("Z", "+00:00")).astimezone(URUMQI).strftime("%Y-%m-%d %H:%M")
        assert local in driver.find_element("id", "access").text and "UTC" not in driver.find_element("id", "access").text
    finally:
        driver.quit()


def test_a_disputed_day_is_marked_and_reloading_is_one_look(served):
    driver = open_tab(lang="zh-CN", size="412,915")
    try:
        opened(driver, served.link("W1", served.url))
        go_to_october(driver)
        day = driver.find_element("css selector", 'li.day[data-date="2026-10-15"]')
        day.find_element("css selector", "button.dispute-day").click()
        day = driver.find_element("css selector", 'li.day[data-date="2026-10-15"]')
        day.find_element("css selector", "textarea").send_keys("我18:00下班")
        day.find_element("css selector", 'button[type="submit"]').click()
        until(driver, lambda d: d.find_element("css selector", 'li.day[data-date="2026-10-15"] .mark-disputed').text
              == "申诉中", "the disputed day marked")
        assert driver.find_elements("css selector", 'li.day[data-date="2026-10-14"] .mark-disputed') == []

        for _ in range(5):
            reload(driver)
        rows = served.setup.rows("SELECT day, looks, at, last_at FROM record_access WHERE worker = 'W1' "
                                 "AND via = 'worker link' AND what = ?", f"days {datetime.now(SHANGHAI):%Y-%m}")
        # One entry and one look for six loads within the hour (two only if the site's midnight fell between).
        assert len(rows) == len({r[0] for r in rows}) and {r[1] for r in rows} == {1}, rows
        access = driver.find_element("id", "access").text
        assert "UTC" not in access and "查看" in access and "月的记录" in access and "发放个人链接" in access
        assert "本人（个人链接）" in access and "银行工作人员 (ops-li)" in access
        last = max(r[3] for r in rows)
        shown = datetime.fromisoformat(last.replace("Z", "+00:00")).astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")
        assert shown in access
        assert not driver.find_element("id", "access-zone").is_displayed()  # one zone: nothing to name

        # Answered, the mark goes: the day is what the answer made it.
        ref = served.json("disputes", "--open")[0]["ref"]
        served.run("disputes", "answer", ref, "--reject", "--reason", "闸机记录显示17:00出场", "--by", "ops-li")
        reload(driver)
        go_to_october(driver)
        assert driver.find_elements("css selector", ".mark-disputed") == []
    finally:
        driver.quit()

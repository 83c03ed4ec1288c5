"""Disputes on the site foreman's page, in a real headless Chromium over `collector serve`: a dispute a
worker filed shows in Chinese with the worker's note as text (markup, bidi and control characters
included), the open ones are counted in amber at the top, the bank's answer appears without a reload,
the sign-in session reads its own site's disputes only, and another site's page shows none of them."""

from __future__ import annotations

import json
import re
import signal
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.helpers import start_web, stop_process
from tests.test_web_browser import log_in, text_of
from tests.test_web_foreman import make_browser
from tests.test_web_worker import BANK, SITE2, W1_CARD, W2_NAME, Bank, http, session_cookie, until

pytestmark = pytest.mark.slow

STATIC = Path(__file__).parent.parent / "collector" / "web" / "static"
TEMPLATES = Path(__file__).parent.parent / "collector" / "web" / "templates"
SHANGHAI = ZoneInfo("Asia/Shanghai")
HOSTILE = "<img src=x onerror=alert(1)> 18点才走"
# What the page refuses to file but an older row or another writer could hold: right-to-left override,
# an isolate, a bell.
SNEAKY = "工时不对\u202eabc\u2066x\x07"


@pytest.fixture
def bank(tmp_path):
    bank = Bank(tmp_path / "collector")
    with bank.setup.store() as store:
        store.add_worker("W3", name="王五", employer="中铁劳务", cards=["04AA0000000001"], sites=["S2"])
    process, url = start_web(bank.setup)
    bank.url = url
    yield bank
    stop_process(process, signal.SIGKILL)


@pytest.fixture
def browser(tmp_path):
    driver = make_browser(tmp_path)
    yield driver
    driver.quit()


def items(driver, list_id: str) -> list[dict]:
    """The disputes of one list as shown, read in one go (the list is redrawn when the data changes)."""
    return driver.execute_script("""return [...document.querySelectorAll('#' + arguments[0] + ' li.dispute')].map(li => ({
        ref: li.dataset.ref, status: li.dataset.status, text: li.textContent,
        note: li.querySelector('.note-text').textContent,
        answer: li.querySelector('.answer-text') ? li.querySelector('.answer-text').textContent : null}))""", list_id)


def refs(rows: list[dict]) -> list[str]:
    return [row["ref"] for row in rows]


def shanghai(utc_text: str) -> str:
    """A stored UTC time as the page writes it in Chinese, in the site's zone."""
    moment = datetime.fromisoformat(utc_text.replace("Z", "+00:00")).astimezone(SHANGHAI)
    return moment.strftime("%Y/%m/%d %H:%M")


def test_disputes_on_the_site_page_escaped_counted_and_answered(bank, browser):
    # W1 files through the worker API (what the worker's page sends); W2's and W3's rows are written
    # by the store directly, W2's with characters the worker API refuses.
    secret = session_cookie(bank.url, bank.link("W1", bank.url).split("#", 1)[1])
    status, body = http(bank.url + "/api/worker/disputes", cookie=secret,
                        data={"site": "S1", "day": "2026-10-15", "note": HOSTILE})
    assert status == 201, body
    filed = json.loads(body)
    with bank.setup.store() as store:
        sneaky = store.file_dispute(worker="W2", site="S1", day="2026-10-14", note=SNEAKY, via="worker link",
                                    max_open=20)
        elsewhere = store.file_dispute(worker="W3", site="S2", day="2026-10-14", note="S2 的申诉", via="worker link",
                                       max_open=20)
        void_id = store.execute("SELECT id FROM punches WHERE card = ? ORDER BY id DESC", (W1_CARD,)).fetchone()[0]

    # The foreman signs in with the bank's link: the page reads the disputes through the session cookie.
    browser.get(bank.json("web", "link", "--site", "S1", "--url", bank.url)["url"])
    until(browser, lambda d: d.current_url.endswith("/sites/S1"), "the site page after the link")
    until(browser, lambda d: refs(items(d, "disputes-open")) == [filed["ref"], sneaky["ref"]], "two open disputes")
    assert browser.find_element("tag name", "html").get_attribute("lang") == "zh-CN"
    assert text_of(browser, "h-disputes") == "工人申诉"
    # How the bank answers, in words: a command line is the bank's, not the foreman's.
    assert "由银行答复" in text_of(browser, "disputes") and "collector" not in text_of(browser, "disputes")
    assert text_of(browser, "h-disputes-open") == "等待答复（2）"

    # The count near the top: amber, in the header above the figures, leading to the list.
    waiting = browser.find_element("id", "disputes-waiting")
    assert waiting.is_displayed() and waiting.text == "⚠ 2 条申诉等待银行答复"
    assert waiting.value_of_css_property("border-top-color") == "rgba(125, 78, 0, 1)"  # --warn, not --bad
    assert browser.find_element("id", "disputes-waiting-link").get_attribute("href").endswith("#disputes")
    assert waiting.location["y"] < browser.find_element("id", "dashboard").location["y"]

    # Every value from the worker is text: no element made of the note or the name, and characters that
    # would reorder or hide what the screen shows are written out.
    shown = {row["ref"]: row for row in items(browser, "disputes-open")}
    assert shown[filed["ref"]]["note"] == HOSTILE
    assert browser.find_elements("css selector", "#disputes img, #disputes b") == []
    assert shown[sneaky["ref"]]["note"] == "工时不对\\u202eabc\\u2066x\\u0007"
    assert f"{W2_NAME} (W2)" in shown[sneaky["ref"]]["text"]
    section = text_of(browser, "disputes")
    assert not re.search("[\u202e\u2066\x07]", section)
    # The day, the worker, when it was filed in the site's time (Shanghai, not UTC), nothing else's.
    assert "2026-10-15" in shown[filed["ref"]]["text"] and "张伟 (W1)" in shown[filed["ref"]]["text"]
    assert shanghai(filed["filed_at"]) in shown[filed["ref"]]["text"]
    assert elsewhere["ref"] not in section and "S2 的申诉" not in section
    assert text_of(browser, "disputes-open-none") == "" and text_of(browser, "disputes-answered-none") == "还没有已答复的申诉。"

    # The session reads its own site's disputes, never another's; a site token likewise.
    session = {"Cookie": f"collector_session={browser.get_cookie('collector_session')['value']}"}
    import urllib.request

    with urllib.request.urlopen(urllib.request.Request(bank.url + "/api/disputes", headers=session),
                                timeout=30) as response:
        assert [d["ref"] for d in json.loads(response.read())] == [filed["ref"], sneaky["ref"]]
    for path in ("/api/disputes?site=S2", "/api/disputes?site=S2&open=1"):
        request = urllib.request.Request(bank.url + path, headers=session)
        try:
            urllib.request.urlopen(request, timeout=30)
            raise AssertionError(f"{path} answered a session of S1")
        except urllib.error.HTTPError as error:
            assert error.code == 403
    assert http(bank.url + "/api/disputes?site=S1", token=SITE2)[0] == 403
    assert [d["ref"] for d in json.loads(http(bank.url + "/api/disputes?site=S2", token=BANK)[1])] == [elsewhere["ref"]]
    with bank.setup.store(readonly=True) as store:
        looked = [(a["via"], a["who"], a["what"]) for a in store.access_log("W2")]
    assert ("site sign-in", "S1", "disputes") in looked  # the worker sees that the site looked

    # The bank answers with the CLI; the open page shows the answers without a reload.
    browser.execute_script("window.sameDocument = true")
    bank.run("disputes", "answer", sneaky["ref"], "--reject", "--reason", "闸机记录显示8:00进场，监控也是",
             "--by", "ops-li")
    until(browser, lambda d: refs(items(d, "disputes-answered")) == [sneaky["ref"]], "the rejection shown")
    assert refs(items(browser, "disputes-open")) == [filed["ref"]]
    assert browser.find_element("id", "disputes-waiting").text == "⚠ 1 条申诉等待银行答复"
    rejected = items(browser, "disputes-answered")[0]
    assert rejected["status"] == "rejected" and rejected["answer"] == "闸机记录显示8:00进场，监控也是"
    assert "未接受" in rejected["text"] and "ops-li" in rejected["text"]

    bank.run("disputes", "answer", filed["ref"], "--accept", "--void", str(void_id), "--reason",
             "卡读错了，作废这次进场", "--by", "ops-li")
    until(browser, lambda d: refs(items(d, "disputes-answered")) == [filed["ref"], sneaky["ref"]],
          "both answered, the newest first")
    accepted = items(browser, "disputes-answered")[0]
    assert accepted["status"] == "accepted" and f"已接受，记录已更正 · 作废打卡 #{void_id}" in accepted["text"]
    assert accepted["note"] == HOSTILE and accepted["answer"] == "卡读错了，作废这次进场"
    until(browser, lambda d: not d.find_element("id", "disputes-waiting").is_displayed(), "no count once all are answered")
    assert text_of(browser, "disputes-open-none") == "没有等待答复的申诉。"
    assert browser.execute_script("return window.sameDocument") is True

    # In English on the switch.
    browser.find_element("id", "lang-switch").click()
    until(browser, lambda d: text_of(d, "h-disputes") == "Workers' disputes", "English")
    english = text_of(browser, "disputes-answered")
    assert "Not accepted" in english and f"Accepted, the record is corrected · voided punch #{void_id}" in english

    # Another site's page (its token) shows its own dispute only.
    browser.find_element("id", "forget").click()
    until(browser, lambda d: d.find_element("id", "login").is_displayed(), "signed out")
    assert not browser.find_element("id", "disputes-waiting").is_displayed()
    browser.get(bank.url + "/sites/S2")
    log_in(browser, SITE2)
    until(browser, lambda d: refs(items(d, "disputes-open")) == [elsewhere["ref"]], "S2's dispute")
    other = text_of(browser, "disputes")
    assert filed["ref"] not in other and sneaky["ref"] not in other and "<img" not in other
    assert browser.find_element("id", "disputes-waiting").is_displayed()


def test_every_string_of_the_site_page_is_in_both_catalogs():
    """The keys site.html and dashboard.js name are in zh-CN.json and en.json alike (a missing one would
    show as the key itself)."""
    catalogs = {lang: json.loads((STATIC / "i18n" / f"{lang}.json").read_text()) for lang in ("zh-CN", "en")}
    assert set(catalogs["zh-CN"]) == set(catalogs["en"])
    html = (TEMPLATES / "site.html").read_text()
    script = (STATIC / "dashboard.js").read_text()
    keys = set(re.findall(r'data-i18n(?:-placeholder|-label)?="([^"]+)"', html))
    keys |= set(re.findall(r'"([a-z_]+(?:\.[a-z_]+)+)"', script))  # every "a.b" literal of the script is a key
    keys |= {f"disputes.status.{s}" for s in ("open", "accepted", "rejected", "other")}
    assert {k for k in keys if k.startswith("disputes.")} >= {"disputes.heading", "disputes.how", "disputes.waiting",
                                                              "disputes.cites.void", "disputes.cites.manual"}
    missing = sorted(k for k in keys if k not in catalogs["zh-CN"])
    assert missing == []
    assert all(re.search(r"[\u4e00-\u9fff]", catalogs["zh-CN"][k]) for k in keys if k.startswith("disputes.")
               and k not in ("disputes.title",))


def test_the_session_reads_its_sites_disputes_and_the_counts_on_both_engines(tmp_path, database):
    """/api/disputes with a foreman's session cookie, and the counts the live updates carry, on SQLite and
    PostgreSQL alike."""
    import urllib.request

    bank = Bank(tmp_path / "collector", db=None if isinstance(database, Path) else database)
    with bank.setup.store() as store:
        store.add_worker("W3", name="王五", cards=["04AA0000000001"], sites=["S2"])
        first = store.file_dispute(worker="W1", site="S1", day="2026-10-15", note="卡没读到", via="worker link",
                                   max_open=20)
        store.file_dispute(worker="W2", site="S1", day="2026-10-14", note="九点到的", via="worker link", max_open=20)
        store.file_dispute(worker="W3", site="S2", day="2026-10-14", note="别的工地", via="worker link", max_open=20)
        assert store.dispute_counts("S1") == {"open": 2, "answered": 0}
        assert store.dispute_counts("S9") == {"open": 0, "answered": 0}
    bank.run("disputes", "answer", first["ref"], "--reject", "--reason", "记录无误", "--by", "ops-li")
    with bank.setup.store(readonly=True) as store:
        assert store.dispute_counts("S1") == {"open": 1, "answered": 1}
        assert store.dispute_counts("S2") == {"open": 1, "answered": 0}
    process, url = start_web(bank.setup)
    try:
        secret = bank.json("web", "link", "--site", "S1", "--url", url)["url"].split("#", 1)[1]
        request = urllib.request.Request(url + "/api/signin", data=json.dumps({"secret": secret}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            cookie = response.headers["Set-Cookie"].split(";", 1)[0]
        request = urllib.request.Request(url + "/api/disputes?site=S1", headers={"Cookie": cookie})
        with urllib.request.urlopen(request, timeout=30) as response:
            rows = json.loads(response.read())
        assert [(d["worker"], d["status"], d["note"]) for d in rows] == [("W1", "rejected", "卡没读到"),
                                                                        ("W2", "open", "九点到的")]
        refused = urllib.request.Request(url + "/api/disputes?site=S2", headers={"Cookie": cookie})
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(refused, timeout=30)
        assert error.value.code == 403
        with bank.setup.store(readonly=True) as store:
            assert ("site sign-in", "S1", "disputes") in [(a["via"], a["who"], a["what"]) for a in store.access_log("W1")]
    finally:
        stop_process(process, signal.SIGKILL)

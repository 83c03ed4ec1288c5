"""The worker's own page in a real headless Chromium at a phone's size, over `collector serve` on a real
SQLite file: a personal link shows that worker's days in Chinese and nothing of anyone else; other,
revoked and guessed links fail; a dispute filed on the page reaches the bank and its answer the
worker; an accepted dispute changes the day through a manual punch that cites it; a period with an
open dispute is approved only with a recorded override; the evidence asked for on the page (`collector
serve` runs without the bank's key, a real `collector run` signs it) verifies offline with the bank's
published key, and fails once a byte of meaning changes."""

from __future__ import annotations

import json
import secrets
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from collector.ingest.pipeline import Incoming, Ingestor
from gate_agent.protocol import GateTopics, encode_punches, format_time
from tests.browser import open_tab
from tests.helpers import (
    BANK_PUBLIC,
    CollectorSetup,
    PunchFactory,
    cli,
    heartbeat,
    resident_id,
    start_web,
    stop_process,
    wait_for,
)

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parent.parent
SHANGHAI = ZoneInfo("Asia/Shanghai")
SITE1 = "site-one-manager-token-0001"
SITE2 = "site-two-manager-token-0002"
BANK = "bank-ops-token-all-sites-0003"
W1_CARD, W2_CARD = "04A1B2C3D4E5F6", "DEADBEEF"
W1_NAME, W2_NAME = "张伟", "李<b>娜</b>"
W2_ID_NUMBER, W1_ID_NUMBER = resident_id(2), resident_id(1)


def local(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=SHANGHAI)


class Bank:
    """Site S1 with two gates and two workers; W1's October: the 14th complete, the 15th without an OUT
    (the gate did not read the card); W2 works the 14th between W1's punches."""

    def __init__(self, directory: Path, db: str | None = None):
        self.setup = CollectorSetup.create(directory, broker=SimpleNamespace(port=1883), db=db,
                                           **{"web.tokens": {SITE1: "S1", SITE2: "S2", BANK: "*"}})
        self.north, self.south = PunchFactory(gate="north"), PunchFactory(gate="south")
        with self.setup.store() as store:
            store.add_site("S1", timezone="Asia/Shanghai", name="江畔大厦")
            store.add_site("S2", timezone="Asia/Shanghai", name="Other site")
            store.add_gate("S1", "north", self.north.public_key)
            store.add_gate("S1", "south", self.south.public_key)
            store.add_worker("W1", name=W1_NAME, employer="华建劳务", cards=[W1_CARD], sites=["S1"])
            store.add_worker("W2", name=W2_NAME, employer="华建劳务", cards=[W2_CARD], sites=["S1"])
            store.set_payee("W2", id_number=W2_ID_NUMBER, phone="13812345678", bank_account="6222021234567890002",
                            bank_name="中国工商银行")
            store.set_payee("W1", id_number=W1_ID_NUMBER, phone="13812345671",
                            bank_account="6222021234567890001", bank_name="中国工商银行")
            store.set_wage_terms("W1", basis="day", rate_fen=35000, effective_from="2026-10-01", by="ops-li")
            store.set_wage_terms("W2", basis="day", rate_fen=36000, effective_from="2026-10-01", by="ops-li")
            store.set_site_pay("S1", pay_day=15, effective_from="2026-01-01", by="ops-li",
                               payer_account="110000000001", payer_name="某建筑总承包公司", payer_bank="中国建设银行")
        self.tap(self.north, W1_CARD, "2026-10-14 08:00", "in")
        self.tap(self.north, W2_CARD, "2026-10-14 09:00", "in")
        self.tap(self.south, W2_CARD, "2026-10-14 16:00", "out")
        self.tap(self.south, W1_CARD, "2026-10-14 17:00", "out")
        self.tap(self.north, W1_CARD, "2026-10-15 08:00", "in")
        when = local("2026-11-02 09:00")
        with self.setup.store() as store, store.transaction():
            for gate in ("north", "south"):
                store.save_status("S1", gate, {"v": 1, "state": "online", **heartbeat(
                    gate=gate, time=format_time(when), pending=0, oldest_pending_at=None)}, format_time(when))
        self.public_key = directory / "bank.pub"
        self.public_key.write_text(BANK_PUBLIC + "\n")

    def tap(self, gate: PunchFactory, card: str, when: str, direction: str) -> None:
        moment = local(when).astimezone(UTC)
        punch = gate.next(card=card, direction=direction, at=moment)
        with self.setup.store() as store:
            Ingestor(store).ingest([Incoming(GateTopics("S1", gate.gate).punch, encode_punches([punch]),
                                             format_time(moment + timedelta(seconds=2)))])

    def run(self, *args: str, check: bool = True):
        return self.setup.run(*args, check=check)

    def json(self, *args: str):
        return self.setup.json(*args)

    def link(self, worker: str, base: str) -> str:
        return self.json("worker", "link", "--worker", worker, "--base-url", base, "--by", "ops-li")["url"]


def http(url: str, *, token: str | None = None, cookie: str | None = None, data: dict | None = None):
    """(status, body) of a GET, or of a JSON POST when ``data`` is given."""
    request = urllib.request.Request(url, data=json.dumps(data).encode() if data is not None else None)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if cookie:
        request.add_header("Cookie", f"worker_link={cookie}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture
def phone(tmp_path):
    """Chromium at a phone's size, downloading into tmp_path/downloads."""
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    driver = open_tab(lang="zh-CN", size="412,915", device=False, downloads=downloads)
    driver.downloads = downloads
    yield driver
    driver.quit()


def serve_without_key(setup: CollectorSetup) -> SimpleNamespace:
    """The configuration `collector serve` runs with, as the shipped unit: the key's path is set, the key is
    not there (systemd hands it to the daemon's unit only)."""
    text = "".join(f'signing_key = "{setup.directory / "not-here" / "bank.key"}"\n'
                   if line.startswith("signing_key") else line + "\n"
                   for line in setup.config_path.read_text().splitlines())
    config = setup.directory / "serve.toml"
    config.write_text(text)
    return SimpleNamespace(directory=setup.directory, config_path=config)


@pytest.fixture
def bank(tmp_path):
    bank = Bank(tmp_path / "collector")
    process, url = start_web(serve_without_key(bank.setup))
    bank.url = url
    yield bank
    stop_process(process, signal.SIGKILL)


@pytest.fixture
def daemon(bank, broker):
    """`collector run` beside the web process: the one that holds the bank's key and signs evidence."""
    bank.setup.broker_port = broker.port
    bank.setup.write_config()
    process = bank.setup.start()
    wait_for(lambda: "collector" in bank.setup.log() and "running" in bank.setup.log(), timeout=60,
             message="collector run started")
    yield process
    assert stop_process(process) == 0


def until(driver, condition, message: str, timeout: float = 60):
    """Wait for ``condition``; an element the page re-drew between finding it and reading it (the page
    replaces its lists when new data arrives) is looked for again."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2,
                         ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
                         ).until(condition, message)


def text(driver, element_id: str) -> str:
    return driver.find_element("id", element_id).text


def day_item(driver, day: str):
    return driver.find_element("css selector", f'li.day[data-date="{day}"]')


def open_october(driver, link: str) -> None:
    driver.get(link)
    until(driver, lambda d: d.find_element("id", "record").is_displayed(), "the record shown")
    go_to_october(driver)


def go_to_october(driver) -> None:
    """Back month by month from the month shown (this one) to October 2026."""
    until(driver, lambda d: "年" in text(d, "month"), "a month shown")
    while "2026年10月" not in text(driver, "month"):
        shown = text(driver, "month")
        driver.find_element("id", "previous").click()
        until(driver, lambda d, shown=shown: text(d, "month") != shown, "the previous month")


def file_dispute(driver, day: str, note: str) -> str:
    item = day_item(driver, day)
    item.find_element("css selector", "button.dispute-day").click()
    item = day_item(driver, day)
    item.find_element("css selector", "textarea").send_keys(note)
    item.find_element("css selector", 'button[type="submit"]').click()
    until(driver, lambda d: "已提交" in day_item(d, day).text, "the dispute filed")
    return day_item(driver, day).find_element("css selector", ".filed").text.split("编号 ")[1].split("。")[0]


def test_the_worker_sees_their_days_disputes_them_and_takes_the_record_along(bank, daemon, phone, tmp_path):
    link = bank.link("W1", bank.url)
    secret = link.split("#", 1)[1]
    assert len(secret) == 43 and link == f"{bank.url}/w#{secret}"
    with bank.setup.store(readonly=True) as store:  # the bank keeps only the hash
        assert store.execute("SELECT COUNT(*) FROM worker_links WHERE secret_sha256 = ?",
                             (__import__("hashlib").sha256(secret.encode()).hexdigest(),)).fetchone()[0] == 1
        assert secret not in json.dumps(store.execute("SELECT * FROM worker_links").fetchall())

    open_october(phone, link)
    # The secret left the address bar (and so the history) before anything else happened.
    assert secret not in phone.current_url and phone.current_url == bank.url + "/w"
    assert phone.execute_script("return document.cookie") == ""  # HttpOnly: no script reads it
    assert phone.execute_script("return document.documentElement.lang") == "zh-CN"
    assert "我的考勤记录" in text(phone, "title") and W1_NAME in text(phone, "who")
    complete = day_item(phone, "2026-10-14").text
    assert "上班\n08:00" in complete and "下班\n17:00" in complete and "9小时0分" in complete and "正常" in complete
    assert "2026-10-14 周三 江畔大厦" in complete
    assert "没有下班打卡" in day_item(phone, "2026-10-15").text
    assert "出勤天数\n2" in text(phone, "totals") and "9小时0分" in text(phone, "totals")
    page = phone.page_source
    for other in (W2_NAME, "李", W2_CARD, W2_ID_NUMBER, "W2", W1_ID_NUMBER, "6222021234567890001"):
        assert other not in page, other
    assert "W1" not in text(phone, "record")  # not even the bank's id shows; the worker knows their name

    # English on request, and back.
    phone.find_element("id", "language").click()
    until(phone, lambda d: "Day by day" in d.find_element("id", "h-days").text, "English")
    assert "No punch out" in day_item(phone, "2026-10-15").text
    phone.find_element("id", "language").click()
    until(phone, lambda d: "每天的记录" in d.find_element("id", "h-days").text, "Chinese again")

    # Two disputes from the page; the note is the worker's text, shown as text.
    missing = file_dispute(phone, "2026-10-15", "我18:00下班，闸机没读到卡 <b>真的</b>")
    rejected = file_dispute(phone, "2026-10-14", "我是7:00上班的")
    assert missing != rejected and missing.startswith("D-") and rejected.startswith("D-")
    assert "<b>真的</b>" in text(phone, "disputes") and phone.find_elements("css selector", "#disputes b") == []
    assert text(phone, "disputes").count("等待答复") == 2

    # The bank sees them (CLI), so does the site (JSON), and another site does not.
    listed = {d["ref"]: d for d in bank.json("disputes", "--open")}
    assert set(listed) == {missing, rejected} and listed[missing]["day"] == "2026-10-15"
    assert listed[missing]["note"] == "我18:00下班，闸机没读到卡 <b>真的</b>" and listed[missing]["worker"] == "W1"
    assert missing in bank.run("disputes", "--site", "S1").stdout
    status, body = http(bank.url + "/api/disputes?open=1", token=SITE1)
    assert status == 200 and {d["ref"] for d in json.loads(body)} == {missing, rejected}
    assert http(bank.url + "/api/disputes", token=SITE2) == (200, b"[]")
    assert http(bank.url + "/api/disputes?site=S1", token=SITE2)[0] == 403
    assert http(bank.url + "/api/disputes")[0] == 401

    # A period with open disputes is not approved.
    bank.run("wages", "run", "--site", "S1", "--period", "2026-10", "--by", "ops-li")
    refused = bank.run("wages", "approve", "--site", "S1", "--period", "2026-10", "--by", "ops-wang",
                       "--override", "W1=15th disputed", check=False)
    assert refused.returncode == 1 and "open dispute" in refused.stderr and missing in refused.stderr

    # Accepted: the manual punch that corrects the day cites the dispute.
    punch = bank.json("punch", "add", "--worker", "W1", "--site", "S1", "--at", "2026-10-15T18:00",
                      "--direction", "out", "--reason", "gate did not read the card", "--by", "ops-li")
    answered = bank.json("disputes", "answer", missing, "--accept", "--punch", str(punch["id"]), "--by", "ops-li")
    assert answered["status"] == "accepted" and answered["punch_id"] == punch["id"]
    with bank.setup.store(readonly=True) as store:
        assert store.punch_dispute(punch["id"]) == missing
    again = bank.run("disputes", "answer", missing, "--reject", "--reason", "no", check=False)
    assert again.returncode == 1 and "accepted already" in again.stderr

    # Still one open: approval only with the override, which is recorded with who, why and which.
    bank.run("wages", "run", "--site", "S1", "--period", "2026-10", "--by", "ops-li", "--reason", "dispute answered")
    refused = bank.run("wages", "approve", "--site", "S1", "--period", "2026-10", "--by", "ops-wang", check=False)
    assert refused.returncode == 1 and rejected in refused.stderr and missing not in refused.stderr
    no_reason = bank.run("wages", "approve", "--site", "S1", "--period", "2026-10", "--by", "ops-wang",
                         "--override-disputes", check=False)
    assert no_reason.returncode == 2 and "--reason" in no_reason.stderr
    approved = bank.run("wages", "approve", "--site", "S1", "--period", "2026-10", "--by", "ops-wang",
                        "--override-disputes", "--reason", "paying the undisputed days now; 7:00 start checked later")
    assert "approved by ops-wang" in approved.stdout and "open disputes overridden" in approved.stdout
    with bank.setup.store(readonly=True) as store:
        assert store.dispute_overrides("S1", "2026-10") == [{
            "site": "S1", "period": "2026-10", "table_version": 2, "refs": [rejected], "by": "ops-wang",
            "reason": "paying the undisputed days now; 7:00 start checked later",
            "at": store.dispute_overrides("S1", "2026-10")[0]["at"]}]
        assert store.wage_table("S1", "2026-10")["status"] == "approved"
    history = bank.run("wages", "history", "--site", "S1").stdout
    assert f"open disputes {rejected} overridden by ops-wang: paying the undisputed days now" in history

    # Rejected, with the reason the worker reads.
    bank.run("disputes", "answer", rejected, "--reject", "--reason", "闸机记录显示8:00进场，监控也是", "--by", "ops-li")
    assert bank.json("disputes", "--open") == []

    phone.refresh()
    until(phone, lambda d: d.find_element("id", "record").is_displayed(), "the record again")
    go_to_october(phone)
    corrected = day_item(phone, "2026-10-15").text
    assert "下班\n18:00" in corrected and "10小时0分" in corrected and "有人工补录的打卡" in corrected
    phone.save_screenshot(str(tmp_path / "worker-page.png"))  # left for whoever debugs a failure
    disputes = text(phone, "disputes")
    assert "已接受，记录已更正" in disputes and "未接受" in disputes and "闸机记录显示8:00进场，监控也是" in disputes
    # Wages: the approved October, due on 15 November, unpaid.
    wages = text(phone, "wages")
    assert "2026-10 工资（发薪日 2026-11-15）" in wages and "应发\n¥700.00" in wages and "已发\n¥0.00" in wages
    assert "拖欠" in wages
    # Who looked: the worker, the bank's staff (disputes, link) and the site's token.
    access = text(phone, "access")
    assert "本人（个人链接）" in access and "银行工作人员" in access and "工地管理" in access and "(S1)" in access

    # The evidence from the page, verified offline with the published key; one changed minute fails it.
    # `collector serve` has no key: the page asks, the collector daemon signs, the page offers the file.
    phone.find_element("id", "evidence-link").click()
    until(phone, lambda d: d.find_element("id", "evidence-file").is_displayed(), "the signed file offered")
    assert "文件已签名" in text(phone, "evidence-state")
    (requested_by, state), = bank.setup.rows("SELECT requested_by, state FROM evidence_requests WHERE worker = 'W1'")
    assert state == "done" and requested_by.startswith("worker link issued ")
    assert "evidence request 1 for worker W1 (2026-10-01..2026-10-31) signed" in bank.setup.log()
    phone.find_element("id", "evidence-file").click()
    wait_for(lambda: [p for p in phone.downloads.iterdir() if p.suffix == ".json"], timeout=60,
             message="the evidence downloaded")
    evidence = next(p for p in phone.downloads.iterdir() if p.suffix == ".json")
    assert evidence.name == "evidence-W1-2026-10-01-2026-10-31.json"
    # Offline: the file and the published key, nothing of the bank's (no --config).
    verified = cli("collector", "verify", str(evidence), "--bank-key", str(bank.public_key))
    assert "OK" in verified.stdout
    standalone = subprocess.run([sys.executable, str(ROOT / "tools" / "verify_evidence.py"), str(evidence),
                                 str(bank.public_key)], capture_output=True, text=True, timeout=60)
    assert standalone.returncode == 0 and "OK" in standalone.stdout and "2026-10-15" in standalone.stdout
    assert f"gate did not read the card (answers dispute {missing})" in standalone.stdout
    assert f"gate did not read the card (answers dispute {missing})" in verified.stdout
    document = json.loads(evidence.read_text())
    day = next(d for d in document["days"] if d["date"] == "2026-10-15")
    day["worked_minutes"] += 60
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(document))
    refused = cli("collector", "verify", str(forged), "--bank-key", str(bank.public_key), check=False)
    assert refused.returncode == 1 and "FAILED" in refused.stderr
    standalone = subprocess.run([sys.executable, str(ROOT / "tools" / "verify_evidence.py"), str(forged),
                                 str(bank.public_key)], capture_output=True, text=True, timeout=60)
    assert standalone.returncode == 1 and "FAILED" in standalone.stderr
    phone.refresh()
    until(phone, lambda d: "证据文件 2026-10-01 至 2026-10-31" in text(d, "access"), "the download in the access log")

    log = (bank.setup.directory / "serve.log").read_text()
    assert secret not in log and "POST /api/worker/session" in log

    # Signing out on the phone ends its session at the bank: the cookie's value, copied before, reads nothing.
    held = phone.get_cookie("worker_link")["value"]
    assert held != secret and http(bank.url + "/api/worker/record", cookie=held)[0] == 200
    phone.find_element("id", "logout").click()
    until(phone, lambda d: "已退出" in text(d, "problem"), "signed out")
    assert phone.get_cookie("worker_link") is None
    assert http(bank.url + "/api/worker/record", cookie=held)[0] == 401


def test_links_that_are_not_the_workers_fail_cleanly(bank, phone):
    w1 = bank.link("W1", bank.url)
    w2 = bank.link("W2", bank.url)

    # W2's link shows W2's record only.
    open_october(phone, w2)
    assert W2_NAME in text(phone, "who") and phone.find_elements("css selector", "#who b") == []
    assert W1_NAME not in phone.page_source and W1_CARD not in phone.page_source
    assert "李<b>娜</b>" not in text(phone, "days")  # the name is in the header, never beside a day

    # A day the gates have no record of at all is disputed by naming it.
    phone.find_element("id", "missing-day").click()
    phone.execute_script("arguments[0].value = '2026-10-20'", phone.find_element("id", "missing-date"))
    assert [o.text for o in phone.find_elements("css selector", "#missing-sites label.choice")] == ["江畔大厦"]
    phone.find_element("css selector", "#missing-day-form textarea").send_keys("20号我在3号楼干了一天，卡坏了")
    phone.find_element("css selector", '#missing-day-form button[type="submit"]').click()
    until(phone, lambda d: "已提交" in d.find_element("css selector", ".filed").text, "the missing day disputed")
    assert "20号我在3号楼干了一天，卡坏了" in text(phone, "disputes")
    filed = bank.json("disputes", "--site", "S1")
    assert [(d["worker"], d["day"], d["note"], d["status"]) for d in filed] == [
        ("W2", "2026-10-20", "20号我在3号楼干了一天，卡坏了", "open")]

    # A guessed link, a malformed one, and W1's first link after a new one was issued: refused, in Chinese.
    reissued = bank.link("W1", bank.url)
    assert reissued != w1
    for link in (f"{bank.url}/w#{secrets.token_urlsafe(32)}", f"{bank.url}/w#<script>alert(1)</script>", w1):
        phone.get(link)
        until(phone, lambda d: "这个链接无效或已作废" in text(d, "problem"), f"refused: {link}")
        assert not phone.find_element("id", "record").is_displayed()
        assert W1_NAME not in phone.page_source and W2_NAME not in phone.page_source
        phone.delete_all_cookies()

    # Revoked: the worker's open page stops working at the next load, and the link too.
    open_october(phone, reissued)
    assert W1_NAME in text(phone, "who")
    bank.run("worker", "link", "--worker", "W1", "--revoke", "--by", "ops-li")
    phone.refresh()
    until(phone, lambda d: "这个链接无效或已作废" in text(d, "problem"), "the revoked link's cookie refused")
    assert W1_NAME not in text(phone, "who")
    phone.get(reissued)
    until(phone, lambda d: "这个链接无效或已作废" in text(d, "problem"), "the revoked link refused")

    # The API gives nothing without the cookie of a valid link, whatever else is sent.
    secret = reissued.split("#")[1]
    assert http(bank.url + "/api/worker/record", cookie=secret)[0] == 401
    assert http(bank.url + "/api/worker/record", token=BANK)[0] == 401
    assert http(bank.url + "/api/worker/disputes", cookie=secret,
                data={"site": "S1", "day": "2026-10-15", "note": "x"})[0] == 401
    assert http(bank.url + "/api/worker/evidence", cookie=secret,
                data={"from": "2026-10-01", "to": "2026-10-31"})[0] == 401
    assert http(bank.url + "/api/worker/evidence/1", cookie=secret)[0] == 401


def test_guessing_links_is_cut_off(tmp_path):
    """Ten wrong links from one address, then 429 for its wrong ones; a valid link is served all the same
    (a neighbour's guessing locks nobody out)."""
    bank = Bank(tmp_path / "collector")
    process, url = start_web(bank.setup)
    try:
        valid = bank.link("W1", url).split("#")[1]
        statuses = [http(url + "/api/worker/session", data={"secret": secrets.token_urlsafe(32)})[0]
                    for _ in range(11)]
        assert statuses == [401] * 10 + [429]
        assert http(url + "/api/worker/record", cookie=secrets.token_urlsafe(32))[0] == 429
        assert http(url + "/api/worker/record", cookie=session_cookie(url, valid))[0] == 200
    finally:
        stop_process(process, signal.SIGKILL)


def test_what_the_page_sends_is_checked(bank):
    """Notes too long, empty or with control characters, days out of range, another site, non-JSON, and
    a site the worker never worked at are refused with a reason; nothing is recorded."""
    secret = session_cookie(bank.url, bank.link("W1", bank.url).split("#")[1])
    cases = [
        ({"site": "S1", "day": "2026-10-15", "note": "长" * 201}, "longer than 200"),
        ({"site": "S1", "day": "2026-10-15", "note": "   "}, "empty"),
        ({"site": "S1", "day": "2026-10-15", "note": "a\u202eb"}, "control character"),
        ({"site": "S1", "day": "2026-10-15", "note": "a\x1b[31mb"}, "control character"),
        ({"site": "S1", "day": "2019-12-31", "note": "x"}, "between 2020-01-01"),
        ({"site": "S1", "day": "2999-01-01", "note": "x"}, "between 2020-01-01"),
        ({"site": "S1", "day": "15/10/2026", "note": "x"}, "YYYY-MM-DD"),
        ({"site": "S2", "day": "2026-10-15", "note": "x"}, "not one of your sites"),
        ({"site": ["S1"], "day": "2026-10-15", "note": "x"}, "not one of your sites"),
        ({"site": "S1", "day": "2026-10-15", "note": 5}, "must be text"),
    ]
    for data, reason in cases:
        status, body = http(bank.url + "/api/worker/disputes", cookie=secret, data=data)
        assert status == 400 and reason in json.loads(body)["error"], (data, body)
    request = urllib.request.Request(bank.url + "/api/worker/disputes", data=b"site=S1",
                                     headers={"Cookie": f"worker_link={secret}",
                                              "Content-Type": "application/x-www-form-urlencoded"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 415  # a plain form from another site cannot file one
    assert bank.json("disputes") == []
    for query, status in (("?month=2026-13", 400), ("?month=x", 400), ("?month=2026-10", 200)):
        assert http(bank.url + "/api/worker/record" + query, cookie=secret)[0] == status
    for dates in ({"from": "2026-10-01"}, {"from": "2026-10-31", "to": "2026-10-01"},
                  {"from": "2020-01-01", "to": "2026-10-01"}, {"from": 20261001, "to": "2026-10-31"}):
        assert http(bank.url + "/api/worker/evidence", cookie=secret, data=dates)[0] == 400
    assert bank.setup.count("SELECT COUNT(*) FROM evidence_requests") == 0
    # Requests wait for the collector daemon (none runs here): the same dates make one request, at most
    # three wait per worker, another worker's request is not found, a file not signed yet is not served.
    asked = [http(bank.url + "/api/worker/evidence", cookie=secret, data={"from": f"2026-{m}-01", "to": f"2026-{m}-28"})
             for m in ("08", "09", "10", "10")]
    assert [status for status, _ in asked] == [202, 202, 202, 202]
    numbers = [json.loads(body)["id"] for _, body in asked]
    assert numbers[2] == numbers[3] and json.loads(asked[0][1])["state"] == "pending"
    status, body = http(bank.url + "/api/worker/evidence", cookie=secret, data={"from": "2026-07-01", "to": "2026-07-31"})
    assert status == 429 and "still being prepared" in json.loads(body)["error"]
    assert http(bank.url + f"/api/worker/evidence/{numbers[0]}/file", cookie=secret)[0] == 409
    other = session_cookie(bank.url, bank.link("W2", bank.url).split("#")[1])
    assert http(bank.url + f"/api/worker/evidence/{numbers[0]}", cookie=other)[0] == 404
    assert http(bank.url + f"/api/worker/evidence/{numbers[0]}/file", cookie=other)[0] == 404
    assert bank.setup.count("SELECT COUNT(*) FROM evidence_requests") == 3


def test_what_one_worker_may_ask_of_evidence_is_bounded(tmp_path):
    """[evidence]: a period longer than allowed, or whose chain segments carry more punches than one file
    may, is 400 with the reason; the 11th request in 24 hours is 429; nothing refused is recorded."""
    bank = Bank(tmp_path / "collector")
    bank.setup.write_config(evidence={"max_days": 31, "max_segment_punches": 2})
    process, url = start_web(bank.setup)
    try:
        cookie = session_cookie(url, bank.link("W1", url).split("#")[1])
        refused = [http(url + "/api/worker/evidence", cookie=cookie, data=dates) for dates in (
            {"from": "2026-09-01", "to": "2026-10-15"}, {"from": "2026-10-01", "to": "2026-10-31"})]
        assert [status for status, _ in refused] == [400, 400]
        assert "45 days; evidence covers at most 31 days at once" in json.loads(refused[0][1])["error"]
        # North carries W1's 14th and 15th with W2's punch between (3), south W1's OUT (1).
        assert ("would put 4 gate punches in the file, more than the 2 one file may carry: ask for a shorter "
                "period") in json.loads(refused[1][1])["error"]
        assert bank.setup.count("SELECT COUNT(*) FROM evidence_requests") == 0
        for month in range(1, 11):
            status, body = http(url + "/api/worker/evidence", cookie=cookie,
                                data={"from": f"2025-{month:02d}-01", "to": f"2025-{month:02d}-28"})
            assert status == 202, body
            with bank.setup.store() as store:  # built (here: failed) meanwhile, so none is left waiting
                store.execute("UPDATE evidence_requests SET state = 'failed', reason = 'tested', "
                              "finished_at = requested_at WHERE id = ?", (json.loads(body)["id"],))
        status, body = http(url + "/api/worker/evidence", cookie=cookie, data={"from": "2025-11-01", "to": "2025-11-28"})
        assert status == 429 and "ask again tomorrow" in json.loads(body)["error"]
        assert bank.setup.count("SELECT COUNT(*) FROM evidence_requests") == 10
    finally:
        stop_process(process, signal.SIGKILL)


def session_cookie(url: str, secret: str) -> str:
    """The cookie `POST /api/worker/session` sets for a link's secret (HttpOnly, SameSite=Strict)."""
    request = urllib.request.Request(url + "/api/worker/session", data=json.dumps({"secret": secret}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 204
        header = response.headers["Set-Cookie"]
    assert "HttpOnly" in header and "SameSite=strict" in header and "Path=/" in header
    assert "Secure" not in header  # served on loopback here; any other address gets Secure
    return header.split(";")[0].split("=", 1)[1]


def test_the_page_writes_through_its_own_connection_on_both_engines(tmp_path, database):
    """`collector serve` reads read-only; the access log and disputes are written beside it, on SQLite
    and PostgreSQL alike. An accepted dispute answered by a void marks the voided punch with it."""
    bank = Bank(tmp_path / "collector", db=None if isinstance(database, Path) else database)
    process, url = start_web(bank.setup)
    try:
        cookie = session_cookie(url, bank.link("W1", url).split("#")[1])
        status, body = http(url + "/api/worker/record?month=2026-10", cookie=cookie)
        assert status == 200
        record = json.loads(body)
        assert record["worker"] == {"worker": "W1", "name": W1_NAME, "employer": "华建劳务"}
        assert [(d["date"], d["first_in"], d["last_out"], d["worked_minutes"]) for d in record["days"]] == [
            ("2026-10-14", "2026-10-14T08:00:00+08:00", "2026-10-14T17:00:00+08:00", 540),
            ("2026-10-15", "2026-10-15T08:00:00+08:00", None, 0)]
        assert record["totals"] == {"days_present": 2, "worked_minutes": 540, "days_flagged": 1,
                                    "provisional_days": 0}
        assert record["sites"] == [{"site": "S1", "name": "江畔大厦"}]
        for other in ("W2", W2_CARD, W1_CARD, W2_ID_NUMBER, "李"):
            assert other not in body.decode(), other
        assert [(a["via"], a["who"], a["what"]) for a in record["access"]] == [
            ("worker link", "the worker", "days 2026-10"), ("bank CLI", "ops-li", "link issued")]

        status, body = http(url + "/api/worker/disputes", cookie=cookie,
                            data={"site": "S1", "day": "2026-10-14", "note": "我17:00没走，18:00才下班"})
        assert status == 201
        ref = json.loads(body)["ref"]
        assert ref == f"D-{datetime.now(UTC).year}-0001"
        with bank.setup.store() as store:
            out = next(p for p in store.punches(site="S1") if p["gate"] == "south" and p["card"] == W1_CARD)
            theirs = next(p for p in store.punches(site="S1") if p["card"] == W2_CARD)
            next_day = next(p for p in store.punches(site="S1") if p["time"].startswith("2026-10-15"))
        for args, why in ((["--void", str(theirs["id"])], "not the disputing worker's"),
                          (["--punch", str(out["id"])], "a gate's punch"),
                          (["--void", str(next_day["id"] + 100)], "there is no punch"),
                          (["--punch", str(out["id"]), "--void", str(out["id"])], "one correction"),
                          ([], "one correction")):
            refused = bank.run("disputes", "answer", ref, "--accept", *args, "--by", "ops-li", check=False)
            assert refused.returncode == 1 and why in refused.stderr, (args, refused.stderr)
        bank.run("disputes", "answer", ref, "--accept", "--void", str(out["id"]), "--reason",
                 "the 17:00 tap was a colleague's card in the worker's wallet", "--by", "ops-li")
        with bank.setup.store(readonly=True) as store:
            voided = store.punch(out["id"])
            assert voided["void_at"] and voided["void_by"] == "ops-li" and ref in voided["void_reason"]
            assert store.punch_dispute(out["id"]) == ref
        answered = json.loads(http(url + "/api/worker/record?month=2026-10", cookie=cookie)[1])
        assert answered["disputes"][0]["status"] == "accepted" and answered["disputes"][0]["answer_kind"] == "void"
        assert "colleague" in answered["disputes"][0]["answer"]
        assert answered["days"][0]["status"] == "missing_out" and "void" in answered["days"][0]["flags"]
        # Two looks at the same month within the hour: one entry, one look (a reload is not another look).
        assert [(a["via"], a["what"], a["looks"]) for a in answered["access"]] == [
            ("worker link", "days 2026-10", 1), ("bank CLI", "link issued", 1)]
    finally:
        stop_process(process, signal.SIGKILL)


def test_every_text_of_the_page_is_in_both_languages():
    """The pages' one catalog per language has every key in both; every key the page and its script name
    is in them (the worker's under "worker.")."""
    import re

    static = ROOT / "collector" / "web" / "static"
    catalogs = {lang: json.loads((static / "i18n" / f"{lang}.json").read_text()) for lang in ("zh-CN", "en")}
    assert set(catalogs["zh-CN"]) == set(catalogs["en"])
    zh, en = ({k[len("worker."):]: v for k, v in catalogs[lang].items() if k.startswith("worker.")}
              for lang in ("zh-CN", "en"))
    assert all(isinstance(v, str) and v.strip() for v in [*zh.values(), *en.values()])
    html = (ROOT / "collector" / "web" / "templates" / "worker.html").read_text()
    script = (static / "worker.js").read_text()
    named = set(re.findall(r'data-i18n(?:-placeholder|-label)?="([^"]+)"', html))
    assert named and named - set(catalogs["zh-CN"]) == set()
    used = {k[len("worker."):] for k in named if k.startswith("worker.")} | \
        set(re.findall(r'\bt\("([a-z_]+)"[,)]', script))
    assert used and used - set(zh) == set()
    # Texts made from a prefix and a value the bank sends: every value it can send has its words.
    statuses = ("complete", "open", "missing_out", "missing_in", "anomaly")
    flags = ("manual", "void", "late_upload", "clock_unsynced", "clock_future", "clock_backwards",
             "clock_implausible", "chain_break", "equivocated", "not_assigned", "repeated_in", "repeated_out",
             "card_forged", "card_replay", "card_unverified")
    wage_statuses = ("not_due", "due", "paid", "overdue", "held", "overpaid")
    vias = ("worker link", "bank CLI", "site token", "bank token")
    needed = {f"status_{s}" for s in statuses} | {f"flag_{f}" for f in flags} | \
        {f"wage_status_{s}" for s in wage_statuses} | {f"via_{v}" for v in vias} | \
        {f"dispute_status_{s}" for s in ("open", "accepted", "rejected")}
    assert needed - set(zh) == set()
    # The Chinese page is Chinese: no catalog entry left in English.
    assert all(re.search(r"[\u4e00-\u9fff]", v) for v in zh.values())

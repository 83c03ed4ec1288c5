"""The evidence file as a page a worker reads (collector/evidence/page.py), from the signed file alone: what
`collector evidence --html` writes and the worker's page serves reads on a 412 px phone in real Chromium,
in Chinese and the site's time, with the ids `collector verify` prints and a QR code (decoded by zxing-cpp)
holding how to check the file; it says it proves nothing by itself; a hostile file's every value is
escaped, and no document, however malformed, makes the renderer fail."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import re
import signal
import urllib.request
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.evidence.document import build_evidence, days_id, evidence_id
from collector.evidence.page import (
    content_security_policy,
    render_evidence_bytes,
    render_evidence_page,
    style,
)
from tests.browser import open_tab
from tests.helpers import BANK_KEY, cli, start_web, stop_process
from tests.test_qr import decoded
from tests.test_web_worker import W1_NAME, Bank, http, serve_without_key, session_cookie

#: Every element's right edge within the window: nothing runs off a phone's screen.
OFF_SCREEN = ("return Array.from(document.querySelectorAll('body *')).filter(e => e.getBoundingClientRect().right > "
              "window.innerWidth + 1).map(e => e.tagName + ':' + e.textContent.slice(0, 30))")


def corrected(bank: Bank) -> str:
    """W1's 15th closed by a manual OUT that answers the worker's dispute, and a stray IN entered and voided;
    returns the dispute's reference."""
    from collector.workers import disputes

    with bank.setup.store() as store:
        ref = disputes.file(store, "W1", site="S1", day="2026-10-15", note="我18:00下班")["ref"]
    entered = bank.json("punch", "add", "--worker", "W1", "--site", "S1", "--at", "2026-10-15T18:00", "--direction",
                        "out", "--reason", "闸机没读到卡 <b>补录</b>", "--by", "ops-li")
    bank.json("disputes", "answer", ref, "--accept", "--punch", str(entered["id"]), "--by", "ops-li")
    stray = bank.json("punch", "add", "--worker", "W1", "--site", "S1", "--at", "2026-10-15T12:00", "--direction",
                      "in", "--reason", "entered twice by mistake", "--by", "ops-li")
    bank.run("punch", "void", str(stray["id"]), "--reason", "录错了，重复", "--by", "ops-wang")
    return ref


@pytest.fixture
def office(tmp_path):
    bank = Bank(tmp_path / "collector")
    bank.dispute = corrected(bank)
    return bank


def test_the_page_the_bank_writes_reads_on_a_phone(office, tmp_path):
    out, page = tmp_path / "w1.json", tmp_path / "w1.html"
    result = office.run("evidence", "--worker", "W1", "--from", "2026-10-01", "--to", "2026-10-31", "--out", str(out),
                        "--html", str(page))
    assert f"{page}: the same evidence as a page to read or print" in result.stdout
    assert page.stat().st_mode & 0o777 == 0o600
    verified = cli("collector", "verify", str(out), "--bank-key", str(office.public_key)).stdout
    evidence, days_ref = (re.search(rf"{name} id ([0-9a-f]{{64}})", verified).group(1) for name in ("evidence", "days"))
    bank_key = re.search(r"signed by bank key ([0-9a-f]{16})", verified).group(1)
    html = page.read_text(encoding="utf-8")
    assert "<script" not in html and "UTC" not in html
    assert "闸机没读到卡 &lt;b&gt;补录&lt;/b&gt;" in html  # the reason as text, never markup
    assert "collector verify w1.json --bank-key bank.pub" in html  # the file by the name it was written as

    driver = open_tab(lang="zh-CN", size="412,915")
    try:
        driver.get(page.as_uri())
        assert driver.execute_script("return window.innerWidth") == 412
        assert driver.execute_script(OFF_SCREEN) == [], "nothing runs off a 412 px screen"
        assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        body = driver.find_element("tag name", "body").text
        header = driver.find_element("tag name", "header").text
        assert "考勤证据（阅读版）" in header and W1_NAME in header and "工号 W1" in header and "华建劳务" in header
        assert "2026-10-01 至 2026-10-31" in header
        assert "本身不能证明什么" in driver.find_element("id", "reading").text
        days = driver.find_elements("css selector", "li.day")
        assert [d.find_element("css selector", ".date").text for d in days] == ["2026-10-14 周三", "2026-10-15 周四"]
        first, second = (d.text for d in days)
        assert "上班\n08:00" in first and "下班\n17:00" in first and "9小时0分" in first and "正常" in first
        # The manual OUT at 18:00 site time (10:00 UTC in the file), who entered it and why; the void and why.
        assert "下班\n18:00" in second and "10小时0分" in second and "有人工补录的打卡" in second
        assert "人工补录的下班打卡：2026-10-15 18:00，由 ops-li" in second and "原因：闸机没读到卡 <b>补录</b>" in second
        assert f"（答复申诉 {office.dispute}）" in second
        assert "由 ops-wang" in second and "原因：录错了，重复" in second
        assert "共2天有记录，合计工作时间19小时0分" in body
        assert driver.find_element("id", "key").text == bank_key
        assert driver.find_element("id", "evidence-id").text == evidence
        assert driver.find_element("id", "days-id").text == days_ref
        assert "collector verify w1.json --bank-key bank.pub" in body
        assert "Asia/Shanghai" in driver.find_element("tag name", "footer").text
        side = driver.execute_script("return document.querySelector('#qr svg').getBoundingClientRect().width")
        assert side >= 200, "a code large enough to scan"
        svg = driver.execute_script("return new XMLSerializer().serializeToString(document.querySelector('#qr svg'))")
    finally:
        driver.quit()
    svg = svg.replace("<svg ", '<svg width="800" height="800" ', 1)
    said = decoded("data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode())
    assert evidence in said and days_ref in said and bank_key in said
    assert "collector verify w1.json --bank-key bank.pub" in said
    assert "docs/verify-evidence.md" in said

    # At a desktop's width the same page, one column, nothing off the side.
    driver = open_tab(lang="zh-CN", size="1280,900")
    try:
        driver.get(page.as_uri())
        assert driver.execute_script(OFF_SCREEN) == []
        assert driver.find_element("id", "evidence-id").text == evidence
    finally:
        driver.quit()


def test_the_worker_opens_the_page_beside_the_download(office, tmp_path):
    """The worker's page offers 查看 beside 下载 once the file is signed; the page is made from the stored
    file, with a policy that allows its own style by hash and nothing else; the look is logged."""
    process, url = start_web(serve_without_key(office.setup))
    try:
        link = office.link("W1", url)
        driver = open_tab(lang="zh-CN", size="412,915")
        try:
            driver.get(link)
            wait = _waiter(driver)
            wait(lambda d: d.find_element("id", "record").is_displayed(), "the record")
            driver.execute_script("document.getElementById('evidence-from').value = '2026-10-01';"
                                  "document.getElementById('evidence-to').value = '2026-10-31';")
            driver.find_element("id", "evidence-link").click()
            wait(lambda d: office.setup.count("SELECT COUNT(*) FROM evidence_requests") == 1, "the request")
            sign_waiting_request(office)  # what `collector run` does: `serve` holds no key
            wait(lambda d: d.find_element("id", "evidence-page").is_displayed(), "查看 offered")
            view = driver.find_element("id", "evidence-page")
            assert view.text == "查看" and driver.find_element("id", "evidence-file").text == "下载"
            href = view.get_attribute("href")
            assert href.endswith("/page?lang=zh-CN")
            driver.get(href)
            assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
            assert "考勤证据（阅读版）" in driver.find_element("tag name", "h1").text
            assert W1_NAME in driver.find_element("tag name", "header").text
            # The commands name the file as the worker's page downloads it.
            assert "collector verify evidence-W1-2026-10-01-2026-10-31.json" in driver.find_element("id", "verify").text
            assert "下班\n18:00" in driver.find_elements("css selector", "li.day")[1].text
            # The inline style applied: the policy allowed it by its hash.
            colour = driver.execute_script("return getComputedStyle(document.querySelector('header')).backgroundColor")
            assert colour == "rgb(11, 87, 164)"
            driver.get(href.replace("lang=zh-CN", "lang=en"))
            assert "Attendance evidence (reading copy)" in driver.find_element("tag name", "h1").text
        finally:
            driver.quit()

        cookie = session_cookie(url, office.link("W1", url).split("#")[1])
        number = office.setup.rows("SELECT id FROM evidence_requests")[0][0]
        request = urllib.request.Request(f"{url}/api/worker/evidence/{number}/page",
                                         headers={"Cookie": f"worker_link={cookie}"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            policies = answer.headers.get_all("Content-Security-Policy")
            body = answer.read().decode()
        assert policies == [content_security_policy()] and "script-src" not in policies[0]
        digest = base64.b64encode(hashlib.sha256(style().encode()).digest()).decode()
        assert f"style-src 'sha256-{digest}'" in policies[0] and f"<style>{style()}</style>" in body
        other = session_cookie(url, office.link("W2", url).split("#")[1])
        assert http(f"{url}/api/worker/evidence/{number}/page", cookie=other)[0] == 404
        assert http(f"{url}/api/worker/evidence/{number}/page")[0] == 401
        looks = office.setup.rows("SELECT what, looks FROM record_access WHERE worker = 'W1' AND via = 'worker link' "
                                  "AND what LIKE 'evidence%'")
        assert looks == [("evidence 2026-10-01..2026-10-31", 1)]  # three reads within the hour: one look
    finally:
        stop_process(process, signal.SIGKILL)


def sign_waiting_request(bank: Bank) -> None:
    """Claim the waiting request and sign its file with the bank's key, as the collector daemon does."""
    claim = uuid.uuid4().hex
    with bank.setup.store() as store:
        asked = store.claim_evidence_request(claim)
        document = build_evidence(store, asked["worker"], date.fromisoformat(asked["first_day"]),
                                  date.fromisoformat(asked["last_day"]), key=BANK_KEY)
        assert store.finish_evidence_request(asked["id"], claim, document=json.dumps(document))


def _waiter(driver):
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    def wait(condition, message: str):
        return WebDriverWait(driver, 60, poll_frequency=0.2,
                             ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
                             ).until(condition, message)
    return wait


# ---------------------------------------------------------------------------------------------- hostile files


@pytest.fixture(scope="module")
def real_document(tmp_path_factory) -> dict:
    bank = Bank(tmp_path_factory.mktemp("evidence") / "collector")
    corrected(bank)
    # Writable: the gates were added without the bank's key at hand, so the build enters their keys in the
    # register of gate keys first (the file cites each key's entry).
    with bank.setup.store() as store:
        return build_evidence(store, "W1", date(2026, 10, 1), date(2026, 10, 31), key=BANK_KEY,
                              now=datetime(2026, 11, 3, tzinfo=UTC))


HOSTILE = '<script>alert(1)</script><img src=x onerror=alert(2)>"\'&'


def test_every_value_of_a_hostile_file_is_text(real_document):
    document = copy.deepcopy(real_document)
    document["worker"].update(name=HOSTILE, employer=HOSTILE, worker=HOSTILE)
    document["period"]["from"] = HOSTILE
    document["sites"] = {HOSTILE: {"timezone": "../../../etc/passwd"}, "S1": {"timezone": "Asia/Shanghai"}}
    document["manual"][0].update(reason=HOSTILE, by=HOSTILE, time=HOSTILE, dispute=HOSTILE, direction=HOSTILE)
    document["voids"][0]["reason"] = HOSTILE
    document["days"][1].update(status=HOSTILE, flags=[HOSTILE, 5, None], first_in=HOSTILE, worked_minutes=-1)
    document["days"][0].update(site=HOSTILE, date=HOSTILE, shifts=[{"in": HOSTILE}] * 2,
                               anomalies=[{"ref": HOSTILE, "why": HOSTILE}])
    document["key"] = HOSTILE
    html = render_evidence_page(document)
    assert "<script" not in html and "<img" not in html and "onerror=alert(2)>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # The command in the page names a file only when the worker and dates could be a file's name.
    assert "collector verify evidence.json --bank-key bank.pub" in html
    driver = open_tab(lang="zh-CN", size="412,915")
    try:
        driver.get("data:text/html;charset=utf-8;base64," + base64.b64encode(html.encode()).decode())
        assert driver.find_elements("css selector", "script, img, iframe") == []
        assert HOSTILE in driver.find_element("id", "name").text
        assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    finally:
        driver.quit()


@pytest.mark.parametrize("data, why", [
    (b"[1, 2]", "文件里不是一份证据文档"),
    (b'{"format": "something-else", "version": 1}', "文件不是考勤证据文件的格式"),
    (b'{"format": "site-gate-evidence"}', "文件没有写明版本"),
    (b'{"format": "site-gate-evidence", "version": 1, "version": 2}', "文件内容读不出来"),
    (b"\xff\xfe not text", "文件内容读不出来"),
    (b"", "文件内容读不出来"),
])
def test_a_file_that_is_not_evidence_gives_a_page_saying_so(data, why):
    html = render_evidence_bytes(data)
    assert "无法显示这个证据文件" in html and why in html and "<script" not in html


def test_a_later_version_is_read_with_a_warning(real_document):
    later = {**copy.deepcopy(real_document), "version": 7, "something_new": {"x": 1}}
    html = render_evidence_page(later, "en")
    assert "of a newer version than this page" in html and "Attendance evidence (reading copy)" in html
    assert "2026-10-14" in html


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
                    max_leaves=20)


def _paths(node, path=()):
    yield path
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*path, index))


@settings(max_examples=int(os.environ.get("EVIDENCE_PAGE_EXAMPLES", 300)), derandomize=True, database=None,
          deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_no_document_makes_the_renderer_fail(real_document, data):
    """A real file with any of its values (or whole parts) replaced by any JSON, or dropped, renders a page;
    so does any JSON at all, and any bytes."""
    document = copy.deepcopy(real_document)
    for _ in range(data.draw(st.integers(1, 4))):
        paths = [p for p in _paths(document) if p]
        if not paths:
            break
        path = data.draw(st.sampled_from(paths))
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        if data.draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(JSON)
    lang = data.draw(st.sampled_from(["zh-CN", "en", "fr", ""]))
    for page in (render_evidence_page(document, lang), render_evidence_page(data.draw(JSON), lang),
                 render_evidence_bytes(data.draw(st.binary(max_size=200)), lang)):
        assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")


def test_the_ids_are_the_files(real_document):
    html = render_evidence_page(real_document)
    assert evidence_id(real_document) in html and days_id(real_document["days"]) in html
    assert real_document["key"] in html and real_document["sig"] not in html


def test_the_catalogs_hold_the_pages_words():
    """Every key page.py and its templates name is in both catalogs."""
    root = Path(__file__).parent.parent / "collector"
    catalogs = [json.loads((root / "web" / "static" / "i18n" / f"{lang}.json").read_text()) for lang in ("zh-CN", "en")]
    source = (root / "evidence" / "page.py").read_text() + "".join(
        p.read_text() for p in (root / "evidence" / "templates").glob("*.html"))
    named = set(re.findall(r'"(evidence_page\.[a-z_]+)"', source)) | set(re.findall(r"'(evidence_page\.[a-z_]+)'", source))
    named -= {"evidence_page.html", "evidence_page.css"}  # the template's files, not words
    named |= {f"evidence_page.error_{why}" for why in ("not_object", "not_format", "no_version", "not_read")}
    named |= {f"evidence_page.direction_{d}" for d in ("in", "out")}
    assert len(named) > 30
    for catalog in catalogs:
        assert named - set(catalog) == set()

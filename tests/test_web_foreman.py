"""The site foreman's page in a real headless Chromium over `collector serve`: Chinese first, trouble at
the top, who is inside by employer, the roll-call and its print view, any past day, sign-in by link.
The last test kills a real gate agent (through Mosquitto and the collector daemon) and watches the banner."""

from __future__ import annotations

import json
import signal
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
from tests.helpers import CollectorSetup, PunchFactory, heartbeat, start_web, stop_process, wait_for
from tests.test_web_browser import log_in, text_of

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parent.parent
SHANGHAI = ZoneInfo("Asia/Shanghai")
SITE1 = "site-one-foreman-token-0001"
SITE2 = "site-two-foreman-token-0002"
BANK = "bank-ops-token-all-sites-0003"
STRANGER = "CAFEBABE"
# (worker, name, employer, card): six inside now, three employers (one worker with none recorded).
CREW = [("W1", "张伟", "华建劳务", "04A1B2C3D4E5F6"), ("W2", "李娜", "华建劳务", "04A1B2C3D4E5F7"),
        ("W3", "王强", "华建劳务", "04A1B2C3D4E5F8"), ("W4", "赵敏", "中铁劳务", "04A1B2C3D4E5F9"),
        ("W5", "陈刚", "中铁劳务", "04A1B2C3D4E5FA"), ("W6", '刘洋 <b>"x"</b>', None, "04A1B2C3D4E5FB")]
PAST_DAY = "2026-11-02"


def make_browser(tmp_path, *, lang: str = "zh-CN", size: str = "390,844"):
    """The shared Chromium on a fresh tab, with a browser language and a window size (a phone's by
    default: headless windows are at least 500 px wide, so a phone is emulated as a device)."""
    return open_tab(lang=lang, size=size)


@pytest.fixture
def browser(tmp_path):
    driver = make_browser(tmp_path)
    yield driver
    driver.quit()


def until(driver, condition, message: str, timeout: float = 60):
    """Wait for ``condition(driver)``; the page re-renders as updates arrive, so an element read a moment
    before may be gone, and a sign-in link moves on to the site page, which aborts a command sent while it
    navigates: both count as "not yet"."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    def settled(d):
        try:
            return condition(d)
        except WebDriverException as error:
            if isinstance(error, StaleElementReferenceException) or "aborted by navigation" in str(error.msg):
                return False
            raise

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(settled, message)


def ingest(store, topic: str, payload: bytes, when: datetime) -> None:
    Ingestor(store).ingest([Incoming(topic, payload, format_time(when))])


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Site S1 with gates north (healthy), east (every punch refused: its key is not the registered one)
    and six workers of three employers inside, a stranger's card inside, and a past day with flags."""
    directory = tmp_path_factory.mktemp("foreman")
    setup = CollectorSetup.create(directory / "collector", broker=SimpleNamespace(port=1883),
                                  **{"web.tokens": {SITE1: "S1", SITE2: "S2", BANK: "*"}})
    north, east, impostor = PunchFactory(gate="north"), PunchFactory(gate="east"), PunchFactory(gate="east")
    now = datetime.now(UTC).replace(microsecond=0)
    with setup.store() as store:
        store.add_site("S1", timezone="Asia/Shanghai", name="Riverside tower")
        store.add_site("S2", timezone="Asia/Shanghai")
        store.add_gate("S1", "north", north.public_key)
        store.add_gate("S1", "east", east.public_key)
        for worker, name, employer, card in CREW:
            store.add_worker(worker, name=name, employer=employer, cards=[card], sites=["S1"])

        def tap(card, when, direction, received=None):
            punch = north.next(card=card, direction=direction, at=when)
            ingest(store, GateTopics("S1", "north").punch, encode_punches([punch]), received or when + timedelta(seconds=1))

        day = datetime(2026, 11, 2, tzinfo=SHANGHAI)
        tap(CREW[0][3], (day + timedelta(hours=8)).astimezone(UTC), "in")
        tap(CREW[0][3], (day + timedelta(hours=9)).astimezone(UTC), "in")  # IN twice
        tap(CREW[0][3], (day + timedelta(hours=17)).astimezone(UTC), "out",
            received=(day + timedelta(hours=20)).astimezone(UTC))  # reached the bank three hours late
        for index, (_, _, _, card) in enumerate(CREW):
            tap(card, now - timedelta(minutes=90 - index), "in")
        tap(STRANGER, now - timedelta(minutes=20), "in")
        for _ in range(3):  # signed with a key the bank does not know for east: refused, unknown_key
            ingest(store, GateTopics("S1", "east").punch, encode_punches([impostor.next(at=now)]), now)
        with store.transaction():
            for gate in ("north", "east"):
                store.save_status("S1", gate, {"v": 1, "state": "online",
                                               **heartbeat(gate=gate, heartbeat_seconds=3600)}, format_time(now))
    process, base = start_web(setup)
    yield SimpleNamespace(setup=setup, base=base, process=process)
    stop_process(process, signal.SIGKILL)


def get(url: str, token: str | None = None, headers: dict | None = None):
    request = urllib.request.Request(url, headers=headers or {})
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def post(url: str, body: bytes, content_type: str = "application/json", headers: dict | None = None):
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": content_type, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def open_site(browser, base: str, token: str = SITE1) -> None:
    browser.get(base + "/sites/S1")
    log_in(browser, token)
    until(browser, lambda d: text_of(d, "on-site") == str(len(CREW)), "the headcount")


def banner_items(browser) -> dict[str, str]:
    """kind:gate -> text of each line of the banner, read in one go (the list is redrawn on updates)."""
    return browser.execute_script("""return Object.fromEntries([...document.querySelectorAll('#trouble-list li')]
        .map(li => [li.dataset.kind + ':' + (li.dataset.gate || 'null'), li.textContent]))""")


def no_sideways_scroll(browser) -> bool:
    return browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")


# ---------------------------------------------------------------------------------------------- language


def test_chinese_by_default_and_english_when_switched(site, browser):
    open_site(browser, site.base)
    html = browser.find_element("tag name", "html")
    assert html.get_attribute("lang") == "zh-CN"
    assert text_of(browser, "h-headcount") == "当前在场"
    assert "实时" in text_of(browser, "connection")
    assert "离线" not in text_of(browser, "gates") and "在线" in text_of(browser, "gates")
    switch = browser.find_element("id", "lang-switch")
    assert switch.text == "English"
    switch.click()
    until(browser, lambda d: d.find_element("tag name", "html").get_attribute("lang") == "en", "English")
    assert text_of(browser, "h-headcount") == "On site now"
    assert "Live" in text_of(browser, "connection")
    assert "north: Online" in text_of(browser, "gates")
    assert browser.find_element("id", "lang-switch").text == "中文"
    # The choice is kept: a reload stays in English; switching back returns to Chinese.
    browser.refresh()
    until(browser, lambda d: text_of(d, "h-headcount") == "On site now", "English after a reload")
    browser.find_element("id", "lang-switch").click()
    until(browser, lambda d: text_of(d, "h-headcount") == "当前在场", "Chinese again")

    # No web font: the style sheet declares none and the page fetched none.
    css = urllib.request.urlopen(site.base + "/static/dashboard.css", timeout=30).read().decode()
    assert "@font-face" not in css and "PingFang SC" in css and "Microsoft YaHei" in css
    fetched = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert not [name for name in fetched if name.split("?")[0].endswith((".woff", ".woff2", ".ttf", ".otf"))]
    # Every phone-width view fits: nothing scrolls sideways at 390 px.
    assert browser.execute_script("return window.innerWidth") <= 390
    assert no_sideways_scroll(browser)


def test_the_page_language_follows_the_browser(site, tmp_path):
    """The server marks the page by Accept-Language (Chinese unless English comes first); a browser set
    to English shows English without touching the switch, one in a language without a catalog Chinese."""
    for header, lang in ((None, "zh-CN"), ("fr-FR,fr;q=0.9", "zh-CN"), ("en-GB,en;q=0.9", "en"),
                         ("zh-CN,zh;q=0.9,en;q=0.8", "zh-CN"), ("en;q=0.5,zh;q=0.9", "zh-CN"),
                         ("en-US,zh-CN;q=0.5", "en")):
        status, _, body = get(site.base + "/sites/S1", headers={"Accept-Language": header} if header else None)
        assert status == 200 and f'<html lang="{lang}">' in body.decode(), header
    for browser_lang, lang, heading in (("en-US", "en", "On site now"), ("fr-FR", "zh-CN", "当前在场")):
        driver = make_browser(tmp_path, lang=browser_lang, size="1280,900")
        try:
            open_site(driver, site.base)
            assert driver.find_element("tag name", "html").get_attribute("lang") == lang, browser_lang
            assert text_of(driver, "h-headcount") == heading
        finally:
            driver.quit()


# ---------------------------------------------------------------------------------------------- trouble


def test_a_gate_with_refused_punches_is_trouble_never_green(site, browser):
    open_site(browser, site.base)
    until(browser, lambda d: d.find_element("id", "trouble").get_attribute("data-state") == "bad", "a red banner")
    items = banner_items(browser)
    assert list(items) == ["gate_refused:east"]
    assert "3" in items["gate_refused:east"] and "密钥未登记" in items["gate_refused:east"]
    # The banner is the first thing on the page, above the header and the figures.
    assert browser.execute_script("return document.body.firstElementChild.id") == "trouble"
    gates = until(browser, lambda d: d.execute_script("""return [...document.querySelectorAll('#gates li')]
        .map(li => [li.dataset.state, li.querySelector('h3').textContent])"""), "the gates")
    assert gates == [["refused", "✖ east: 消息被拒绝"], ["online", "✔ north: 在线"]]

    # The same facts as JSON for the site's token: counts and reasons, never the refused bytes.
    status, _, body = get(site.base + "/api/sites/S1/trouble", SITE1)
    assert status == 200
    report = json.loads(body)
    assert report["ok"] is False
    assert [(f["kind"], f["gate"], f["count"], f["reasons"]) for f in report["trouble"]] == [
        ("gate_refused", "east", 3, {"unknown_key": 3})]
    assert b"raw" not in body and b"detail" not in body and b"sig" not in body
    assert get(site.base + "/api/sites/S1/trouble", SITE2)[0] == 403
    assert get(site.base + "/api/sites/S1/trouble")[0] == 401


# ---------------------------------------------------------------------------------------------- who is inside


def test_who_is_inside_by_employer_searchable_with_unknown_cards(site, browser):
    open_site(browser, site.base)
    counts = until(browser, lambda d: d.execute_script("""return Object.fromEntries([...document.querySelectorAll(
        '#employers li')].map(li => [li.dataset.employer, li.querySelector('.count').textContent]))"""), "counts")
    assert counts == {"华建劳务": "3", "中铁劳务": "2", "": "1"}
    groups = until(browser, lambda d: d.execute_script("""return [...document.querySelectorAll(
        '#inside section.group')].map(g => [g.dataset.employer, g.textContent])"""), "the groups")
    assert [employer for employer, _ in groups] == ["华建劳务", "中铁劳务", ""]
    assert "张伟" in groups[0][1] and "赵敏" in groups[1][1] and "未登记用工单位" in groups[2][1]
    assert CREW[5][1] in groups[2][1] and browser.find_elements("css selector", "#inside b") == []

    search = browser.find_element("id", "search")
    search.send_keys("中铁")
    until(browser, lambda d: len(d.find_elements("css selector", "#inside tr[data-worker]")) == 2, "two matches")
    search.clear()
    search.send_keys("w6")
    until(browser, lambda d: [r.get_attribute("data-worker") for r in d.find_elements(
        "css selector", "#inside tr[data-worker]")] == ["W6"], "the match by worker number")
    search.clear()
    search.send_keys("nobody-here")
    until(browser, lambda d: d.find_element("id", "inside-empty").is_displayed(), "no match said")

    unknown = browser.find_element("css selector", f"#unknown tr[data-card='{STRANGER}']")
    assert STRANGER in unknown.text and "north" in unknown.text
    assert "1 张未登记的卡" in text_of(browser, "unknown-cards")
    assert no_sideways_scroll(browser)


def test_three_hundred_inside_counted_grouped_and_found(tmp_path, browser):
    setup = CollectorSetup.create(tmp_path / "collector", broker=SimpleNamespace(port=1883),
                                  **{"web.tokens": {SITE1: "S1"}})
    north = PunchFactory(gate="north")
    now = datetime.now(UTC).replace(microsecond=0)
    employers = {"华建劳务": 150, "中铁劳务": 100, "宏达建筑": 50}
    messages = []
    with setup.store() as store:
        store.add_site("S1", timezone="Asia/Shanghai")
        store.add_gate("S1", "north", north.public_key)
        number = 0
        for employer, count in employers.items():
            for _ in range(count):
                number += 1
                card = f"04000000{number:04X}"
                store.add_worker(f"W{number:03d}", name=f"工人{number:03d}", employer=employer, cards=[card], sites=["S1"])
                when = now - timedelta(minutes=300 - number // 2)
                messages.append(Incoming(GateTopics("S1", "north").punch,
                                         encode_punches([north.next(card=card, at=when)]), format_time(when)))
        Ingestor(store).ingest(messages)
    web, base = start_web(setup)
    try:
        browser.get(base + "/sites/S1")
        log_in(browser, SITE1)
        until(browser, lambda d: text_of(d, "on-site") == "300", "three hundred inside")
        counts = until(browser, lambda d: d.execute_script("""return Object.fromEntries([...document.querySelectorAll(
            '#employers li')].map(li => [li.dataset.employer, li.querySelector('.count').textContent]))"""), "counts")
        assert counts == {name: str(count) for name, count in employers.items()}
        assert len(browser.find_elements("css selector", "#inside tr[data-worker]")) == 300
        browser.find_element("id", "search").send_keys("工人217")
        until(browser, lambda d: [r.get_attribute("data-worker") for r in d.find_elements(
            "css selector", "#inside tr[data-worker]")] == ["W217"], "one found among 300")
        assert no_sideways_scroll(browser)
    finally:
        stop_process(web, signal.SIGKILL)


# ---------------------------------------------------------------------------------------------- roll-call


def test_roll_call_on_screen_and_on_paper(site, browser):
    open_site(browser, site.base)
    assert not browser.find_element("id", "rollcall").is_displayed()
    browser.find_element("id", "rollcall-toggle").click()
    until(browser, lambda d: d.find_element("id", "rollcall").is_displayed(), "the roll-call shown")
    everyone = len(CREW) + 1  # and the stranger's card
    assert browser.find_element("id", "rollcall-summary").get_attribute("data-missing") == str(everyone)
    for key in ("w:W1", "w:W4", f"c:{STRANGER}"):
        box = browser.find_element("css selector", f"#rollcall input[data-key='{key}']")
        browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", box)
        box.click()
    until(browser, lambda d: d.find_element("id", "rollcall-summary").get_attribute("data-missing") == str(everyone - 3),
          "three ticked off")
    missing = browser.execute_script(
        "return [...document.querySelectorAll('#rollcall-missing li')].map(li => li.dataset.key)")
    assert sorted(missing) == ["w:W2", "w:W3", "w:W5", "w:W6"]
    assert "仍缺：4" in text_of(browser, "rollcall-summary")
    assert no_sideways_scroll(browser)
    # The ticks survive the next live update (and a reload, within this tab).
    browser.refresh()
    until(browser, lambda d: d.find_element("id", "rollcall-summary").get_attribute("data-missing") == "4",
          "the ticks kept")

    # On paper: only the list, grouped by employer, everyone inside with card, time, gate and an empty box.
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
    try:
        assert browser.find_element("id", "rollcall").is_displayed()
        for hidden in ("trouble", "h-headcount", "inside", "gates", "attendance", "rollcall-summary", "lang-switch"):
            assert not browser.find_element("id", hidden).is_displayed(), hidden
        paper = text_of(browser, "rollcall")
        for worker, name, _, card in CREW:
            assert name in paper and card in paper and f"({worker})" in paper
        assert STRANGER in paper and "华建劳务 (3)" in paper and "中铁劳务 (2)" in paper
        boxes = [b for b in browser.find_elements("css selector", "#rollcall .box") if b.is_displayed()]
        assert len(boxes) == everyone
        assert not [b for b in browser.find_elements("css selector", "#rollcall input") if b.is_displayed()]
        assert "场内 7 人" in text_of(browser, "rollcall-printed")
    finally:
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})


# ---------------------------------------------------------------------------------------------- days


def test_a_past_day_with_flags_in_words(site, browser):
    open_site(browser, site.base)
    day = browser.find_element("id", "day")
    browser.execute_script("arguments[0].value = arguments[1]; arguments[0].dispatchEvent(new Event('change'))",
                           day, PAST_DAY)
    until(browser, lambda d: PAST_DAY in text_of(d, "attendance-date"), "the past day")
    until(browser, lambda d: len(d.find_elements("css selector", "#attendance tr[data-worker]")) == 1, "its record")
    flags = browser.execute_script("""return Object.fromEntries([...document.querySelectorAll(
        "#attendance tr[data-worker='W1'] li[data-flag]")].map(li => [li.dataset.flag, li.textContent]))""")
    assert flags == {"repeated_in": "连续两次进场，中间没有出场", "late_upload": "打卡迟迟才送达银行"}
    row = text_of(browser, "attendance")
    assert "repeated_in" not in row and "late_upload" not in row
    assert "08:00" in row and "17:00" in row and "张伟" in row
    browser.find_element("id", "day-today").click()
    today = json.loads(get(site.base + "/api/sites/S1/attendance", SITE1)[2])  # how many depends on the hour
    until(browser, lambda d: sorted(r.get_attribute("data-worker") for r in d.find_elements(
        "css selector", "#attendance tr[data-worker]")) == sorted(r["worker"] for r in today), "today again")
    assert no_sideways_scroll(browser)


# ---------------------------------------------------------------------------------------------- sign-in by link


def link(site, *args: str) -> str:
    return site.setup.json("web", "link", "--site", "S1", "--url", site.base, *args)["url"]


def test_sign_in_by_link_once_and_sign_out(site, browser):
    url = link(site)
    secret = url.split("#", 1)[1]
    assert "/signin#" in url and len(secret) == 43
    with site.setup.store(readonly=True) as store:  # only the digest is kept
        held = store.execute("SELECT secret_sha256 FROM web_signin_links").fetchall()
    assert held and all(secret not in row[0] for row in held)

    browser.get(url)
    until(browser, lambda d: d.current_url.endswith("/sites/S1"), "the site page after the link")
    until(browser, lambda d: text_of(d, "on-site") == str(len(CREW)), "figures through the session")
    assert secret not in browser.current_url
    assert browser.execute_script("return history.length") <= 2
    assert browser.execute_script("return localStorage.getItem('collector-token')") is None
    cookie = browser.get_cookie("collector_session")
    assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict" and cookie["secure"] is False
    assert secret != cookie["value"] and browser.execute_script("return document.cookie") == ""
    # The session reads its own site only.
    session = {"Cookie": f"collector_session={cookie['value']}"}
    assert get(site.base + "/api/sites/S1/headcount", headers=session)[0] == 200
    assert get(site.base + "/api/sites/S2/headcount", headers=session)[0] == 403
    assert get(site.base + "/api/quarantine", headers=session)[0] == 403

    # The link works once.
    browser.get(url)
    until(browser, lambda d: "已使用或已过期" in text_of(d, "signin-message"), "a used link refused")
    # No "signing in…" above the refusal: the heading says it did not work.
    assert browser.find_element("tag name", "h1").text == "没能登录"
    assert secret not in browser.current_url

    # Sign-out ends the session on the server, not only in this browser.
    browser.get(site.base + "/sites/S1")
    until(browser, lambda d: d.find_element("id", "dashboard").is_displayed(), "the page again")
    browser.find_element("id", "forget").click()
    until(browser, lambda d: d.find_element("id", "login").is_displayed(), "the sign-in form after sign-out")
    assert get(site.base + "/api/sites/S1/headcount", headers=session)[0] == 401
    assert browser.get_cookie("collector_session") is None

    # An expired link is refused like a used one.
    from collector.signin import issue_link

    with site.setup.store() as store:
        old = issue_link(store, "S1", minutes=5, now=datetime.now(UTC) - timedelta(minutes=6))
    browser.get(old.url(site.base))
    until(browser, lambda d: "已使用或已过期" in text_of(d, "signin-message"), "an expired link refused")
    # The bank ends the site's sessions (a lost phone): an open page loses its live figures at once and
    # asks for a new sign-in.
    browser.get(link(site))
    until(browser, lambda d: text_of(d, "on-site") == str(len(CREW)), "signed in again")
    assert site.setup.json("web", "signout", "--site", "S1")["sessions_ended"] == 1
    until(browser, lambda d: d.find_element("id", "login").is_displayed(), "the sign-in form after the bank's signout")
    assert "登录已失效" in text_of(browser, "login-error")

    # Behind the bank's TLS proxy the cookie is Secure too.
    status, headers, body = post(site.base + "/api/signin", json.dumps({"secret": link(site)[-43:]}).encode(),
                                 headers={"X-Forwarded-Proto": "https"})
    assert status == 200 and json.loads(body)["next"] == "/sites/S1"
    assert headers["Set-Cookie"].endswith("; HttpOnly; SameSite=Strict; Secure")
    log = (site.setup.directory / "serve.log").read_text()
    assert secret not in log and cookie["value"] not in log and old.secret not in log


def test_sign_in_attempts_are_limited_and_checked(site):
    web, base = start_web(site.setup)  # its own process: a fresh count of attempts
    try:
        bogus = json.dumps({"secret": "A" * 43}).encode()
        assert post(base + "/api/signin", bogus, "text/plain")[0] == 415
        assert post(base + "/api/signin", bogus, headers={"Origin": "https://elsewhere.example"})[0] == 403
        assert post(base + "/api/signin", b"[1, 2")[0] == 400
        assert post(base + "/api/signin", b'{"secret": "' + b"A" * 100_000 + b'"}')[0] == 413
        assert post(base + "/api/signin", b'{"secret": 43}')[0] == 400
        assert post(base + "/api/signin", b"[" * 1000 + b"]" * 24)[0] == 400
        assert post(base + "/api/signin", b'{"secret": "\xff\xfe"}')[0] == 400
        statuses = [post(base + "/api/signin", bogus)[0] for _ in range(10)]
        assert statuses[:3] == [401] * 3 and statuses[3:] == [429] * 7  # ten attempts in all, the refused ones too
        status, headers, _ = post(base + "/api/signin", json.dumps({"secret": link(site)[-43:]}).encode())
        assert status == 429 and int(headers["Retry-After"]) > 0  # a good link too, until the window passes
    finally:
        stop_process(web, signal.SIGKILL)


def test_the_docs_screenshots_script_still_takes_them(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("screenshots", ROOT / "docs" / "screenshots.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    written = script.main(tmp_path / "img")
    sizes = {}
    for path in written:
        header = path.read_bytes()[:24]
        assert header[:8] == b"\x89PNG\r\n\x1a\n", path
        sizes[path.stem] = int.from_bytes(header[16:20], "big")
    assert sizes == {"foreman-desktop-zh": 1280, "foreman-phone-zh": 390, "foreman-phone-rollcall-zh": 390,
                     "foreman-print-zh": 800, "foreman-desktop-en": 1280, "foreman-phone-chart-zh": 390,
                     "worker-phone-calendar-zh": 390, "bank-desktop-days-zh": 1280}
    # docs/img holds what the script takes (run it: see its docstring), and no picture it no longer takes.
    kept = {p.name for p in (ROOT / "docs" / "img").glob("*.png")}
    assert {p.name for p in written} <= kept
    assert {p for p in kept if p.startswith(("foreman-", "worker-", "bank-"))} <= {p.name for p in written}


# ---------------------------------------------------------------------------------------------- a gate killed


def test_killing_a_gate_turns_the_banner_red_and_restarting_clears_it(tmp_path, broker, gate):
    collector = CollectorSetup.create(tmp_path / "collector", broker=broker, **{"web.tokens": {SITE1: "S1"}})
    collector.run("site", "add", "S1", "--timezone", "Asia/Shanghai")
    collector.run("gate", "add", gate.gate, "--site", gate.site, "--public-key", gate.public_key)
    daemon = collector.start()
    agent = web = browser = None
    try:
        wait_for(lambda: "connected to" in collector.log(), message="collector connected")
        agent = gate.start_agent()
        web, url = start_web(collector)
        browser = make_browser(tmp_path, size="1280,900")
        browser.get(url + "/sites/S1")
        log_in(browser, SITE1)
        until(browser, lambda d: "north" in text_of(d, "gates") and "gate_offline:north" not in banner_items(d)
              and "gate_never_seen:north" not in banner_items(d), "gate north reporting")
        gates = json.loads(get(url + "/api/gates?site=S1", SITE1)[2])
        # What may remain while the gate runs: its clock, on a machine without NTP.
        calm = {"gate_clock:north"} if gates[0]["clock_synced"] is False else set()
        until(browser, lambda d: set(banner_items(d)) == calm, "no other trouble while the gate runs")
        # A clock nobody on site can fix is for information, not red.
        assert browser.find_element("id", "trouble").get_attribute("data-state") == ("info" if calm else "ok")
        browser.execute_script("window.sameDocument = true")

        stop_process(agent, signal.SIGKILL)
        until(browser, lambda d: "gate_offline:north" in banner_items(d), "the offline gate in the banner", timeout=10)
        assert browser.find_element("id", "trouble").get_attribute("data-state") == "bad"
        # Red counts what must be acted on; a clock below it is marked as one to pass on to the bank.
        acting = browser.execute_script("return document.querySelectorAll('#trouble-list li[data-urgency=act]').length")
        title = text_of(browser, "trouble-title")
        assert acting >= 1 and (f"（{acting} 项）" in title or f"({acting})" in title), title
        items = banner_items(browser)  # an offline gate's clock may no longer be reported
        if "gate_clock:north" in items:
            assert items["gate_clock:north"].startswith(("（请转告银行）", "(tell the bank)"))
        assert "north" in banner_items(browser)["gate_offline:north"]

        agent = gate.start_agent()
        until(browser, lambda d: "gate_offline:north" not in banner_items(d), "the banner clearing", timeout=30)
        until(browser, lambda d: set(banner_items(d)) == calm, "only what was there before")
        assert browser.execute_script("return window.sameDocument") is True
    finally:
        if browser is not None:
            browser.quit()
        for process in (web, agent, daemon):
            if process is not None:
                stop_process(process, signal.SIGKILL)

"""Take the screenshots docs/foreman.md shows: the site page at desktop and phone size, in Chinese and
English, with the trouble banner and the roll-call; and the charts: the foreman's day on a phone, a
worker's calendar (docs/worker.md) and the bank's charts (docs/bank-ops.md). Run from the repository root:

    .venv/bin/python docs/screenshots.py [OUT_DIR]     # default: docs/img

It builds a site in a temporary directory (30 workers of three employers and four work teams inside, four
gates named as the site calls them: one offline, one whose punches are refused, one with an unsynchronised
clock), starts `collector serve` over it and
drives Debian's headless chromium (chromium, chromium-driver). Chinese needs a CJK font on the machine
taking the pictures (Debian: fonts-wqy-microhei or fonts-noto-cjk); the page itself downloads none.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from collector.ingest.pipeline import Incoming, Ingestor  # noqa: E402
from gate_agent.protocol import GateTopics, encode_punches, format_time  # noqa: E402
from tests.helpers import CollectorSetup, PunchFactory, heartbeat, start_web, stop_process  # noqa: E402

TOKEN = "screenshot-site-token-000001"
BANK = "screenshot-bank-token-000002"
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹"
GIVEN = ["伟", "芳", "强", "敏", "军", "磊", "洋", "勇", "杰", "涛"]
EMPLOYERS = [("华建劳务", 14), ("中铁劳务", 10), ("宏达建筑", 6)]
#: Work teams and their trades, dealt out in turn (every seventh worker has neither recorded).
TEAMS = [("钢筋班", "钢筋工"), ("木工班", "木工"), ("混凝土班", "混凝土工"), ("架子班", "架子工")]
#: What the site calls its gates.
GATE_NAMES = {"north": "北门", "south": "南门", "east": "东门", "west": "材料门"}


def build(directory: Path) -> CollectorSetup:
    setup = CollectorSetup.create(directory, broker=SimpleNamespace(port=1883),
                                  **{"web.tokens": {TOKEN: "S1", BANK: "*"}})
    gates = {name: PunchFactory(gate=name) for name in ("north", "south", "east", "west")}
    impostor = PunchFactory(gate="east")
    now = datetime.now(UTC).replace(microsecond=0)

    def ingest(store, factory, punch, when):
        Ingestor(store).ingest([Incoming(GateTopics("S1", factory.gate).punch, encode_punches([punch]),
                                         format_time(when))])

    with setup.store() as store:
        store.add_site("S1", timezone="Asia/Shanghai", name="滨江大厦项目")
        for name, factory in gates.items():
            store.add_gate("S1", name, factory.public_key, display=GATE_NAMES[name])
        number = 0
        cards = []
        for employer, count in EMPLOYERS:
            for _ in range(count):
                number += 1
                card = f"04A1B2C3D4{number:04X}"
                cards.append(card)
                team, trade = TEAMS[number % len(TEAMS)] if number % 7 else (None, None)
                store.add_worker(f"W{number:03d}", name=SURNAMES[number % len(SURNAMES)] + GIVEN[number % len(GIVEN)],
                                 employer=employer, cards=[card], sites=["S1"], team=team, trade=trade)
        # The days before, for the charts (a worker's calendar, the month's days): most came, some did not.
        for back in range(12, 0, -1):
            for index, card in enumerate(cards):
                if (index * 7 + back * 3) % (4 + index % 5) == 0:
                    continue
                came = now - timedelta(days=back, minutes=200 - 5 * index)
                ingest(store, gates["north"], gates["north"].next(card=card, direction="in", at=came), came)
                went = came + timedelta(hours=9, minutes=3 * index)
                ingest(store, gates["south"], gates["south"].next(card=card, direction="out", at=went), went)
        # Today: everyone came in; a few went out for a while and came back.
        for index, card in enumerate(cards):
            factory = gates["north" if index % 2 == 0 else "south"]
            when = now - timedelta(minutes=200 - 5 * (index + 1))
            ingest(store, factory, factory.next(card=card, direction="in", at=when), when)
            if index % 7 == 3:
                out, back_in = when + timedelta(minutes=20), when + timedelta(minutes=50)
                ingest(store, gates["south"], gates["south"].next(card=card, direction="out", at=out), out)
                ingest(store, gates["north"], gates["north"].next(card=card, direction="in", at=back_in), back_in)
        stranger = gates["south"].next(card="CAFEBABE", direction="in", at=now - timedelta(minutes=12))
        ingest(store, gates["south"], stranger, now - timedelta(minutes=12))
        for _ in range(4):
            ingest(store, impostor, impostor.next(at=now - timedelta(minutes=3)), now - timedelta(minutes=3))
        with store.transaction():
            for name in ("north", "south", "east"):
                store.save_status("S1", name, {"v": 1, "state": "online", **heartbeat(
                    gate=name, heartbeat_seconds=3600, synced=name != "south")}, format_time(now))
            store.save_status("S1", "west", {"v": 1, "state": "offline", "site": "S1", "gate": "west"},
                              format_time(now - timedelta(minutes=7)))
    return setup


def browser(profile: Path, lang: str, width: int, height: int):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--no-first-run", "--hide-scrollbars",
                     f"--user-data-dir={profile}", f"--window-size={max(width, 500)},{height}",
                     f"--lang={lang}", f"--accept-lang={lang}"):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {"intl.accept_languages": lang})
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 500})
    return driver


def wait(driver, script: str, name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not driver.execute_script(script):
        if time.monotonic() > deadline:
            driver.save_screenshot(f"/tmp/screenshots-{name}-failed.png")
            raise SystemExit(f"screenshots: {name}: the page did not get there: {script}")
        time.sleep(0.2)


def shoot(base: str, out: Path, work: Path, name: str, lang: str, width: int, height: int, rollcall: bool = False,
          paper: bool = False) -> Path:
    driver = browser(work / f"profile-{name}", lang, width, height)
    try:
        # The token is set on a page of the same origin that runs no script of its own (the site page, asking
        # for a token, would clear it), then the site page opens with it.
        driver.get(base + "/static/dashboard.css")
        driver.execute_script("localStorage.setItem('collector-token', arguments[0])", TOKEN)
        driver.get(base + "/sites/S1")
        wait(driver, "return document.getElementById('trouble').dataset.state === 'bad' && "
                     "document.querySelectorAll('#inside tr[data-worker]').length > 0", name)
        if rollcall:
            driver.find_element("id", "rollcall-toggle").click()
            for key in ("w:W001", "w:W002", "w:W015", "w:W025"):
                driver.execute_script("document.querySelector(`#rollcall input[data-key='${arguments[0]}']`).click()", key)
            driver.execute_script("document.getElementById('rollcall').scrollIntoView()")
        if paper:  # the print style sheet, as the printer gets it
            driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
        time.sleep(0.5)
        path = out / f"{name}.png"
        driver.save_screenshot(str(path))
        return path
    finally:
        driver.quit()


def shoot_chart(base: str, out: Path, work: Path, name: str, *, width: int, height: int, token: str | None,
                page: str, chart: str, before=None) -> Path:
    """A page scrolled to one of its charts (drawn by the server: collector/charts/)."""
    driver = browser(work / f"profile-{name}", "zh-CN", width, height)
    try:
        if token is not None:
            driver.get(base + "/static/dashboard.css")
            driver.execute_script("localStorage.setItem('collector-token', arguments[0])", token)
        driver.get(page if page.startswith("http") else base + page)
        if before is not None:
            before(driver, name)
        wait(driver, f"return document.querySelector('{chart} svg') !== null", name)
        driver.execute_script("document.querySelector(arguments[0]).closest('section').scrollIntoView()", chart)
        time.sleep(0.5)
        path = out / f"{name}.png"
        driver.save_screenshot(str(path))
        return path
    finally:
        driver.quit()


def show_days(driver, name: str) -> None:
    wait(driver, "return document.getElementById('days-site').value === 'S1'", name)
    driver.find_element("css selector", "#days-form button[type=submit]").click()


def charts(setup: CollectorSetup, base: str, out: Path, work: Path) -> list[Path]:
    link = setup.json("worker", "link", "--worker", "W002", "--base-url", base, "--by", "screenshots")["url"]
    return [shoot_chart(base, out, work, "foreman-phone-chart-zh", width=390, height=844, token=TOKEN,
                        page="/sites/S1", chart="#today-chart"),
            shoot_chart(base, out, work, "worker-phone-calendar-zh", width=390, height=844, token=None, page=link,
                        chart="#calendar"),
            shoot_chart(base, out, work, "bank-desktop-days-zh", width=1280, height=1100, token=BANK, page="/",
                        chart="#days-chart", before=show_days)]


def main(out: Path) -> list[Path]:
    if not subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True).stdout.strip():
        print("screenshots: no CJK font here (apt-get install fonts-wqy-microhei): Chinese would show as boxes",
              file=sys.stderr)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as temp:
        work = Path(temp)
        setup = build(work / "collector")
        web, base = start_web(setup)
        try:
            return [shoot(base, out, work, "foreman-desktop-zh", "zh-CN", 1280, 900),
                    shoot(base, out, work, "foreman-phone-zh", "zh-CN", 390, 844),
                    shoot(base, out, work, "foreman-phone-rollcall-zh", "zh-CN", 390, 844, rollcall=True),
                    shoot(base, out, work, "foreman-print-zh", "zh-CN", 800, 1100, paper=True),
                    shoot(base, out, work, "foreman-desktop-en", "en-US", 1280, 900),
                    *charts(setup, base, out, work)]
        finally:
            stop_process(web, signal.SIGKILL)


if __name__ == "__main__":
    for written in main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "img"):
        print(written)

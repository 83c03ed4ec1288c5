"""The charts drawn on the server (collector/charts/), read back from the SVG itself: the foreman's day
(bars of ins and outs per hour, the headcount's steps) against known punches and the live headcount, the
month's days per worker against the 考勤表's count, the arrears in yuan from fen, a worker's calendar;
labels from outside made harmless; no data drawn as no data; the routes that serve them and
`collector chart`. The drawing in a real browser: tests/test_charts_browser.py."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from collector import money
from collector.attendance.headcount import headcount
from collector.charts.arrears import arrears_chart, arrears_figures
from collector.charts.calendar import calendar_chart, calendar_figures
from collector.charts.day import day_chart, day_figures
from collector.charts.month import MOST_BARS, month_chart, month_figures
from collector.charts.svg import WIDTH, text_width, visible, yuan
from collector.charts.words import Words
from collector.config import load_config
from collector.ingest.pipeline import Incoming, Ingestor
from collector.web.app import WebApp
from collector.workers import disputes, links
from gate_agent.protocol import GateTopics, encode_punches, format_time
from tests import test_wages
from tests.helpers import CollectorSetup, PunchFactory
from tests.read_histories import BASE, SITES, Bank, histories
from tests.test_wages_payments import NETS, approve, bank_return, batch, credits, paid_day
from tests.test_web_access import asgi

SVG = "{http://www.w3.org/2000/svg}"
SHANGHAI = ZoneInfo("Asia/Shanghai")
SITE_TOKEN, BANK_TOKEN = "site-one-manager-token-0001", "bank-ops-token-all-sites-0003"
SCRIPT_NAME = '<script>alert("x")</script>&'
#: 2026-12-11 13:30 at the site: the day the foreman looks at.
DAY = date(2026, 12, 11)
month = test_wages.month


def local(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=SHANGHAI)


NOW = local("2026-12-11 13:30").astimezone(UTC)


def parse(text: str) -> ET.Element:
    """The chart as XML: one <svg> with a viewBox, as wide as its container."""
    root = ET.fromstring(text)
    assert root.tag == SVG + "svg" and root.get("width") == "100%"
    assert root.get("viewBox").startswith(f"0 0 {WIDTH} ")
    assert root.find(SVG + "title") is not None
    return root


def texts(root: ET.Element) -> list[str]:
    return ["".join(node.itertext()) for node in root.iter(SVG + "text")]


def rects(root: ET.Element, **data: str) -> list[ET.Element]:
    return [r for r in root.iter(SVG + "rect") if all(r.get(f"data-{k}") == v for k, v in data.items())]


def panel(root: ET.Element, name: str) -> ET.Element:
    return next(g for g in root.iter(SVG + "g") if g.get("data-panel") == name)


def steps_drawn(root: ET.Element) -> list[tuple[int, int]]:
    """The headcount's step line read back from its path: (minutes from midnight, workers on site)."""
    group = panel(root, "headcount")
    top, height, axis = (float(group.get(k)) for k in ("data-top", "data-height", "data-max"))
    left, width, seconds = (float(group.get(k)) for k in ("data-left", "data-width", "data-seconds"))
    line = next(p for p in group.iter(SVG + "path") if p.get("data-series") == "headcount").get("d")
    commands = re.findall(r"([MHV])([-0-9. ]+)", line)
    base = top + height

    def minutes(x: float) -> int:
        return round((x - left) / width * seconds / 60)

    def count(y: float) -> int:
        value = (base - y) * axis / height
        assert abs(value - round(value)) < 0.01
        return round(value)

    x, y = (float(v) for v in commands[0][1].split())
    found = [(minutes(x), count(y))]
    for (kind, value), following in zip(commands[1:], commands[2:] + [("", "")], strict=True):
        if kind == "H" and following[0] == "V":
            found.append((minutes(float(value)), count(float(following[1]))))
    return found


class Site:
    """Site S1 on 2026-12-10 and 11 (Shanghai): a night shift across midnight, a day still open, a split
    day, an IN without an OUT the day before, a stranger's card, a worker named like markup."""

    CARDS = {f"W{n}": f"04A1B2C3D4E5{n:02X}" for n in range(1, 8)}

    def __init__(self, directory, db=None):
        self.setup = CollectorSetup.create(directory, broker=SimpleNamespace(port=1883), db=db,
                                           **{"web.tokens": {SITE_TOKEN: "S1", BANK_TOKEN: "*"}})
        self.north, self.south = PunchFactory(gate="north"), PunchFactory(gate="south")
        with self.setup.store() as store:
            store.add_site("S1", timezone="Asia/Shanghai", name="江畔<大厦>")
            store.add_gate("S1", "north", self.north.public_key)
            store.add_gate("S1", "south", self.south.public_key)
            for worker, card in self.CARDS.items():
                store.add_worker(worker, name=SCRIPT_NAME if worker == "W6" else f"工人{worker}",
                                 employer="华建劳务", cards=[card], sites=["S1"])
        self.tap("W1", "2026-12-10 22:00", "in")
        self.tap("W4", "2026-12-10 08:00", "in")  # never out: the headcount let it go at 24:00
        self.tap("W1", "2026-12-11 06:00", "out")
        self.tap("W2", "2026-12-11 07:10", "in")
        self.tap("W3", "2026-12-11 07:40", "in")
        self.tap("STRANGER", "2026-12-11 08:00", "in")
        self.tap("W5", "2026-12-11 08:15", "in")
        self.tap("W5", "2026-12-11 08:50", "out")
        self.tap("W5", "2026-12-11 09:05", "in")
        self.tap("W6", "2026-12-11 10:30", "in")
        self.tap("W6", "2026-12-11 11:00", "out")
        self.tap("W5", "2026-12-11 12:00", "out")

    def tap(self, worker: str, when: str, direction: str) -> None:
        gate = self.north if direction == "in" else self.south
        moment = local(when).astimezone(UTC)
        punch = gate.next(card=self.CARDS.get(worker, "0499AABBCCDDEE"), direction=direction, at=moment)
        with self.setup.store() as store:
            Ingestor(store).ingest([Incoming(GateTopics("S1", gate.gate).punch, encode_punches([punch]),
                                             format_time(moment + timedelta(seconds=2)))])


@pytest.fixture
def site(tmp_path):
    return Site(tmp_path / "collector")


# ---------------------------------------------------------------------------------------------- the foreman's day


def test_the_foremans_day_is_what_the_gates_saw_on_both_engines(tmp_path, database):
    site = Site(tmp_path / "collector", database)
    with site.setup.store() as store:
        figures = day_figures(store, "S1", DAY, now=NOW)
        inside = headcount(store, "S1", NOW)
    root = parse(day_chart(figures, Words("zh-CN")))
    # Ins and outs per hour of the site's clock: the stranger's card is not counted; W1's OUT at 06:00
    # closes a shift of the night before.
    assert {int(r.get("data-hour")): int(r.get("data-count")) for r in rects(root, kind="in")} == \
        {7: 2, 8: 1, 9: 1, 10: 1}
    assert {int(r.get("data-hour")): int(r.get("data-count")) for r in rects(root, kind="out")} == \
        {6: 1, 8: 1, 11: 1, 12: 1}
    hours = panel(root, "hours")
    top, height, axis = (float(hours.get(k)) for k in ("data-top", "data-height", "data-max"))
    for bar in rects(root, kind="in") + rects(root, kind="out"):  # each as tall as its count, standing on the axis
        assert float(bar.get("height")) == pytest.approx(int(bar.get("data-count")) * height / axis, abs=0.01)
        assert float(bar.get("y")) + float(bar.get("height")) == pytest.approx(top + height, abs=0.01)
    # The headcount from midnight: W1 still in from the night before, then each IN and OUT; W4's IN of
    # the day before without an OUT is gone at midnight, as the live headcount let it go.
    assert steps_drawn(root) == [(0, 1), (6 * 60, 0), (7 * 60 + 10, 1), (7 * 60 + 40, 2), (8 * 60 + 15, 3),
                                 (8 * 60 + 50, 2), (9 * 60 + 5, 3), (10 * 60 + 30, 4), (11 * 60, 3),
                                 (12 * 60, 2)]
    assert inside["on_site"] == 2 == figures["now"], "the line ends now, at the headcount's own figure"
    said = texts(root)
    assert "最多 4 人在场（10:30）" in said and "现在 2 人" in said
    assert "工地当地时间（Asia/Shanghai）；未登记的卡不计入。" in said
    assert [t for t in said if t.endswith("时")][:3] == ["0时", "3时", "6时"]
    english = parse(day_chart(figures, Words("en")))
    assert "Most on site: 4 (10:30)" in texts(english) and "Now: 2" in texts(english)


def test_a_past_day_runs_to_its_end_and_a_day_with_nobody_says_so(site):
    with site.setup.store() as store:
        yesterday = day_figures(store, "S1", DAY - timedelta(days=1), now=NOW)
        before = day_figures(store, "S1", date(2026, 12, 1), now=NOW)
        future = day_figures(store, "S1", DAY + timedelta(days=1), now=NOW)
    assert yesterday["now"] is None and yesterday["stop"] == yesterday["seconds"] == 24 * 3600
    assert steps_drawn(parse(day_chart(yesterday, Words()))) == [(0, 0), (8 * 60, 1), (22 * 60, 2)]
    for nothing in (before, future):
        root = parse(day_chart(nothing, Words()))
        assert rects(root, empty="1") and texts(root) == ["这一天还没有人进出。"]
        assert not rects(root, kind="in") and not list(root.iter(SVG + "path"))


def test_a_day_the_clocks_change_has_its_own_hours(tmp_path):
    """London leaves summer time on 2026-10-25: a day of 25 hours, the hour 1 twice."""
    setup = CollectorSetup.create(tmp_path / "c", broker=SimpleNamespace(port=1883))
    gate = PunchFactory(site="L1", gate="north")
    with setup.store() as store:
        store.add_site("L1", timezone="Europe/London")
        store.add_gate("L1", "north", gate.public_key)
        store.add_worker("W1", name="Ann", cards=["04A1B2C3D4E5F6"], sites=["L1"])
        for at, direction in ((datetime(2026, 10, 25, 0, 30, tzinfo=UTC), "in"),
                              (datetime(2026, 10, 25, 1, 30, tzinfo=UTC), "out")):
            punch = gate.next(card="04A1B2C3D4E5F6", direction=direction, at=at)
            Ingestor(store).ingest([Incoming(GateTopics("L1", "north").punch, encode_punches([punch]),
                                             format_time(at))])
        figures = day_figures(store, "L1", date(2026, 10, 25), now=datetime(2026, 10, 27, tzinfo=UTC))
    assert [h["hour"] for h in figures["hours"]][:4] == [0, 1, 1, 2] and len(figures["hours"]) == 25
    root = parse(day_chart(figures, Words()))
    # 00:30 UTC is 01:30 summer time (the first hour 1); 01:30 UTC is 01:30 winter time (the second).
    assert [(r.get("data-index"), r.get("data-hour")) for r in rects(root, kind="in")] == [("1", "1")]
    assert [(r.get("data-index"), r.get("data-hour")) for r in rects(root, kind="out")] == [("2", "1")]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories(max_punches=30), minutes=st.integers(0, 20 * 60))
def test_the_day_chart_keeps_its_invariants_over_any_history(history, minutes):
    """Whatever the punches (night shifts, forgotten OUTs, toggles, late uploads, voids, New York's fall
    back): the line ends at the live headcount, never below zero; every IN and OUT of a shift of the day
    is one bar's count; the SVG says what the figures say. Looked at as a bank sees it: after the gates
    made their punches, with manual ones up to a day ahead (what `punch add` accepts)."""
    latest = max([p.at for p in history.gate_punches] + [m.at - timedelta(hours=23) for m in history.manual]
                 + [BASE])
    now = latest + timedelta(minutes=minutes)
    bank = Bank(setup=lambda folder, url: CollectorSetup.create(folder, broker=SimpleNamespace(port=1883), db=url))
    try:
        bank.write(history)
        store = bank.store
        for site, (zone_name, _) in SITES.items():
            today = now.astimezone(ZoneInfo(zone_name)).date()
            for day in (today - timedelta(days=1), today):
                figures = day_figures(store, site, day, now=now)
                assert all(count >= 0 for _, count in figures["steps"])
                if day == today:
                    assert figures["now"] == headcount(store, site, now)["on_site"]
                    event(f"on site now: {min(figures['now'], 2)}")
                from collector.attendance.reports import attendance

                shifts = [s for r in attendance(store, site, day - timedelta(days=1), day, now=now) for s in r["shifts"]]
                assert sum(h["in"] for h in figures["hours"]) == sum(1 for s in shifts if s["in"]
                                                                    and s["in"][:10] == day.isoformat())
                assert sum(h["out"] for h in figures["hours"]) == sum(1 for s in shifts if s["out"]
                                                                     and s["out"][:10] == day.isoformat())
                root = parse(day_chart(figures, Words()))
                if rects(root, empty="1"):
                    continue
                for kind in ("in", "out"):
                    assert {int(r.get("data-index")): int(r.get("data-count")) for r in rects(root, kind=kind)} == \
                        {i: h[kind] for i, h in enumerate(figures["hours"]) if h[kind]}
                assert [count for _, count in steps_drawn(root)] == [count for _, count in figures["steps"]]
    finally:
        bank.close()


# ---------------------------------------------------------------------------------------------- the month


def test_the_months_days_are_the_timesheets_count_most_first(site):
    with site.setup.store() as store:
        figures = month_figures(store, "S1", "2026-12", now=NOW)
    root = parse(month_chart(figures, Words()))
    rows = [g for g in root.iter(SVG + "g") if g.get("data-row") is not None]
    # W1's night shift is a full day; W5's split day (3 h 30) and W6's half hour are half days; an open
    # day and an IN without OUT are to check; W7 is assigned and never came.
    assert [(g.get("data-worker"), g.get("data-days"), g.get("data-review")) for g in rows] == [
        ("W1", "1", "0"), ("W5", "0.5", "0"), ("W6", "0.5", "0"), ("W2", "0", "1"), ("W3", "0", "1"),
        ("W4", "0", "1"), ("W7", "0", "0")]
    span = WIDTH - 8  # the whole width is the whole month: 31 days, counted in halves
    for g in rows:
        days = next(r for r in g.iter(SVG + "rect") if r.get("data-kind") == "days")
        review = next(r for r in g.iter(SVG + "rect") if r.get("data-kind") == "review")
        halves = round(float(g.get("data-days")) * 2)
        assert int(days.get("width")) == halves * span // 62
        assert int(review.get("width")) == (halves + 2 * int(g.get("data-review"))) * span // 62 - halves * span // 62
    said = texts(root)
    assert "7 人，合计出勤 2 天，待核 3 天" in said
    assert "工人W1 W1" in said and "1 天" in said and "0 天 · 待核 1" in said
    assert f"{SCRIPT_NAME} W6" in said, "a name like markup is text, never markup"


def test_a_site_of_many_workers_is_counted_by_days_worked():
    workers = [{"worker": f"W{n:03d}", "name": None, "employer": None, "days": float(n % 4) + (0.5 if n == 7 else 0),
                "review": 0} for n in range(MOST_BARS + 10)]
    root = parse(month_chart({"site": "S1", "site_name": "S1", "month": "2026-12", "month_days": 31,
                              "workers": workers}, Words()))
    rows = {g.get("data-days"): int(g.get("data-workers")) for g in root.iter(SVG + "g") if g.get("data-row")}
    assert rows == {"3.5": 1, "3": 14, "2": 15, "1": 15, "0": 15}
    assert sum(rows.values()) == len(workers) and "人数较多，按出勤天数统计人数" in texts(root)
    longest = max(rects(root, kind="workers"), key=lambda r: int(r.get("width")))
    assert int(longest.get("width")) == WIDTH - 8


# ---------------------------------------------------------------------------------------------- arrears and pay


def test_arrears_and_pay_in_pictures_from_integer_fen(month, tmp_path):
    approve(month)
    batch(month, tmp_path / "b1.xml")
    with month.setup.store() as store:  # as if made before the pay day
        store.execute("UPDATE wage_batches SET made_at = '2026-11-13T02:00:00.000Z'")
    out = tmp_path / "arrears.svg"
    said = month.cli("chart", "arrears", "--as-of", "2026-11-16", "--out", str(out)).stdout
    total = sum(NETS.values())
    assert f"{out}: wages overdue at 1 site(s): {money.yuan(total)} yuan, 5 worker(s), 1 employer(s)" in said
    assert oct(out.stat().st_mode & 0o777) == "0o600" and out.read_text().startswith("<?xml")
    root = parse(out.read_text())
    by_site, by_employer = panel(root, "by_site"), panel(root, "by_employer")
    site_row = next(g for g in by_site.iter(SVG + "g") if g.get("data-row") == "0")
    assert (site_row.get("data-site"), int(site_row.get("data-overdue"))) == ("S1", total)
    assert "2,487.56 元 · 5 人" in texts(site_row) and "华建劳务" in "".join(texts(by_employer))
    bar = rects(site_row, kind="overdue")[0]
    assert int(bar.get("width")) == WIDTH - 8, "the largest amount spans the width"
    assert "拖欠工资（截至 2026-11-16）" in texts(root) and "拖欠 2,487.56 元，涉及 5 人" in texts(root)
    assert month.cli("chart", "arrears", "--as-of", "2026-11-16", "--out", str(out), check=False).returncode == 1

    # Paid: W1's October days are paid on W1's calendar; W2's credit failed, its days are worked only.
    ids = credits(tmp_path / "b1.xml")
    month.cli("wages", "paid", "--by", "ops-sun", bank_return(tmp_path / "r.csv", [
        *[(ids[w][0], "paid", f"V{w}", paid_day(), "") for w in ("W1", "W3", "W4", "W5")],
        (ids["W2"][0], "failed", "", "", "account closed")]))
    with month.setup.store() as store:
        w1 = calendar_figures(store, "W1", "2026-10", now=datetime(2026, 12, 7, tzinfo=UTC))
        w2 = calendar_figures(store, "W2", "2026-10", now=datetime(2026, 12, 7, tzinfo=UTC))
    assert {d["date"][8:]: d["state"] for d in w1["days"] if d["state"] != "absent"} == \
        {"14": "paid", "15": "paid", "16": "paid", "17": "paid"}
    assert {d["date"][8:]: d["state"] for d in w2["days"] if d["state"] != "absent"} == \
        {"20": "worked", "21": "worked", "22": "worked"}
    root = parse(calendar_chart(w1, Words()))
    cells = {g.get("data-date"): g for g in root.iter(SVG + "g") if g.get("data-date")}
    assert len(cells) == 31 and cells["2026-10-14"].get("data-state") == "paid"
    assert "¥" in texts(cells["2026-10-14"]) and "10月14日：工资已发" in "".join(cells["2026-10-14"].itertext())
    assert "¥ 工资已发 4 天" in texts(root) and "无记录 27 天" in texts(root)

    again = tmp_path / "arrears-now.html"
    month.cli("chart", "arrears", "--fresh", "--out", str(again), "--lang", "en")
    page = again.read_text()
    assert page.startswith("<!DOCTYPE html>") and "@page { size: A4" in page and "<script" not in page
    assert f"{yuan(NETS['W2'])} yuan · 1" in page, "only W2's failed credit is still owed"


def test_arrears_are_drawn_honestly_whatever_the_report_holds(site):
    report = {"sites": [
        {"site": "S1", "as_of": "2026-12-11", "overdue_fen": 123456789, "overdue_estimate_fen": 5000000,
         "overdue_workers": 12, "error": None},
        {"site": "S2", "as_of": None, "overdue_fen": 0, "overdue_estimate_fen": 0, "overdue_workers": 0,
         "error": "not computed yet"}],
        "employers": [{"site": "S1", "employer": "", "overdue_fen": 3, "overdue_estimate_fen": 0, "overdue_workers": 1},
                      {"site": "S1", "employer": "华建\u202e劳务<b>", "overdue_fen": 123456786,
                       "overdue_estimate_fen": 5000000, "overdue_workers": 11}]}
    with site.setup.store() as store:
        figures = arrears_figures(store, report)
    text = arrears_chart(figures, Words())
    root = parse(text)
    rows = [g for g in root.iter(SVG + "g") if g.get("data-row") is not None]
    assert [(g.get("data-site"), g.get("data-overdue"), g.get("data-estimate")) for g in rows] == [
        ("S1", "123456789", "5000000"), ("S2", "0", "0"), ("S1", "123456786", "5000000"), ("S1", "3", "0")]
    said = ["".join(texts(g)) for g in rows]
    assert said[0] == "江畔<大厦> (S1)1,234,567.89 元 · 12 人" and said[1] == "S2未能计算"
    assert said[2].startswith("江畔<大厦> · 华建\\u202e劳务") and "（未登记用工单位）" in said[3]
    assert "\u202e" not in text and "<b>" not in text
    first = rows[0]
    overdue, estimate = rects(first, kind="overdue")[0], rects(first, kind="estimate")[0]
    span, largest = WIDTH - 8, 123456789 + 5000000
    assert int(overdue.get("width")) == 123456789 * span // largest
    assert int(estimate.get("x")) + int(estimate.get("width")) == 4 + span
    assert estimate.get("fill").startswith("url(#arrears-"), "an estimate is striped: it prints apart in grey"
    said = texts(root)  # the caption, wrapped to the width
    assert said[:2] == ["拖欠 1,234,567.89 元，涉及 12 人 · 另有约 50,000.00", "元尚未核准"]
    with pytest.raises(TypeError):
        yuan(1.5)
    nothing = {"sites": [{**report["sites"][0], "overdue_fen": 0, "overdue_estimate_fen": 0, "overdue_workers": 0}],
               "employers": []}
    with site.setup.store() as store:
        root = parse(arrears_chart(arrears_figures(store, nothing), Words()))
        assert rects(root, empty="1") and texts(root) == ["没有拖欠工资。"]
        assert texts(parse(arrears_chart(arrears_figures(store, {"sites": [], "employers": []}), Words()))) == \
            ["还没有工地。"]


# ---------------------------------------------------------------------------------------------- the worker's calendar


def test_the_workers_calendar_from_their_own_days_and_disputes(site):
    with site.setup.store() as store:
        disputes.file(store, "W3", site="S1", day="2026-12-11", note="我下午五点走的", today=DAY)
        found = {w: calendar_figures(store, w, "2026-12", now=NOW) for w in ("W1", "W3", "W4", "W5", "W7")}
        november = calendar_figures(store, "W1", "2026-11", now=NOW)

    def states(worker: str) -> dict[str, str]:
        return {d["date"][8:]: d["state"] for d in found[worker]["days"] if d["state"] not in ("absent", "future")}

    assert states("W1") == {"10": "worked"} and states("W3") == {"11": "disputed"}
    assert states("W4") == {"10": "flagged"} and states("W5") == {"11": "worked"} and states("W7") == {}
    assert [d["state"] for d in found["W1"]["days"]][11:] == ["future"] * 20 and found["W1"]["today"] == "2026-12-11"
    root = parse(calendar_chart(found["W3"], Words()))
    cells = [g for g in root.iter(SVG + "g") if g.get("data-date")]
    assert [g.get("data-date") for g in cells] == [f"2026-12-{d:02d}" for d in range(1, 32)]
    first = next(r for r in cells[0].iter(SVG + "rect"))
    assert float(first.get("x")) == 6 + 1 * 50, "2026-12-01 is a Tuesday: the second column (Monday first)"
    today = next(r for r in cells[10].iter(SVG + "rect"))
    assert today.get("stroke-width") == "2" and "诉" in texts(cells[10])
    assert texts(root)[:7] == ["一", "二", "三", "四", "五", "六", "日"]
    assert "诉 申诉中 1 天" in texts(root) and "无记录 10 天" in texts(root)
    nothing = parse(calendar_chart(found["W7"], Words("en")))
    assert "No record this month" in texts(nothing) and "Mon" in texts(nothing)
    assert {g.get("data-state") for g in nothing.iter(SVG + "g") if g.get("data-date")} == {"absent", "future"}
    assert {d["state"] for d in november["days"]} == {"absent"}


# ---------------------------------------------------------------------------------------------- hostile text


HOSTILE = ["<script>alert(1)</script>", "Zhang Wei (W001)\u202e)1000W( ", "a\x00b\x1bc\u200bd\ufeff",
           "\ud800lone", "é" + "\u0301" * 40, "王" * 80, '"quoted" & \'single\'', "]]><!--"]


@pytest.mark.parametrize("name", HOSTILE, ids=range(len(HOSTILE)))
def test_a_hostile_label_is_drawn_as_text_and_never_reorders_the_line(name):
    workers = [{"worker": "W1", "name": name, "employer": name, "days": 3.0, "review": 1}]
    drawn = [month_chart({"site": "S1", "site_name": name, "month": "2026-12", "month_days": 31, "workers": workers},
                         Words(), titled=True),
             day_chart({"site": "S1", "site_name": name, "date": "2026-12-11", "zone": "Asia/Shanghai",
                        "seconds": 86400, "stop": 3600, "today": True, "hours": [{"hour": h, "in": 1, "out": 0}
                                                                                   for h in range(24)],
                        "steps": [[0, 1]], "peak": {"count": 1, "at": "00:00"}, "now": 1}, Words(), titled=True),
             arrears_chart({"as_of": [name], "sites": [{"site": "S1", "name": name, "as_of": None, "error": None,
                                                        "overdue_fen": 100, "estimate_fen": 0, "workers": 1}],
                            "employers": [{"site": "S1", "name": name, "employer": name, "overdue_fen": 100,
                                           "estimate_fen": 0, "workers": 1}]}, Words(), titled=True)]
    for text in drawn:
        root = parse(text)  # well-formed XML: no control character or lone surrogate made it through
        assert {node.tag for node in root.iter()} <= {SVG + t for t in ("svg", "title", "desc", "defs", "pattern",
                                                                        "rect", "g", "text", "path", "circle")}
        assert not any(c in text for c in "\u202e\u200b\ufeff\x00\x1b")
        assert "<script" not in text and "<!--" not in text
        for node in root.iter(SVG + "text"):  # a label never runs past the chart's width
            assert text_width("".join(node.itertext()), float(node.get("font-size"))) <= WIDTH - 4
    assert visible("a\u202eb") == "a\\u202eb" and visible("x\ud800") == "x\\ud800"
    assert visible("王" * 80, limit=120).endswith("…") and text_width(visible("王" * 80, limit=120)) <= 120


# ---------------------------------------------------------------------------------------------- the routes


def test_the_routes_serve_svg_in_the_pages_language(site):
    app = WebApp(load_config(site.setup.config_path)).app
    answer = asgi(app, "GET", "/api/sites/S1/charts/day", token=SITE_TOKEN, query="date=2026-12-11")
    assert answer.status == 200 and answer.headers["content-type"] == "image/svg+xml; charset=utf-8"
    assert answer.headers["x-content-type-options"] == "nosniff" and "script-src 'self'" in \
        answer.headers["content-security-policy"]
    root = parse(answer.body.decode())
    assert sum(int(r.get("data-count")) for r in rects(root, kind="in")) == 5, "the day's five INs"
    english = asgi(app, "GET", "/api/sites/S1/charts/day", token=SITE_TOKEN, query="date=2026-12-11&lang=en",
                   headers={"accept-language": "zh-CN"})
    assert "In and out per hour" in texts(parse(english.body.decode()))
    by_header = asgi(app, "GET", "/api/sites/S1/charts/days", token=BANK_TOKEN, query="month=2026-12&lang=fr",
                     headers={"accept-language": "en-US,en;q=0.9"})
    assert "7 workers, 2 days worked, 3 to check" in texts(parse(by_header.body.decode()))
    for path, query in (("/api/sites/S1/charts/day", "date=2026-13-01"), ("/api/sites/S1/charts/day", "date=1999-01-01"),
                        ("/api/sites/S1/charts/days", "month=2026-1"), ("/api/sites/S1/charts/days", "month=1900-01")):
        refused = asgi(app, "GET", path, token=SITE_TOKEN, query=query)
        assert refused.status == 400 and "error" in json.loads(refused.body), (path, query)
    assert asgi(app, "GET", "/api/sites/S9/charts/day", token=BANK_TOKEN).status == 404
    arrears = asgi(app, "GET", "/api/charts/arrears", token=BANK_TOKEN)
    root = parse(arrears.body.decode())
    # The daemon has not kept S1's arrears yet: said so, never drawn as nothing owed.
    assert [("".join(texts(g))) for g in root.iter(SVG + "g") if g.get("data-row")] == ["江畔<大厦> (S1)未能计算"]

    with site.setup.store() as store:
        secret, _ = links.issue(store, "W3", by="ops")
        cookie, _ = links.open_session(store, secret)
        disputes.file(store, "W3", site="S1", day="2026-12-11", note="我下午五点走的", today=DAY)
        looks = len(store.access_log("W3"))
    calendar = asgi(app, "GET", "/api/worker/calendar", cookies={"worker_link": cookie}, query="month=2026-12")
    assert calendar.status == 200 and calendar.headers["content-type"].startswith("image/svg+xml")
    cells = {g.get("data-date"): g.get("data-state") for g in parse(calendar.body.decode()).iter(SVG + "g")
             if g.get("data-date")}
    assert cells["2026-12-11"] == "disputed" and len(cells) == 31
    assert asgi(app, "GET", "/api/worker/calendar", cookies={"worker_link": cookie}, query="month=26-12").status == 400
    with site.setup.store() as store:
        assert len(store.access_log("W3")) == looks, "the calendar is part of the page's look, not another"


def test_collector_chart_days_writes_a_new_file(site, tmp_path):
    out = tmp_path / "days.html"
    said = site.setup.run("chart", "days", "--site", "S1", "--month", "2026-12", "--out", str(out)).stdout
    assert said.strip() == f"{out}: days worked at S1 in 2026-12: 7 worker(s), 2 day(s), 3 to check"
    page = out.read_text()
    assert "<h1>江畔&lt;大厦&gt; 2026年12月 每人出勤天数</h1>" in page and "制图时间：" in page
    assert oct(out.stat().st_mode & 0o777) == "0o600" and "&lt;script&gt;" in page and "<script" not in page
    assert re.search(r"<svg [^>]*viewBox=", page)
    data = site.setup.json("chart", "days", "--site", "S1", "--month", "2026-12", "--out", str(tmp_path / "d.svg"))
    assert data == {"site": "S1", "month": "2026-12", "file": str(tmp_path / "d.svg"), "workers": 7, "days": 2.0,
                    "days_to_review": 3, "drawn": "per worker"}
    assert "每人出勤天数" in texts(parse((tmp_path / "d.svg").read_text()))[0], "a file of its own has its title"
    for args, message in ((["--out", str(tmp_path / "d.png")], "written as .svg or .html"),
                          (["--out", str(out)], "already exists"),
                          (["--site", "S9", "--out", str(tmp_path / "x.svg")], "site S9 does not exist")):
        base = ["chart", "days", "--site", "S1", "--month", "2026-12"]
        failed = site.setup.run(*base, *args, check=False)
        assert failed.returncode == 1 and message in failed.stderr, failed.stderr
    assert not (tmp_path / "x.svg").exists()


def test_every_chart_word_is_in_both_catalogs_with_the_same_placeholders():
    from collector.charts.words import _catalog

    zh, en = _catalog("zh-CN"), _catalog("en")
    assert {k for k in zh if k.startswith("chart.")} == {k for k in en if k.startswith("chart.")}
    for key in (k for k in zh if k.startswith("chart.")):
        assert sorted(re.findall(r"\{[a-z_]+\}", zh[key])) == sorted(re.findall(r"\{[a-z_]+\}", en[key])), key

"""A gate with a broken clock signs punches dated 9999-12-31 or 0001-01-01: the bank stores them once,
in the chain, acked and flagged ``clock_implausible``, and no read path (CLI, API, live stream,
/metrics, evidence) crashes on them, before or after they are voided. Dates asked for are bounded:
a clear one-line error, never a traceback or an endless loop."""

from __future__ import annotations

import json
import secrets
import signal
import urllib.error
import urllib.request
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from collector.attendance import days
from collector.attendance.headcount import headcount
from collector.attendance.reports import attendance, punch_rows
from collector.evidence.document import build_evidence
from collector.ingest.pipeline import Incoming, Ingestor
from collector.localtime import day_bounds, local_text
from gate_agent.protocol import GateTopics, encode_punches, format_time
from tests.helpers import BANK_KEY, BANK_PUBLIC, CollectorSetup, PunchFactory, cli, start_web, stop_process

LATEST = "9999-12-31T23:59:59.999Z"
EARLIEST = "0001-01-01T00:00:00.000Z"
EXTREMES = [LATEST, EARLIEST]
#: East of UTC the latest time has no local date; west of it the earliest has none.
SITES = {"E": "Asia/Shanghai", "W": "America/New_York"}
#: Each site's gate (gate ids are unique across sites).
GATE = {"E": "north", "W": "north-w"}
W1_CARD, W2_CARD = "04A1B2C3D4E5F6", "DEADBEEF"
BANK = secrets.token_urlsafe(24)


class Bank:
    """A collector database with sites E (Shanghai) and W (New York). At each, its gate signs:
    W1 in (3 h ago), a W1 punch at ``extreme``, W2 in (2 h ago), W1 out (1 h ago)."""

    def __init__(self, directory, extreme: str):
        self.extreme = extreme
        self.setup = CollectorSetup.create(directory, broker=SimpleNamespace(port=1883),
                                           **{"web.tokens": {BANK: "*"}})
        self.now = datetime.now(UTC).replace(microsecond=0)
        self.gates = {site: PunchFactory(site=site, gate=GATE[site]) for site in SITES}
        self.results = {}
        with self.setup.store() as store:
            for site, tz in SITES.items():
                store.add_site(site, timezone=tz)
                store.add_gate(site, GATE[site], self.gates[site].public_key)
            store.add_worker("W1", name="Zhang Wei", employer="Hua Jian", cards=[W1_CARD], sites=list(SITES))
            store.add_worker("W2", name="Li Na", employer="Hua Jian", cards=[W2_CARD], sites=list(SITES))
            for site, gate in self.gates.items():
                punches = [
                    gate.next(card=W1_CARD, direction="in", at=self.now - timedelta(hours=3)),
                    gate.next(card=W1_CARD, direction="in", time=extreme),  # signed as it is written
                    gate.next(card=W2_CARD, direction="in", at=self.now - timedelta(hours=2)),
                    gate.next(card=W1_CARD, direction="out", at=self.now - timedelta(hours=1)),
                ]
                message = Incoming(GateTopics(site, GATE[site]).punch, encode_punches(punches), format_time(self.now))
                self.results[site] = (Ingestor(store).ingest([message]), message)
            days.refresh(store)  # as the daemon keeps them (/metrics reads the kept days)

    def day(self, site: str) -> date:
        """The local date of W1's shift at ``site``."""
        return (self.now - timedelta(hours=3)).astimezone(ZoneInfo(SITES[site])).date()

    def period(self, site: str) -> tuple[str, str]:
        day = self.day(site)
        return (day - timedelta(days=1)).isoformat(), (day + timedelta(days=1)).isoformat()

    def run(self, *args, check: bool = True):
        result = self.setup.run(*args, check=check)
        assert "Traceback" not in result.stderr, result.stderr
        return result

    def json(self, *args):
        return json.loads(self.run(*args, "--json").stdout)

    def extreme_id(self, site: str) -> int:
        return next(row["id"] for row in self.json("punches", "--site", site) if row["time"] == self.extreme)


class Http:
    def __init__(self, base: str):
        self.base = base

    def get(self, path: str) -> tuple[int, bytes]:
        request = urllib.request.Request(self.base + path, headers={"Authorization": f"Bearer {BANK}"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                if response.headers.get_content_type() == "text/event-stream":
                    return response.status, first_update(response)
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def json(self, path: str):
        status, body = self.get(path)
        assert status == 200, (path, status, body)
        return json.loads(body)


def first_update(response) -> bytes:
    event = None
    for raw in response:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[len("event: "):]
        elif line.startswith("data: ") and event == "update":
            return line[len("data: "):].encode()
    raise AssertionError("the stream ended without an update")


@pytest.fixture(scope="module", params=EXTREMES, ids=["year-9999", "year-0001"])
def bank(request, tmp_path_factory):
    bank = Bank(tmp_path_factory.mktemp("bank") / "collector", request.param)
    process, base = start_web(bank.setup)
    bank.http = Http(base)
    yield bank
    stop_process(process, signal.SIGKILL)


# ---------------------------------------------------------------------------------------------- ingest


def test_the_punch_is_stored_once_in_the_chain_acked_and_flagged(bank):
    with bank.setup.store() as store:
        for site, (result, message) in bank.results.items():
            assert result.acks[(site, GATE[site])].seq == 4  # the gate may forget it: no resend loop
            assert result.counts["clock_implausible"] == 1
            rows = {row["seq"]: row for row in store.punches(site=site)}
            assert sorted(rows) == [1, 2, 3, 4]
            assert rows[2]["time"] == bank.extreme
            assert "clock_implausible" in rows[2]["flags"].split(",")
            assert "chain_break" not in ",".join(r["flags"] for r in rows.values())
            again = Ingestor(store).ingest([message])
            assert again.counts["duplicates"] == 4 and again.acks[(site, GATE[site])].seq == 4
        assert store.conflicts() == [] and store.quarantined() == [] and store.punch_count() == 8


def test_where_the_line_is_drawn(tmp_path):
    """A clock a little ahead is clock_future and still counts; a time before 2020 or more than a day
    after its receipt is clock_implausible and does not."""
    bank = Bank(tmp_path / "collector", LATEST)
    gate = bank.gates["W"]
    received = bank.now
    cases = {
        "2019-12-31T23:59:59.999Z": {"clock_implausible"},
        "2020-01-01T00:00:00.000Z": set(),
        format_time(received + timedelta(hours=2)): {"clock_future"},
        format_time(received + timedelta(hours=24)): {"clock_future"},
        format_time(received + timedelta(hours=24, milliseconds=1)): {"clock_future", "clock_implausible"},
    }
    punches = [gate.next(card=W2_CARD, direction="in", time=time) for time in cases]
    with bank.setup.store() as store:
        result = Ingestor(store).ingest([Incoming(GateTopics("W", GATE["W"]).punch, encode_punches(punches),
                                                  format_time(received))])
        assert result.acks[("W", GATE["W"])].seq == 4 + len(cases)
        assert result.counts["clock_implausible"] == 2
        stored = {row["time"]: set(filter(None, row["flags"].split(","))) - {"clock_backwards"}
                  for row in store.punches(site="W", gate=GATE["W"])}
        assert {time: stored[time] for time in cases} == cases
        listed = {row["time"]: set(row["flags"]) for row in punch_rows(store, "W")}
        assert all(("clock_implausible" in listed[time]) == ("clock_implausible" in flags)
                   for time, flags in cases.items())


def test_reads_do_not_depend_on_what_ingest_flagged(tmp_path):
    """A database written before the rule: the year-9999 punch carries only clock_future."""
    bank = Bank(tmp_path / "collector", LATEST)
    with bank.setup.store() as store, store.transaction():
        store.execute("UPDATE punches SET flags = 'clock_future' WHERE time = ?", (LATEST,))
    for site in SITES:
        assert bank.json("headcount", "--site", site)["on_site"] == 1
        extreme = next(row for row in bank.json("punches", "--site", site) if row["time"] == LATEST)
        assert "clock_implausible" in extreme["flags"]
        first, last = bank.period(site)
        assert {r["worker"]: r["worked_minutes"]
                for r in bank.json("attendance", "--site", site, "--from", first, "--to", last)}["W1"] == 120


# ---------------------------------------------------------------------------------------------- CLI


@pytest.mark.parametrize("site", SITES)
def test_cli_punch_listings_show_it_flagged(bank, site):
    rows = bank.json("punches", "--site", site)
    extreme = next(row for row in rows if row["time"] == bank.extreme)
    assert "clock_implausible" in extreme["flags"] and "late_upload" not in extreme["flags"]
    assert extreme["worker"] == "W1"
    text = bank.run("punches", "--site", site).stdout
    assert "4 punch(es)" in text and "clock_implausible" in text
    on_the_day = bank.json("punches", "--site", site, "--date", bank.day(site).isoformat())
    assert bank.extreme not in [row["time"] for row in on_the_day]


@pytest.mark.parametrize("site", SITES)
def test_cli_headcount_attendance_payroll_leave_it_out(bank, site):
    assert [w["worker"] for w in bank.json("headcount", "--site", site)["workers"]] == ["W2"]
    assert "1 on site" in bank.run("headcount", "--site", site).stdout
    first, last = bank.period(site)
    records = {r["worker"]: r for r in bank.json("attendance", "--site", site, "--from", first, "--to", last)}
    assert records["W1"]["worked_minutes"] == 120 and records["W1"]["status"] == "complete"
    assert "clock_implausible" not in records["W1"]["flags"]
    assert bank.run("attendance", "--site", site, "--from", first, "--to", last, "--csv").stdout.startswith("\ufeffworker,")
    assert "record(s)" in bank.run("attendance", "--site", site, "--date", bank.day(site).isoformat()).stdout
    pay = {r["worker"]: r for r in bank.json("payroll", "--site", site, "--from", first, "--to", last)}
    assert pay["W1"]["worked_minutes"] == 120 and pay["W1"]["days_present"] == 1
    assert bank.run("payroll", "--site", site, "--from", first, "--to", last).stdout


def test_cli_gates(bank):
    assert [(g["site"], g["max_seq"]) for g in bank.json("gates")] == [("E", 4), ("W", 4)]
    assert "stored through seq 4" in bank.run("gates").stdout


def test_evidence_of_the_worker_builds_and_verifies(bank, tmp_path):
    first, last = bank.period("E")
    with bank.setup.store() as store:
        document = build_evidence(store, "W1", date.fromisoformat(first), date.fromisoformat(last), key=BANK_KEY)
    times = [p["time"] for g in document["gates"] for c in g["chains"] for p in c["punches"]]
    assert bank.extreme in times  # the chain link is carried, not cut out
    assert sum(d["worked_minutes"] for d in document["days"]) == 240  # 2 h at each site
    out = tmp_path / "w1.json"
    bank.run("evidence", "--worker", "W1", "--from", first, "--to", last, "--out", str(out))
    assert "OK" in cli("collector", "verify", str(out), "--bank-key", BANK_PUBLIC).stdout


# ---------------------------------------------------------------------------------------------- API, stream, metrics


@pytest.mark.parametrize("site", SITES)
def test_api_and_live_stream(bank, site):
    assert bank.http.json(f"/api/sites/{site}/headcount")["on_site"] == 1
    records = bank.http.json(f"/api/sites/{site}/attendance?date={bank.day(site).isoformat()}")
    assert {r["worker"]: r["worked_minutes"] for r in records}["W1"] == 120
    assert [g["gate"] for g in bank.http.json(f"/api/gates?site={site}")] == [GATE[site]]
    live = bank.http.json(f"/api/sites/{site}/live")
    assert live["headcount"]["on_site"] == 1 and live["gates"][0]["max_seq"] == 4


def test_metrics(bank):
    status, body = bank.http.get("/metrics")
    assert status == 200, body
    text = body.decode()
    assert 'collector_site_on_site{site="E"} 1' in text and 'collector_site_on_site{site="W"} 1' in text


# ---------------------------------------------------------------------------------------------- after a void


@pytest.mark.parametrize("extreme", EXTREMES, ids=["year-9999", "year-0001"])
def test_every_read_path_after_the_punch_is_voided(tmp_path, extreme):
    bank = Bank(tmp_path / "collector", extreme)
    for site in SITES:
        bank.run("punch", "void", str(bank.extreme_id(site)), "--reason", "gate clock broken", "--by", "ops")
        voided = next(r for r in bank.json("punches", "--site", site) if r["time"] == extreme)
        assert {"void", "clock_implausible"} <= set(voided["flags"])
        assert "4 punch(es)" in bank.run("punches", "--site", site).stdout
        assert bank.json("headcount", "--site", site)["on_site"] == 1
        first, last = bank.period(site)
        records = bank.json("attendance", "--site", site, "--from", first, "--to", last)
        assert {r["worker"]: r["worked_minutes"] for r in records}["W1"] == 120
        assert bank.json("payroll", "--site", site, "--from", first, "--to", last)
    bank.run("gates")
    process, base = start_web(bank.setup)
    try:
        http = Http(base)
        for site in SITES:
            assert http.json(f"/api/sites/{site}/headcount")["on_site"] == 1
            assert http.json(f"/api/sites/{site}/attendance?date={bank.day(site).isoformat()}")
            assert http.json(f"/api/sites/{site}/live")["headcount"]["on_site"] == 1
        assert http.get("/metrics")[0] == 200
    finally:
        stop_process(process, signal.SIGKILL)


# ---------------------------------------------------------------------------------------------- the library itself


@pytest.mark.parametrize("extreme", EXTREMES)
@pytest.mark.parametrize("tz", ["Asia/Shanghai", "America/New_York", "Pacific/Kiritimati", "Pacific/Pago_Pago"])
def test_local_time_of_any_wire_time_never_overflows(extreme, tz):
    text = local_text(extreme, ZoneInfo(tz))
    assert text is None or text[:4] == extreme[:4]


@pytest.mark.parametrize("day", [date.min, date.max, date(1999, 12, 31), date(2101, 1, 1)])
def test_a_day_out_of_range_is_refused_not_overflowed(day):
    with pytest.raises(ValueError, match="outside"):
        day_bounds(day, ZoneInfo("America/New_York"))


def test_library_reports_refuse_dates_out_of_range(tmp_path):
    bank = Bank(tmp_path / "collector", LATEST)
    with bank.setup.store() as store:
        for day in (date.min, date.max):
            with pytest.raises(ValueError, match="outside"):
                attendance(store, "E", day, day)
            with pytest.raises(ValueError, match="outside"):
                punch_rows(store, "W", day)
        assert headcount(store, "E")["on_site"] == 1


# ---------------------------------------------------------------------------------------------- dates asked for, manual entries


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    bank = Bank(tmp_path_factory.mktemp("ranges") / "collector", LATEST)
    process, base = start_web(bank.setup)
    bank.http = Http(base)
    yield bank
    stop_process(process, signal.SIGKILL)


def refused(bank, *args) -> str:
    result = bank.run(*args, check=False)
    assert result.returncode in (1, 2), (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error:"), result.stderr
    return lines[0]


@pytest.mark.parametrize("day", ["9999-12-31", "0001-01-01", "1999-12-31", "2101-01-01"])
def test_cli_dates_out_of_range_are_one_line_errors(small, day):
    assert "outside" in refused(small, "attendance", "--site", "E", "--date", day)
    assert "outside" in refused(small, "punches", "--site", "W", "--date", day)
    assert "outside" in refused(small, "payroll", "--site", "E", "--from", day, "--to", day)


def test_cli_long_periods_are_refused_not_looped(small):
    assert "outside" in refused(small, "attendance", "--site", "E", "--from", "0001-01-01", "--to", "9999-12-31")
    assert "366" in refused(small, "payroll", "--site", "E", "--from", "2026-01-01", "--to", "2027-01-02")
    assert "366" in refused(small, "attendance", "--site", "E", "--from", "2025-01-01", "--to", "2026-12-31")
    assert small.run("payroll", "--site", "E", "--from", "2024-01-01", "--to", "2024-12-31").returncode == 0  # 366 days
    assert "outside" in refused(small, "evidence", "--worker", "W1", "--from", "0001-01-01", "--to", "9999-12-31",
                                "--out", str(small.setup.directory / "never.json"))


@pytest.mark.parametrize("moment", ["9999-12-31T23:00:00-05:00", "0001-01-01T00:00:00+08:00",
                                    "0001-01-01T00:00:00+00:00", "2019-12-31T23:59:00+00:00",
                                    # An id of its own: every xdist worker must collect the same test names.
                                    pytest.param((datetime.now(UTC) + timedelta(days=2)).isoformat(),
                                                 id="two-days-ahead")])
def test_a_manual_punch_at_an_impossible_time_is_refused(small, moment):
    add = ("punch", "add", "--worker", "W1", "--site", "E", "--direction", "in", "--reason", "typo", "--by", "ops")
    error = refused(small, *add, "--at", moment)
    assert any(reason in error for reason in ("not a time attendance can count", "outside the times this system can hold",
                                              "is in the future"))
    assert small.run(*add, "--at", (datetime.now(UTC) - timedelta(minutes=30)).isoformat()).returncode == 0


@pytest.mark.parametrize("day", ["9999-12-31", "0001-01-01", "2101-01-01"])
def test_api_dates_out_of_range_are_400(small, day):
    status, body = small.http.get(f"/api/sites/E/attendance?date={day}")
    assert status == 400, body
    assert "outside" in json.loads(body)["error"]


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+08:00", "9999-12-31T23:59:00-05:00"])
def test_card_windows_at_unrepresentable_times_are_one_line_errors(small, moment):
    assert "outside the times this system can hold" in refused(small, "card", "assign", "CAFEBABE", "--worker", "W1",
                                                               "--from", moment)
    assert "outside the times this system can hold" in refused(small, "card", "revoke", "CAFEBABE", "--at", moment)

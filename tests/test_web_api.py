"""`collector serve` as a real process on a real socket over a real SQLite file: every API route under
every kind of caller, the same answers as the CLI, and no token in its log."""

from __future__ import annotations

import hashlib
import json
import signal
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from collector.attendance import days
from collector.ingest.pipeline import Incoming, Ingestor
from collector.wages import figures
from gate_agent.protocol import GateTopics, encode_punches, format_time
from tests.helpers import CollectorSetup, PunchFactory, start_web, stop_process

SHANGHAI = ZoneInfo("Asia/Shanghai")
SITE1 = "site-one-manager-token-0001"
SITE2 = "site-two-manager-token-0002"
GHOST = "site-nine-manager-token-009"  # a site that is configured but not (yet) in the database
BANK = "bank-ops-token-all-sites-0003"
TOKENS = {SITE1: "S1", SITE2: "S2", GHOST: "S9", BANK: "*"}
W1_CARD, W2_CARD, W3_CARD, STRANGER = "04A1B2C3D4E5F6", "DEADBEEF", "0A0B0C0D", "CAFEBABE"


class Http:
    def __init__(self, base: str):
        self.base = base

    def get(self, path: str, token: str | None = None, *, authorization: str | None = None):
        """(status, headers, body); ``authorization`` sends that header verbatim."""
        request = urllib.request.Request(self.base + path)
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        if authorization is not None:
            request.add_header("Authorization", authorization)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                if response.headers.get_content_type() == "text/event-stream":
                    return response.status, response.headers, first_event(response)
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read()

    def json(self, path: str, token: str | None = None, **kwargs):
        status, _, body = self.get(path, token, **kwargs)
        assert status == 200, (status, body)
        return json.loads(body)


def first_event(response) -> bytes:
    """The data of the stream's first ``update`` event (then the connection is closed)."""
    event = None
    for raw in response:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[len("event: "):]
        elif line.startswith("data: ") and event == "update":
            return line[len("data: "):].encode()
    raise AssertionError("the stream ended without an update")


def ingest(store, topic: str, payload: bytes, when: datetime) -> None:
    Ingestor(store).ingest([Incoming(topic, payload, format_time(when))])


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    """Site S1 (gates north and south, two workers and a stranger's card), site S2 (gate east, one
    worker), quarantined messages and heartbeats; `collector serve` over it."""
    directory = tmp_path_factory.mktemp("web")
    setup = CollectorSetup.create(directory / "collector", broker=SimpleNamespace(port=1883),
                                  **{"web.tokens": TOKENS})
    north, south, east = PunchFactory(gate="north"), PunchFactory(gate="south"), PunchFactory(site="S2", gate="east")
    now = datetime.now(UTC).replace(microsecond=0)
    with setup.store() as store:
        store.add_site("S1", timezone="Asia/Shanghai", name="Riverside tower")
        store.add_site("S2", timezone="Europe/London")
        store.add_gate("S1", "north", north.public_key)
        store.add_gate("S1", "south", south.public_key)
        store.add_gate("S2", "east", east.public_key)
        store.add_worker("W1", name="Zhang Wei", employer="Hua Jian", cards=[W1_CARD], sites=["S1"])
        store.add_worker("W2", name="Li Na", employer="Hua Jian", cards=[W2_CARD], sites=["S1"])
        store.add_worker("W3", name="Tom Baker", cards=[W3_CARD], sites=["S2"])

        def tap(factory, card, when, direction):
            punch = factory.next(card=card, direction=direction, at=when)
            ingest(store, GateTopics(factory.site, factory.gate).punch, encode_punches([punch]),
                   when + timedelta(seconds=1))

        day = datetime(2026, 11, 2, tzinfo=SHANGHAI)
        tap(north, W1_CARD, (day + timedelta(hours=8)).astimezone(UTC), "in")
        tap(south, W1_CARD, (day + timedelta(hours=17)).astimezone(UTC), "out")
        tap(north, W2_CARD, now - timedelta(hours=3), "in")
        tap(south, W2_CARD, now - timedelta(hours=1), "out")
        tap(north, W1_CARD, now - timedelta(hours=2), "in")
        tap(north, STRANGER, now - timedelta(minutes=30), "in")
        tap(east, W3_CARD, now - timedelta(hours=1), "in")
        ingest(store, "attendance/v1/S1/north/punch", b"\x00garbage", now)
        ingest(store, "attendance/v1/S1/north/bogus", b"{}", now)
        status = {"v": 1, "state": "online", "time": format_time(now), "synced": True, "pending": 2,
                  "oldest_pending_at": format_time(now), "last_seq": 5, "acked_seq": 3}
        with store.transaction():
            store.save_status("S1", "north", status, format_time(now))
            store.add_counters({"acks_sent": 7, "ingest_lag_ms_sum": 1500, "ingest_lag_count": 6})
            store.set_gauges({"ingest_lag_seconds_last": 0.25}, format_time(now))
        # What the daemon keeps for /metrics: the kept days and the figures of the whole bank.
        days.refresh(store)
        figures.refresh(store)
    process, base = start_web(setup, verbose="-vv")
    yield SimpleNamespace(setup=setup, http=Http(base), process=process)
    stop_process(process, signal.SIGKILL)


SITE_ROUTES = ["/api/sites/{site}/headcount", "/api/sites/{site}/attendance?date=2026-11-02",
               "/api/sites/{site}/live"]
ALL_ROUTES = ["/api/sites", "/api/gates", "/api/quarantine", "/metrics"] + [r.format(site="S1") for r in SITE_ROUTES]


# ---------------------------------------------------------------------------------------------- who may read what


@pytest.mark.parametrize("route", ALL_ROUTES)
@pytest.mark.parametrize("authorization", [
    None,  # no header at all
    "",
    "Bearer",
    "Bearer ",
    f"Basic {SITE1}",
    f"Bearer {SITE1} extra",
    SITE1,  # the token without its scheme
    "Bearer wrong-token-of-enough-length",
    f"Bearer {SITE1[:-1]}",  # a prefix of a real token
    f"Bearer {SITE1[:-1]}X",  # right length, last character wrong
    f"Bearer {SITE1}X",
    "Bearer tökén-with-non-ascii-characters",
])
def test_without_a_valid_token_every_api_route_is_401(web, route, authorization):
    status, headers, body = web.http.get(route, authorization=authorization)
    assert status == 401, body
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert "error" in json.loads(body)


@pytest.mark.parametrize("route", SITE_ROUTES)
def test_a_site_token_reads_its_own_site(web, route):
    status, _, body = web.http.get(route.format(site="S1"), SITE1)
    assert status == 200, body
    assert json.loads(body)


@pytest.mark.parametrize("route", SITE_ROUTES)
@pytest.mark.parametrize("site", ["S2", "S9", "nosuchsite"])
def test_a_site_token_is_refused_for_any_other_site_existing_or_not(web, route, site):
    status, _, body = web.http.get(route.format(site=site), SITE1)
    assert status == 403, body
    assert json.loads(body) == {"error": "this token is for site S1 only"}


@pytest.mark.parametrize("route", SITE_ROUTES)
@pytest.mark.parametrize("site", ["S1", "S2"])
def test_the_bank_token_reads_every_site(web, route, site):
    status, _, body = web.http.get(route.format(site=site), BANK)
    assert status == 200, body


@pytest.mark.parametrize("route", SITE_ROUTES)
@pytest.mark.parametrize("token", [BANK, GHOST])
def test_a_site_the_database_does_not_hold_is_404(web, route, token):
    status, _, body = web.http.get(route.format(site="S9"), token)
    assert status == 404, body
    assert json.loads(body) == {"error": "there is no site S9"}


@pytest.mark.parametrize("route", ["/api/quarantine", "/metrics"])
@pytest.mark.parametrize("token", [SITE1, SITE2, GHOST])
def test_quarantine_and_metrics_are_for_bank_tokens_only(web, route, token):
    status, _, body = web.http.get(route, token)
    assert status == 403, body


def test_sites_lists_what_the_token_may_see(web):
    assert web.http.json("/api/sites", BANK) == [
        {"site": "S1", "name": "Riverside tower", "timezone": "Asia/Shanghai"},
        {"site": "S2", "name": "S2", "timezone": "Europe/London"}]
    assert [s["site"] for s in web.http.json("/api/sites", SITE1)] == ["S1"]
    assert web.http.json("/api/sites", GHOST) == []


def test_gates_bank_token_all_site_token_its_own(web):
    assert [(g["site"], g["gate"]) for g in web.http.json("/api/gates", BANK)] == [
        ("S1", "north"), ("S1", "south"), ("S2", "east")]
    assert [(g["site"], g["gate"]) for g in web.http.json("/api/gates", SITE1)] == [("S1", "north"), ("S1", "south")]
    assert [(g["site"], g["gate"]) for g in web.http.json("/api/gates", SITE2)] == [("S2", "east")]
    assert web.http.json("/api/gates", GHOST) == []
    assert [g["gate"] for g in web.http.json("/api/gates?site=S2", BANK)] == ["east"]
    assert [g["gate"] for g in web.http.json("/api/gates?site=S1", SITE1)] == ["north", "south"]
    assert web.http.get("/api/gates?site=S2", SITE1)[0] == 403
    assert web.http.get("/api/gates?site=S9", BANK)[0] == 404


# ---------------------------------------------------------------------------------------------- what they read


def without_as_of(data: dict) -> dict:
    return {k: v for k, v in data.items() if k != "as_of"}


def test_headcount_is_what_the_cli_prints(web):
    api = web.http.json("/api/sites/S1/headcount", SITE1)
    cli = web.setup.json("headcount", "--site", "S1")
    assert without_as_of(api) == without_as_of(cli)
    assert api["on_site"] == 1 and api["unknown_cards"] == 1
    assert [(w["worker"], w["name"], w["gate"]) for w in api["workers"]] == [("W1", "Zhang Wei", "north")]
    assert api["as_of"].endswith("+08:00")
    s2 = web.http.json("/api/sites/S2/headcount", SITE2)
    assert [w["worker"] for w in s2["workers"]] == ["W3"]


def test_attendance_of_a_date_is_what_the_cli_prints(web):
    api = web.http.json("/api/sites/S1/attendance?date=2026-11-02", SITE1)
    assert api == web.setup.json("attendance", "--site", "S1", "--date", "2026-11-02")
    assert [(r["worker"], r["worked_minutes"], r["status"]) for r in api] == [("W1", 540, "complete")]


def test_attendance_defaults_to_today_at_the_site(web):
    today = datetime.now(SHANGHAI).date().isoformat()
    api = web.http.json("/api/sites/S1/attendance", SITE1)
    assert api == web.setup.json("attendance", "--site", "S1", "--date", today)
    assert {r["date"] for r in api} <= {today}


@pytest.mark.parametrize("value", ["yesterday", "2026-13-01", "2026-11-2", "20261102", ""])
def test_attendance_refuses_a_bad_date(web, value):
    status, _, body = web.http.get(f"/api/sites/S1/attendance?date={value}", SITE1)
    assert status == 400 and json.loads(body) == {"error": "date must be YYYY-MM-DD"}


def test_gates_are_what_the_cli_prints(web):
    api = web.http.json("/api/gates", BANK)
    assert api == web.setup.json("gates")
    north = api[0]
    assert (north["state"], north["reported_pending"], north["clock_synced"]) == ("online", 2, True)


def test_quarantine_is_what_the_cli_prints(web):
    api = web.http.json("/api/quarantine", BANK)
    assert api == web.setup.json("quarantine")
    assert [r["reason"] for r in api] == ["malformed", "topic"]
    assert [r["reason"] for r in web.http.json("/api/quarantine?limit=1", BANK)] == ["topic"]
    assert web.http.get("/api/quarantine?limit=many", BANK)[0] == 400
    assert web.http.get("/api/quarantine?limit=0", BANK)[0] == 400


def test_live_stream_starts_with_the_headcount_and_the_gates(web):
    status, headers, body = web.http.get("/api/sites/S1/live", SITE1)
    assert status == 200 and headers.get_content_type() == "text/event-stream"
    snapshot = json.loads(body)
    assert without_as_of(snapshot["headcount"]) == without_as_of(web.http.json("/api/sites/S1/headcount", SITE1))
    assert [g["gate"] for g in snapshot["gates"]] == ["north", "south"]


def metric_samples(text: str) -> dict[str, float]:
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_metrics_in_prometheus_text_format(web):
    status, headers, body = web.http.get("/metrics", BANK)
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    text = body.decode()
    samples = metric_samples(text)
    counters = web.setup.json("counters")
    assert samples["collector_punches_ingested_total"] == counters["stored"] == 7
    assert samples["collector_duplicates_total"] == 0
    assert samples["collector_equivocations_total"] == 0
    assert samples['collector_quarantined_total{reason="malformed"}'] == 1
    assert samples['collector_quarantined_total{reason="topic"}'] == 1
    assert samples["collector_acks_sent_total"] == 7
    assert samples["collector_ingest_lag_seconds_sum"] == 1.5 and samples["collector_ingest_lag_seconds_count"] == 6
    assert samples["collector_ingest_lag_last_seconds"] == 0.25
    assert samples['collector_gate_pending{site="S1",gate="north"}'] == 2
    assert 0 <= samples['collector_gate_last_seen_age_seconds{site="S1",gate="north"}'] < 3600
    assert samples['collector_gate_up{site="S1",gate="north"}'] == 1
    assert samples['collector_gate_up{site="S2",gate="east"}'] == 0  # never sent a heartbeat
    assert samples['collector_site_on_site{site="S1"}'] == 1
    assert samples['collector_site_on_site{site="S2"}'] == 1
    assert samples['collector_site_unknown_cards_inside{site="S1"}'] == 1
    assert "# TYPE collector_punches_ingested_total counter" in text
    assert "# TYPE collector_ingest_lag_seconds summary" in text


# ---------------------------------------------------------------------------------------------- the page and the process


def test_the_page_is_served_without_data_and_with_a_strict_policy(web):
    status, headers, body = web.http.get("/sites/S1")
    assert status == 200 and headers.get_content_type() == "text/html"
    page = body.decode()
    assert "/static/dashboard.js" in page and "Zhang" not in page
    assert "http://" not in page and "https://" not in page  # nothing from a CDN
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff" and headers["Referrer-Policy"] == "no-referrer"
    for asset in ("/static/dashboard.js", "/static/dashboard.css", "/"):
        assert web.http.get(asset)[0] == 200
    assert web.http.get("/sites/not%20a%20site")[0] == 404
    assert web.http.get("/api/nothing", BANK)[0] == 404


def test_the_server_never_writes_the_database(web):
    db = web.setup.db_path
    files = [db, db.with_name(db.name + "-wal")]

    def digest():
        return [hashlib.sha256(f.read_bytes()).hexdigest() if f.exists() else None for f in files]

    before = digest()
    for route in ALL_ROUTES + [r.format(site="S2") for r in SITE_ROUTES]:
        assert web.http.get(route, BANK)[0] == 200
    assert digest() == before


def test_no_token_reaches_the_log(web):
    for token in (SITE1, BANK, "Bearer wrong-token-of-enough-length"):
        web.http.get("/api/sites/S1/headcount", token)
    log = (web.setup.directory / "serve.log").read_text()
    assert "GET /api/sites/S1/headcount HTTP/1.1\" 200" in log  # the access log is on
    for secret in (*TOKENS, "wrong-token-of-enough-length"):
        assert secret not in log
    assert "authorization" not in log.lower()


def test_serve_refuses_a_config_without_tokens(tmp_path):
    setup = CollectorSetup.create(tmp_path / "collector", broker=SimpleNamespace(port=1883))
    result = setup.run("serve", check=False)
    assert result.returncode != 0 and "no [web.tokens]" in result.stderr


def test_sigterm_ends_open_live_streams_and_the_server(tmp_path):
    setup = CollectorSetup.create(tmp_path / "collector", broker=SimpleNamespace(port=1883),
                                  **{"web.tokens": TOKENS})
    with setup.store() as store:
        store.add_site("S1", timezone="Asia/Shanghai")
    process, base = start_web(setup)
    request = urllib.request.Request(base + "/api/sites/S1/live", headers={"Authorization": f"Bearer {SITE1}"})
    with urllib.request.urlopen(request, timeout=30) as stream:
        assert first_event(stream)
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) in (0, -signal.SIGTERM)
        stream.read()  # to its end: a stream cut short would raise IncompleteRead
    assert "timeout graceful shutdown exceeded" not in (setup.directory / "serve.log").read_text()

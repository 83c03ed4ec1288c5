"""JSON the API and the commands write stays valid, faithful JSON that is safe to show: what a gate, a file
or a worker list sent (DEL, C1 controls, bidi overrides, line separators) travels as \\uXXXX escapes,
while names in Chinese stay readable as they are."""

from __future__ import annotations

import json
import re
import signal
import urllib.request
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from collector.ingest.pipeline import Incoming, Ingestor
from gate_agent.protocol import GateTopics, encode_punches, format_time
from tests.helpers import CollectorSetup, PunchFactory, start_web, stop_process

SHANGHAI = ZoneInfo("Asia/Shanghai")
BANK = "bank-ops-token-all-sites-0003"
CARD = "04A1B2C3D4E5F6"
#: Every control character json.dumps leaves raw: DEL, a C1 CSI, bidi overrides and isolates, the line
#: and paragraph separators.
HOSTILE = "\x7f\x9b\x85\u202e\u2066\u2069\u2028\u2029\u061c\u200f"
NAME = f"张伟{HOSTILE}Zhang"
EMPLOYER = f"华建{HOSTILE}"
#: Any control character, raw, in a JSON text (JSON's own layout uses only line feeds and spaces).
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def strict(text: str):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


def checked(text: str):
    """The value of a JSON text that holds no raw control character and shows the Chinese name as it is."""
    assert not RAW.search(text), repr(RAW.search(text))
    assert "张伟" in text
    return strict(text)


def test_safe_json_escapes_every_control_and_gives_every_value_back():
    from gate_agent.logsetup import safe_json

    values = {"name": NAME, "lone surrogate": "\ud800", "C0": "\x00\x1b\n", HOSTILE: [EMPLOYER, 1.5, None]}
    for options in ({}, {"indent": 2}, {"separators": (",", ":")}):
        text = safe_json(values, **options)
        assert checked(text) == values
        text.encode("utf-8")  # a lone surrogate written raw would not encode
    assert safe_json("\x7f\u202e") == '"\\u007f\\u202e"'


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    """A worker with a hostile name who came in an hour ago, and a quarantined message holding the same
    characters in its topic and bytes; `collector serve` over the database."""
    directory = tmp_path_factory.mktemp("bank")
    setup = CollectorSetup.create(directory, broker=SimpleNamespace(port=1883), **{"web.tokens": {BANK: "*"}})
    north = PunchFactory()
    now = datetime.now(UTC)
    with setup.store() as store:
        store.add_site("S1", timezone="Asia/Shanghai")
        store.add_gate("S1", "north", north.public_key)
        store.add_worker("W1", name="张伟", employer="甲公司", cards=[CARD], sites=["S1"])
        # Entered text refuses these characters (collector/text.py); a name stored before it did, or
        # written around the collector, must still come out escaped.
        store.execute("UPDATE workers SET name = ?, employer = ? WHERE worker = 'W1'", (NAME, EMPLOYER))
        punch = north.next(card=CARD, at=now - timedelta(hours=1))
        Ingestor(store).ingest([
            Incoming(GateTopics("S1", "north").punch, encode_punches([punch]), format_time(now)),
            Incoming(f"attendance/v1/S1/no{HOSTILE}rth/punch", f"{NAME}".encode(), format_time(now)),
        ])
    process, url = start_web(setup)
    yield SimpleNamespace(setup=setup, url=url, today=(now - timedelta(hours=1)).astimezone(SHANGHAI).date())
    stop_process(process, signal.SIGKILL)


def api(bank, path: str) -> str:
    request = urllib.request.Request(bank.url + path, headers={"Authorization": f"Bearer {BANK}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        if response.headers.get_content_type() == "text/event-stream":
            for raw in response:  # the first update event
                if raw.startswith(b"data: "):
                    return raw[len(b"data: "):].rstrip(b"\n").decode("utf-8")
        return response.read().decode("utf-8")


def test_api_answers_escape_what_came_from_outside(bank):
    (row,) = checked(api(bank, "/api/quarantine"))
    assert row["topic"] == f"attendance/v1/S1/no{HOSTILE}rth/punch" and row["raw"] == NAME
    headcount = checked(api(bank, "/api/sites/S1/headcount"))
    assert [(w["name"], w["employer"]) for w in headcount["workers"]] == [(NAME, EMPLOYER)]
    records = checked(api(bank, f"/api/sites/S1/attendance?date={bank.today.isoformat()}"))
    assert [(r["name"], r["employer"]) for r in records] == [(NAME, EMPLOYER)]
    live = checked(api(bank, "/api/sites/S1/live"))
    assert [w["name"] for w in live["headcount"]["workers"]] == [NAME]


@pytest.mark.parametrize("command", [
    ["attendance", "--site", "S1", "--date", "{today}"],
    ["payroll", "--site", "S1", "--from", "{today}", "--to", "{today}"],
    ["headcount", "--site", "S1"],
    ["punches", "--site", "S1"],
    ["worker", "list"],
])
def test_cli_json_escapes_what_came_from_outside(bank, command):
    output = bank.setup.run(*[part.format(today=bank.today.isoformat()) for part in command], "--json").stdout
    data = checked(output)
    rows = data["workers"] if command[0] == "headcount" else data
    assert {(row["name"], row["employer"]) for row in rows} == {(NAME, EMPLOYER)}


def test_cli_quarantine_json_escapes_what_came_from_outside(bank):
    output = bank.setup.run("quarantine", "--json").stdout
    assert not RAW.search(output)
    (row,) = strict(output)
    assert row["topic"] == f"attendance/v1/S1/no{HOSTILE}rth/punch" and row["raw"] == NAME

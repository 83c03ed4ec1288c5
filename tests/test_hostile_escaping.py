"""Nothing from outside reaches an operator's terminal raw: log lines of the daemons and the text the
commands print carry control characters (terminal escapes, bidi overrides, line feeds) as escapes,
while JSON output stays faithful JSON."""

from __future__ import annotations

import json
import logging
import re
import signal
import urllib.error
import urllib.request
from types import SimpleNamespace

import pytest

from gate_agent.logsetup import escape_control, setup_logging
from gate_agent.protocol import ACK_FILE_FORMAT, FILE_FORMAT_VERSION, GateTopics, encode_status
from tests.helpers import (
    CollectorSetup,
    GateSetup,
    Listener,
    PunchFactory,
    cli,
    fill_outbox,
    signed_ack,
    start_web,
    stop_process,
    wait_for,
)

TITLE = "\x1b]0;you have been pwned\x07"  # sets the terminal's title
RED = "\x1b[31mred\x1b[0m"  # an ANSI colour
RLO = "\u202e"  # right-to-left override
RAW_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
BANK = "bank-ops-token-all-sites-0003"


def test_control_characters_are_written_as_escapes():
    assert escape_control(f"a{TITLE}b") == "a\\x1b]0;you have been pwned\\x07b"
    assert escape_control(RED) == "\\x1b[31mred\\x1b[0m"
    assert escape_control(f"x{RLO}y\u2066z\u2069") == "x\\u202ey\\u2066z\\u2069"
    assert escape_control("one\ntwo\r\tthree\x7f\x9b\x00") == "one\\ntwo\\r\\tthree\\x7f\\x9b\\x00"
    assert escape_control("one\ntwo\x1b", keep_newlines=True) == "one\ntwo\\x1b"
    assert escape_control("Zhang Wei 张伟, Ünal, O'Brien \\ 5%") == "Zhang Wei 张伟, Ünal, O'Brien \\ 5%"


@pytest.mark.parametrize("journal", [False, True])
def test_every_log_line_of_both_tools_is_escaped(journal, monkeypatch, capsys):
    """Both daemons log through setup_logging: the message, its arguments and any traceback."""
    if journal:
        monkeypatch.setenv("JOURNAL_STREAM", "8:1234")
    else:
        monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging(0)
        log = logging.getLogger("collector.ingest.pipeline")
        log.warning("quarantined a message on %s: %s", f"attendance/v1/S1/no{RLO}rth/punch", f"field {TITLE}")
        log.warning(f"a message built before logging: {RED}\nforged line")
        try:
            raise ValueError(f"bad value {TITLE}")
        except ValueError:
            log.exception("failure on %s", RED)
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    err = capsys.readouterr().err
    assert not RAW_CONTROL.search(err), repr(err)
    assert "no\\u202erth" in err and "field \\x1b]0;you have been pwned\\x07" in err
    assert "\\x1b[31mred\\x1b[0m\\nforged line" in err  # one record, one line
    assert "ValueError: bad value \\x1b]0;you have been pwned\\x07" in err  # the traceback keeps its lines
    assert len([line for line in err.splitlines() if "WARNING" in line or "ERROR" in line]) == 3


@pytest.mark.slow
def test_hostile_names_through_ingest_reach_log_and_terminal_escaped(tmp_path, broker):
    north = PunchFactory()
    collector = CollectorSetup.create(tmp_path / "collector", broker=broker, **{"web.tokens": {BANK: "*"}})
    collector.run("site", "add", "S1", "--timezone", "Asia/Shanghai")
    collector.run("gate", "add", "north", "--site", "S1", "--public-key", north.public_key)
    topics = GateTopics("S1", "north")
    punch = north.next().to_dict() | {TITLE: 1, RED: 2}  # unknown field names, as a hostile gate sends them
    status = json.loads(encode_status("online", site="S1", gate="north")) | {TITLE: 1}
    bidi_topic = f"attendance/v1/S1/no{RLO}rth/punch"
    daemon = collector.start()
    web = publisher = None
    try:
        wait_for(lambda: "connected to" in collector.log(), message="collector connected")
        publisher = Listener(broker.port)
        publisher.publish(topics.punch, json.dumps({"v": 1, "punches": [punch]}).encode())
        publisher.publish(topics.status, json.dumps(status).encode())
        publisher.publish(bidi_topic, f"{TITLE}{RED}".encode())
        wait_for(lambda: sum(collector.json("counters").get(name, 0) for name in ("quarantined", "statuses")) == 3,
                 message="the three messages processed")
        web, url = start_web(collector)  # its access log quotes request paths
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(url + "/api/sites/%1b]0;pwned%07/headcount", timeout=30)
    finally:
        if publisher is not None:
            publisher.close()
        if web is not None:
            stop_process(web, signal.SIGKILL)
        stop_process(daemon)

    log = collector.log()
    assert not RAW_CONTROL.search(log), repr(log)
    assert "\\x1b]0;you have been pwned\\x07" in log and "\\x1b[31mred\\x1b[0m" in log and "no\\u202erth" in log
    serve_log = (collector.directory / "serve.log").read_text()
    assert not RAW_CONTROL.search(serve_log) and "pwned%07/headcount" in serve_log  # uvicorn quotes paths

    assert collector.json("counters")["quarantined"] == 3  # the status with a hostile field name too
    text = collector.run("quarantine").stdout
    assert not RAW_CONTROL.search(text), repr(text)
    assert "\\x1b]0;you have been pwned\\x07" in text and "no\\u202erth" in text
    assert len(text.splitlines()) == 4  # a heading and one line per message, whatever they held

    output = collector.run("quarantine", "--json").stdout
    assert not RAW_CONTROL.search(output)
    rows = json.loads(output)
    assert "\\x1b]0;you have been pwned\\x07" in rows[0]["detail"]  # quoted escaped, also where it is kept
    assert {TITLE, RED} <= set(json.loads(rows[0]["raw"]))  # faithful: the exact names come back
    assert rows[2]["topic"] == bidi_topic and rows[2]["raw"] == f"{TITLE}{RED}"


def test_worker_names_from_a_csv_file_are_refused_and_stored_ones_printed_escaped(tmp_path, broker):
    collector = CollectorSetup.create(tmp_path / "collector", broker=broker)
    workers = tmp_path / "workers.csv"
    workers.write_text(f"worker,name,card,employer\nW1,Zhang{TITLE} Wei,04A1B2C3D4E5F6,{RED} Co\x7f\n",
                       encoding="utf-8")
    refused = collector.run("worker", "import", str(workers), check=False)
    assert refused.returncode == 1 and "line 2" in refused.stdout + refused.stderr
    assert not RAW_CONTROL.search(refused.stdout + refused.stderr), repr(refused.stdout + refused.stderr)
    assert collector.json("worker", "list") == []
    # A name stored before names were checked (or written around the collector) still prints escaped.
    with collector.store() as store:
        store.execute("INSERT INTO workers (worker, name, employer, created_at) VALUES (?, ?, ?, ?)",
                      ("W1", f"Zhang{TITLE} Wei", f"{RED} Co\x7f", "2026-11-01T00:00:00.000Z"))
    text = collector.run("worker", "list").stdout
    assert not RAW_CONTROL.search(text), repr(text)
    assert "Zhang\\x1b]0;you have been pwned\\x07 Wei" in text and "\\x1b[31mred\\x1b[0m Co\\x7f" in text
    output = collector.run("worker", "list", "--json").stdout
    assert not RAW_CONTROL.search(output)
    (worker,) = json.loads(output)
    assert (worker["name"], worker["employer"]) == (f"Zhang{TITLE} Wei", f"{RED} Co\x7f")


# ---------------------------------------------------------------------------------------------- gate-agent errors


@pytest.fixture
def gate_files(tmp_path):
    """A gate's config and an outbox with two punches; no broker is needed by the file commands."""
    setup = GateSetup.create(tmp_path / "gate", broker=SimpleNamespace(port=1), device="udp:127.0.0.1:9")
    fill_outbox(setup, 2)
    return setup


def escaped_error(result, *expected: str) -> str:
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert not RAW_CONTROL.search(result.stderr), repr(result.stderr)
    for text in expected:
        assert text in result.stderr, result.stderr
    return result.stderr


PWNED = "\\x1b]0;you have been pwned\\x07"


def test_gate_agent_errors_quoting_ack_file_paths_and_contents_are_escaped(tmp_path, gate_files):
    config = str(gate_files.config_path)
    missing = tmp_path / f"ack{TITLE}.json"
    escaped_error(cli("gate-agent", "load-ack", "--config", config, str(missing), check=False),
                  f"cannot read {tmp_path}/ack{PWNED}.json")
    garbage = tmp_path / f"garbage{RLO}.json"
    garbage.write_bytes(f"{TITLE}{RED}".encode())
    escaped_error(cli("gate-agent", "load-ack", "--config", config, str(garbage), check=False),
                  "garbage\\u202e.json is not an ack file")
    # Signed by the bank, but for another site, whose name is a terminal escape.
    foreign = tmp_path / "foreign.json"
    ack = json.loads(signed_ack(f"S1{TITLE}", "north", 1, "0" * 64))
    foreign.write_text(json.dumps({"format": ACK_FILE_FORMAT, "version": FILE_FORMAT_VERSION, "ack": ack}))
    escaped_error(cli("gate-agent", "load-ack", "--config", config, str(foreign), check=False), PWNED)


def test_gate_agent_errors_quoting_bundle_paths_are_escaped(tmp_path, gate_files):
    taken = tmp_path / f"bundle{TITLE}{RLO}.jsonl"
    taken.write_text("")
    escaped_error(cli("gate-agent", "export", "--config", str(gate_files.config_path), "--out", str(taken),
                      check=False), f"bundle{PWNED}\\u202e.jsonl already exists")


@pytest.mark.parametrize("tool, command", [("gate-agent", "status"), ("collector", "counters")])
def test_command_line_mistakes_are_quoted_escaped(tool, command):
    escaped_error(cli(tool, f"{command}{TITLE}", check=False), f"{command}{PWNED}")  # no such command
    escaped_error(cli(tool, f"--colour{RED}", command, check=False), "\\x1b[31mred")  # no such option
    escaped_error(cli(tool, command, "--config", TITLE, f"extra{RLO}", check=False), "extra\\u202e")


# ---------------------------------------------------------------------------------------------- decoders


def hostile_documents():
    """(decoder, input) pairs that put names and values from outside into a ProtocolError's detail."""
    from gate_agent.protocol import (
        Ack,
        Punch,
        Resend,
        Roster,
        check_id,
        decode_punch_message,
        decode_status,
        parse_time,
    )
    from tests.helpers import BANK_KEY, BANK_KEYS

    punch = PunchFactory().next().to_dict()
    many = {f"{TITLE}{n}": n for n in range(500)}
    ack = json.loads(Ack(1, "0" * 64).sign("S1", "north", "2026-11-28T06:00:00.000Z", BANK_KEY))
    for_another = json.loads(Ack(1, "0" * 64).sign(f"S1{TITLE}", f"north{RLO}", "2026-11-28T06:00:00.000Z", BANK_KEY))
    roster = json.loads(Roster("S1", "2026-11-28T06:00:00.000Z", frozenset()).sign(BANK_KEY))
    resend = json.loads(Resend(1, 2).sign("S1", "north", "2026-11-28T06:00:00.000Z", BANK_KEY))
    acks = lambda data: Ack.decode(data, site="S1", gate="north", keys=BANK_KEYS)  # noqa: E731
    return [
        (Punch.from_dict, punch | {TITLE: 1, RED: 2}),
        (Punch.from_dict, punch | many),
        (decode_punch_message, json.dumps({"v": 1, "punches": [punch], TITLE: 1, f"x{RLO}": 2}).encode()),
        (decode_punch_message, json.dumps({"v": 1, "punches": [punch], **many}).encode()),
        (decode_status, encode_status("online", site="S1", gate="north", **{TITLE: 1})),
        (acks, ack | {TITLE: 1}),
        (acks, ack | many),
        (acks, for_another),
        (lambda data: Roster.decode(data, site="S1", keys=BANK_KEYS), roster | {f"cards{RLO}": []}),
        (lambda data: Resend.decode(data, site="S1", gate="north", keys=BANK_KEYS), resend | {RED: 1}),
        (lambda data: Roster.load(json.dumps(data).encode()), {"v": 1, "site": "S1", "issued": TITLE, "cards": []}),
        (lambda data: check_id("site", data), TITLE * 100),
        (parse_time, f"2026{TITLE}" * 100),
    ]


def test_decoders_quote_names_and_values_from_outside_escaped_and_bounded():
    from gate_agent.protocol import ProtocolError

    for decode, document in hostile_documents():
        with pytest.raises(ProtocolError) as raised:
            decode(document)
        detail = raised.value.detail
        assert not RAW_CONTROL.search(detail), (decode, detail)
        assert len(detail) < 400, (decode, len(detail))


def test_quarantine_details_are_stored_escaped(tmp_path):
    """The detail is kept with the message; its bytes, not its detail, are what holds the names exactly."""
    from collector.ingest.pipeline import Incoming, Ingestor
    from collector.store import Store

    north = PunchFactory()
    topics = GateTopics("S1", "north")
    punch = north.next().to_dict() | {TITLE: 1, RED: 2}
    with Store(tmp_path / "collector.sqlite3") as store:
        store.add_site("S1", timezone="Asia/Shanghai")
        store.add_gate("S1", "north", north.public_key)
        Ingestor(store).ingest([
            Incoming(topics.punch, json.dumps({"v": 1, "punches": [punch]}).encode(), "2026-11-28T06:00:00.000Z"),
            Incoming(topics.punch, json.dumps({"v": 1, "punches": [punch], TITLE: 1}).encode(),
                     "2026-11-28T06:00:00.000Z"),
        ])
        rows = store.quarantined()
    assert [row["reason"] for row in rows] == ["schema", "schema"]
    for row in rows:
        assert not RAW_CONTROL.search(row["detail"]) and PWNED in row["detail"], row["detail"]
    assert {TITLE, RED} <= set(json.loads(rows[0]["raw"]))

"""Bank ops at the command line: manual corrections, predictable options, dates, aligned Chinese names,
and a quiet log while the broker is away."""

from __future__ import annotations

import os
import signal
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from collector.cli.display import width
from collector.ingest.pipeline import Incoming, Ingestor
from gate_agent.protocol import GateTopics, encode_punches, format_time
from tests.helpers import CollectorSetup, GateSetup, PunchFactory, cli, stop_process, wait_for
from tests.ports import free_port

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def bank(tmp_path):
    setup = CollectorSetup.create(tmp_path / "collector", broker=SimpleNamespace(port=1883))
    setup.run("site", "add", "S1", "--timezone", "Asia/Shanghai")
    setup.run("worker", "add", "W1", "--name", "王伟", "--card", "04A1B2C3D4E5F6", "--site", "S1")
    return setup


def test_a_manual_time_without_offset_is_the_sites_and_the_future_is_refused(bank):
    yesterday = (datetime.now(SHANGHAI) - timedelta(days=1)).date().isoformat()
    added = bank.json("punch", "add", "--worker", "W1", "--site", "S1", "--at", f"{yesterday}T18:00",
                      "--direction", "out", "--reason", "left by the material gate", "--by", "ops-li")
    assert added["time"] == format_time(datetime.fromisoformat(f"{yesterday}T18:00").replace(tzinfo=SHANGHAI))
    for ahead in (timedelta(days=365), timedelta(hours=1)):
        at = (datetime.now(SHANGHAI) + ahead).strftime("%Y-%m-%dT%H:%M")
        refused = bank.run("punch", "add", "--worker", "W1", "--site", "S1", "--at", at, "--direction", "in",
                           "--reason", "x", "--by", "y", check=False)
        assert refused.returncode == 1 and "is in the future" in refused.stderr
        assert "+08:00" in refused.stderr and " UTC" not in refused.stderr  # the limit in the site's time
    soon = (datetime.now(SHANGHAI) + timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M")
    bank.run("punch", "add", "--worker", "W1", "--site", "S1", "--at", soon, "--direction", "in", "--reason", "clock",
             "--by", "y")


def test_punches_show_the_id_void_takes_and_a_gate_punch_can_be_voided_by_its_seq(bank):
    gate = PunchFactory()
    bank.run("gate", "add", "north", "--site", "S1", "--public-key", gate.public_key)
    now = datetime.now(UTC).replace(microsecond=0)
    with bank.store() as store:
        Ingestor(store).ingest([Incoming(GateTopics("S1", "north").punch, encode_punches(
            [gate.next(card="04A1B2C3D4E5F6", at=now - timedelta(hours=2))]), format_time(now))])
    text = bank.run("punches", "--site", "S1").stdout
    header, row = text.splitlines()[:2]
    assert header.split()[:3] == ["id", "time", "punch"] and row.split()[0] == "1" and "north#1" in row
    voided = bank.run("punch", "void", "--site", "S1", "--gate", "north", "--seq", "1", "--reason", "double tap",
                      "--by", "ops-li")
    assert "punch 1 (S1/north seq 1) is void" in voided.stdout
    refused = bank.run("punch", "void", "--site", "S1", "--reason", "x", "--by", "y", check=False)
    assert refused.returncode == 2 and "give PUNCH_ID, or all of --site, --gate and --seq" in refused.stderr


def test_the_configuration_comes_from_the_environment_or_the_installed_place(bank, tmp_path):
    env = {**os.environ, "COLLECTOR_CONFIG": str(bank.config_path)}
    listed = cli("collector", "site", "list", "--json", env=env)
    assert '"site": "S1"' in listed.stdout
    env.pop("COLLECTOR_CONFIG")
    missing = cli("collector", "site", "list", env=env, check=False, cwd=tmp_path)
    assert missing.returncode == 1 and "/etc/collector/collector.toml: no such file" in missing.stderr
    gate_missing = cli("gate-agent", "status", env=env, check=False)
    assert gate_missing.returncode == 1 and "/etc/gate-agent/gate.toml" in gate_missing.stderr


def test_dates_today_yesterday_and_dates_that_do_not_exist(bank):
    assert bank.json("attendance", "--site", "S1") == []  # no --date: today at the site
    assert bank.json("attendance", "--site", "S1", "--date", "yesterday") == []
    bank.json("payroll", "--site", "S1", "--from", "yesterday", "--to", "today")
    for bad, says in (("2026-11-31", "2026-11-31 does not exist: November 2026 has 30 days"),
                      ("2026-13-01", "there is no month 13"), ("28/11/2026", "is not a date")):
        result = bank.run("attendance", "--site", "S1", "--date", bad, check=False)
        assert result.returncode == 2 and says in result.stderr, result.stderr
    both = bank.run("attendance", "--site", "S1", "--json", "--csv", check=False)
    assert both.returncode == 2 and "--json and --csv exclude each other" in both.stderr
    nope = bank.run("gates", "--site", "NOPE", check=False)
    assert nope.returncode == 1 and "site NOPE does not exist" in nope.stderr


def test_chinese_names_line_up_with_latin_ones(bank):
    bank.run("worker", "add", "W2", "--name", "Li Na", "--site", "S1", "--employer", "Hua Jian")
    bank.run("worker", "add", "W3", "--name", "欧阳娜娜", "--site", "S1", "--employer", "华建劳务")
    lines = bank.run("worker", "list").stdout.splitlines()
    # The employer column starts at the same screen column on every line, whatever the name's script.
    starts = {width(line[:line.index(employer)]) for line, employer in
              zip(lines[1:], ("-", "Hua Jian", "华建劳务"), strict=True)}
    assert len(starts) == 1, lines


def test_a_broker_that_is_away_is_said_once_not_at_every_retry(tmp_path, udp_device):
    away = SimpleNamespace(port=free_port())
    collector = CollectorSetup.create(tmp_path / "collector", broker=away)
    collector.run("site", "add", "S1", "--timezone", "Asia/Shanghai")
    gate = GateSetup.create(tmp_path / "gate", broker=away, device=udp_device)
    processes = [collector.start(), gate.start_agent()]
    try:
        time.sleep(8)  # paho retries with a growing pause: several attempts in this time
    finally:
        for process in processes:
            stop_process(process, signal.SIGTERM)
    for log in (collector.log(), (gate.directory / "agent.log").read_text()):
        assert "Client is not connected" not in log, log
        assert log.count("cannot reach broker") == 1, log
    assert "WARNING collector.mqtt: cannot reach broker" in collector.log()
    assert "gate_agent" not in "\n".join(line for line in collector.log().splitlines() if "WARNING" in line)


def test_an_exported_csv_read_as_excel_reads_it_keeps_every_name(bank, tmp_path):
    import csv
    import io

    gate = PunchFactory()
    bank.run("gate", "add", "north", "--site", "S1", "--public-key", gate.public_key)
    bank.run("worker", "add", "W2", "--name", "欧阳娜娜", "--card", "DEADBEEF", "--site", "S1", "--employer", "华建劳务")
    start = datetime.now(SHANGHAI).replace(hour=8, minute=0, second=0, microsecond=0) - timedelta(days=1)
    with bank.store() as store:
        Ingestor(store).ingest([Incoming(GateTopics("S1", "north").punch, encode_punches([
            gate.next(card="04A1B2C3D4E5F6", at=start.astimezone(UTC)),
            gate.next(card="DEADBEEF", at=(start + timedelta(minutes=5)).astimezone(UTC))]),
            format_time(start + timedelta(minutes=6)))])
    raw = bank.run("attendance", "--site", "S1", "--date", "yesterday", "--csv").stdout.encode("utf-8")
    rows = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline="")))  # what Excel does with the BOM
    assert [(r["name"], r["employer"]) for r in rows] == [("王伟", ""), ("欧阳娜娜", "华建劳务")]
    assert rows[0]["first_in"] == start.strftime("%Y-%m-%d 08:00")


def test_a_gate_the_bank_refuses_says_why_in_its_log_and_status_until_it_is_taken(tmp_path, broker, udp_device):
    """The gate's key is not the one the bank registered (a Pi re-keyed without telling the bank): the gate
    used to beep 'recorded' and log only 'no acknowledgement ... resending'."""
    collector = CollectorSetup.create(tmp_path / "collector", broker=broker)
    collector.run("site", "add", "S1", "--timezone", "Asia/Shanghai")
    gate = GateSetup.create(tmp_path / "gate", broker=broker, device=udp_device)
    collector.run("gate", "add", "north", "--site", "S1", "--public-key", PunchFactory().public_key)  # not its key
    daemon, agent = collector.start(), gate.start_agent()
    log = gate.directory / "agent.log"
    try:
        gate.tap("04A1B2C3D4E5F6")
        wait_for(lambda: "the bank refuses this gate's messages: unknown_key" in log.read_text(), timeout=30,
                 message="the gate told why")
        status = gate.status()
        assert status["bank_refuses"]["reason"] == "unknown_key" and status["pending"] == 1
        text = cli("gate-agent", "status", "--config", str(gate.config_path)).stdout
        assert "THE BANK REFUSES THIS GATE'S PUNCHES: unknown_key" in text
        # The bank sees it in the gate's heartbeat too.
        wait_for(lambda: any(g.get("status", {}) and g["status"].get("bank_refuses") == "unknown_key"
                             for g in _gates(collector)), timeout=30, message="the heartbeat saying so")
        # The right key registered: the next resend is stored, acked, and the refusal is gone.
        collector.run("gate", "add", "north", "--site", "S1", "--public-key", gate.public_key)
        wait_for(lambda: gate.status()["pending"] == 0, timeout=60, message="the punch taken")
        assert gate.status()["bank_refuses"] is None
        assert "the bank takes this gate's punches again" in log.read_text()
    finally:
        stop_process(agent, signal.SIGKILL)
        stop_process(daemon, signal.SIGKILL)


def _gates(collector) -> list[dict]:
    with collector.store(readonly=True) as store:
        return store.gates(with_gaps=False)

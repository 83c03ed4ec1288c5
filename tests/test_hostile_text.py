"""Entered text that could spoof a name or block a payment is refused everywhere, on both engines.

Built from the attacks: a right-to-left override that turned a name into another worker's on the
roll-call; control characters that made the site's payment file refuse to be written; a NUL that crashed
the PostgreSQL import; dispute notes of invisible letters or a wall of combining marks; an ISO week date
taken for a day; a per-worker limit raced past by concurrent requests; an evidence number too large for
the database."""

from __future__ import annotations

import threading
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.errors import CollectorError
from collector.store import Store
from collector.store.evidence_requests import MAX_WAITING_PER_WORKER
from collector.text import INVISIBLE, MAX_MARKS_IN_A_ROW, TextError, entered
from collector.workers import disputes

SPOOFS = {
    "right-to-left override": "\u202e)100W( ieW gnahZ",
    "control characters": "Wang\x01Wu\x0b",
    "NUL": "Li\x00Si",
    "zero-width space": "Zhang\u200bWei",
    "bidi isolate": "Zhang \u2066Wei\u2069",
    "hangul filler only": "\u3164\u3164",
    "braille blank only": "\u2800",
    "combining wall": "a" + "\u0301" * 200,
    "private use": "Zhang\ue000",
}
GOOD = ["张伟", "Zhang Wei", "阿卜杜·热合曼", "Nguyễn Văn A", "O'Brien-Smith", "钢筋班 2"]


@given(st.text(max_size=60))
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_entered_text_is_refused_with_its_own_error_or_comes_back_clean(value):
    try:
        text = entered(value, what="the name", limit=40)
    except TextError as error:
        assert str(error).startswith("the name ")  # the refusal names the field and never echoes the text
        return
    assert text == value.strip() and 0 < len(text) <= 40
    assert not any(unicodedata.category(c) in ("Cc", "Cf", "Cs", "Co", "Cn") for c in text)
    assert any(unicodedata.category(c)[0] in "LN" and c not in INVISIBLE for c in text)
    assert entered(text, what="the name", limit=40) == text  # what was accepted is accepted again


@pytest.mark.parametrize("name", GOOD)
def test_names_people_have_are_accepted(name):
    assert entered(name, what="the name", limit=100) == name


@pytest.mark.parametrize("kind", sorted(SPOOFS))
def test_spoofing_text_is_refused(kind):
    with pytest.raises(TextError):
        entered(SPOOFS[kind], what="the name", limit=500)


def test_a_few_combining_marks_make_a_letter_more_make_a_wall():
    assert entered("e" + "\u0301" * MAX_MARKS_IN_A_ROW, what="x", limit=50)
    with pytest.raises(TextError, match="combining"):
        entered("e" + "\u0301" * (MAX_MARKS_IN_A_ROW + 1), what="x", limit=50)


@pytest.fixture
def store(database):
    with Store(database) as store:
        store.add_site("S1", timezone="Asia/Shanghai", name="Site one")
        store.add_worker("W1", name="Worker one", employer="E", cards=["04A1B2C3D4E5F6"], sites=["S1"])
        yield store


@pytest.mark.parametrize("kind", sorted(SPOOFS))
def test_the_store_refuses_spoofing_text_on_every_write(store, kind):
    """Every path (a command, a file, a page) ends in the store: it refuses alike on both engines, with the
    collector's one-line input error, never a database error or a raw row."""
    bad = SPOOFS[kind]
    writes = [
        lambda: store.add_worker("W2", name=bad),
        lambda: store.add_worker("W3", name="Ok", employer=bad),
        lambda: store.edit_worker("W1", name=bad),
        lambda: store.edit_worker("W1", employer=bad),
        lambda: store.add_site("S2", timezone="Asia/Shanghai", name=bad),
        lambda: store.edit_site("S1", name=bad),
        lambda: store.set_payee("W1", bank_name=bad),
        lambda: store.set_site_pay("S1", pay_day=15, effective_from="2026-01-01", by="ops", payer_name=bad),
        lambda: store.set_site_pay("S1", pay_day=15, effective_from="2026-01-01", by=bad),
        lambda: store.add_manual_punch(site="S1", worker="W1", time="2026-10-14T01:00:00.000Z", direction="in",
                                       reason=bad, by="ops"),
        lambda: store.add_deduction(site="S1", period="2026-10", worker="W1", item="rent", amount_fen=100,
                                    reason=bad, source="manual", by="ops"),
        lambda: store.assign("W1", "S1", by=bad, valid_from="2030-01-01T00:00:00.000Z"),
    ]
    for write in writes:
        with pytest.raises(TextError):
            write()
    assert [w["worker"] for w in store.workers()] == ["W1"]
    assert (store.worker("W1")["name"], store.worker("W1")["employer"]) == ("Worker one", "E")
    assert store.site("S1")["name"] == "Site one" and store.site("S2") is None
    assert store.payee("W1") is None or store.payee("W1").get("bank_name") is None
    assert store.site_pay("S1") == [] and store.deductions("S1", "2026-10") == []
    assert store.execute("SELECT COUNT(*) FROM punches").fetchone()[0] == 0


def test_a_worker_file_row_with_a_spoofing_name_is_refused_with_its_line(tmp_path):
    from collector.workers.registry import read_worker_file

    path = tmp_path / "workers.csv"
    path.write_text("worker,name,employer\nW1,张伟,甲公司\nW2,Wang\x01Wu\x0b,甲公司\nW3,\u202e)100W( ieW,甲公司\n"
                    "W4,李四,\u200b乙公司\n", encoding="utf-8")
    read = read_worker_file(str(path))
    assert [row["worker"] for row in read.rows] == ["W1"]
    problems = " | ".join(str(p) for p in read.problems)
    for line in (3, 4, 5):
        assert f"line {line}" in problems, problems
    assert "\x01" not in problems and "\u202e" not in problems and "\u200b" not in problems


def test_dispute_notes_need_a_visible_letter_and_days_are_dates(store):
    for note in ("\u3164\u3164\u3164", "\u2800" * 5, "x" + "\u0301" * 200, "卡\u202e没读到"):
        with pytest.raises(disputes.DisputeError):
            disputes.file(store, "W1", site="S1", day="2026-10-14", note=note)
    for day in ("2026-W42-3", "2026-287", "20261014", " 2026-10-14"):
        with pytest.raises(disputes.DisputeError, match="YYYY-MM-DD"):
            disputes.file(store, "W1", site="S1", day=day, note="卡没读到")
    filed = disputes.file(store, "W1", site="S1", day="2026-10-14", note="卡没读到")
    assert filed["note"] == "卡没读到"


def concurrently(threads: int, work) -> list[str]:
    start = threading.Barrier(threads)
    outcomes: list[str] = []

    def run(n: int) -> None:
        start.wait()
        outcomes.extend(work(n))

    running = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join(120)
    return outcomes


def test_the_open_dispute_limit_holds_under_concurrent_filing(store, database):
    """Count-then-insert under READ COMMITTED let 25 disputes past a limit of 20 on PostgreSQL; the
    worker's row is now locked first, so concurrent filings wait their turn and the limit holds."""
    def file_two(n: int) -> list[str]:
        done = []
        with Store(database) as mine:
            for k in range(2):
                try:
                    disputes.file(mine, "W1", site="S1", day=f"2026-10-{n + 1:02d}", note=f"第{n}.{k}次")
                    done.append("filed")
                except CollectorError:
                    done.append("refused")
        return done

    outcomes = concurrently(12, file_two)
    assert sorted(outcomes) == ["filed"] * disputes.MAX_OPEN_PER_WORKER + ["refused"] * (24 - disputes.MAX_OPEN_PER_WORKER)
    assert store.execute("SELECT COUNT(*) FROM disputes WHERE worker = 'W1' AND status = 'open'").fetchone()[0] \
        == disputes.MAX_OPEN_PER_WORKER


def test_the_waiting_evidence_limit_holds_under_concurrent_requests(store, database):
    def ask(n: int) -> list[str]:
        with Store(database) as mine:
            try:
                mine.request_evidence("W1", f"2026-{n % 12 + 1:02d}-01", f"2026-{n % 12 + 1:02d}-28", by="worker link")
                return ["asked"]
            except CollectorError:
                return ["refused"]

    outcomes = concurrently(10, ask)
    assert sorted(outcomes) == ["asked"] * MAX_WAITING_PER_WORKER + ["refused"] * (10 - MAX_WAITING_PER_WORKER)
    waiting = store.execute("SELECT COUNT(*) FROM evidence_requests WHERE state IN ('pending', 'working')")
    assert waiting.fetchone()[0] == MAX_WAITING_PER_WORKER


@pytest.mark.parametrize("number", [0, -1, 2**63, 10**20])
def test_an_evidence_number_no_row_can_have_is_no_request(store, number):
    assert store.evidence_request(number, worker="W1") is None
    assert store.evidence_document(number, worker="W1") is None

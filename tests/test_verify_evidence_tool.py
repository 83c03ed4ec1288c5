"""tools/verify_evidence.py, the one-file check for anyone holding an evidence file and the bank's published
key: it agrees with `collector verify`, fails on any change, and a hostile file never gets a traceback
or a terminal escape through."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from collector.evidence import format2
from collector.evidence.document import build_evidence
from collector.ingest.pipeline import Incoming, Ingestor
from collector.store import Store
from gate_agent.protocol import GateTopics, encode_punches, format_time
from tests.helpers import BANK_KEY, BANK_PUBLIC, PunchFactory

TOOL = Path(__file__).parent.parent / "tools" / "verify_evidence.py"
NAME = "张伟\x1b[2J\u202e"  # a name from outside: a terminal escape and a direction override


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *args], capture_output=True, text=True, timeout=60)


@pytest.fixture(params=[3, 1], ids=["card chain", "gate chain"])
def files(tmp_path, request):
    """W1's 8-hour day, W2's punch between its IN and OUT, at a gate of protocol 3 (W1's card chain) or of
    protocol 1 (a segment of the gate's chain)."""
    north = PunchFactory(gate="north", version=request.param)
    start = datetime(2026, 10, 14, 0, 0, tzinfo=UTC)
    with Store(tmp_path / "c.sqlite3") as store:
        store.add_site("S1", timezone="Asia/Shanghai")
        store.add_gate("S1", "north", north.public_key)
        store.add_worker("W1", name="张伟", cards=["04A1B2C3D4E5F6"], sites=["S1"])
        # Entered text refuses these characters (collector/text.py); a name stored before it did must
        # still come out escaped.
        store.execute("UPDATE workers SET name = ? WHERE worker = 'W1'", (NAME,))
        store.add_worker("W2", name="李娜", cards=["DEADBEEF"], sites=["S1"])
        store.execute("UPDATE gate_keys SET added_at = '2026-10-01T00:00:00.000Z'")
        for hours, card, direction in ((0, "04A1B2C3D4E5F6", "in"), (1, "DEADBEEF", "in"),
                                       (8, "04A1B2C3D4E5F6", "out")):
            moment = start + timedelta(hours=hours)
            punch = north.next(card=card, direction=direction, at=moment)
            Ingestor(store).ingest([Incoming(GateTopics("S1", "north").punch, encode_punches([punch]),
                                             format_time(moment + timedelta(seconds=2)))])
        document = build_evidence(store, "W1", date(2026, 10, 1), date(2026, 10, 31), key=BANK_KEY)
    evidence = tmp_path / "evidence.json"
    evidence.write_text(json.dumps(document))
    key = tmp_path / "bank.pub"
    key.write_text(BANK_PUBLIC + "\n")
    return evidence, key, document


def test_a_good_file_verifies_and_what_it_names_is_escaped(files):
    evidence, key, _ = files
    result = run(str(evidence), str(key))
    assert result.returncode == 0, result.stderr
    punches = 2 if "card" in files[2]["gates"][0]["chains"][0]["link"] else 3
    assert "OK: signed by bank key" in result.stdout and f"{punches} gate-signed punches" in result.stdout
    assert "every gate key cited from the bank's register (entries 1) (format 2)" in result.stdout
    assert "not checked here: the days" in result.stdout
    assert "2026-10-14 S1: in 2026-10-14T08:00:00+08:00, out 2026-10-14T16:00:00+08:00, 8 h 00 min" in result.stdout
    assert "\x1b" not in result.stdout and "\u202e" not in result.stdout and "\\u001b[2J\\u202e" in result.stdout


@pytest.mark.parametrize("change, why", [
    (lambda d: d["days"][0].update(worked_minutes=540), "bank's signature does not verify"),
    (lambda d: d["gates"][0]["chains"][0]["punches"][1].update(card="CAFEBABE"), "bank's signature does not verify"),
    (lambda d: d["worker"].update(name="王五"), "bank's signature does not verify"),
])
def test_any_change_fails(files, tmp_path, change, why):
    evidence, key, document = files
    change(document)
    evidence.write_text(json.dumps(document))
    result = run(str(evidence), str(key))
    assert result.returncode == 1 and why in result.stderr and result.stdout == ""


def test_a_file_resigned_by_someone_else_fails_and_so_does_a_forged_gate_punch(files, tmp_path):
    evidence, key, document = files
    own = Ed25519PrivateKey.generate()
    remade = format2.sign(document, own)
    evidence.write_text(json.dumps(remade))
    result = run(str(evidence), str(key))
    assert result.returncode == 1 and "not the bank key given" in result.stderr
    # The bank's own key over a punch the gate never signed: the gate's signature catches it.
    forged = json.loads(json.dumps(document))
    forged["gates"][0]["chains"][0]["punches"][-1]["time"] = "2026-10-14T10:00:00.000Z"
    evidence.write_text(json.dumps(format2.sign(forged, BANK_KEY)))
    result = run(str(evidence), str(key))
    assert result.returncode == 1 and "the gate's signature does not verify" in result.stderr


@pytest.mark.parametrize("content", [b"", b"[]", b"{\"format\": \"site-gate-evidence\"}", b"\xff\xfe",
                                     b"{\"format\": \"site-gate-evidence\", \"key\": 1, \"sig\": 2}", b"[" * 100000])
def test_a_malformed_file_is_one_line_never_a_traceback(files, content):
    evidence, key, _ = files
    evidence.write_bytes(content)
    result = run(str(evidence), str(key))
    assert result.returncode == 1 and "FAILED" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("trick", ["duplicate name", "duplicate sig", "byte order mark", "NaN", "lone surrogate",
                                   "trailing data", "upper-case bank signature", "upper-case gate signature"])
def test_bytes_another_reader_could_read_differently_fail(files, trick):
    """One file must not say two things: each of these verified before (Python's json keeps the last of two
    names, reads NaN, and bytes.fromhex reads upper case), while a reader in another language reads the
    first name, refuses NaN, or compares the hex as text."""
    evidence, key, document = files
    text = json.dumps(document)
    if trick == "duplicate name":
        data = text.replace('"name":', '"name": "\\u738b\\u4e94", "name":', 1).encode()
    elif trick == "duplicate sig":
        data = text.replace('"sig":', '"sig": "' + "0" * 128 + '", "sig":', 1).encode()
    elif trick == "byte order mark":
        data = b"\xef\xbb\xbf" + text.encode()
    elif trick == "NaN":
        data = text.replace('"format":', '"x": NaN, "format":', 1).encode()
    elif trick == "lone surrogate":
        data = text.replace('"format":', '"\\ud800": 1, "format":', 1).encode()
    elif trick == "trailing data":
        data = text.encode() + b" {}"
    elif trick == "upper-case bank signature":
        data = json.dumps({**document, "sig": document["sig"].upper()}).encode()
    else:
        changed = json.loads(text)
        punch = changed["gates"][0]["chains"][0]["punches"][0]
        punch["sig"] = punch["sig"].upper()
        data = json.dumps(format2.sign(changed, BANK_KEY)).encode()
    evidence.write_bytes(data)
    result = run(str(evidence), str(key))
    assert result.returncode == 1 and "FAILED" in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1

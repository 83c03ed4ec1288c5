"""Random UIDs are no identity; bank cards are known by a keyed identifier of their PAN, which is kept nowhere."""

from __future__ import annotations

import json
import signal
import threading
from datetime import date, timedelta
from pathlib import Path

import pytest

from gate_agent.emv import (
    EmvError,
    card_identifier,
    luhn_valid,
    mask_pan,
    normalise_pan,
    parse_dol,
    parse_tlv,
    pdol_data,
    read_pan,
    tlv,
)
from gate_agent.feedback import Signal
from gate_agent.protocol import ProtocolError, Punch, Roster, sign_punch, verify_punch
from gate_agent.reader import NfcReader, is_random_uid
from gate_agent.virtual_card import EmvApplet, IsoDepCard, Ntag, VirtualCard
from tests.helpers import BANK_KEY, CollectorSetup, Listener, cli, outbox_status, stop_process, wait_for

#: A test card number (UnionPay BIN 621234, Luhn-valid); never a real account.
PAN = "6212345678901232"
CARD_KEY = bytes(range(32))


def test_the_test_pan_is_a_card_number():
    assert luhn_valid(PAN) and not luhn_valid(PAN[:-1] + "3")


# ---------------------------------------------------------------------------- EMV pieces


def test_tlv_and_dol_parsing():
    data = tlv(0x6F, tlv(0x84, b"AB") + tlv(0xA5, tlv(0x9F38, bytes.fromhex("9F66049F3704"))))
    assert parse_tlv(data) == [(0x6F, data[2:])]
    assert parse_dol(bytes.fromhex("9F66049F02065F2A029A039C01")) == [
        (0x9F66, 4), (0x9F02, 6), (0x5F2A, 2), (0x9A, 3), (0x9C, 1)]
    filled = pdol_data(bytes.fromhex("9F66049F02065F2A029F1A02DF0103"))
    assert len(filled) == 4 + 6 + 2 + 2 + 3
    assert filled[4:10] == bytes(6) and filled[10:12] == bytes.fromhex("0156") and filled[-3:] == bytes(3)
    with pytest.raises(EmvError):
        parse_tlv(bytes.fromhex("5A08123456"))  # value runs past the data
    with pytest.raises(EmvError):
        parse_tlv(bytes.fromhex("9F"))


@pytest.mark.parametrize("options", [
    {},  # format 2, PAN in 5A and 57
    {"gpo_format": 1},
    {"pan_in": ("57",)},  # track 2 equivalent only
    {"pan_in": ("5A",), "aid": "A000000333010102"},  # UnionPay credit
    {"list_in_ppse": False},  # an empty PPSE directory: the known AIDs are tried
    {"aid": "A0000000031010"},  # Visa
])
def test_read_pan_from_the_virtual_card_application(options):
    applet = EmvApplet(PAN, **options)
    assert read_pan(applet.apdu) == PAN
    assert applet.gpo_lengths == [sum(n for _, n in parse_dol(applet.PDOL))]  # PDOL data of the right length


def test_a_card_with_no_payment_application_is_no_bank_card():
    applet = EmvApplet(PAN, aid="A0000009999999", list_in_ppse=False)
    with pytest.raises(EmvError, match="no known payment application"):
        read_pan(applet.apdu)


def test_pan_identifier_masking_and_input_checks():
    identifier = card_identifier(CARD_KEY, PAN)
    assert len(identifier) == 32 and identifier == identifier.upper() and PAN not in identifier
    assert identifier == card_identifier(CARD_KEY, PAN)
    assert identifier != card_identifier(bytes(32), PAN)  # keyed: another key, another identifier
    assert mask_pan(PAN) == "621234******1232"
    assert normalise_pan("6212 3456-7890 1232\n") == PAN
    for bad in ("6212345678901233", "12345", "62123456789012x2"):
        with pytest.raises(ValueError) as caught:
            normalise_pan(bad)
        assert bad not in str(caught.value)


def test_random_uids():
    assert is_random_uid("08A1B2C3") and not is_random_uid("04A1B2C3") and not is_random_uid("08A1B2C3D4E5F6")


# ---------------------------------------------------------------------------- punches with card kinds


def _punch(**changes) -> Punch:
    fields = dict(v=1, site="S1", gate="north", seq=1, time="2026-03-02T08:00:00.000Z", mono_ms=5, boot="b",
                  synced=True, card="DEADBEEF", tech="iso14443a", reader="udp", dir="in", roster="none",
                  prev="0" * 64, key="", sig="")
    fields.update(changes)
    return sign_punch(Punch(**fields), BANK_KEY)


def test_version_1_punches_stay_verifiable_and_version_2_names_the_kind():
    old = _punch()
    assert b'"kind"' not in old.to_json()  # a v1 punch is byte for byte what it was
    again = Punch.from_dict(json.loads(old.to_json()))
    verify_punch(again, BANK_KEY.public_key())
    assert again.kind == "uid" and again.digest() == old.digest()
    bank = _punch(v=2, kind="bank", card=card_identifier(CARD_KEY, PAN))
    parsed = Punch.from_dict(json.loads(bank.to_json()))
    verify_punch(parsed, BANK_KEY.public_key())
    assert parsed.kind == "bank" and json.loads(bank.to_json())["sun"] == ""
    tampered = json.loads(bank.to_json())
    tampered["kind"] = "uid"
    tampered["card"] = "DEADBEEF"
    with pytest.raises(ProtocolError) as caught:
        verify_punch(Punch.from_dict(tampered), BANK_KEY.public_key())
    assert caught.value.reason == "bad_signature"


@pytest.mark.parametrize("changes, reason", [
    ({"v": 1, "kind": "bank"}, "unknown field"),  # a v1 punch has no kind
    ({"v": 2, "kind": "magic"}, "kind"),
    ({"v": 2, "kind": "bank", "card": "DEADBEEF"}, "bank card"),  # a UID is no bank identifier
    ({"v": 2, "kind": "uid", "card": "A" * 32}, "4-10 bytes"),
    ({"v": 2, "kind": "uid", "sun": "00" * 16 + ":" + "00" * 8}, "no sun"),
    ({"v": 3}, "lacks cprev"),  # version 3 adds the card's link
    ({"v": 4}, "version"),
])
def test_punches_with_bad_card_kinds_are_refused(changes, reason):
    data = json.loads(_punch(v=2, kind="uid").to_json())
    data.update(changes)
    if data["v"] == 1:
        data.pop("sun", None)
    with pytest.raises(ProtocolError, match=reason):
        Punch.from_dict(data)


def test_a_roster_may_hold_bank_card_identifiers():
    identifier = card_identifier(CARD_KEY, PAN)
    roster = Roster("S1", "2026-03-02T08:00:00.000Z", frozenset({identifier, "DEADBEEF"}))
    assert Roster.load(roster.encode()).cards == {identifier, "DEADBEEF"}


# ---------------------------------------------------------------------------- through nfcpy's udp driver


class Reading:
    def __init__(self, device: str, card_key: bytes | None):
        self.reader = NfcReader(device, ("106A",), card_key=card_key)
        self.taps: list = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.reader.run, args=(self.taps.append, self.stop))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


def _wait_taps(reading: Reading, count: int) -> list:
    wait_for(lambda: len(reading.taps) >= count, timeout=10, message=f"{count} taps")
    return reading.taps


def test_a_bank_card_with_a_new_random_uid_each_tap_is_one_card(udp_device, caplog):
    caplog.set_level("DEBUG")
    with Reading(udp_device, CARD_KEY) as reading, VirtualCard(udp_device) as field:
        cards = [IsoDepCard(bytes.fromhex(uid), EmvApplet(PAN)) for uid in ("08A1B2C3", "08D4E5F6")]
        cards.append(IsoDepCard(bytes.fromhex("04A1B2C3D4E5F6"), EmvApplet(PAN, gpo_format=1)))  # fixed UID
        for card in cards:
            field.present_card(card, timeout=10)
        taps = _wait_taps(reading, 3)
    identifier = card_identifier(CARD_KEY, PAN)
    assert [(tap.uid, tap.kind) for tap in taps] == [(identifier, "bank")] * 3
    assert all(card.apdus >= 4 for card in cards)  # PPSE, AID, GPO, READ RECORD at least
    assert PAN not in caplog.text and "621234" not in caplog.text  # even nfcpy's debug log never saw it


def test_random_uid_cards_are_unreadable_without_emv_or_without_the_key(udp_device):
    with Reading(udp_device, CARD_KEY) as reading, VirtualCard(udp_device) as field:
        field.present_card(Ntag(bytes.fromhex("08112233")), timeout=10)
        field.present_card(IsoDepCard(bytes.fromhex("08445566"), EmvApplet(PAN, aid="A0000009999999", list_in_ppse=False)), timeout=10)
        field.present("DEADBEEF", timeout=10)
        taps = _wait_taps(reading, 3)
    assert [(t.uid, t.kind) for t in taps] == [("08112233", "random"), ("08445566", "random"), ("DEADBEEF", "uid")]
    with Reading(udp_device, None) as reading, VirtualCard(udp_device) as field:
        field.present_card(IsoDepCard(bytes.fromhex("08778899"), EmvApplet(PAN)), timeout=10)
        taps = _wait_taps(reading, 1)
    assert [(t.uid, t.kind) for t in taps] == [("08778899", "random")]  # no key: no bank read


# ---------------------------------------------------------------------------- the whole chain


def _collector_config(collector: CollectorSetup, key_file: Path) -> None:
    lines = collector.config_path.read_text().splitlines()
    collector.config_path.write_text(f'card_key = "{key_file}"\n' + "\n".join(
        line for line in lines if "card_key" not in line) + "\n")


@pytest.mark.slow
def test_bank_cards_end_to_end_and_the_pan_is_nowhere(tmp_path, broker, gate, database):
    key_file = tmp_path / "card.key"
    collector = CollectorSetup.create(tmp_path / "collector", broker=broker, db=database)
    cli("collector", "card", "keygen", "--out", str(key_file))
    assert key_file.stat().st_mode & 0o777 == 0o600
    _collector_config(collector, key_file)
    collector.run("site", "add", "S1", "--timezone", "Asia/Shanghai")
    collector.run("gate", "add", gate.gate, "--site", gate.site, "--public-key", gate.public_key)
    collector.run("worker", "add", "W1", "--name", "Zhang Wei", "--site", "S1")
    registered = collector.run("card", "register-bank", "--worker", "W1", "--json", input=PAN + "\n")
    card = json.loads(registered.stdout)
    assert card["masked"] == "621234******1232" and card["card"] == card_identifier(
        bytes.fromhex(key_file.read_text().splitlines()[-1]), PAN)
    random_uid = collector.run("card", "assign", "08A1B2C3", "--worker", "W1", check=False)
    assert random_uid.returncode != 0 and "random UID" in random_uid.stderr
    refused = collector.run("card", "register-bank", "--worker", "W1", input="6212345678901233\n", check=False)
    assert refused.returncode != 0 and "Luhn" in refused.stderr and "6212345678901233" not in refused.stderr

    gate.write_config(card_key_file=str(key_file))
    listener = Listener(broker.port, "attendance/#")
    collector_process = collector.start()
    agent = None
    try:
        wait_for(lambda: "connected to" in collector.log(), message="collector connected")
        agent = gate.start_agent()
        wait_for(lambda: "connected to" in (gate.directory / "agent.log").read_text(), message="agent connected")
        wait_for(lambda: gate.status()["roster_cards"] == 1, message="the bank card's identifier on the roster")
        cli("gate-agent", "virtual-card", "--device", gate.device, "--kind", "bank", "--pan-stdin", "--timeout", "20",
            "random", "random", input=PAN + "\n", timeout=90)
        assert gate.tap("08ABCDEF").returncode == 0  # a random UID and nothing else: no punch
        wait_for(lambda: collector.count("SELECT COUNT(*) FROM punches") == 2, message="two punches stored")
        wait_for(lambda: outbox_status(gate)["pending"] == 0, message="acknowledged")
        status = wait_for(lambda: [s for s in (json.loads(m.payload) for m in listener.received("/status"))
                                   if s.get("counters", {}).get("unreadable_cards") == 1],
                          message="a heartbeat counting the unreadable card")
        assert status[-1]["counters"]["recorded"] == 2
    finally:
        if agent is not None:
            stop_process(agent, signal.SIGTERM)
        stop_process(collector_process, signal.SIGTERM)
        listener.close()
    rows = collector.json("punches", "--site", "S1")
    assert [(r["card"], r["worker"]) for r in rows] == [(card["card"], "W1")] * 2
    assert collector.rows("SELECT DISTINCT card_kind FROM punches") == [("bank",)]
    with collector.store() as store:
        verdicts = [json.loads(b)["roster"] for b in store.gate_punch_bodies("S1", "north")]
    assert verdicts == ["known", "known"]
    workers = collector.json("worker", "list")
    assert workers[0]["cards"][0]["masked"] == "621234******1232"
    agent_log = (gate.directory / "agent.log").read_text()
    assert "signal unreadable" in agent_log and "use another card" in agent_log

    evidence = tmp_path / "evidence.json"
    today = date.today()
    collector.run("evidence", "--worker", "W1", "--from", str(today - timedelta(days=1)),
                  "--to", str(today + timedelta(days=1)), "--out", str(evidence))
    checked = cli("collector", "verify", str(evidence), "--config", str(collector.config_path), "--json")
    assert json.loads(checked.stdout)["punches"] == 2

    # The PAN is in no file of the whole run (databases, logs, configs, outbox), nor in any MQTT payload.
    needles = [PAN.encode(), bytes.fromhex(PAN)]  # as text, and as the BCD a card sends
    payloads = [m.payload for m in listener.all]
    assert payloads and not any(PAN.encode() in p or bytes.fromhex(PAN) in p for p in payloads)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) > 5
    for path in files:
        data = path.read_bytes()
        assert not any(needle in data for needle in needles), f"the PAN is in {path}"
    if isinstance(database, str):  # PostgreSQL: every text column of every table, as the database holds it
        with collector.store() as store:
            tables = [r[0] for r in store.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'").fetchall()]
            for table in tables:
                dump = " ".join(map(str, store.execute(f"SELECT * FROM {table}").fetchall()))
                assert PAN not in dump, f"the PAN is in table {table}"


# ---------------------------------------------------------------------------- signals and key files


def test_the_unreadable_signal_is_distinct_everywhere():
    from gate_agent.feedback import GpioFeedback
    from gate_agent.reader import acr122_led_buzzer_apdu

    gpio = GpioFeedback.PATTERNS
    assert gpio[Signal.UNREADABLE] not in [p for s, p in gpio.items() if s is not Signal.UNREADABLE]
    acr = acr122_led_buzzer_apdu(Signal.UNREADABLE)
    assert acr not in [acr122_led_buzzer_apdu(s) for s in Signal if s is not Signal.UNREADABLE]


def test_card_key_files_are_secrets(tmp_path):
    from gate_agent.emv import new_card_key_text
    from gate_agent.keys import KeyFileError, load_card_key

    path = tmp_path / "card.key"
    path.write_text(new_card_key_text())
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_card_key(path)
    path.chmod(0o600)
    assert len(load_card_key(path)) == 32
    path.write_text("abcd\n")
    with pytest.raises(KeyFileError, match="2 bytes, not 32"):
        load_card_key(path)

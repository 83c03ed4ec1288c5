"""NTAG 424 DNA cards with Secure Unique NFC: the crypto against NXP's published vectors, and the whole
chain through nfcpy's udp driver: genuine taps count, a replayed SUN message, a card with the right UID
but the wrong keys and a copy of the UID alone are flagged and never count as presence."""

from __future__ import annotations

import json
import signal
import threading

import pytest

from collector.ingest.sun import FORGED, REPLAY, UNVERIFIED, parse_master_key, provisioning, verify
from gate_agent.ntag424 import (
    KEY_FILE_READ,
    KEY_META_READ,
    SunError,
    card_key,
    check_sun,
    decrypt_picc,
    diversify,
    sdm_mac,
)
from gate_agent.reader import NfcReader
from gate_agent.sun_reader import ndef_uri, sun_from_url
from gate_agent.virtual_card import Ntag, VirtualCard
from gate_agent.virtual_ntag424 import VirtualNtag424
from tests.helpers import CollectorSetup, cli, outbox_status, stop_process, wait_for

UID = "04DE5F1EACC040"
MASTER = bytes(range(16))


# ---------------------------------------------------------------------------- published test vectors


def test_sun_message_of_an12196():
    """AN12196 section 3.3: SDMMetaReadKey and SDMFileReadKey all zero, the URL's e= and c= values."""
    data = decrypt_picc(bytes(16), bytes.fromhex("EF963FF7828658A599F3041510671E88"))
    assert data.uid == bytes.fromhex("04DE5F1EACC040") and data.counter == 0x3D
    assert sdm_mac(bytes(16), data.uid, data.counter) == bytes.fromhex("94EED9EE65337086")
    assert sdm_mac(bytes(16), data.uid, data.counter + 1) != bytes.fromhex("94EED9EE65337086")


def test_key_diversification_of_an10922():
    """AN10922 section 2.2.1: AES-128 diversification of a DESFire key by UID, AID and system identifier."""
    master = bytes.fromhex("00112233445566778899AABBCCDDEEFF")
    data = bytes.fromhex("04782E21801D803042F54E585020416275")
    assert diversify(master, data) == bytes.fromhex("A8DD63A3B89D54B37CA802473FDA9175")


def test_card_keys_are_per_card_except_the_meta_read_key():
    uid_a, uid_b = bytes.fromhex(UID), bytes.fromhex("04AABBCCDDEEFF")
    assert card_key(MASTER, uid_a, KEY_FILE_READ) != card_key(MASTER, uid_b, KEY_FILE_READ)
    assert card_key(MASTER, uid_a, KEY_META_READ) == card_key(MASTER, uid_b, KEY_META_READ)
    assert card_key(MASTER, uid_a, 0) != card_key(bytes(16), uid_a, 0)


def _sun_of(card: VirtualNtag424) -> str:
    content = card.file_at_next_read()
    return sun_from_url(ndef_uri(content[2:]))


def test_sun_messages_check_out_only_under_the_right_keys():
    card = VirtualNtag424(provisioning(MASTER, UID, "https://bank.example/tap"))
    sun = _sun_of(card)
    assert check_sun(MASTER, sun).counter == 1 and check_sun(MASTER, _sun_of(card)).counter == 2
    assert verify(MASTER, UID, sun) == (1, None)
    assert verify(MASTER, "04AABBCCDDEEFF", sun) == (None, FORGED)  # another card's message
    assert verify(None, UID, sun) == (None, UNVERIFIED)
    with pytest.raises(SunError):
        check_sun(bytes(16), sun)  # another system's master key
    picc, mac = sun.split(":")
    tampered = f"{picc}:{'0' * 16}"
    assert verify(MASTER, UID, tampered) == (None, FORGED)
    other = VirtualNtag424(provisioning(bytes(range(1, 17)), UID, "https://bank.example/tap"))
    assert verify(MASTER, UID, _sun_of(other)) == (None, FORGED)  # right UID, wrong keys


def test_provisioning_places_the_sun_parameters_in_the_url():
    document = provisioning(MASTER, UID, "https://bank.example/tap?site=S1")
    assert document["url_template"] == "https://bank.example/tap?site=S1&e=" + "0" * 32 + "&c=" + "0" * 16
    content = bytes.fromhex(document["ndef_file"]["content"])
    settings = document["file_settings"]
    assert content[settings["picc_data_offset"] - 2:settings["picc_data_offset"]] == b"e="
    assert content[settings["sdm_mac_offset"] - 2:settings["sdm_mac_offset"]] == b"c="
    assert set(document["keys"]) == {"0", "1", "2", "3", "4"} and len(set(document["keys"].values())) == 5
    with pytest.raises(ValueError):
        provisioning(MASTER, "DEADBEEF", "https://bank.example/tap")
    with pytest.raises(ValueError):
        provisioning(MASTER, UID, "ftp://bank.example/tap")


def test_sun_url_parsing_refuses_what_is_not_a_sun_message():
    assert sun_from_url("https://x/t?e=" + "A" * 32 + "&c=" + "B" * 16) == "a" * 32 + ":" + "b" * 16
    assert sun_from_url("https://x/t?e=" + "A" * 31 + "&c=" + "B" * 16) is None
    assert sun_from_url("https://x/t?c=" + "B" * 16) is None
    assert ndef_uri(b"\xd1\x01\x05T\x02enab") is None  # a text record, not a URI


# ---------------------------------------------------------------------------- the reader, through nfcpy


def test_the_reader_takes_the_sun_message_through_nfcpy(udp_device):
    card = VirtualNtag424(provisioning(MASTER, UID, "https://bank.example/tap"))
    reader = NfcReader(udp_device, ("106A",), card_key=bytes(32))  # a bank card key too: EMV is tried first
    taps, stop = [], threading.Event()
    thread = threading.Thread(target=reader.run, args=(taps.append, stop))
    thread.start()
    try:
        with VirtualCard(udp_device) as field:
            field.present_card(card.card(), timeout=10)
            field.present_card(card.card(), timeout=10)
        wait_for(lambda: len(taps) == 2, timeout=10, message="two taps")
    finally:
        stop.set()
        thread.join(10)
    assert [(t.uid, t.kind) for t in taps] == [(UID, "ntag424")] * 2
    assert [check_sun(MASTER, t.sun).counter for t in taps] == [1, 2]


# ---------------------------------------------------------------------------- the whole chain


@pytest.mark.slow
def test_ntag424_taps_count_and_replays_and_forgeries_do_not(tmp_path, broker, gate, database):
    sun_key = tmp_path / "sun.key"
    cli("collector", "card", "keygen", "--sun", "--out", str(sun_key))
    assert sun_key.stat().st_mode & 0o777 == 0o600
    collector = CollectorSetup.create(tmp_path / "collector", broker=broker, db=database)
    collector.config_path.write_text(f'sun_key = "{sun_key}"\n' + collector.config_path.read_text())
    collector.run("site", "add", "S1", "--timezone", "Asia/Shanghai")
    collector.run("gate", "add", gate.gate, "--site", gate.site, "--public-key", gate.public_key)
    collector.run("worker", "add", "W2", "--name", "Li Na", "--site", "S1")
    card_file = tmp_path / "card.json"
    collector.run("card", "provision", "--uid", UID, "--url", "https://bank.example/tap", "--out", str(card_file),
                  "--worker", "W2")
    assert card_file.stat().st_mode & 0o777 == 0o600
    refused = collector.run("card", "provision", "--uid", UID, "--url", "https://bank.example/tap",
                            "--out", str(card_file), check=False)
    assert refused.returncode != 0 and "already exists" in refused.stderr
    gate.write_config(direction="toggle")

    genuine = VirtualNtag424.load(str(card_file))
    wrong_keys = VirtualNtag424(provisioning(bytes(range(1, 17)), UID, "https://bank.example/tap"))
    collector_process = collector.start()
    agent = None
    try:
        wait_for(lambda: "connected to" in collector.log(), message="collector connected")
        agent = gate.start_agent()
        wait_for(lambda: "connected to" in (gate.directory / "agent.log").read_text(), message="agent connected")
        wait_for(lambda: gate.status()["roster_cards"] == 1, message="the card on the gate's roster")
        with VirtualCard(gate.device) as field:
            first = genuine.card()
            field.present_card(first, timeout=20)  # seq 1: in
            field.present_card(genuine.card(replay=first.applet.shown[0]), timeout=20)  # seq 2: a replay
            field.present_card(wrong_keys.card(), timeout=20)  # seq 3: right UID, wrong keys
            field.present_card(Ntag(bytes.fromhex(UID)), timeout=20)  # seq 4: a copy of the UID alone
        genuine.save(str(card_file))
        tapped = cli("gate-agent", "virtual-card", "--device", gate.device, "--kind", "ntag424",
                     "--keys", str(card_file), "--timeout", "20", UID)  # seq 5: out
        assert tapped.stdout.startswith(f"card {UID} read")
        wait_for(lambda: collector.count("SELECT COUNT(*) FROM punches") == 5, message="five punches stored")
        wait_for(lambda: outbox_status(gate)["pending"] == 0, message="acknowledged")
    finally:
        if agent is not None:
            stop_process(agent, signal.SIGTERM)
        stop_process(collector_process, signal.SIGTERM)
    assert json.loads(card_file.read_text())["virtual_counter"] == 2
    rows = collector.json("punches", "--site", "S1")
    assert [r["worker"] for r in rows] == ["W2"] * 5
    flags = [set(r["flags"]) & {FORGED, REPLAY, UNVERIFIED} for r in rows]
    assert flags == [set(), {REPLAY}, {FORGED}, {FORGED}, set()]
    assert collector.rows("SELECT seq, card_kind, card_counter FROM punches ORDER BY seq") == [
        (1, "ntag424", 1), (2, "ntag424", 1), (3, "ntag424", None), (4, "uid", None), (5, "ntag424", 2)]
    with collector.store() as store:
        verdicts = {json.loads(b)["roster"] for b in store.gate_punch_bodies("S1", "north")}
    assert verdicts == {"known"}  # the gate's offline decision goes by the UID
    counters = collector.json("counters")
    assert counters[REPLAY] == 1 and counters[FORGED] == 1  # the UID copy is judged when read, not stored

    days = collector.json("attendance", "--site", "S1", "--from", rows[0]["local_time"][:10],
                          "--to", rows[-1]["local_time"][:10])
    assert len(days) == 1 and days[0]["worker"] == "W2"
    assert [(s["in_ref"], s["out_ref"], s["status"]) for s in days[0]["shifts"]] == [
        ("north#1", "north#5", "complete")]
    assert {FORGED, REPLAY} <= set(days[0]["flags"]) and days[0]["anomalies"] == []
    assert parse_master_key(sun_key.read_text()) != MASTER

    # The evidence file carries the bank's card judgements, so its days are the attendance's days.
    evidence = tmp_path / "evidence.json"
    day = days[0]["date"]
    collector.run("evidence", "--worker", "W2", "--from", day, "--to", day, "--out", str(evidence))
    document = json.loads(evidence.read_text())
    assert document["gates"][0]["chains"][0]["card_flags"] == [[], [REPLAY], [FORGED], [FORGED], []]
    checked = json.loads(cli("collector", "verify", str(evidence), "--config", str(collector.config_path),
                             "--json").stdout)
    assert checked["punches"] == 5 and checked["worked_minutes"] == days[0]["worked_minutes"]
    document["gates"][0]["chains"][0]["card_flags"][1] = []  # make the replay count
    evidence.write_text(json.dumps(document))
    tampered = cli("collector", "verify", str(evidence), "--config", str(collector.config_path), check=False)
    assert tampered.returncode != 0 and "FAILED" in tampered.stderr


def test_the_collector_refuses_a_master_key_others_may_read(tmp_path):
    from collector.config import load_config
    from collector.ingest.sun import load_master_key, new_master_key_text
    from gate_agent.configfile import ConfigError

    key = tmp_path / "sun.key"
    key.write_text(new_master_key_text())
    key.chmod(0o640)
    config_path = tmp_path / "collector.toml"
    config_path.write_text(f'db = "{tmp_path / "c.sqlite3"}"\nsun_key = "{key}"\n[mqtt]\nhost = "127.0.0.1"\n')
    with pytest.raises(ConfigError, match="chmod 600"):
        load_master_key(load_config(config_path))
    key.chmod(0o600)
    assert len(load_master_key(load_config(config_path))) == 16

"""Sneaker-net: gate-agent export, collector import, collector ack-file, gate-agent load-ack."""

from __future__ import annotations

import base64
import json
import signal
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from collector.deploy.pki import load_key
from gate_agent.keys import load_private_key
from gate_agent.outbox import Outbox
from gate_agent.protocol import Ack, Punch, canonical_json, key_id, parse_public_key, verify_chain
from tests.helpers import (
    BANK_KEY,
    BANK_PUBLIC,
    CollectorSetup,
    GateSetup,
    cli,
    fill_outbox,
    outbox_status,
    signed_ack,
    stop_process,
    wait_for,
)
from tests.ports import free_port

# ---------------------------------------------------------------------------------------------- setups


@pytest.fixture
def gate(tmp_path, udp_device) -> GateSetup:
    """A gate whose broker is nowhere: everything it records stays pending unless acknowledged offline."""
    return GateSetup.create(tmp_path / "gate", broker=SimpleNamespace(port=free_port()), device=udp_device)


@pytest.fixture
def collector(tmp_path, gate, database) -> CollectorSetup:
    setup = CollectorSetup.create(tmp_path / "collector", broker=SimpleNamespace(port=free_port()), db=database)
    setup.run("site", "add", "S1", "--timezone", "Asia/Shanghai")
    setup.run("gate", "add", gate.gate, "--site", gate.site, "--public-key", gate.public_key)
    return setup


@pytest.fixture
def pki(tmp_path) -> Path:
    cli("collector", "ca", "init", "--dir", str(tmp_path / "pki"))
    return tmp_path / "pki"


def export(gate: GateSetup, out: Path, *args: str, check: bool = True):
    return cli("gate-agent", "export", "--config", str(gate.config_path), "--out", str(out), *args, check=check)


def import_bundle(collector: CollectorSetup, path: Path, check: bool = True):
    return cli("collector", "import", str(path), "--config", str(collector.config_path), check=check)


def summary(collector: CollectorSetup, path: Path) -> dict:
    return json.loads(cli("collector", "import", str(path), "--json", "--config", str(collector.config_path)).stdout)


def punch_rows(collector: CollectorSetup) -> list[tuple]:
    with collector.store(readonly=True) as store:
        return [(r["site"], r["gate"], r["seq"], r["digest"], r["body"], r["source"], r["flags"], r["received_at"])
                for r in sorted(store.punches(), key=lambda r: r["seq"])]


def one_error_line(result, expected: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert expected in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr


def outbox_bodies(gate: GateSetup) -> list[bytes]:
    with Outbox(gate.data_dir, gate.site, gate.gate, readonly=True) as outbox:
        return [bytes(body) for _, body in outbox.bodies(1, outbox.head_seq)]


# ---------------------------------------------------------------------------------------------- round trips


def test_export_and_import_store_every_punch_once_exactly_as_signed(tmp_path, gate, collector):
    fill_outbox(gate, 1234)  # three punch messages of at most 500
    result = export(gate, tmp_path / "north.bundle")
    assert "exported 1234 punches of gate S1/north (seq 1..1234)" in result.stdout
    assert outbox_status(gate)["pending"] == 1234, "an export forgets nothing"
    imported = import_bundle(collector, tmp_path / "north.bundle")
    assert ("seq 1..1234 (1234 punches): stored 1234, duplicates 0, quarantined 0, equivocations 0; "
            "the bank now holds S1/north through seq 1234") in imported.stdout
    assert "importing S1/north" in imported.stderr  # the progress bar
    rows = punch_rows(collector)
    assert [r[2] for r in rows] == list(range(1, 1235))
    assert [r[4] for r in rows] == outbox_bodies(gate)
    assert {r[5] for r in rows} == {"import"}
    key = parse_public_key(gate.public_key)
    verify_chain([Punch.from_dict(json.loads(r[4])) for r in rows], {key_id(key): key})
    assert collector.json("counters")["stored"] == 1234


def test_a_big_bundle_goes_in_several_transactions_with_progress(tmp_path, gate, collector):
    from collector.ingest.bundle import import_bundle as ingest_bundle
    from collector.ingest.bundle import read_bundle

    fill_outbox(gate, 1001)
    export(gate, tmp_path / "north.bundle")
    steps: list[int] = []
    with collector.store() as store:
        bundle = read_bundle(tmp_path / "north.bundle", store)
        result = ingest_bundle(store, bundle, progress=steps.append, messages_per_burst=1)
    # One progress step per committed burst; the punches went in as punch-topic messages, as over MQTT.
    assert steps == [500, 500, 1] and (result.stored, result.held_through) == (1001, 1001)
    assert collector.json("counters")["messages"] == 3


def test_importing_twice_or_an_overlap_changes_no_punch(tmp_path, gate, collector):
    fill_outbox(gate, 40)
    export(gate, tmp_path / "first.bundle")
    assert summary(collector, tmp_path / "first.bundle")["stored"] == 40
    before = punch_rows(collector)
    again = summary(collector, tmp_path / "first.bundle")
    assert (again["stored"], again["duplicates"], again["quarantined"], again["equivocations"]) == (0, 40, 0, 0)
    assert punch_rows(collector) == before
    fill_outbox(gate, 10)
    export(gate, tmp_path / "overlap.bundle", "--since", "31")
    overlap = summary(collector, tmp_path / "overlap.bundle")
    assert (overlap["first"], overlap["last"], overlap["stored"], overlap["duplicates"]) == (31, 50, 10, 10)
    assert punch_rows(collector)[:40] == before and overlap["held_through"] == 50


def test_export_starts_after_the_last_acknowledged_punch(tmp_path, gate):
    fill_outbox(gate, 5)
    with Outbox(gate.data_dir, gate.site, gate.gate) as outbox:
        punches = outbox.punches()
        outbox.acknowledge(Ack(3, punches[2].digest()))
    said = export(gate, tmp_path / "a.bundle").stdout
    assert "(seq 4..5)" in said and "they stay pending here" in said
    said = export(gate, tmp_path / "b.bundle", "--since", "2").stdout
    assert "(seq 2..5)" in said and "the bank holds up to seq 3 already; the other 2 stay pending here" in said
    # Every punch exported already held by the bank: nothing pending is said to be.
    with Outbox(gate.data_dir, gate.site, gate.gate) as outbox:
        outbox.acknowledge(Ack(5, punches[4].digest()))
    said = export(gate, tmp_path / "held-all.bundle", "--since", "1").stdout
    assert "the bank holds every one of them already (up to seq 5): nothing is pending here" in said
    (tmp_path / "held-all.bundle").unlink()
    before = (tmp_path / "b.bundle").read_bytes()
    one_error_line(export(gate, tmp_path / "b.bundle", check=False), "already exists")
    assert (tmp_path / "b.bundle").read_bytes() == before
    with Outbox(gate.data_dir, gate.site, gate.gate) as outbox:
        outbox.acknowledge(Ack(5, punches[4].digest()))
        outbox.prune(0, datetime.now(UTC))  # what the link does once acknowledged punches are old enough
    one_error_line(export(gate, tmp_path / "c.bundle", check=False), "nothing to export")
    one_error_line(export(gate, tmp_path / "d.bundle", "--since", "2", check=False), "no longer held here")
    assert not (tmp_path / "c.bundle").exists() and not (tmp_path / "d.bundle").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["a.bundle", "b.bundle"]


def test_export_before_the_agent_ever_ran_is_one_clear_line(tmp_path, gate):
    one_error_line(export(gate, tmp_path / "x.bundle", check=False), "does not exist")


# ---------------------------------------------------------------------------------------------- bad bundles


def _damage(data: bytes, case: str, tmp_path: Path) -> bytes:
    header, _, rest = data.partition(b"\n")
    lines = rest.split(b"\n")
    if case == "a byte of a punch":
        index = rest.index(b'"card":"') + len(b'"card":"')
        return header + b"\n" + rest[:index] + (b"A" if rest[index:index + 1] != b"A" else b"B") + rest[index + 1:]
    if case == "last punch dropped":
        return header + b"\n" + b"\n".join(lines[:-2]) + b"\n"
    if case == "cut mid-line":
        return data[:len(data) - 100]
    if case == "header count edited":
        document = json.loads(header)
        document["count"] -= 1
        document["last"] -= 1
        return canonical_json(document) + b"\n" + b"\n".join(lines[:-2]) + b"\n"
    if case == "signed by another key":
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        other = Ed25519PrivateKey.generate()
        document = json.loads(header)
        del document["sig"]
        document["key"] = key_id(other.public_key())
        document["sig"] = other.sign(canonical_json(document)).hex()
        return canonical_json(document) + b"\n" + rest
    if case == "not a bundle":
        return b"\x00\x01 garbage\n"
    if case == "empty":
        return b""
    raise AssertionError(case)


DAMAGES = {
    "a byte of a punch": "do not match the signed header",
    "last punch dropped": "do not match the signed header",
    "cut mid-line": "do not match the signed header",
    "header count edited": "signature does not verify",
    "signed by another key": "not registered for S1/north",
    "not a bundle": "is not a punch bundle",
    "empty": "is not a punch bundle",
}


def test_a_damaged_bundle_is_refused_whole(tmp_path, gate, collector):
    fill_outbox(gate, 8)
    export(gate, tmp_path / "good.bundle")
    good = (tmp_path / "good.bundle").read_bytes()
    for case, expected in DAMAGES.items():
        damaged = tmp_path / "damaged.bundle"
        damaged.write_bytes(_damage(good, case, tmp_path))
        result = import_bundle(collector, damaged, check=False)
        assert expected in result.stderr, f"{case}: {result.stderr}"
        one_error_line(result, expected)
        assert collector.count("SELECT COUNT(*) FROM punches") == 0, case
        assert collector.count("SELECT COUNT(*) FROM quarantine") == 0, case
    assert "stored 8" in import_bundle(collector, tmp_path / "good.bundle").stdout  # the original is fine


def test_a_bundle_of_an_unregistered_gate_is_refused(tmp_path, udp_device, collector):
    stranger = GateSetup.create(tmp_path / "stranger", broker=SimpleNamespace(port=1), device=udp_device,
                                gate="stranger")
    fill_outbox(stranger, 3)
    export(stranger, tmp_path / "stranger.bundle")
    one_error_line(import_bundle(collector, tmp_path / "stranger.bundle", check=False),
                   "gate S1/stranger is not registered here")


def test_punches_that_fail_verification_inside_a_signed_bundle_are_quarantined_and_reported(tmp_path, gate,
                                                                                           collector):
    """A gate whose signing key the bank does not hold for some punches: each punch is checked on its own."""
    fill_outbox(gate, 4)
    export(gate, tmp_path / "good.bundle")
    cli("collector", "gate", "deactivate", "north", "--site", "S1", "--config", str(collector.config_path))
    result = import_bundle(collector, tmp_path / "good.bundle", check=False)
    assert "stored 0, duplicates 0, quarantined 4" in result.stdout
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("Error: 4 punch(es) not cleanly stored")
    assert collector.json("quarantine")[0]["reason"] == "gate_inactive"


# ---------------------------------------------------------------------------------------------- ack files


def ack_file(collector: CollectorSetup, out: Path, *, config: Path | None = None, check: bool = True):
    return cli("collector", "ack-file", "--site", "S1", "--gate", "north", "--out", str(out),
               "--config", str(config or collector.config_path), check=check)


def load_ack(gate: GateSetup, path: Path, check: bool = True):
    return cli("gate-agent", "load-ack", "--config", str(gate.config_path), str(path), check=check)


def test_an_ack_file_from_the_bank_lets_the_gate_forget_what_the_bank_holds(tmp_path, gate, collector):
    fill_outbox(gate, 12)
    export(gate, tmp_path / "north.bundle", "--since", "1")
    import_bundle(collector, tmp_path / "north.bundle")
    fill_outbox(gate, 3)  # taps after the export: the bank does not hold them yet
    written = ack_file(collector, tmp_path / "ack.json")
    assert "holds S1/north through seq 12" in written.stdout
    ack_file(collector, tmp_path / "ack-again.json")
    assert outbox_status(gate)["pending"] == 15, "nothing is forgotten before the gate loads the ack"
    document = json.loads((tmp_path / "ack.json").read_text())
    assert document["ack"]["key"] == key_id(BANK_PUBLIC) and document["ack"]["type"] == "ack"
    loaded = load_ack(gate, tmp_path / "ack.json")
    assert "through seq 12: acknowledged; pending 3" in loaded.stdout
    status = outbox_status(gate)
    assert (status["acked_seq"], status["pending"], status["last_seq"]) == (12, 3, 15)
    assert "already acknowledged through seq 12" in load_ack(gate, tmp_path / "ack-again.json").stdout
    one_error_line(ack_file(collector, tmp_path / "ack.json", check=False), "already exists")


def test_ack_file_needs_the_bank_key_and_punches_to_acknowledge(tmp_path, collector):
    one_error_line(ack_file(collector, tmp_path / "a.json", check=False), "holds no punches of gate S1/north")
    keyless = tmp_path / "keyless.toml"
    keyless.write_text("\n".join(line for line in collector.config_path.read_text().splitlines()
                                 if not line.startswith("signing_key")))
    one_error_line(ack_file(collector, tmp_path / "a.json", config=keyless, check=False), "signing_key is not set")
    assert not (tmp_path / "a.json").exists()


def _old_style(document: dict, certificate: Path, key: Path) -> dict:
    """An ack file as a certificate holder could sign one: the broker's server key, the collector's TLS key."""
    ack = document["ack"]
    forged = {"format": "site-gate-ack", "version": 1, "site": ack["site"], "gate": ack["gate"], "seq": ack["seq"],
              "digest": ack["digest"], "issued": ack["issued"], "certificate": certificate.read_text()}
    forged["sig"] = base64.b64encode(load_key(key).sign(canonical_json(forged), ec.ECDSA(hashes.SHA256()))).decode()
    return forged


def _bank_signed(seq: int, digest: str, *, gate: str = "north", key=BANK_KEY) -> dict:
    return {"format": "site-gate-ack", "version": 1, "ack": json.loads(signed_ack("S1", gate, seq, digest, key=key))}


FORGERIES = {
    "seq edited": "the bank's signature does not verify",
    "unsigned": "ack fields",
    "signed by the broker's server key": "ack file fields",
    "signed by the collector's TLS key": "ack file fields",
    "signed by a key the gate does not trust": "not a bank key this side trusts",
    "for another gate": "ack is for S1/south, not S1/north",
    "bank holds a different punch": "differs from this gate's: nothing forgotten",
    "beyond what the gate wrote": "has written only 6: nothing forgotten",
    "not an ack file": "is not an ack file",
}


def test_a_forged_or_misdirected_ack_file_forgets_nothing(tmp_path, gate, collector, pki):
    """Only the bank's key, pinned by the gate, makes a gate forget: not the broker's TLS key (whoever
    runs the broker holds it), not the collector's TLS key, not a key of the attacker's own."""
    fill_outbox(gate, 6)
    export(gate, tmp_path / "north.bundle")
    import_bundle(collector, tmp_path / "north.bundle")
    ack_file(collector, tmp_path / "ack.json")
    genuine = json.loads((tmp_path / "ack.json").read_text())
    digest = genuine["ack"]["digest"]
    for case, expected in FORGERIES.items():
        document = json.loads(json.dumps(genuine))
        if case == "seq edited":
            document["ack"]["seq"] = 5
        elif case == "unsigned":
            del document["ack"]["sig"], document["ack"]["key"]
        elif case == "signed by the broker's server key":
            document = _old_style(document, pki / "server.crt", pki / "server.key")
        elif case == "signed by the collector's TLS key":
            document = _old_style(document, pki / "collector.crt", pki / "collector.key")
        elif case == "signed by a key the gate does not trust":
            document = _bank_signed(6, digest, key=Ed25519PrivateKey.generate())
        elif case == "for another gate":
            document = _bank_signed(6, digest, gate="south")
        elif case == "bank holds a different punch":
            document = _bank_signed(6, "ab" * 32)
        elif case == "beyond what the gate wrote":
            document = _bank_signed(7, digest)
        (tmp_path / "forged.json").write_text(json.dumps(document) if case != "not an ack file" else "[1, 2]")
        result = load_ack(gate, tmp_path / "forged.json", check=False)
        assert expected in result.stderr, f"{case}: {result.stderr}"
        one_error_line(result, expected)
        status = outbox_status(gate)
        assert (status["acked_seq"], status["pending"]) == (0, 6), case
    assert "through seq 6: acknowledged" in load_ack(gate, tmp_path / "ack.json").stdout


# ---------------------------------------------------------------------------------------------- with MQTT


@pytest.mark.slow
def test_an_import_reaches_an_offline_gate_as_an_ack_once_it_is_back_online(tmp_path, broker, udp_device):
    """The bank imports what a gate without network recorded; when the gate comes back, its heartbeat
    shows it still waits, the collector acks, and MQTT's redelivery of the same punches changes nothing."""
    gate = GateSetup.create(tmp_path / "gate", broker=broker, device=udp_device)
    collector = CollectorSetup.create(tmp_path / "collector", broker=broker)
    collector.run("site", "add", "S1", "--timezone", "Asia/Shanghai")
    collector.run("gate", "add", "north", "--site", "S1", "--public-key", gate.public_key)
    daemon = collector.start()
    agent = gate.start_agent()
    try:
        wait_for(lambda: "connected to" in collector.log(), message="collector connected")
        broker.stop()  # the site loses its network
        gate.tap("04A1B2C3D4E5F6", "DEADBEEF", "04112233445566")
        assert outbox_status(gate)["pending"] == 3
        export(gate, tmp_path / "north.bundle")  # while the agent runs
        assert "stored 3" in import_bundle(collector, tmp_path / "north.bundle").stdout
        assert outbox_status(gate)["pending"] == 3 and agent.poll() is None
        imported = punch_rows(collector)
        broker.start()
        wait_for(lambda: outbox_status(gate)["pending"] == 0, timeout=60, message="the gate forgetting its punches")
        assert punch_rows(collector) == imported, "MQTT's redelivery of imported punches changed a punch"
        assert {row[5] for row in imported} == {"import"}
        # And the other way round: importing what MQTT already delivered changes nothing either.
        gate.tap("11223344")
        wait_for(lambda: outbox_status(gate)["acked_seq"] == 4, message="the live tap acknowledged")
        before = punch_rows(collector)
        export(gate, tmp_path / "all.bundle", "--since", "1")
        again = summary(collector, tmp_path / "all.bundle")
        assert (again["stored"], again["duplicates"]) == (0, 4)
        assert punch_rows(collector) == before and before[3][5] == "mqtt"
    finally:
        stop_process(agent, signal.SIGKILL)
        stop_process(daemon, signal.SIGKILL)


def test_the_gate_key_is_what_signs_the_bundle(tmp_path, gate):
    """The header's key id and signature come from the gate's own signing key."""
    fill_outbox(gate, 2)
    export(gate, tmp_path / "n.bundle")
    header = json.loads((tmp_path / "n.bundle").read_bytes().split(b"\n")[0])
    key = load_private_key(gate.key_file).public_key()
    assert header["key"] == key_id(key)
    signature = bytes.fromhex(header.pop("sig"))
    key.verify(signature, canonical_json(header))
    assert (header["format"], header["version"], header["site"], header["gate"], header["first"], header["last"],
            header["count"]) == ("site-gate-bundle", 1, "S1", "north", 1, 2, 2)

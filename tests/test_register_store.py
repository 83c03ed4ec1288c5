"""The register of gate keys at the bank: every key change is a signed entry, at once when the bank's key is
at hand and by ``sync`` otherwise (keys of before the register too), on both engines, never forked by two
writers, and whatever the history of adds, rotations and revocations, a register ``check`` accepts."""

from __future__ import annotations

import json
import signal
import tempfile
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.evidence.register import (
    REGISTER,
    check_citation,
    check_register,
    citation,
    entry_digest,
    export_bytes,
    load_mirror,
    read_export,
    sync,
)
from collector.store import Store, schema
from gate_agent.protocol import GENESIS, format_time, key_id, public_key_text
from tests import postgres
from tests.helpers import BANK_KEY, BANK_KEYS, CollectorSetup, stop_process, wait_for

T0 = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)


class Moment:
    """A store clock the test moves."""

    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> None:
        self.now += timedelta(**delta)


def new_key() -> str:
    return public_key_text(Ed25519PrivateKey.generate().public_key())


def mirror_of(store: Store):
    return load_mirror(export_bytes(store), BANK_KEYS)


@pytest.fixture
def bank(tmp_path, database):
    setup = CollectorSetup.create(tmp_path / "collector", broker=SimpleNamespace(port=1883), db=database)
    setup.run("site", "add", "S1", "--timezone", "Asia/Shanghai")
    return setup


def keyless(setup: CollectorSetup, tmp_path: Path) -> Path:
    """The same collector's configuration with a signing key that is not there (an operator's machine)."""
    path = tmp_path / "keyless.toml"
    path.write_text(setup.config_path.read_text().replace(
        f'signing_key = "{setup.directory / "bank.key"}"', f'signing_key = "{tmp_path / "absent.key"}"'))
    return path


def test_adding_rotating_and_revoking_a_gate_key_appends_its_signed_entry_at_once(bank):
    first, second = new_key(), new_key()
    added = bank.run("gate", "add", "north", "--site", "S1", "--public-key", first)
    assert "register: entry 1: add key" in added.stderr
    bank.run("gate", "add", "north", "--site", "S1", "--public-key", second)
    bank.run("gate", "revoke-key", "north", "--site", "S1", "--key", key_id(first))
    with bank.store() as store:
        rows = store.register_entries()
        keys = {k["key_id"]: k for k in store.public_keys("S1", "north")}
        mirror = mirror_of(store)
        cited = citation(store, "S1", "north", key_id(second))
    entries = [json.loads(row["entry"]) for row in rows]
    assert [(e["index"], e["action"], e["key_id"]) for e in entries] == [
        (1, "add", key_id(first)), (2, "add", key_id(second)), (3, "revoke", key_id(first))]
    # Each entry says what the registry says, when it says it, written by the command itself (no sync ran).
    assert [e["since"] for e in entries] == [keys[key_id(first)]["added_at"], keys[key_id(second)]["added_at"],
                                            keys[key_id(first)]["revoked_at"]]
    assert all(e["since"] <= e["at"] for e in entries)
    assert [e["public_key"] for e in entries] == [first, second, first]
    assert entries[0]["prev"] == GENESIS and entries[1]["prev"] == rows[0]["digest"] == entry_digest(entries[0])
    assert all(e["register"] == REGISTER and e["bank_key"] == key_id(public_key_text(BANK_KEY.public_key()))
               for e in entries)
    assert mirror.length == 3 and mirror.head == rows[-1]["digest"]
    assert cited == entries[1]
    shown = bank.json("register", "show")
    assert [row["entry"] for row in shown] == entries and [row["digest"] for row in shown] == list(mirror.digests)


def test_an_unchanged_gate_key_appends_nothing(bank):
    key = new_key()
    bank.run("gate", "add", "north", "--site", "S1", "--public-key", key)
    again = bank.run("gate", "add", "north", "--site", "S1", "--public-key", key)
    assert "register:" not in again.stderr
    with bank.store() as store:
        assert len(store.register_entries()) == 1


def test_a_key_change_without_the_banks_key_is_kept_and_sync_appends_it_once(bank, tmp_path):
    config = keyless(bank, tmp_path)
    key = new_key()
    from tests.helpers import cli

    changed = cli("collector", "gate", "add", "north", "--site", "S1", "--public-key", key, "--config", str(config))
    assert "does not record this change yet" in changed.stderr and "collector register sync" in changed.stderr
    with bank.store() as store:
        assert store.public_keys("S1", "north") and store.register_entries() == []
        assert citation(store, "S1", "north", key_id(key)) is None
    synced = bank.run("register", "sync")
    assert "1 entry appended; the register holds 1" in synced.stdout
    assert "0 entries appended; the register holds 1" in bank.run("register", "sync").stdout
    with bank.store() as store:
        assert len(store.register_entries()) == 1 and citation(store, "S1", "north", key_id(key))["action"] == "add"


def test_gate_enroll_appends_the_gates_entry(tmp_path):
    from tests.helpers import cli
    from tests.test_deploy_pki import enroll, write_collector_config

    pki = tmp_path / "pki"
    cli("collector", "ca", "init", "--dir", str(pki))
    config = write_collector_config(tmp_path / "collector", pki)
    cli("collector", "site", "add", "S1", "--timezone", "Asia/Shanghai", "--config", str(config))
    key = new_key()
    enrolled = enroll(config, pki, "north", "S1", key, tmp_path / "north-tls")
    assert "register: entry 1: add key" in enrolled.stderr
    with Store(tmp_path / "collector" / "collector.sqlite3") as store:
        assert citation(store, "S1", "north", key_id(key))["public_key"] == key


@pytest.fixture
def older(empty_database):
    """A database of the schema before the register (step 35), holding keys added and revoked back then."""
    clock = Moment(T0)
    with Store(empty_database, upgrade=False, clock=clock) as store:
        schema.upgrade(store.db, until=schema.CAPABILITIES["gate_key_register"] - 1, clock=clock)
        store.add_site("S1", timezone="Asia/Shanghai")
        store.add_site("S2", timezone="Asia/Kolkata")
        keys = [new_key() for _ in range(4)]
        store.add_gate("S1", "north", keys[0])
        clock.advance(days=3)
        store.add_gate("S2", "east", keys[1])
        clock.advance(days=20)
        store.add_gate("S1", "north", keys[2])
        clock.advance(days=1)
        store.revoke_key("S1", "north", key_id(keys[0]))
        clock.advance(hours=2)
        store.add_gate("S1", "south", keys[3])
        assert not store.has("gate_key_register")
    return empty_database, keys


def test_sync_backfills_the_keys_of_before_the_register_in_the_registrys_order(older):
    location, keys = older
    later = Moment(T0 + timedelta(days=100))
    with Store(location, clock=later) as store:
        assert store.has("gate_key_register") and store.register_entries() == []
        appended = sync(store, BANK_KEY)
        registry = {k["key_id"]: k for k in store.all_gate_keys()}
        assert [(e["action"], e["site"], e["gate"], e["key_id"]) for e in appended] == [
            ("add", "S1", "north", key_id(keys[0])), ("add", "S2", "east", key_id(keys[1])),
            ("add", "S1", "north", key_id(keys[2])), ("revoke", "S1", "north", key_id(keys[0])),
            ("add", "S1", "south", key_id(keys[3]))]
        # The honest difference: written now, about what the registry says happened then.
        assert all(e["at"] == format_time(later.now) for e in appended)
        since = [registry[e["key_id"]]["revoked_at" if e["action"] == "revoke" else "added_at"] for e in appended]
        assert [e["since"] for e in appended] == since and all(s < format_time(later.now) for s in since)
        assert sync(store, BANK_KEY) == []  # idempotent
        later.advance(days=1)
        assert sync(store, BANK_KEY) == [] and len(store.register_entries()) == 5
        mirror = mirror_of(store)
        cited = citation(store, "S1", "north", key_id(keys[2]))
        # A punch received between the key's addition and the backfill: fine, and said.
        received = format_time(T0 + timedelta(days=40))
        verdict = check_citation(cited, BANK_KEYS, mirror=mirror, received_at=[received])
        assert verdict.ok and verdict.mirrored, verdict
        assert any("was published in the register at" in note and "after the bank received punches" in note
                   for note in verdict.notes)
        # Under the first key, revoked on day 24: a punch received on day 40 is refused.
        revoked = check_citation(citation(store, "S1", "north", key_id(keys[0])), BANK_KEYS, mirror=mirror,
                                 received_at=[format_time(T0 + timedelta(days=2)), received])
        assert not revoked.ok and "was revoked at" in revoked.problem


def test_the_daemon_syncs_at_start_and_when_keys_change_without_the_key(tmp_path, broker):
    setup = CollectorSetup.create(tmp_path / "collector", broker=broker)
    setup.run("site", "add", "S1", "--timezone", "Asia/Shanghai")
    config = keyless(setup, tmp_path)
    from tests.helpers import cli

    before, during = new_key(), new_key()
    cli("collector", "gate", "add", "north", "--site", "S1", "--public-key", before, "--config", str(config))
    assert setup.rows("SELECT idx FROM gate_key_register") == []
    daemon = setup.start()
    try:
        wait_for(lambda: setup.rows("SELECT key_id FROM gate_key_register") == [(key_id(before),)],
                 message="the entry of a key added before the daemon started")
        cli("collector", "gate", "add", "south", "--site", "S1", "--public-key", during, "--config", str(config))
        wait_for(lambda: len(setup.rows("SELECT key_id FROM gate_key_register")) == 2,
                 message="the entry of a key added while the daemon ran, by a command without the bank's key")
    finally:
        stop_process(daemon, signal.SIGKILL)
    with setup.store() as store:
        assert mirror_of(store).length == 2 and citation(store, "S1", "south", key_id(during)) is not None


def test_two_collectors_on_postgresql_never_fork_the_register(postgres_schema_db):
    """Writers on their own connections add keys, with their entries at once or left to a sync they then run
    all together, many times over: each index is written once, every entry links to the one before, and
    every key has its entry."""
    with Store(postgres_schema_db) as store:
        store.add_site("S1", timezone="Asia/Shanghai")
    writers, rounds = 4, 8
    together = threading.Barrier(writers, timeout=60)
    failures: list[BaseException] = []

    def write(number: int) -> None:
        try:
            with Store(postgres_schema_db) as store:
                for round_ in range(rounds):
                    together.wait()
                    if round_ % 2:
                        with store.transaction():  # a key change with the bank's key at hand
                            store.add_gate("S1", f"g{number}-{round_}", new_key())
                            sync(store, BANK_KEY)
                    else:  # without it: every writer then syncs at the same moment
                        store.add_gate("S1", f"g{number}-{round_}", new_key())
                        together.wait()
                        sync(store, BANK_KEY)
        except BaseException as error:  # noqa: BLE001 - reported by the test's thread below
            failures.append(error)
            together.abort()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    with Store(postgres_schema_db) as store:
        mirror = mirror_of(store)
        assert mirror.length == writers * rounds
        assert {e["key_id"] for e in mirror.entries} == {k["key_id"] for k in store.all_gate_keys()}


# ---------------------------------------------------------------------------------------------- the property

GATES = ("north", "south", "east")
OPERATIONS = st.lists(st.tuples(st.sampled_from(["add", "rotate", "revoke"]), st.sampled_from(GATES),
                                st.integers(0, 5), st.booleans(), st.integers(0, 120)), max_size=14)


def run_operations(location, operations) -> None:
    clock = Moment(T0)
    with Store(location, clock=clock) as store:
        store.add_site("S1", timezone="Asia/Shanghai")
        for action, gate, pick, at_once, minutes in operations:
            clock.advance(minutes=minutes)
            current = [k for k in store.public_keys("S1", gate) if not k["revoked_at"]]
            with store.transaction():
                if action in ("add", "rotate"):
                    store.add_gate("S1", gate, new_key())
                elif current:
                    store.revoke_key("S1", gate, current[pick % len(current)]["key_id"])
                if at_once:  # the bank's key at hand; otherwise left to the next sync
                    sync(store, BANK_KEY)
        clock.advance(minutes=1)
        sync(store, BANK_KEY)
        mirror = check_register(read_export(export_bytes(store)), BANK_KEYS)
        keys = store.all_gate_keys()
        assert mirror.length == len(keys) + sum(1 for k in keys if k["revoked_at"])
        for key in keys:
            cited = citation(store, key["site"], key["gate"], key["key_id"])
            assert cited is not None and cited["since"] == key["added_at"]
            received = [key["added_at"]] + ([key["revoked_at"]] if key["revoked_at"] else [])
            verdict = check_citation(cited, BANK_KEYS, mirror=mirror, received_at=received[:1],
                                     gate_key=("S1", key["gate"], key["public_key"]))
            revocation = mirror.revocation("S1", key["gate"], key["key_id"])
            if key["revoked_at"] and key["revoked_at"] <= key["added_at"]:
                assert not verdict.ok and revocation is not None
            else:
                assert verdict.ok, verdict
                assert (revocation is not None) == bool(key["revoked_at"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations=OPERATIONS)
def test_any_history_of_key_changes_gives_a_register_check_accepts_on_sqlite(operations):
    with tempfile.TemporaryDirectory() as directory:
        run_operations(Path(directory) / "collector.sqlite3", operations)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations=OPERATIONS)
def test_any_history_of_key_changes_gives_a_register_check_accepts_on_postgresql(operations):
    postgres.require_server()
    url = postgres.create_database(schema=True)
    try:
        run_operations(url, operations)
    finally:
        postgres.drop_database(url)

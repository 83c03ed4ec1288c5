"""The unmodified nfcpy reader code reading virtual cards over nfcpy's udp driver."""

from __future__ import annotations

import threading
import time

import pytest

from gate_agent.feedback import Signal
from gate_agent.reader import NfcReader, Presence, acr122_led_buzzer_apdu, diagnose
from gate_agent.virtual_card import Ntag, State, VirtualCard, VirtualCardError
from tests.helpers import cli


class ReaderThread:
    def __init__(self, device: str):
        self.reader = NfcReader(device, ("106A",))
        self.taps = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.reader.run, args=(self.taps.append, self.stop))

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive(), "reader loop did not stop"


# ---------------------------------------------------------------------------- the card on its own


def test_ntag_anticollision_of_a_7_byte_uid():
    card = Ntag(bytes.fromhex("04A1B2C3D4E5F6"))
    assert card.handle(b"\x26") == bytes.fromhex("4400")
    cl1 = card.handle(b"\x93\x20")
    assert cl1 == bytes.fromhex("8804A1B2") + bytes([0x88 ^ 0x04 ^ 0xA1 ^ 0xB2])
    assert card.handle(b"\x93\x70" + cl1) == b"\x04"  # cascade: UID not complete
    cl2 = card.handle(b"\x95\x20")
    assert cl2[:4] == bytes.fromhex("C3D4E5F6")
    assert card.handle(b"\x95\x70" + cl2) == b"\x00"
    assert card.state is State.ACTIVE and card.selections == 1
    assert card.handle(b"\x60") == bytes.fromhex("0004040201000F03")
    page0 = card.handle(b"\x30\x00")
    assert page0[:3] == bytes.fromhex("04A1B2") and page0[12:16] == bytes.fromhex("E1101200")


def test_ntag_4_byte_uid_halt_and_unknown_commands():
    card = Ntag(bytes.fromhex("DEADBEEF"))
    assert card.handle(b"\x26") == bytes.fromhex("0400")
    cl1 = card.handle(b"\x93\x20")
    assert card.handle(b"\x93\x70" + cl1) == b"\x00"
    assert card.handle(b"\x1a\x00") is None and card.state is State.IDLE  # unsupported: silent, back to IDLE
    card.handle(b"\x26")
    card.handle(b"\x93\x70" + cl1)
    assert card.handle(b"\x50\x00") is None and card.state is State.HALT
    assert card.handle(b"\x26") is None  # REQA does not wake a halted card
    assert card.handle(b"\x52") == bytes.fromhex("0400")  # WUPA does
    with pytest.raises(VirtualCardError):
        Ntag(b"\x01\x02")


def test_presence_counts_a_held_card_once():
    presence = Presence()
    assert presence.is_new("A")
    assert not presence.is_new("A")
    assert presence.is_new("B")  # a second card held together with the first
    assert not presence.is_new("A")
    presence.empty_round()
    assert presence.is_new("A")


# ---------------------------------------------------------------------------- through nfcpy


def test_reader_reads_4_and_7_byte_cards_in_turn(udp_device):
    uids = ["04A1B2C3D4E5F6", "DEADBEEF", "04A1B2C3D4E5F6", "0411223344556677"[:14]]
    with ReaderThread(udp_device) as reader, VirtualCard(udp_device) as card:
        for uid in uids:
            assert card.present(uid, timeout=10).reads >= 1
        deadline = time.monotonic() + 5
        while len(reader.taps) < len(uids) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert [tap.uid for tap in reader.taps] == uids
    assert {tap.tech for tap in reader.taps} == {"iso14443a"}
    assert {tap.reader for tap in reader.taps} == {udp_device}


def test_a_card_held_in_the_field_is_one_tap(udp_device):
    with ReaderThread(udp_device) as reader, VirtualCard(udp_device) as card:
        shown = card.present("04A1B2C3D4E5F6", timeout=10, hold=2.5)
        card.present("DEADBEEF", timeout=10)
        time.sleep(0.5)
    assert shown.reads > 3, "the reader should have polled the held card repeatedly"
    assert [tap.uid for tap in reader.taps] == ["04A1B2C3D4E5F6", "DEADBEEF"]


def test_reader_loop_stops_promptly_without_a_card(udp_device):
    with ReaderThread(udp_device) as reader:
        time.sleep(0.3)
        started = time.monotonic()
    assert time.monotonic() - started < 3
    assert reader.taps == []


def test_a_missing_usb_reader_is_retried_with_a_hint(caplog):
    reader = NfcReader("usb:ffff:fffe", reopen_delays=(0.05, 0.1))
    stop = threading.Event()
    thread = threading.Thread(target=reader.run, args=(lambda tap: None, stop))
    with caplog.at_level("ERROR", logger="gate_agent.reader"):
        thread.start()
        time.sleep(0.5)
        stop.set()
        thread.join(5)
    # The agent's own lines only: with libusb installed, nfcpy logs its own error about the path first.
    failures = [r.getMessage() for r in caplog.records
                if r.name == "gate_agent.reader" and "usb:ffff:fffe" in r.getMessage()]
    assert len(failures) >= 2, "the reader should be retried"
    assert "lsusb" in failures[0] or "permission" in failures[0] or "kernel driver" in failures[0]
    assert not reader.connected and time.monotonic() - reader.last_alive < 1


def test_diagnose_gives_actionable_hints():
    assert "dialout" in diagnose("tty:ZZ9:pn532") or "does not exist" in diagnose("tty:ZZ9:pn532")
    assert "virtual card" in diagnose("udp:127.0.0.1:1")
    assert "udev" in diagnose("usb:ffff:ffff", 13) or "lsusb" in diagnose("usb:ffff:ffff", 13)


def test_acr122_signals_are_distinct_led_buzzer_commands():
    commands = {signal: acr122_led_buzzer_apdu(signal) for signal in Signal}
    assert all(c[:3] == bytes.fromhex("FF0040") and c[4] == 4 and len(c) == 9 for c in commands.values())
    distinct = {commands[s] for s in (Signal.RECORDED, Signal.DUPLICATE, Signal.UNKNOWN_CARD, Signal.ERROR)}
    assert len(distinct) == 4


# ---------------------------------------------------------------------------- the command


def test_virtual_card_command_exits_0_once_read(udp_device):
    with ReaderThread(udp_device) as reader:
        result = cli("gate-agent", "virtual-card", "--device", udp_device, "--timeout", "10",
                     "04:a1:b2:c3:d4:e5:f6", "deadbeef")
        time.sleep(0.3)
    assert result.stdout.splitlines() == [
        line for line in result.stdout.splitlines() if line.startswith("card ")
    ] and len(result.stdout.splitlines()) == 2
    assert [tap.uid for tap in reader.taps] == ["04A1B2C3D4E5F6", "DEADBEEF"]


def test_virtual_card_command_fails_clearly_when_nobody_reads(udp_device):
    started = time.monotonic()
    result = cli("gate-agent", "virtual-card", "--device", udp_device, "--timeout", "1", "DEADBEEF", check=False)
    assert result.returncode != 0
    assert "no reader read card DEADBEEF within 1 s" in result.stderr
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("args, message", [
    (["--device", "udp:localhost", "DEADBEEF"], "udp:HOST:PORT"),
    (["--device", "udp:127.0.0.1:9", "04A1B2C3D4"], "4- or 7-byte"),
    (["--device", "udp:127.0.0.1:9", "nothex!!"], "hex"),
])
def test_virtual_card_command_refuses_bad_arguments(args, message):
    result = cli("gate-agent", "virtual-card", *args, check=False)
    assert result.returncode != 0 and message in result.stderr


def test_a_felica_card_is_read_by_its_idm(udp_device):
    """FeliCa through nfcpy's own Type 3 tag emulation on the udp driver (the reader code is the same)."""
    import nfc

    idm = bytes.fromhex("01010501B00AC30B")

    def on_startup(target):
        target.brty = "212F"
        target.sensf_res = bytearray([1]) + idm + bytes.fromhex("03014B024F4993FF") + bytes.fromhex("12FC")
        return target

    reader = NfcReader(udp_device, ("212F",))
    taps, stop = [], threading.Event()
    thread = threading.Thread(target=reader.run, args=(taps.append, stop))
    thread.start()
    card = nfc.ContactlessFrontend(udp_device)
    try:
        deadline = time.monotonic() + 15
        card.connect(card={"on-startup": on_startup, "on-connect": lambda tag: True},
                     terminate=lambda: bool(taps) or time.monotonic() > deadline)
    finally:
        card.close()
        stop.set()
        thread.join(10)
    assert [(tap.uid, tap.tech) for tap in taps] == [("01010501B00AC30B", "felica")]

"""The demo: the whole chain on one machine, on the embedded defaults.

A local Mosquitto, the collector, two gate agents (an IN gate and an OUT gate) reading virtual cards
through nfcpy's udp driver, a few taps, and then what they produced, shown with the same commands an
operator would type.
"""

from __future__ import annotations

import json
import shlex
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from collector.deploy.mosquitto import LocalBroker, free_port, mosquitto_binary

BIN = Path(sys.executable).parent

WORKERS = [
    ("W001", "Zhang Wei", "04A1B2C3D4E5F6", "Hua Jian Labour Co"),
    ("W002", "Li Na", "04B7C8D9E0F1A2", "Hua Jian Labour Co"),
    ("W003", "Wang Fang", "DEADBEEF", "Xin Cheng Builders"),
]
UNKNOWN_CARD = "04FFEEDDCCBBAA"


def say(text: str = "") -> None:
    print(text, flush=True)


def run(tool: str, *args: str, show: bool = True, check: bool = True) -> str:
    if show:
        say(f"$ {shlex.join([tool, *args])}")
    result = subprocess.run([str(BIN / tool), *args], capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise SystemExit(f"demo: {tool} {' '.join(args)} failed:\n{result.stderr}")
    if show and result.stdout.strip():
        say(result.stdout.rstrip())
    if show and not check and result.returncode != 0:
        say(result.stderr.rstrip())
    return result.stdout


def udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_gate(directory: Path, gate: str, direction: str, broker_port: int, bank_pub: Path) -> tuple[Path, str, str]:
    directory.mkdir(parents=True)
    public_key = run("gate-agent", "keygen", "--key-file", str(directory / "gate.key"), show=False).strip()
    device = f"udp:127.0.0.1:{udp_port()}"
    config = directory / "gate.toml"
    # bank_key: the bank's public key, as `collector gate enroll` hands it over (bank.pub): the gate
    # obeys acks, rosters and commands signed with it only.
    config.write_text(
        f'site = "S1"\ngate = "{gate}"\nreader = "{device}"\ntechnologies = ["106A"]\n'
        f'direction = "{direction}"\ndata_dir = "data"\nkey_file = "gate.key"\nbank_key = "{bank_pub}"\n'
        "debounce_seconds = 2\nheartbeat_seconds = 2\n\n"
        f'[mqtt]\nhost = "127.0.0.1"\nport = {broker_port}\n'
    )
    return config, public_key, device


def wait_until_delivered(configs: list[Path], expected: dict[Path, int], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = [json.loads(run("gate-agent", "status", "--config", str(c), "--json", show=False))
                  for c in configs]
        if all(s["pending"] == 0 and s["last_seq"] == expected[c] for s, c in zip(states, configs, strict=True)):
            return
        time.sleep(0.5)
    raise SystemExit("demo: the gates still have pending punches after 60 s")


def run_demo(directory: str) -> int:
    root = Path(directory).resolve()
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    processes: list[subprocess.Popen] = []
    broker = LocalBroker(root / "broker", free_port())
    try:
        say(f"== A local Mosquitto on 127.0.0.1:{broker.port} (files in {root})")
        broker.start()
        say(f"$ {shlex.join([mosquitto_binary(), '-c', str(broker.config_path)])} &")
        say("\n== The bank's signing key: acks, rosters and evidence are signed with it; gates pin its public half")
        bank_pub = root / "bank.pub"
        bank_pub.write_text(run("collector", "keygen", "--key-file", str(root / "bank.key")))
        collector_config = root / "collector.toml"
        collector_config.write_text(
            'db = "collector.sqlite3"\nsigning_key = "bank.key"\n\n[mqtt]\nhost = "127.0.0.1"\n'
            f"port = {broker.port}\n\n[ingest]\ngap_wait_seconds = 2\nroster_interval_seconds = 1\n")
        cfg = ["--config", str(collector_config)]

        say("\n== Registry at the bank: a site, two gates (keys from `gate-agent keygen`), three workers")
        north, north_key, north_device = write_gate(root / "gate-north", "north", "in", broker.port, bank_pub)
        south, south_key, south_device = write_gate(root / "gate-south", "south", "out", broker.port, bank_pub)
        run("collector", "site", "add", "S1", "--timezone", "Asia/Shanghai", "--name", "Riverside Tower", *cfg)
        run("collector", "gate", "add", "north", "--site", "S1", "--public-key", north_key, *cfg)
        run("collector", "gate", "add", "south", "--site", "S1", "--public-key", south_key, *cfg)
        for worker, name, uid, employer in WORKERS:
            run("collector", "worker", "add", worker, "--name", name, "--card", uid, "--employer", employer, "--site", "S1", *cfg)

        say("\n== Starting the collector and two gate agents (north: IN, south: OUT)")
        logs = root / "logs"
        logs.mkdir()
        for name, command in (("collector", ["collector", "run", *cfg]),
                              ("gate-north", ["gate-agent", "run", "--config", str(north)]),
                              ("gate-south", ["gate-agent", "run", "--config", str(south)])):
            say(f"$ {shlex.join(command)} > {shlex.quote(str(logs / f'{name}.log'))} 2>&1 &")
            with open(logs / f"{name}.log", "wb") as log_file:
                processes.append(subprocess.Popen([str(BIN / command[0]), *command[1:]], stdout=log_file,
                                                  stderr=subprocess.STDOUT))
        time.sleep(2.5)  # let the gates receive the roster the collector publishes

        say("\n== Taps on virtual cards (nfcpy's udp driver; the reader code is the production code)")
        run("gate-agent", "virtual-card", "--device", north_device, WORKERS[0][2], WORKERS[1][2], UNKNOWN_CARD)
        run("gate-agent", "virtual-card", "--device", north_device, WORKERS[2][2])
        run("gate-agent", "virtual-card", "--device", south_device, WORKERS[0][2])
        wait_until_delivered([north, south], {north: 4, south: 1})

        say("\n== What the gates hold (pending 0: the collector acknowledged every punch)")
        run("gate-agent", "status", "--config", str(north))
        run("gate-agent", "status", "--config", str(south))
        say("\n== What the bank holds")
        run("collector", "gates", *cfg)
        run("collector", "punches", "--site", "S1", *cfg)

        say("\n== A forged copy and garbage are quarantined, nothing else changes")
        punch = json.loads(subprocess.run(
            [str(BIN / "collector"), "punches", "--site", "S1", "--json", *cfg], capture_output=True, text=True,
        ).stdout)[0]
        run_mosquitto_pub(broker.port, "attendance/v1/S1/north/punch", forged_copy(root, punch["seq"]))
        run_mosquitto_pub(broker.port, "attendance/v1/S1/north/punch", "this is not a punch")
        time.sleep(1.5)
        run("collector", "quarantine", *cfg)
        run("collector", "counters", *cfg)
        say("(Expected: for the next hour the site page's banner shows gate north's refused messages, the forged copy\n"
            " and the garbage just sent; a real site would look into them. Nothing is wrong with the gate itself.)")

        show_records(cfg, root)
        say(f"\nDemo files are in {root}; logs in {logs}.")
        return 0
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
        broker.stop()


def show_records(cfg: list[str], root: Path) -> None:
    """Attendance, a correction, headcount, payroll, and an evidence file checked against the bank's
    published key (then tampered with)."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    now = datetime.now(ZoneInfo("Asia/Shanghai"))
    today = now.date().isoformat()
    say("\n== Who is on site now")
    run("collector", "headcount", "--site", "S1", *cfg)
    say("\n== A correction: Li Na left through a gate without a reader (a manual punch, never an edit)")
    run("collector", "punch", "add", "--worker", "W002", "--site", "S1", "--at", now.isoformat(timespec="seconds"),
        "--direction", "out", "--reason", "left through the material gate", "--by", "ops-demo", *cfg)
    say("\n== Today's attendance (seconds of work in a demo: 0h00; flags say why a day needs review)")
    run("collector", "attendance", "--site", "S1", "--date", today, *cfg)
    say("\n== Payroll export for the month (CSV for spreadsheets; --json for systems)")
    run("collector", "payroll", "--site", "S1", "--from", today[:8] + "01", "--to", today, "--csv", *cfg)
    say("\n== Evidence for Zhang Wei, checked offline with nothing but the file and the bank's published key")
    evidence = root / "evidence-W001.json"
    run("collector", "evidence", "--worker", "W001", "--from", today, "--to", today, "--out", str(evidence), *cfg)
    run("collector", "verify", str(evidence), "--bank-key", str(root / "bank.pub"))
    say("\n== The same check against a copy of the bank's register of gate keys (a labour bureau keeps one)")
    copy = root / "register.json"
    run("collector", "register", "export", "--out", str(copy), *cfg)
    run("collector", "verify", str(evidence), "--bank-key", str(root / "bank.pub"), "--register", str(copy))
    document = json.loads(evidence.read_text())
    document["gates"][0]["chains"][0]["punches"][0]["dir"] = "out"
    tampered = root / "evidence-W001-tampered.json"
    tampered.write_text(json.dumps(document))
    say("(the same file with one punch's direction changed:)")
    run("collector", "verify", str(tampered), "--bank-key", str(root / "bank.pub"), check=False)


def forged_copy(root: Path, seq: int) -> str:
    """The north gate's punch ``seq`` exactly as stored, with one byte of its card UID changed."""
    from collector.store import Store

    with Store(root / "collector.sqlite3", readonly=True) as store:
        body = store.gate_punch_bodies("S1", "north", seq, seq)[0].decode()
    data = json.loads(body)
    data["card"] = ("0" if data["card"][0] != "0" else "1") + data["card"][1:]
    return json.dumps({"v": 1, "punches": [data]})


def run_mosquitto_pub(port: int, topic: str, payload: str) -> None:
    say(f"$ mosquitto_pub -p {port} -q 1 -t {topic} -m '{payload[:60]}{'...' if len(payload) > 60 else ''}'")
    subprocess.run(["mosquitto_pub", "-p", str(port), "-q", "1", "-t", topic, "-m", payload], check=True,
                   timeout=30)

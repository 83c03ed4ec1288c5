"""`pip install` as shipped: the wheel built from this tree, installed with its dependencies into a fresh
virtualenv, runs from anywhere but the tree.

The steps are docs/install.md's: `python3 -m venv`; that virtualenv's pip builds the wheels of the project
and of everything it needs (`pip wheel`), installs the project from them alone (`--no-index`: `[bank]`, a
bank keeping its records in SQLite), and later the extras (`[postgresql]` for a bank on PostgreSQL,
`[gpio]` for a gate's LEDs and buzzer). A second virtualenv gets `[gate]` alone from the same wheels, as a
Raspberry Pi does: neither side carries the other's libraries. Everything then runs from a directory
outside the tree, without PYTHONPATH, so only what the wheel holds is imported: a wheel that once lacked
``collector.store`` installed cleanly and gave a collector that could not start.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from collector.ingest.pipeline import Incoming, Ingestor
from collector.store import Store, schema
from gate_agent.protocol import GateTopics, encode_punches, format_time
from tests.helpers import BANK_PUBLIC, CollectorSetup, PunchFactory

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parent.parent
PACKAGES = ("gate_agent", "collector")
#: The bank's PostgreSQL store and a gate's LEDs and buzzer, installed last on the bank's virtualenv.
EXTRAS = ("postgresql", "gpio")
#: Every wheel any of the installs here needs is built once, by one `pip wheel`.
ALL_EXTRAS = ("gate", "bank", *EXTRAS)
#: What each side's extra brings (import names): the other side's install must have none of them.
GATE_MODULES = ("nfc", "serial")
BANK_MODULES = ("starlette", "uvicorn", "jinja2", "openpyxl", "defusedxml", "xmlschema", "chinese_calendar")
#: Run by an installed interpreter: which of the modules named are importable there.
FIND = "import importlib.util, json, sys; print(json.dumps([n for n in sys.argv[1:] if importlib.util.find_spec(n)]))"
#: pip reaches the package index for the dependencies (its cache makes a second run quick).
PIP_TIMEOUT = 600

#: Run by the installed interpreter: every module of both packages, imported, and the file each came from.
IMPORT_ALL = """
import importlib, json, pkgutil, sys

def fail(name):
    importlib.import_module(name)  # raises the error walk_packages would otherwise swallow
    raise ImportError(name)

found = {}
for top in sys.argv[1:]:
    package = importlib.import_module(top)
    found[top] = package.__file__
    for info in pkgutil.walk_packages(package.__path__, top + ".", onerror=fail):
        found[info.name] = importlib.import_module(info.name).__file__
print(json.dumps({"prefix": sys.prefix, "modules": found}))
"""


def source_files() -> list[str]:
    """The tree's files as a clone of it has them: tracked ones and new ones not ignored, never build
    output, caches or a virtualenv; outside a git checkout, the packages and what builds them."""
    try:
        listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                                cwd=ROOT, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        listed = None
    if listed is not None and listed.returncode == 0:
        names = [name for name in listed.stdout.decode().split("\0") if name]
    else:
        names = ["pyproject.toml", "README.md"] + [
            path.relative_to(ROOT).as_posix() for top in PACKAGES for path in (ROOT / top).rglob("*")
            if path.is_file() and "__pycache__" not in path.parts]
    return sorted(name for name in names if (ROOT / name).is_file())  # a deleted file is not shipped


def package_files(files: list[str]) -> set[str]:
    return {name for name in files if name.split("/", 1)[0] in PACKAGES}


def module_name(path: str) -> str:
    parts = path[:-len(".py")].split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def environment() -> dict[str, str]:
    """This process's environment, less what would let the tree or the test's virtualenv be imported."""
    return {name: value for name, value in os.environ.items()
            if name not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "__PYVENV_LAUNCHER__")}


def run(args: list, cwd: Path, *, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], cwd=cwd, env=environment(), capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, args))} exited {result.returncode}:\n"
                             f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """The tree copied out (pip builds inside the directory it is given), its wheel, and a new virtualenv
    with that wheel, its dependencies and the bank's extra installed, as a bank on SQLite has them."""
    work = tmp_path_factory.mktemp("install")
    files = source_files()
    source = work / "src"
    for name in files:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    venv = work / "venv"
    # Not --system-site-packages, and from the interpreter behind this one's virtualenv: nothing but what
    # the wheel and its dependencies bring.
    run([sys.executable, "-m", "venv", venv], work)
    python = venv / "bin" / "python"
    # docs/install.md's way to a machine without network: the wheels of the project, its dependencies and
    # extras first (the only step that reaches the package index), then an install from them alone.
    wheels = work / "wheels"
    run([python, "-m", "pip", "wheel", "--wheel-dir", wheels, f"{source}[{','.join(ALL_EXTRAS)}]"], work,
        timeout=PIP_TIMEOUT)
    (wheel,) = wheels.glob("site_gate_attendance-*.whl")
    run([python, "-m", "pip", "install", "--no-index", "--find-links", wheels, "site-gate-attendance[bank]"], work,
        timeout=PIP_TIMEOUT)
    return SimpleNamespace(work=work, files=files, wheels=wheels, wheel=wheel, venv=venv, python=python,
                           bin=venv / "bin")


def test_the_wheel_holds_every_file_of_both_packages(installed):
    expected = package_files(installed.files)
    # The files the collector cannot start without, so that an empty listing cannot pass.
    assert {"collector/store/__init__.py", "collector/web/templates/base.html", "collector/web/static/i18n/en.json",
            "collector/wages/iso20022/pain.001.001.09.xsd", "gate_agent/cli.py"} <= expected
    with zipfile.ZipFile(installed.wheel) as wheel:
        held = set(wheel.namelist())
    assert sorted(expected - held) == [], "files of the packages the wheel leaves out"
    metadata = "-".join(installed.wheel.name.split("-")[:2]) + ".dist-info"
    assert {name.split("/", 1)[0] for name in held} == {*PACKAGES, metadata}  # no tests, no tools


def test_every_module_imports_from_the_install_alone(installed):
    result = run([installed.python, "-I", "-c", IMPORT_ALL, *PACKAGES], installed.work)
    report = json.loads(result.stdout)
    expected = {module_name(name) for name in package_files(installed.files) if name.endswith(".py")}
    assert sorted(expected - set(report["modules"])) == [], "modules the install does not have"
    prefix = Path(report["prefix"]).resolve()
    assert prefix == installed.venv.resolve()
    outside = {name: file for name, file in report["modules"].items()
               if not Path(file).resolve().is_relative_to(prefix)}
    assert outside == {}, "modules imported from outside the virtualenv"


@pytest.mark.parametrize("tool", ["collector", "gate-agent"])
def test_both_tools_start(installed, tool):
    result = run([installed.bin / tool, "--help"], installed.work)
    assert result.stdout.startswith(f"Usage: {tool} ") and "Commands:" in result.stdout


def test_a_bank_database_and_an_evidence_file_on_the_install(installed, tmp_path):
    """The installed collector makes a new SQLite database and registers a site, a gate and a worker; the
    gate's signed punches are ingested by the library (no broker here); the installed collector writes the
    worker's evidence file and verifies it against the bank's published key, and refuses it changed."""
    setup = CollectorSetup.create(tmp_path / "collector", broker=SimpleNamespace(port=1883))

    def collector(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        return run([installed.bin / "collector", *args], installed.work, check=check)

    upgrade = json.loads(collector("db", "upgrade", "--json", "--config", str(setup.config_path)).stdout)
    assert upgrade["applied"] == [step.version for step in schema.STEPS]
    assert setup.db_path.stat().st_mode & 0o777 == 0o600
    gate = PunchFactory(gate="north")
    collector("site", "add", "S1", "--timezone", "Asia/Shanghai", "--config", str(setup.config_path))
    collector("gate", "add", "north", "--site", "S1", "--public-key", gate.public_key,
              "--config", str(setup.config_path))
    collector("worker", "add", "W1", "--name", "张伟", "--card", "04A1B2C3D4E5F6", "--site", "S1", "--by", "ops",
              "--config", str(setup.config_path))
    with Store(setup.db_path) as store:
        for when, direction in (("2026-10-14 08:00", "in"), ("2026-10-14 17:00", "out")):
            moment = datetime.strptime(when, "%Y-%m-%d %H:%M").replace(tzinfo=ZoneInfo("Asia/Shanghai"))
            punch = gate.next(direction=direction, at=moment.astimezone(UTC))
            Ingestor(store).ingest([Incoming(GateTopics("S1", "north").punch, encode_punches([punch]),
                                             format_time(moment + timedelta(seconds=2)))])
    evidence = tmp_path / "w1.json"
    collector("evidence", "--worker", "W1", "--from", "2026-10-14", "--to", "2026-10-14", "--out", str(evidence),
              "--config", str(setup.config_path))
    bank_key = tmp_path / "bank.pub"
    bank_key.write_text(BANK_PUBLIC + "\n")
    summary = json.loads(collector("verify", str(evidence), "--bank-key", str(bank_key), "--json").stdout)
    assert (summary["worker"], summary["punches"], summary["days"], summary["worked_minutes"]) == ("W1", 2, 1, 540)
    document = json.loads(evidence.read_text())
    document["days"][0]["worked_minutes"] += 60
    evidence.write_text(json.dumps(document))
    refused = collector("verify", str(evidence), "--bank-key", str(bank_key), check=False)
    assert refused.returncode == 1 and "signature does not verify" in refused.stderr


def importable(python: Path, modules: tuple[str, ...], cwd: Path) -> list[str]:
    return json.loads(run([python, "-I", "-c", FIND, *modules], cwd).stdout)


def test_the_bank_install_has_no_nfcpy(installed, tmp_path):
    """`[bank]` alone: the bank's libraries, none of the gate's; the gate's commands that need nfcpy say
    which extra to install, in one line."""
    assert importable(installed.python, BANK_MODULES + GATE_MODULES, installed.work) == list(BANK_MODULES)
    refused = run([installed.bin / "gate-agent", "virtual-card", "--device", "udp:127.0.0.1:9", "04A1B2C3"],
                  installed.work, check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip() == ("Error: nfc is not installed; install the gate extra: "
                                      "pip install 'site-gate-attendance[gate]'")


@pytest.fixture(scope="module")
def gate_install(installed):
    """Another virtualenv with `[gate]` alone, from the wheels already built: a Raspberry Pi's install."""
    venv = installed.work / "gate-venv"
    run([sys.executable, "-m", "venv", venv], installed.work)
    python = venv / "bin" / "python"
    run([python, "-m", "pip", "install", "--no-index", "--find-links", installed.wheels,
         "site-gate-attendance[gate]"], installed.work, timeout=PIP_TIMEOUT)
    return SimpleNamespace(python=python, bin=venv / "bin")


def test_the_gate_install_has_no_web_server_spreadsheets_or_schemas(installed, gate_install, tmp_path):
    assert importable(gate_install.python, BANK_MODULES + GATE_MODULES, installed.work) == list(GATE_MODULES)
    for tool in ("gate-agent", "collector"):
        result = run([gate_install.bin / tool, "--help"], installed.work)
        assert result.stdout.startswith(f"Usage: {tool} ") and "Commands:" in result.stdout
    setup = CollectorSetup.create(tmp_path / "collector", broker=SimpleNamespace(port=1883))
    refused = run([gate_install.bin / "collector", "serve", "--config", setup.config_path], installed.work,
                  check=False)
    assert refused.returncode == 1
    assert refused.stderr.strip() == ("Error: starlette is not installed; install the bank extra: "
                                      "pip install 'site-gate-attendance[bank]'")


def test_the_extras_install_and_load(installed):
    """Last: it adds to the virtualenv the tests above ran in without the extras."""
    run([installed.python, "-m", "pip", "install", "--no-index", "--find-links", installed.wheels,
         f"site-gate-attendance[{','.join(EXTRAS)}]"], installed.work, timeout=PIP_TIMEOUT)
    result = run([installed.python, "-I", "-c", "import gpiozero, psycopg; print(psycopg.pq.version())"],
                 installed.work)
    assert int(result.stdout) >= 100000  # the libpq psycopg[binary] brings, loaded

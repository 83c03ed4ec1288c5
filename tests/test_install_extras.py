"""A gate installs `[gate]`, a bank `[bank]`: each side's commands run without the other's libraries, and a
command that needs a missing extra says in one line which to install (exit 1), never an ImportError's
traceback (which the tools report as a bug, exit 70).

Here a missing library is simulated (``sys.modules[name] = None`` makes its import fail as an absent one
does); tests/test_install_wheel.py checks real `[gate]`-only and `[bank]`-only installs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from collector.cli import root as collector_cli
from collector.wages.batchfile import validation_problem
from collector.wages.sheet import read_sheet
from gate_agent import cli as gate_cli
from gate_agent.extras import MissingExtra, require
from tests.helpers import CollectorSetup, GateSetup

GATE_ONLY = ("nfc", "serial")
BANK_ONLY = ("starlette", "uvicorn", "jinja2", "openpyxl", "defusedxml", "xmlschema", "chinese_calendar")
BANK_LINE = "install the bank extra: pip install 'site-gate-attendance[bank]'"
GATE_LINE = "install the gate extra: pip install 'site-gate-attendance[gate]'"


def without(monkeypatch, *names: str) -> None:
    """As if ``names`` (top-level packages) were not installed, for imports from now on."""
    for loaded in list(sys.modules):
        if loaded.split(".")[0] in names:
            monkeypatch.delitem(sys.modules, loaded)
    for name in names:
        monkeypatch.setitem(sys.modules, name, None)


def test_require_gives_the_module_or_names_the_extra(monkeypatch):
    assert require("json", "bank") is json
    without(monkeypatch, "openpyxl")
    with pytest.raises(MissingExtra) as caught:
        require("openpyxl", "bank")
    assert str(caught.value) == f"openpyxl is not installed; {BANK_LINE}"


def one_line_failure(result, line: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines() == [f"Error: {line}"]
    assert "Traceback" not in result.output


def test_collector_serve_without_the_bank_extra(monkeypatch, tmp_path):
    setup = CollectorSetup.create(tmp_path, broker=SimpleNamespace(port=1883))
    without(monkeypatch, *BANK_ONLY)
    result = CliRunner().invoke(collector_cli.main, ["serve", "--config", str(setup.config_path)])
    one_line_failure(result, f"starlette is not installed; {BANK_LINE}")


def test_collector_demo_without_the_gate_extra(monkeypatch, tmp_path):
    without(monkeypatch, *GATE_ONLY)
    result = CliRunner().invoke(collector_cli.main, ["demo", "--dir", str(tmp_path / "demo")])
    one_line_failure(result, f"nfc is not installed; {GATE_LINE}")
    assert not (tmp_path / "demo").exists()  # stopped before it set anything up


def test_gate_agent_run_and_a_virtual_card_without_the_gate_extra(monkeypatch, tmp_path):
    setup = GateSetup.create(tmp_path, broker=SimpleNamespace(port=1883), device="udp:127.0.0.1:9")
    without(monkeypatch, *GATE_ONLY)
    # Before the agent starts: its reader loop runs on a thread, where the failure would be lost.
    result = CliRunner().invoke(gate_cli.main, ["run", "--config", str(setup.config_path)])
    one_line_failure(result, f"nfc is not installed; {GATE_LINE}")
    result = CliRunner().invoke(gate_cli.main, ["virtual-card", "--device", "udp:127.0.0.1:9", "04A1B2C3"])
    one_line_failure(result, f"nfc is not installed; {GATE_LINE}")


def test_a_workbook_and_a_payment_file_without_the_bank_extra(monkeypatch, tmp_path):
    workbook = tmp_path / "wages.xlsx"
    workbook.write_bytes(b"PK\x03\x04" + bytes(100))  # a zip's signature: read as a workbook
    without(monkeypatch, "openpyxl")
    with pytest.raises(MissingExtra, match="^openpyxl is not installed; install the bank extra"):
        read_sheet(workbook, period_days=30)
    without(monkeypatch, "defusedxml")  # openpyxl would open it, but without its defence against entities
    with pytest.raises(MissingExtra, match="^defusedxml is not installed; install the bank extra"):
        read_sheet(workbook, period_days=30)
    without(monkeypatch, "xmlschema")
    with pytest.raises(MissingExtra, match="^xmlschema is not installed; install the bank extra"):
        validation_problem(b"<Document/>", "pain.001.001.09.xsd")


#: Run in a fresh interpreter with some packages unimportable: the tool's --help and every command's
#: (every group's subcommands too) must show; a module-level import of a blocked package fails the run.
HELP_EVERYWHERE = """
import json, sys
blocked = sys.argv[2].split(",")
for name in blocked:
    sys.modules[name] = None
import click
from click.testing import CliRunner
if sys.argv[1] == "collector":
    from collector.cli.root import main
else:
    from gate_agent.cli import main

def paths(command, prefix):
    yield prefix
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from paths(sub, [*prefix, name])

failed, shown = {}, 0
for path in paths(main, []):
    result = CliRunner().invoke(main, [*path, "--help"])
    if result.exit_code != 0 or "Usage:" not in result.output:
        failed[" ".join(path)] = result.output[-500:]
    shown += 1
print(json.dumps({"shown": shown, "failed": failed}))
"""


@pytest.mark.parametrize(("tool", "blocked"), [("collector", GATE_ONLY), ("gate-agent", BANK_ONLY)])
def test_every_help_without_the_other_sides_extra(tool, blocked):
    result = subprocess.run([sys.executable, "-c", HELP_EVERYWHERE, tool, ",".join(blocked)],
                            cwd=Path(__file__).parent.parent, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["failed"] == {}
    assert report["shown"] > 5  # the commands were found, not just the top

"""The house's rules, executable: who may import whom. Read from the source (every import statement,
also those inside functions), so a lazy import cannot slip past."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: What the bank side may take from the gate's package: the wire contract and the helpers both daemons
#: share (none of which needs nfcpy), and the card cryptography the bank repeats to check cards.
GATE_MODULES_THE_BANK_USES = frozenset({
    "gate_agent.protocol", "gate_agent.errors", "gate_agent.files", "gate_agent.logsetup", "gate_agent.configfile",
    "gate_agent.cli_output", "gate_agent.keys", "gate_agent.mqtt", "gate_agent.systemd", "gate_agent.emv",
    "gate_agent.ntag424", "gate_agent.extras",
})
#: Modules of the collector that import nothing of it but each other: what the store may use.
LEAVES = frozenset({"collector.errors", "collector.identity", "collector.masking", "collector.money", "collector.names",
                    "collector.text"})


def modules(package: str) -> dict[str, set[str]]:
    """Every module of ``package`` and the absolute names it imports."""
    found = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        name = ".".join(parts)
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = parts if is_package else parts[:-1]
                    base = base[:len(base) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module
                imported.add(target)
                # ``from . import x`` / ``from pkg import module`` name modules too.
                imported |= {f"{target}.{alias.name}" for alias in node.names}
        found[name] = imported
    return found


COLLECTOR = modules("collector")
GATE = modules("gate_agent")


def inside(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def own(imported: set[str], package: str, known: dict[str, set[str]]) -> set[str]:
    """The modules of ``package`` among the imported names (``from pkg import Name`` is the module pkg)."""
    return {name for name in imported if inside(name, package) and name in known}


def test_the_contracts_see_the_code():
    assert "collector.store.registry" in COLLECTOR and "collector.web.app" in COLLECTOR and "gate_agent.protocol" in GATE
    assert "collector.names" in COLLECTOR["collector.store.registry"]


@pytest.mark.parametrize("module", sorted(m for m in COLLECTOR if inside(m, "collector.store")))
def test_the_store_imports_nothing_above_it(module):
    above = {m for m in own(COLLECTOR[module], "collector", COLLECTOR) if not inside(m, "collector.store")}
    assert above <= LEAVES, f"{module} imports {sorted(above - LEAVES)}, which sit above the store"


@pytest.mark.parametrize("module", sorted(COLLECTOR))
def test_the_bank_takes_from_the_gate_only_what_the_list_names(module):
    taken = own(COLLECTOR[module], "gate_agent", GATE)
    assert taken <= GATE_MODULES_THE_BANK_USES, f"{module} imports {sorted(taken - GATE_MODULES_THE_BANK_USES)}"


@pytest.mark.parametrize("module", sorted(GATE))
def test_the_gate_imports_nothing_of_the_bank(module):
    assert not {name for name in GATE[module] if inside(name, "collector")}, module


#: The packages by capability. The library's (everything but the two front ends) never import a front end.
FRONT_ENDS = ("collector.cli", "collector.web")
PACKAGES = ("collector.attendance", "collector.charts", "collector.cli", "collector.deploy", "collector.evidence",
            "collector.ingest", "collector.store", "collector.wages", "collector.web", "collector.workers")


def test_every_module_has_a_room():
    """A module at the top of collector/ is a shared helper; everything else lives in a package named
    after its capability, so `ls collector/` shows the architecture."""
    top = {m for m in COLLECTOR if m.count(".") == 1 and m not in PACKAGES}
    helpers = {"collector.config", "collector.errors", "collector.export", "collector.identity", "collector.localtime",
               "collector.masking", "collector.money", "collector.names", "collector.qr", "collector.retention",
               "collector.signin", "collector.signing", "collector.tabular", "collector.text", "collector.words",
               "collector.workbook"}
    assert top == helpers, f"new top-level modules {sorted(top - helpers)}: put them in a package"
    assert all(p in COLLECTOR for p in PACKAGES)


def test_the_web_and_the_cli_do_not_import_each_other():
    web = {m for m in COLLECTOR if inside(m, "collector.web")}
    cli = {m for m in COLLECTOR if inside(m, "collector.cli")}
    assert web and cli
    for module in web:
        assert not own(COLLECTOR[module], "collector", COLLECTOR) & cli, f"{module} imports the CLI"
    for module in cli - {"collector.cli.web"}:  # `collector serve` starts the web application, nothing else does
        assert not own(COLLECTOR[module], "collector", COLLECTOR) & web, f"{module} imports the web side"


@pytest.mark.parametrize("module", sorted(m for m in COLLECTOR if not any(inside(m, f) for f in FRONT_ENDS)))
def test_the_library_imports_no_front_end(module):
    """Commands and pages are thin over the library: what a page and a command both need lives below them."""
    front = {m for m in own(COLLECTOR[module], "collector", COLLECTOR) if any(inside(m, f) for f in FRONT_ENDS)}
    assert not front, f"{module} imports {sorted(front)}"


def test_the_attendance_rules_stay_pure():
    """The rules the bank pays from read no database, clock or network: their inputs are arguments."""
    allowed = {"collector.localtime", "collector.errors"}
    assert own(COLLECTOR["collector.attendance.rules"], "collector", COLLECTOR) <= allowed
    assert not {n for n in COLLECTOR["collector.attendance.rules"] if n.split(".")[0] in ("sqlite3", "psycopg", "time")}

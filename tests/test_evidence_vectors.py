"""The evidence file test vectors (tests/vectors/evidence/, docs/evidence-format.md): the committed files are
what their generator writes, and both verifiers this project ships give each file its verdict:
`collector verify` every one (with the copy of the register of gate keys, and without it), and
tools/verify_evidence.py each that it is meant to catch (all but the days and the register)."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from collector.evidence.canonical import jcs
from collector.evidence.document import read_evidence
from tests.helpers import cli

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "tests" / "vectors" / "evidence"
MANIFEST = json.loads((VECTORS / "manifest.json").read_text(encoding="utf-8"))
ENTRIES = MANIFEST["vectors"]
#: What tools/verify_evidence.py does not check: it lists the bank's days, and takes no copy of the register.
TOOL_LEAVES = ("days", "register")


def _tool():
    spec = importlib.util.spec_from_file_location("verify_evidence_tool", ROOT / "tools" / "verify_evidence.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TOOL = _tool()


def test_the_committed_vectors_are_what_the_generator_writes(tmp_path):
    out = tmp_path / "vectors"
    subprocess.run([sys.executable, str(VECTORS / "make.py"), str(out)], check=True, timeout=300,
                   env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    written = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    committed = {p.relative_to(VECTORS).as_posix(): p.read_bytes() for p in VECTORS.rglob("*")
                 if p.is_file() and p.name != "make.py" and "__pycache__" not in p.parts}
    assert sorted(written) == sorted(committed)
    different = [name for name in written if written[name] != committed[name]]
    assert not different, f"run make.py to regenerate: {different}"


def test_the_manifest_covers_every_rule_the_brief_names():
    codes = {entry["reason"]["code"] for entry in ENTRIES}
    assert {"bom", "duplicate-name", "float", "upper-case-hex", "unknown-member", "missing-member", "punch-removed",
            "broken-cprev", "start-in-period", "later-in-period", "key-not-cited", "citation-untrusted",
            "wrong-bank-key", "day-edited", "day-missing", "day-extra", "day-twice", "day-order",
            "register-made-up-key", "register-revoked"} <= codes
    assert {entry.get("check") for entry in ENTRIES if entry["verdict"] == "FAIL"} == set(MANIFEST["checks"])
    assert len({entry["file"] for entry in ENTRIES}) == len(ENTRIES)
    for entry in ENTRIES:
        assert (VECTORS / entry["file"]).is_file()
        assert entry["verdict"] in ("OK", "FAIL") and entry["reason"]["text"]


@pytest.mark.parametrize("entry", [e for e in ENTRIES if e["verdict"] == "OK" and e["version"] == 2],
                         ids=lambda e: e["file"])
def test_a_file_that_verifies_has_the_ids_and_digest_the_manifest_names(entry):
    document = read_evidence((VECTORS / entry["file"]).read_bytes())
    assert hashlib.sha256(jcs(document)).hexdigest() == entry["sha256"]
    result = cli("collector", "verify", str(VECTORS / entry["file"]), "--bank-key", str(VECTORS / "bank.pub"),
                 "--register", str(VECTORS / MANIFEST["register"]), "--json")
    summary = json.loads(result.stdout)
    assert (summary["evidence_id"], summary["days_id"]) == (entry["evidence_id"], entry["days_id"])
    assert summary["register_checked"] and summary["proved"] and summary["trusted"]


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e["file"])
def test_collector_verify_gives_each_file_its_verdict(entry):
    path, key = str(VECTORS / entry["file"]), str(VECTORS / "bank.pub")
    for extra, verdict in ((["--register", str(VECTORS / MANIFEST["register"])], entry["verdict"]),
                           ([], entry["verdict_without_register"])):
        if entry["version"] == 1 and extra:
            continue  # a version 1 file cites no register
        result = cli("collector", "verify", path, "--bank-key", key, *extra, check=False)
        if verdict == "OK":
            assert result.returncode == 0 and ": OK: " in result.stdout, result.stderr
        else:
            assert result.returncode == 1 and "FAILED" in result.stderr, result.stdout
            assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e["file"])
def test_the_one_file_tool_catches_what_it_checks(entry):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = TOOL.main(["verify_evidence.py", str(VECTORS / entry["file"]), str(VECTORS / "bank.pub")])
    expected = "OK" if entry["verdict"] == "OK" or entry.get("check") in TOOL_LEAVES else "FAIL"
    if expected == "OK":
        assert status == 0 and ": OK: " in out.getvalue(), err.getvalue()
    else:
        assert status == 1 and "FAILED" in err.getvalue() and out.getvalue() == "", out.getvalue()
        assert len(err.getvalue().strip().splitlines()) == 1

"""`collector verify --bank-key` takes what `collector bank-key` prints, as it prints it: the key line with its
trailing comment (``ed25519:...  # 7ba451f2556def32 (current)``), given as the argument or as the file
bank.pub holding that output; so does tools/verify_evidence.py. Before, both refused it ("Excess data after
padding"). On both engines, from the reproduction."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gate_agent.protocol import key_id, parse_bank_keys
from tests import test_wages
from tests.helpers import BANK_PUBLIC, cli

month = test_wages.month
TOOL = Path(__file__).parent.parent / "tools" / "verify_evidence.py"


def test_the_line_bank_key_prints_verifies_evidence_as_argument_file_and_with_the_one_file_tool(month, tmp_path):
    printed = month.cli("bank-key").stdout
    line = printed.strip().splitlines()[0]
    assert "  # " in line and line.endswith("(current)")
    (tmp_path / "bank.pub").write_text(printed)
    out = tmp_path / "w1.json"
    month.cli("evidence", "--worker", "W1", "--from", "2026-10-01", "--to", "2026-10-31", "--out", str(out))
    for given in (str(tmp_path / "bank.pub"), line):
        checked = cli("collector", "verify", str(out), "--bank-key", given, check=False)
        assert checked.returncode == 0 and f"{out}: OK: signed by bank key" in checked.stdout, checked.stderr
    tool = subprocess.run([sys.executable, str(TOOL), str(out), str(tmp_path / "bank.pub")], capture_output=True,
                          text=True, timeout=60)
    assert tool.returncode == 0 and "OK: signed by bank key" in tool.stdout, tool.stderr
    # A comment is not a key: a file with nothing else still trusts nothing.
    (tmp_path / "none.pub").write_text("# " + line + "\n")
    refused = cli("collector", "verify", str(out), "--bank-key", str(tmp_path / "none.pub"), check=False)
    assert refused.returncode == 1 and "no ed25519:... public key found" in refused.stderr


@pytest.mark.parametrize("template", ["{key}  # abc (current)", "{key}#x", "  {key} #\n# a\n"])
def test_a_key_line_with_a_trailing_comment_is_the_key(template):
    assert set(parse_bank_keys(template.format(key=BANK_PUBLIC))) == {key_id(BANK_PUBLIC)}


def test_a_comment_never_makes_a_bad_key_good():
    with pytest.raises(ValueError):
        parse_bank_keys(BANK_PUBLIC[:-4] + " # the rest was cut")

"""`./dev demo` is the project's main job: it runs `collector demo`, the whole chain on one machine."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def test_the_demo_runs_the_whole_chain_and_shows_how_to_repeat_it(tmp_path):
    result = subprocess.run([str(BIN / "collector"), "demo", "--dir", str(tmp_path / "demo")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    # Every daemon it starts is printed as a command a reader can repeat, with the files it uses.
    started = re.findall(r"^\$ (.+) &$", out, re.MULTILINE)
    assert any("mosquitto -c " in line for line in started)
    assert any(line.startswith("collector run --config ") for line in started)
    assert sum(line.startswith("gate-agent run --config ") for line in started) == 2
    for line in started:
        config = re.search(r"(?:-c|--config) (\S+)", line).group(1)
        assert Path(config).is_file(), line
    # The gates were acknowledged for everything, the quarantine caught the forgery and the garbage,
    # and the evidence verified while its tampered copy did not.
    gates = re.findall(r"^gate S1/(\w+): last seq (\d+), acked (\d+), pending 0;", out, re.MULTILINE)
    assert sorted(g[0] for g in gates) == ["north", "south"] and all(g[1] == g[2] != "0" for g in gates)
    assert "bad_signature" in out and "malformed" in out
    assert re.search(r"evidence-W001\.json: OK: signed by bank key", out)
    assert "evidence-W001-tampered.json: FAILED" in out + result.stderr

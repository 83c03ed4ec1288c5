"""The docs are the truth: every command of both tools is in the README or a page of docs/, and CI's test
command is in the README."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from collector.cli import main as collector
from gate_agent.cli import main as gate_agent

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
#: Where commands are documented: the README and every page of docs/.
DOCS = "\n".join([README, *(page.read_text() for page in sorted((ROOT / "docs").glob("*.md")))])


def command_paths(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from command_paths(command, prefix + (name,))
        else:
            yield prefix + (name,)


@pytest.mark.parametrize("tool, group", [("gate-agent", gate_agent), ("collector", collector)])
def test_every_command_is_in_the_docs(tool, group):
    missing = [" ".join((tool, *path)) for path in command_paths(group) if " ".join((tool, *path)) not in DOCS]
    assert missing == [], f"commands neither the README nor docs/*.md shows: {missing}"


@pytest.mark.parametrize("tool, group", [("gate-agent", gate_agent), ("collector", collector)])
def test_every_command_has_help(tool, group):
    from click.testing import CliRunner

    for path in command_paths(group):
        result = CliRunner().invoke(group, [*path, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output, (tool, path)
        assert result.output.split("\n\n")[1].strip(), f"{tool} {' '.join(path)} has no description"


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "./dev test" in ci and "./dev test" in README and "./dev demo" in README

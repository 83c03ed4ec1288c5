"""The README and the docs it leads to are the truth: every command of both tools is in them, and the
README holds CI's test command."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from collector.cli.root import main as collector
from gate_agent.cli import main as gate_agent

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
DOCS = "\n".join(path.read_text() for path in sorted((ROOT / "docs").glob("*.md")))


def command_paths(group: click.Group, prefix: tuple[str, ...] = ()):
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from command_paths(command, prefix + (name,))
        else:
            yield prefix + (name,)


@pytest.mark.parametrize("tool, group", [("gate-agent", gate_agent), ("collector", collector)])
def test_every_command_is_in_the_docs(tool, group):
    missing = [" ".join((tool, *path)) for path in command_paths(group)
               if " ".join((tool, *path)) not in README + DOCS]
    assert missing == [], f"commands neither the README nor docs/ show: {missing}"


def test_the_readme_links_every_doc_and_every_link_leads_somewhere():
    docs = sorted((ROOT / "docs").glob("*.md"))
    assert docs and all(f"docs/{path.name}" in README for path in docs)
    for page in [ROOT / "README.md", *docs]:
        for target in re.findall(r"\]\(([^)#:]+\.md)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).is_file(), f"{page.name} links to {target}, which does not exist"


def test_the_readme_stays_short():
    # What the project is, the two commands, a short tour and where to read on; the rest is in docs/.
    assert len(README.splitlines()) < 250


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

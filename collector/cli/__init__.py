"""The `collector` command: one module per group of commands; `root` holds the top group."""

from collector.cli.root import main

__all__ = ["main"]

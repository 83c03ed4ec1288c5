"""`collector serve`: the read-only dashboard, JSON API and metrics."""

from __future__ import annotations

import click


def register(main: click.Group) -> None:
    """Add this module's commands to the ``collector`` group."""

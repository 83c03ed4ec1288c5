"""Attendance, headcount, manual punches and the exports bank ops pay from."""

from __future__ import annotations

import click


def register(main: click.Group) -> None:
    """Add this module's commands to the ``collector`` group."""

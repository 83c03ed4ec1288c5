"""Deployment: the PKI, broker configuration, gate enrolment and offline bundles."""

from __future__ import annotations

import click


def register(main: click.Group) -> None:
    """Add this module's commands to the ``collector`` group."""

"""Counters (ingest's, exact, committed with each burst) and gauges (the daemon's last measurements)."""

from __future__ import annotations

from dataclasses import dataclass

from .connection import Connection


@dataclass(frozen=True, slots=True)
class Gauge:
    """The daemon's last measurement of something, and when it was taken."""

    value: float
    updated_at: str


class CounterQueries:
    db: Connection

    def add_counters(self, counts: dict[str, int]) -> None:
        self.db.executemany(
            "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE "
            "SET value = counters.value + excluded.value", list(counts.items()))

    def set_gauges(self, values: dict[str, float], updated_at: str) -> None:
        self.db.executemany(
            "INSERT INTO gauges (name, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE "
            "SET value = excluded.value, updated_at = excluded.updated_at",
            [(name, value, updated_at) for name, value in values.items()])

    def counters(self) -> dict[str, int]:
        return {row["name"]: row["value"] for row in self.db.rows("SELECT name, value FROM counters ORDER BY name")}

    def gauges(self) -> dict[str, Gauge]:
        """Every gauge by name; empty on a database the daemon has not migrated yet."""
        if not self.db.table_exists("gauges"):
            return {}
        return {row["name"]: Gauge(row["value"], row["updated_at"])
                for row in self.db.rows("SELECT name, value, updated_at FROM gauges ORDER BY name")}

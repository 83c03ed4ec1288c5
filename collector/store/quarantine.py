"""The quarantine: what was refused, why, and how much of it is kept (every refusal is counted)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .connection import Connection

QUARANTINE_RAW_BYTES = 4096

#: The tally's topic for messages on topics of no registered gate: those are unbounded in number, so
#: they share one allowance of rows.
OTHER_TOPICS = "(other topics)"


@dataclass(frozen=True, slots=True)
class QuarantineLimits:
    """How much of what is refused the quarantine keeps; every refusal is counted whatever is kept.

    Per topic, reason and hour the first ``rows_per_hour`` are kept as rows with their first 4 KiB;
    later ones are counted (counters and tally) only. Past ``raw_rows`` rows holding bytes, the oldest
    rows lose their bytes (their SHA-256, size and detail stay); past ``rows`` rows, the oldest rows go.
    """

    rows_per_hour: int = 20
    raw_rows: int = 8192  # at most 4 KiB each: 32 MiB
    rows: int = 100_000


def quarantine_row(conn: Connection, *, topic: str, reason: str, detail: str, raw: bytes, received_at: str,
                   allowance: str, rows_per_hour: int | None = None) -> bool:
    """Tally a refused message against ``allowance`` and write its row unless that allowance already
    kept ``rows_per_hour`` rows for this reason and hour (None: always). True if the row was written."""
    allowance, hour = allowance[:512], received_at[:13]
    kept = conn.value("SELECT kept FROM quarantine_tally WHERE hour = ? AND topic = ? AND reason = ?",
                      (hour, allowance, reason), default=0)
    keep = rows_per_hour is None or kept < rows_per_hour
    conn.execute(
        """INSERT INTO quarantine_tally (hour, topic, reason, count, kept, first_at, last_at)
           VALUES (?, ?, ?, 1, ?, ?, ?) ON CONFLICT (hour, topic, reason) DO UPDATE SET
           count = quarantine_tally.count + 1, kept = quarantine_tally.kept + excluded.kept,
           last_at = CASE WHEN excluded.last_at > quarantine_tally.last_at THEN excluded.last_at
                          ELSE quarantine_tally.last_at END""",
        (hour, allowance, reason, int(keep), received_at, received_at))
    if keep:
        conn.execute(
            "INSERT INTO quarantine (received_at, topic, reason, detail, size, raw, sha256) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (received_at, topic[:512], reason, detail[:1000], len(raw), raw[:QUARANTINE_RAW_BYTES],
             hashlib.sha256(raw).hexdigest()))
    return keep


class QuarantineQueries:
    db: Connection

    def quarantine(self, *, topic: str, reason: str, detail: str, raw: bytes, received_at: str,
                   allowance: str | None = None, limits: QuarantineLimits | None = None) -> bool:
        """Tally a refused message and keep it as a row unless ``allowance`` (the topic it counts against,
        default ``topic``) has had its rows for this reason and hour. True if the row was kept."""
        limits = limits or QuarantineLimits()
        return quarantine_row(self.db, topic=topic, reason=reason, detail=detail, raw=raw,
                              received_at=received_at, allowance=topic if allowance is None else allowance,
                              rows_per_hour=limits.rows_per_hour)

    def trim_quarantine(self, limits: QuarantineLimits | None = None) -> None:
        """Oldest first: past ``limits.rows`` rows the oldest rows go, past ``limits.raw_rows`` rows with
        bytes the oldest lose their bytes. The tally and the counters keep every count."""
        limits = limits or QuarantineLimits()
        rows = self.db.value("SELECT COUNT(*) FROM quarantine")
        if rows > limits.rows:
            self.db.execute("DELETE FROM quarantine WHERE id IN (SELECT id FROM quarantine ORDER BY id LIMIT ?)",
                            (rows - limits.rows,))
        with_raw = self.db.value("SELECT COUNT(*) FROM quarantine WHERE raw IS NOT NULL")
        if with_raw > limits.raw_rows:
            self.db.execute("UPDATE quarantine SET raw = NULL WHERE id IN (SELECT id FROM quarantine "
                            "WHERE raw IS NOT NULL ORDER BY id LIMIT ?)", (with_raw - limits.raw_rows,))

    def quarantined(self, limit: int | None = None) -> list[dict]:
        # SELECT *: `collector serve` may read a database the daemon has not migrated yet (no sha256).
        sql = "SELECT * FROM quarantine ORDER BY id"
        if limit is not None:
            sql += f" DESC LIMIT {int(limit)}"
        rows = self.db.rows(sql)
        for row in rows:
            if isinstance(row.get("raw"), memoryview):
                row["raw"] = bytes(row["raw"])
        return sorted(rows, key=lambda r: r["id"])

    def quarantine_tally(self) -> list[dict]:
        """Every refusal counted per hour, topic (or OTHER_TOPICS) and reason, with how many were kept."""
        if not self.db.table_exists("quarantine_tally"):  # a reader of a database not migrated yet
            return []
        return self.db.rows("SELECT * FROM quarantine_tally ORDER BY hour, topic, reason")

    def quarantine_tally_since(self, hour: str, topic_prefix: str) -> list[dict]:
        """Tally rows of hours from ``hour`` (``YYYY-MM-DDTHH``) on topics starting ``topic_prefix``."""
        if not self.db.table_exists("quarantine_tally"):
            return []
        return self.db.rows("SELECT * FROM quarantine_tally WHERE hour >= ? AND substr(topic, 1, ?) = ? "
                            "ORDER BY hour, topic, reason", (hour, len(topic_prefix), topic_prefix))

"""The gate's durable log of punches: append (signed, chained, fsync'd), pending, acknowledge, prune.

A punch is committed here before the gate signals "recorded". SQLite in WAL mode with
synchronous=FULL makes the commit survive a power cut, and one transaction per punch means a crash
at any instant leaves the whole punch or none of it: no gap in the sequence, no broken chain.
A punch leaves only when the collector has acknowledged it (and its retention has passed).

Each card's latest punch (its seq and digest) is kept in ``card_heads``, written in the transaction of
the punch itself: the next punch of that card names it as ``cprev`` (protocol version 3), so one card's
punches form a chain of their own. Heads are never pruned: one row per card this gate has ever seen.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import sqlite3
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from .errors import GateError
from .files import create_private
from .protocol import GENESIS, PUNCH_VERSION, Ack, Punch, Roster, format_time, sign_punch

log = logging.getLogger(__name__)

FILENAME = "outbox.sqlite3"
#: 1: punches and meta; 2: card_heads (punch protocol version 3).
SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE punches (
    seq     INTEGER PRIMARY KEY,
    body    BLOB NOT NULL,     -- the signed punch exactly as published
    digest  TEXT NOT NULL,
    card    TEXT NOT NULL,
    time    TEXT NOT NULL,
    boot    TEXT NOT NULL,
    mono_ms INTEGER NOT NULL
);
CREATE INDEX punches_card ON punches (card, mono_ms);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
#: Each card's latest punch: what its next punch names as ``cprev``. Kept when its punches are pruned.
_CARD_HEADS = """
CREATE TABLE card_heads (
    card   TEXT PRIMARY KEY,   -- as the punch's card field holds it (8 to 32 hex digits)
    seq    INTEGER NOT NULL,
    digest TEXT NOT NULL
) WITHOUT ROWID;
"""


class OutboxError(GateError):
    """The outbox cannot be opened or used (its directory, its database); one line."""


class AckResult(enum.Enum):
    ADVANCED = "advanced"
    STALE = "stale"  # at or below what is already acknowledged (a retained or repeated ack)
    BEYOND_HEAD = "beyond_head"  # names a seq this gate never wrote
    DIGEST_MISMATCH = "digest_mismatch"  # the collector holds a different punch under that seq


@dataclass(frozen=True, slots=True)
class OutboxStatus:
    last_seq: int
    acked_seq: int
    pending: int
    oldest_pending_at: str | None
    bytes_on_disk: int

    def to_dict(self) -> dict:
        return {
            "last_seq": self.last_seq,
            "acked_seq": self.acked_seq,
            "pending": self.pending,
            "oldest_pending_at": self.oldest_pending_at,
            "bytes_on_disk": self.bytes_on_disk,
        }


class Outbox:
    """One connection to the gate's outbox; open one per thread.

    ``key`` may be None for readers (status, export, the link thread); only the tap path appends.
    """

    def __init__(self, data_dir: str | os.PathLike, site: str, gate: str, *,
                 key: Ed25519PrivateKey | None = None, readonly: bool = False):
        self.path = Path(data_dir) / FILENAME
        self.site, self.gate = site, gate
        self._key = key
        if readonly:
            if not self.path.exists():
                raise OutboxError(f"{self.path} does not exist (has the agent ever run with this data_dir?)")
            uri = f"file:{self.path}?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA busy_timeout = 5000")
        else:
            Path(data_dir).mkdir(parents=True, exist_ok=True)
            # Card numbers and times: 0600 whatever the umask; SQLite gives its -wal and -shm files the
            # database's mode.
            try:
                create_private(self.path, 0o600)
            except OSError as error:
                raise OutboxError(f"cannot create {self.path}: {error.strerror}") from None
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA busy_timeout = 10000")
            self._db.execute("PRAGMA journal_mode = WAL")
            # FULL: the WAL is fsync'd at every commit, so a committed punch survives a power cut.
            self._db.execute("PRAGMA synchronous = FULL")
            self._migrate()
        self._check_identity()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ setup

    def _migrate(self) -> None:
        with self._transaction():
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version == SCHEMA_VERSION:
                return
            if version > SCHEMA_VERSION:
                raise OutboxError(f"{self.path} has schema {version}, newer than this agent ({SCHEMA_VERSION})")
            if version < 1:
                self._script(_SCHEMA)
                self._set_meta(site=self.site, gate=self.gate, head_seq="0", head_digest=GENESIS, acked_seq="0")
            if version < 2:
                self._script(_CARD_HEADS)
                # An outbox of the previous release: each card's chain goes on from its newest punch still held
                # (SQLite takes a bare column from the row that gave MAX). A card whose punches were all pruned
                # starts anew from GENESIS.
                self._db.execute("INSERT INTO card_heads (card, seq, digest) "
                                 "SELECT card, MAX(seq), digest FROM punches GROUP BY card")
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _script(self, script: str) -> None:
        # executescript() would COMMIT the open transaction first; run the statements one by one.
        for statement in filter(str.strip, script.split(";")):
            self._db.execute(statement)

    def _check_identity(self) -> None:
        site, gate = self._meta("site"), self._meta("gate")
        if (site, gate) != (self.site, self.gate):
            raise OutboxError(
                f"{self.path} belongs to gate {site}/{gate}, not {self.site}/{self.gate}; "
                "a data directory is never shared or renamed (its sequence numbers are signed)"
            )

    def _transaction(self):
        return _Immediate(self._db)

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _set_meta(self, **values: str) -> None:
        self._db.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            list(values.items()),
        )

    # ------------------------------------------------------------------ the tap path

    def append(self, *, card: str, tech: str, reader: str, direction: str, roster: str, clock,
               kind: str = "uid", sun: str = "") -> Punch:
        """Sign, chain and durably commit one punch (protocol version 3: chained to the gate's previous
        punch and to the previous punch of its card); return it once it is on disk. The punch, the gate's
        head and the card's head commit together: a crash leaves all three or none."""
        if self._key is None:
            raise OutboxError("this outbox connection was opened without the signing key")
        with self._transaction():
            head_seq, head_digest = self.head_seq, self.head_digest
            card_head = self.card_head(card)
            punch = sign_punch(
                Punch(
                    v=PUNCH_VERSION, site=self.site, gate=self.gate, seq=head_seq + 1,
                    time=format_time(clock.now()), mono_ms=clock.monotonic_ms(), boot=clock.boot_id,
                    synced=clock.synchronised(), card=card, tech=tech, reader=reader, dir=direction,
                    roster=roster, prev=head_digest, key="", sig="", kind=kind, sun=sun,
                    cprev=card_head[1] if card_head else GENESIS,
                ),
                self._key,
            )
            digest = punch.digest()
            self._db.execute(
                "INSERT INTO punches (seq, body, digest, card, time, boot, mono_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (punch.seq, punch.to_json(), digest, punch.card, punch.time, punch.boot, punch.mono_ms),
            )
            self._db.execute(
                "INSERT INTO card_heads (card, seq, digest) VALUES (?, ?, ?) "
                "ON CONFLICT (card) DO UPDATE SET seq = excluded.seq, digest = excluded.digest",
                (punch.card, punch.seq, digest),
            )
            self._set_meta(head_seq=str(punch.seq), head_digest=digest)
        return punch

    def card_head(self, card: str) -> tuple[int, str] | None:
        """The seq and digest of this gate's latest punch of ``card`` (kept when the punch is pruned), or None
        if the gate has written none (since its outbox was made, or, upgraded, none it still held then)."""
        row = self._db.execute("SELECT seq, digest FROM card_heads WHERE card = ?", (card,)).fetchone()
        return (row[0], row[1]) if row else None

    def last_taps(self, boot: str, since_mono_ms: int) -> dict[str, int]:
        """card -> mono_ms of its latest punch in this boot since ``since_mono_ms`` (debounce after a restart)."""
        rows = self._db.execute(
            "SELECT card, MAX(mono_ms) FROM punches WHERE boot = ? AND mono_ms >= ? GROUP BY card",
            (boot, since_mono_ms),
        )
        return dict(rows.fetchall())

    # ------------------------------------------------------------------ the link's side

    @property
    def head_seq(self) -> int:
        return int(self._meta("head_seq"))

    @property
    def head_digest(self) -> str:
        return self._meta("head_digest")

    @property
    def acked_seq(self) -> int:
        return int(self._meta("acked_seq"))

    def bodies(self, first: int, last: int) -> list[tuple[int, bytes]]:
        """Stored punch bodies with first <= seq <= last, in order (pruned ones are absent)."""
        rows = self._db.execute(
            "SELECT seq, body FROM punches WHERE seq BETWEEN ? AND ? ORDER BY seq", (first, last)
        )
        return rows.fetchall()

    def punches(self, first: int = 1, last: int | None = None) -> list[Punch]:
        last = self.head_seq if last is None else last
        return [Punch.from_dict(json.loads(body)) for _, body in self.bodies(first, last)]

    def acknowledge(self, ack: Ack) -> AckResult:
        """Forget (for sending) every punch up to ``ack.seq`` if the collector holds exactly ours."""
        with self._transaction():
            acked, head = self.acked_seq, self.head_seq
            if ack.seq <= acked:
                return AckResult.STALE
            if ack.seq > head:
                return AckResult.BEYOND_HEAD
            row = self._db.execute("SELECT digest FROM punches WHERE seq = ?", (ack.seq,)).fetchone()
            if row is None or row[0] != ack.digest:
                return AckResult.DIGEST_MISMATCH
            self._set_meta(acked_seq=str(ack.seq))
            return AckResult.ADVANCED

    def prune(self, retention_days: float, now) -> int:
        """Delete acknowledged punches older than the retention; unacknowledged ones are never deleted."""
        cutoff = format_time(now - timedelta(days=retention_days))
        with self._transaction():
            cursor = self._db.execute(
                "DELETE FROM punches WHERE seq <= ? AND time < ?", (self.acked_seq, cutoff)
            )
            return cursor.rowcount

    # ------------------------------------------------------------------ roster cache

    def save_roster(self, roster: Roster) -> None:
        with self._transaction():
            self._set_meta(roster=roster.encode().decode())

    def load_roster(self) -> Roster | None:
        text = self._meta("roster")
        return Roster.load(text.encode()) if text else None

    # ------------------------------------------------------------------ the bank's last refusal

    def save_refusal(self, refusal: dict | None) -> None:
        """Why the bank refuses this gate's messages (its signed answer), or None once it takes them."""
        with self._transaction():
            self._set_meta(refusal=json.dumps(refusal) if refusal else "")

    def load_refusal(self) -> dict | None:
        text = self._meta("refusal")
        return json.loads(text) if text else None

    # ------------------------------------------------------------------ status

    def status(self) -> OutboxStatus:
        acked, head = self.acked_seq, self.head_seq
        oldest = None
        if head > acked:
            row = self._db.execute("SELECT time FROM punches WHERE seq = ?", (acked + 1,)).fetchone()
            oldest = row[0] if row else None
        return OutboxStatus(head, acked, head - acked, oldest, self.bytes_on_disk())

    def bytes_used(self) -> int:
        """Bytes of live data, what ``max_buffer_mb`` bounds. Not the file size: SQLite keeps pages freed
        by a prune inside the file for reuse, so a file that once reached the limit would never shrink
        below it and the gate would refuse taps for good."""
        page_size, pages, free = (self._db.execute(f"PRAGMA {name}").fetchone()[0]
                                  for name in ("page_size", "page_count", "freelist_count"))
        return (pages - free) * page_size

    def bytes_on_disk(self) -> int:
        total = 0
        for suffix in ("", "-wal", "-shm"):
            try:
                total += os.stat(str(self.path) + suffix).st_size
            except FileNotFoundError:
                pass
        return total


class _Immediate:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception (a half-written punch never commits)."""

    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def __enter__(self):
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self._db.execute("COMMIT")
        else:
            self._db.execute("ROLLBACK")
        return False

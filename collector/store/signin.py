"""Sign-in links and browser sessions of the site page: only SHA-256 digests of their secrets are kept.

A link is issued by the bank (`collector web link`), used once within minutes, and becomes a session
of the same site; a session ends at its expiry or when it is revoked (sign-out). The secrets themselves
live only in the link the foreman opens and in the browser's cookie.
"""

from __future__ import annotations

from .connection import Connection


class SignInQueries:
    db: Connection

    def add_signin_link(self, *, secret_sha256: str, site: str, created_at: str, expires_at: str,
                        session_hours: float, note: str | None = None) -> int:
        with self.db.transaction():
            return self.db.value(
                "INSERT INTO web_signin_links (secret_sha256, site, created_at, expires_at, session_hours, note) "
                "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                (secret_sha256, site, created_at, expires_at, session_hours, note))

    def use_signin_link(self, *, link_sha256: str, session_sha256: str, now: str,
                        session_expires) -> dict | None:
        """Spend the unused, unexpired link with this digest and open its session in one transaction;
        ``session_expires(hours)`` gives the session's expiry. The session (site, expires_at) or None."""
        with self.db.transaction():
            link = self.db.record(
                "UPDATE web_signin_links SET used_at = ? WHERE secret_sha256 = ? AND used_at IS NULL "
                "AND expires_at > ? RETURNING id, site, session_hours", (now, link_sha256, now))
            if link is None:
                return None
            expires_at = session_expires(link["session_hours"])
            self.db.execute(
                "INSERT INTO web_sessions (secret_sha256, site, link_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                (session_sha256, link["site"], link["id"], now, expires_at))
        return {"site": link["site"], "expires_at": expires_at}

    def web_session(self, secret_sha256: str, now: str) -> dict | None:
        """The live session with this digest: not revoked, not expired (None otherwise, or before step 18)."""
        if not self.db.table_exists("web_sessions"):
            return None
        rows = self.db.rows("SELECT id, site, expires_at FROM web_sessions WHERE secret_sha256 = ? "
                            "AND revoked_at IS NULL AND expires_at > ?", (secret_sha256, now))
        return rows[0] if rows else None

    def revoke_web_session(self, secret_sha256: str, now: str) -> bool:
        with self.db.transaction():
            cursor = self.db.execute("UPDATE web_sessions SET revoked_at = ? WHERE secret_sha256 = ? "
                                     "AND revoked_at IS NULL", (now, secret_sha256))
        return cursor.rowcount == 1

    def revoke_site_sessions(self, site: str, now: str) -> int:
        """End every open session and unused link of a site (a lost phone): how many sessions ended."""
        with self.db.transaction():
            cursor = self.db.execute("UPDATE web_sessions SET revoked_at = ? WHERE site = ? AND revoked_at IS NULL",
                                     (now, site))
            self.db.execute("UPDATE web_signin_links SET used_at = ? WHERE site = ? AND used_at IS NULL",
                            (now, site))
        return cursor.rowcount

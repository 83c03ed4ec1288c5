"""Signing a site foreman in on a phone: a short-lived single-use link becomes a browser session.

The bank runs `collector web link --site S1` and hands the foreman the link it prints (or its QR code).
The secret travels in the link's fragment (``/signin#SECRET``), which a browser never sends to a server,
so it reaches no access log and no proxy; the page's script posts it once to ``/api/signin``, takes it
out of the address bar and history, and goes on to the site page. The answer sets a session cookie
(HttpOnly, SameSite=Strict, Secure over TLS) holding a second secret. The database keeps only SHA-256
digests of both secrets, so a copy of it signs nobody in. The long-lived bearer tokens of ``[web.tokens]``
never appear in a URL.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from gate_agent.protocol import format_time

from .errors import CollectorError
from .store import Store

COOKIE = "collector_session"
#: How long a link may wait to be opened, by default and at most.
LINK_MINUTES, MAX_LINK_MINUTES = 15, 24 * 60
#: How long the session a link opens lasts, by default and at most.
SESSION_HOURS, MAX_SESSION_HOURS = 12.0, 31 * 24.0
#: Sign-in attempts (good or bad) one address may make per window; the rest get 429.
ATTEMPTS, ATTEMPT_WINDOW_SECONDS = 10, 600
#: Sign-in attempts all addresses together may make per window (someone guessing from many addresses).
ALL_ATTEMPTS = 100
SECRET_BYTES = 32


class SignInError(CollectorError):
    """A link could not be issued; the message says why."""


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()


def well_formed(secret: object) -> bool:
    """A secret as this module makes them: URL-safe base64 of 32 bytes (43 characters)."""
    return (isinstance(secret, str) and len(secret) == 43
            and all(c.isascii() and (c.isalnum() or c in "-_") for c in secret))


@dataclass(frozen=True, slots=True)
class Link:
    site: str
    secret: str
    expires_at: datetime
    session_hours: float

    def url(self, base: str) -> str:
        """The link to hand over: the secret in the fragment, which browsers never send to a server."""
        return f"{base.rstrip('/')}/signin#{self.secret}"


def issue_link(store: Store, site: str, *, minutes: float = LINK_MINUTES, session_hours: float = SESSION_HOURS,
               note: str | None = None, now: datetime | None = None) -> Link:
    """Record a new sign-in link for ``site`` (its secret's digest only) and return it."""
    if store.site(site) is None:
        raise SignInError(f"there is no site {site}")
    if not 0 < minutes <= MAX_LINK_MINUTES:
        raise SignInError(f"a link lasts between 1 minute and {MAX_LINK_MINUTES} minutes, not {minutes}")
    if not 0 < session_hours <= MAX_SESSION_HOURS:
        raise SignInError(f"a session lasts at most {MAX_SESSION_HOURS:g} hours, not {session_hours}")
    now = now or datetime.now(UTC)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    expires = now + timedelta(minutes=minutes)
    store.add_signin_link(secret_sha256=digest(secret), site=site, created_at=format_time(now),
                          expires_at=format_time(expires), session_hours=session_hours, note=note)
    return Link(site, secret, expires, session_hours)


def redeem(store: Store, link_secret: str, now: datetime | None = None) -> tuple[str, dict] | None:
    """Spend a link: (the new session's secret, {site, expires_at}), or None for a link that is unknown,
    used or expired (which of these is not said: the caller may be guessing)."""
    if not well_formed(link_secret):
        return None
    now = now or datetime.now(UTC)
    session_secret = secrets.token_urlsafe(SECRET_BYTES)
    session = store.use_signin_link(
        link_sha256=digest(link_secret), session_sha256=digest(session_secret), now=format_time(now),
        session_expires=lambda hours: format_time(now + timedelta(hours=hours)))
    return (session_secret, session) if session is not None else None


def session_scope(store: Store, session_secret: str | None, now: datetime | None = None) -> dict | None:
    """The live session of this cookie value ({id, site, expires_at}), or None."""
    if not well_formed(session_secret):
        return None
    return store.web_session(digest(session_secret), format_time(now or datetime.now(UTC)))


def sign_out(store: Store, session_secret: str | None, now: datetime | None = None) -> bool:
    if not well_formed(session_secret):
        return False
    return store.revoke_web_session(digest(session_secret), format_time(now or datetime.now(UTC)))


def cookie_header(value: str, *, max_age: int, secure: bool) -> str:
    """The Set-Cookie value: never readable by script, never sent cross-site, Secure over TLS."""
    parts = [f"{COOKIE}={value}", "Path=/", f"Max-Age={max_age}", "HttpOnly", "SameSite=Strict"]
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


class AttemptLimit:
    """Sign-in attempts per client address in a sliding window, and all addresses together.

    Used on the event loop only (no await inside), so no lock is needed. Memory is bounded: addresses
    whose attempts have all aged out are dropped.
    """

    def __init__(self, per_address: int = ATTEMPTS, total: int = ALL_ATTEMPTS,
                 window: float = ATTEMPT_WINDOW_SECONDS, clock=time.monotonic):
        self.per_address, self.total, self.window, self.clock = per_address, total, window, clock
        self.by_address: dict[str, deque[float]] = {}
        self.all: deque[float] = deque()

    def allow(self, address: str) -> float | None:
        """Count an attempt from ``address``: None if allowed, else the seconds to wait."""
        now = self.clock()
        horizon = now - self.window
        while self.all and self.all[0] <= horizon:
            self.all.popleft()
        for key in [k for k, q in self.by_address.items() if not q or q[-1] <= horizon]:
            del self.by_address[key]
        attempts = self.by_address.setdefault(address, deque())
        while attempts and attempts[0] <= horizon:
            attempts.popleft()
        if len(attempts) >= self.per_address:
            return attempts[0] + self.window - now
        if len(self.all) >= self.total:
            return self.all[0] + self.window - now
        attempts.append(now)
        self.all.append(now)
        return None

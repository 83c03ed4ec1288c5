"""The sign-in routes of `collector serve`: a sign-in link becomes a session cookie; sign-out ends it.

``GET /signin`` is a page without data; its script reads the link's secret from the fragment (never sent to
a server, so never in an access log), removes it from the address bar and history, and posts it to
``POST /api/signin``. That spends the link (once, before it expires) and answers with the session
cookie. ``POST /api/signout`` revokes the session in the database and clears the cookie. Both POSTs
take JSON only and refuse another origin, so a page elsewhere cannot make a browser call them; sign-in
attempts are limited per client address (429 with Retry-After): the connection's, or the one a configured
trusted proxy names (collector.web.common.ClientAddress). Refusals are ApiErrors, answered in the
API's one JSON shape by collector/web/app.py.
"""

from __future__ import annotations

import json
import logging
import math
from datetime import UTC, datetime
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from collector.signin import COOKIE, AttemptLimit, cookie_header, redeem, sign_out
from collector.store import DatabaseError, Store, StoreError
from collector.web.common import PUBLIC, ApiError, ClientAddress, JSONResponse, page, route
from collector.web.stores import kept_store
from gate_agent.protocol import parse_time

log = logging.getLogger(__name__)

#: A sign-in body is one short JSON object.
MAX_BODY = 1024


class SignInRoutes:
    """The routes, over the collector's database at ``db`` (written only to spend a link and end a session)."""

    def __init__(self, db, *, limit: AttemptLimit | None = None, client: ClientAddress | None = None):
        self.db = db
        self.limit = limit or AttemptLimit()
        self.client = client or ClientAddress()

    def routes(self) -> list[Route]:
        return [
            route("/signin", self.page, PUBLIC),
            route("/api/signin", self.signin, PUBLIC, methods=["POST"]),
            route("/api/signout", self.signout, PUBLIC, methods=["POST"]),
        ]

    def page(self, request: Request) -> Response:
        return page(request, "signin.html")

    def _writer(self) -> Store:
        # Not the schema's owner: the daemon and `collector db upgrade` apply steps, never the web process.
        return kept_store(self.db, readonly=False)

    @staticmethod
    def _refuse_cross_site(request: Request) -> None:
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
            raise ApiError(415, "send JSON (application/json)")
        origin = request.headers.get("origin")
        # The host only: behind a TLS proxy this process sees http while the browser's origin says https.
        if origin is not None and urlsplit(origin).netloc != request.headers.get("host", ""):
            raise ApiError(403, "another origin may not sign in here")

    async def signin(self, request: Request) -> Response:
        address = self.client(request)
        wait = self.limit.allow(address)
        if wait is not None:
            log.warning("sign-in attempts from %s limited for %d s", address, math.ceil(wait))
            raise ApiError(429, "too many sign-in attempts; try again later",
                           headers={"Retry-After": str(max(1, math.ceil(wait)))})
        self._refuse_cross_site(request)
        body = b""
        async for chunk in request.stream():  # read no more than a sign-in can need
            body += chunk
            if len(body) > MAX_BODY:
                raise ApiError(413, f"a sign-in body is at most {MAX_BODY} bytes")
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth
            data = None
        secret = data.get("secret") if isinstance(data, dict) else None
        if not isinstance(secret, str):
            raise ApiError(400, 'expected {"secret": "..."}')

        def spend():
            with self._writer() as store:
                return redeem(store, secret)

        try:
            result = await run_in_threadpool(spend)
        except (StoreError, DatabaseError) as error:
            raise _unavailable(error) from None
        if result is None:
            log.info("sign-in refused from %s: unknown, used or expired link", address)
            raise ApiError(401, "this sign-in link is used, expired or unknown; ask the bank for a new one")
        session_secret, session = result
        max_age = max(1, int((parse_time(session["expires_at"]) - datetime.now(UTC)).total_seconds()))
        secure = request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"
        log.info("signed in to site %s from %s (session until %s)", session["site"], address, session["expires_at"])
        response = JSONResponse({"site": session["site"], "expires_at": session["expires_at"],
                                 "next": f"/sites/{session['site']}"})
        response.headers.append("set-cookie", cookie_header(session_secret, max_age=max_age, secure=secure))
        return response

    async def signout(self, request: Request) -> Response:
        self._refuse_cross_site(request)
        secret = request.cookies.get(COOKIE)

        def end() -> bool:
            with self._writer() as store:
                return sign_out(store, secret)

        try:
            ended = await run_in_threadpool(end) if secret else False
        except (StoreError, DatabaseError) as error:
            raise _unavailable(error) from None
        if ended:
            log.info("signed out a session")
        response = JSONResponse({"signed_out": ended})
        secure = request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"
        response.headers.append("set-cookie", cookie_header("", max_age=0, secure=secure))
        return response


def _unavailable(error: Exception) -> ApiError:
    """The web process could not write its sign-in rows: a read-only role or replica, or a database the
    daemon has not upgraded yet (docs/foreman.md says what to grant)."""
    log.error("sign-in needs to write web_signin_links and web_sessions and cannot: %s", error)
    return ApiError(503, "sign-in is not available on this server now; use a token")

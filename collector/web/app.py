"""The site managers' dashboard, the JSON API and /metrics: a Starlette app over a read-only database.

It runs as its own process (`collector serve`), so a slow page can never stall ingest. Each request
opens its own read-only Store in a worker thread (an sqlite3 connection must not serve two requests
at once); SQLite's WAL lets these readers run beside the ingest writer without blocking it.

Access is by bearer token, each mapped to one site or to all ("*"), decided for every route in one place
(collector/web/common.py: ``route`` and ``Access``). The page itself holds no data:
its script asks for the token once, keeps it in the browser's localStorage and sends it in an
``Authorization`` header, also for the live stream (read with fetch(), not EventSource, which cannot
send headers), so no token ever appears in a URL or an access log. A site foreman may instead sign in
with a single-use link the bank issues (collector/web/signin.py): the browser then holds a session
cookie of that site, which the API accepts where no Authorization header is sent.

What one credential and one site may hold of the process at once is bounded in the same place: a request
of a data route holds a slot of its credential and of its site while its work runs, and is refused 429 or
503 with Retry-After past them (collector/web/bounds.py; the live stream has slots of its own, below).

A request fails one way, decided here for every route: an error a person can act on (collector/errors.py:
``ApiError`` with its status, any other of the collector's, a date or period refused) is a 4xx answer
``{"error": message}``; the database failing is 503; anything else is a bug, logged with its traceback
and answered 500 with a message that tells the browser nothing about the code.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from datetime import date, timedelta

import anyio
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from collector.attendance.headcount import headcount
from collector.attendance.health import gate_health
from collector.attendance.reports import attendance, site_rules
from collector.attendance.trouble import mark_retired_sending, retired_sending
from collector.attendance.trouble import report as trouble_report
from collector.config import CollectorConfig
from collector.errors import user_facing
from collector.localtime import check_date
from collector.signin import session_scope
from collector.store import DatabaseError, Store
from collector.wages.figures import SETTLED, arrears_report
from collector.web.bounds import Bounds, Refused
from collector.web.charts import ChartApi
from collector.web.common import (
    PUBLIC,
    STATIC,
    Access,
    ApiError,
    ClientAddress,
    Holder,
    JSONResponse,
    asked_day,
    page,
    read_store,
    route,
)
from collector.web.metrics import render_bounds, render_metrics
from collector.web.signin import SignInRoutes
from collector.web.worker import WorkerApi
from gate_agent.logsetup import safe_json
from gate_agent.protocol import valid_id

log = logging.getLogger(__name__)

#: A live stream recomputes at least this often even when nothing was written (a gate falls silent
#: by the clock alone), and otherwise only when the database changed.
RECOMPUTE_SECONDS = 5.0
KEEPALIVE_SECONDS = 15.0
QUARANTINE_LIMIT = 100
#: All a client learns of a bug: the traceback is in the server's log.
INTERNAL_ERROR = "internal error; it is logged at the bank"


class SecurityHeaders:
    """Headers on every response: no sniffing, no framing, no referrer, no caching of data, and a
    content security policy that lets the page load only its own files (no CDN, no inline script). A
    response with a policy of its own keeps it (the evidence page: its one inline style, by hash)."""

    HEADERS = [
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
        (b"content-security-policy", b"default-src 'none'; script-src 'self'; style-src 'self'; "
                                     b"connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; "
                                     b"frame-ancestors 'none'"),
    ]

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                own = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in self.HEADERS if name not in own]
                if not scope["path"].startswith("/static/"):
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class UnexpectedErrors:
    """What no exception handler takes is a bug: logged with its traceback and answered 500 in the API's
    JSON shape. Starlette's own last resort would answer in plain text and raise the exception again, for
    the server to log a second time. Starlette places it outside its exception handlers, so that the
    errors they answer never reach it."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception:
            if started:
                raise  # part of the answer is out (a live stream): only the server can end it, and it logs why
            log.exception("internal error, a bug: %s %s failed with an exception no rule covers", scope["method"],
                          scope["path"])
            await JSONResponse({"error": INTERNAL_ERROR}, status_code=500)(scope, receive, send)


class WebApp:
    """The routes; ``app`` is the ASGI application `collector serve` runs."""

    def __init__(self, config: CollectorConfig, *, poll_seconds: float = 1.0):
        self.config = config
        self.access = access = Access(config.web_tokens, config.db)
        #: Who a request comes from, for the limits on sign-in and on workers' wrong secrets.
        client = ClientAddress(config.trusted_proxies, config.forwarded_header)
        self.poll_seconds = poll_seconds
        self.grace = timedelta(hours=config.final_grace_hours)
        #: Requests in the works per credential and per site (collector/web/bounds.py; ``route`` takes them).
        self.bounds = Bounds(config.requests_per_credential, config.requests_per_site)
        self.streams = StreamSlots(config.live_streams, config.live_streams_per_token)
        self._stopping = False
        static = Mount("/static", StaticFiles(directory=STATIC), name="static")
        static.access = PUBLIC  # the pages' scripts, styles and message catalogs
        workers = WorkerApi(config, access, client=client)
        #: Every route, each with who may call it (``.access``: see collector/web/common.py).
        self.routes = routes = [
            route("/", self.index_page, PUBLIC),
            route("/sites/{site}", self.site_page, PUBLIC),
            static,
            route("/api/sites", self.api_sites, access.site),
            route("/api/sites/{site}/headcount", self.api_headcount, access.site),
            route("/api/sites/{site}/attendance", self.api_attendance, access.site),
            route("/api/sites/{site}/live", self.api_live, access.site, stream=True),
            route("/api/sites/{site}/trouble", self.api_trouble, access.site),
            *SignInRoutes(config.db, client=client).routes(),
            route("/api/gates", self.api_gates, access.site),
            route("/api/quarantine", self.api_quarantine, access.bank),
            route("/api/arrears", self.api_arrears, access.bank),
            route("/metrics", self.metrics, access.bank),
            *workers.routes(),
            *ChartApi(config, access, workers).routes(),
        ]
        starlette = Starlette(routes=routes, exception_handlers={kind: self._error for kind in user_facing()},
                              middleware=[Middleware(UnexpectedErrors)])
        starlette.state.bounds = self.bounds
        self.app = SecurityHeaders(starlette)

    def stop(self) -> None:
        """End the live streams (the server is shutting down and waits for open responses)."""
        self._stopping = True

    # ------------------------------------------------------------------ errors

    @staticmethod
    async def _error(request: Request, error: Exception) -> Response:
        """Every route's errors that a person can act on, in one shape: ApiError with its own status; the
        database failing, 503 (logged: the bank must see it); the others (a period, a dispute, a record
        refused), 400 with their message."""
        headers = {}
        if isinstance(error, ApiError):
            status, message = error.status, error.message
            headers.update(error.headers or {})
        elif isinstance(error, DatabaseError):
            log.error("%s %s: the database failed", request.method, request.url.path, exc_info=error)
            status, message = 503, "the database is not available now; try again later"
        else:
            status, message = 400, str(error)
        if status == 401:
            headers["WWW-Authenticate"] = 'Bearer realm="collector"'
        body = {"error": message}
        if isinstance(error, ApiError) and error.busy is not None:
            body["busy"] = error.busy
        return JSONResponse(body, status_code=status, headers=headers or None)

    def _store(self) -> Store:
        return read_store(self.config.db)

    @staticmethod
    def _known_site(store: Store, site: str) -> None:
        if store.site(site) is None:
            raise ApiError(404, f"there is no site {site}")

    # ------------------------------------------------------------------ pages (no data: the script fetches it)

    def index_page(self, request: Request) -> Response:
        return page(request, "index.html")

    def site_page(self, request: Request) -> Response:
        if not valid_id(request.path_params["site"]):
            return PlainTextResponse("not found", status_code=404)
        return page(request, "site.html")

    # ------------------------------------------------------------------ JSON API

    def api_sites(self, request: Request) -> Response:
        holder: Holder = request.state.holder
        with self._store() as store:
            sites = [{"site": s["site"], "name": s["name"], "timezone": s["timezone"]} for s in store.sites()
                     if holder.may_read(s["site"])]
        return JSONResponse(sites)

    def api_headcount(self, request: Request) -> Response:
        site = request.path_params["site"]
        with self._store() as store:
            self._known_site(store, site)
            return JSONResponse(headcount(store, site))

    def api_attendance(self, request: Request) -> Response:
        site = request.path_params["site"]
        with self._store() as store:
            self._known_site(store, site)
            day = asked_day(request, site_rules(store, site).tz)
            return JSONResponse(attendance(store, site, day, day, grace=self.grace, teams=True))

    def api_trouble(self, request: Request) -> Response:
        """What needs the site foreman now (the red banner's facts): per-gate counts and reasons only."""
        site = request.path_params["site"]
        with self._store() as store:
            self._known_site(store, site)
            return JSONResponse(trouble_report(store, site))

    def api_gates(self, request: Request) -> Response:
        holder: Holder = request.state.holder
        site = request.query_params.get("site")
        with self._store() as store:
            if site is not None:
                self._known_site(store, site)
            return JSONResponse(mark_retired_sending(store, gate_health(store, site if site is not None else
                                                                        (None if holder.bank else holder.scope))))

    def api_quarantine(self, request: Request) -> Response:
        try:
            limit = int(request.query_params.get("limit", QUARANTINE_LIMIT))
        except ValueError:
            raise ApiError(400, "limit must be an integer") from None
        if not 1 <= limit <= 10000:
            raise ApiError(400, "limit must be between 1 and 10000")
        with self._store() as store:
            rows = store.quarantined(limit)
        for row in rows:
            row["raw"] = row["raw"].decode("utf-8", "backslashreplace") if row["raw"] is not None else None
        return JSONResponse(rows)

    def api_arrears(self, request: Request) -> Response:
        """Wages overdue per site and employer, and the workers concerned (collector arrears --json, less the
        rows that are paid or not due yet): for the bank, which must raise the Art. 27 warning. As the
        daemon last computed each site (its age shown), never the whole bank per request; as of a date
        given, computed."""
        text = request.query_params.get("as_of")
        day = None
        if text is not None:
            try:
                day = check_date(date.fromisoformat(text)) if len(text) == 10 else None
            except ValueError:
                day = None
            if day is None:
                raise ApiError(400, "as_of must be a date YYYY-MM-DD")
        with self._store() as store:
            if not store.has("payments"):
                raise ApiError(503, "the database has no wage payments yet (collector db upgrade)")
            report = arrears_report(store, as_of=day, grace=self.grace)
        report["workers"] = [row for row in report["workers"] if row["status"] not in SETTLED]
        return JSONResponse(report)

    def metrics(self, request: Request) -> Response:
        with self._store() as store:
            text = render_metrics(store)
        text += render_bounds(*self.bounds.snapshot())
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    # ------------------------------------------------------------------ live stream (server-sent events)

    async def api_live(self, request: Request) -> Response:
        site = request.path_params["site"]
        holder: Holder = request.state.holder

        def known() -> None:
            with self._store() as store:
                self._known_site(store, site)

        await run_in_threadpool(known)
        # A session's stream ends once the session does (signed out elsewhere, or ended by the bank).
        response = _SlotResponse(self._live(site, holder.cookie, bank=holder.bank), media_type="text/event-stream",
                                 headers={"X-Accel-Buffering": "no"})
        # From here to the return nothing awaits: the count is one step on the event loop, and the
        # response, which Starlette calls at once, gives the slot back however it ends.
        try:
            response.release = self.streams.take(holder.key, bank=holder.bank)
        except ApiError:
            self.bounds.count("live_streams")
            raise
        return response

    async def _live(self, site: str, session: str | None = None, *, bank: bool = False):
        """An ``update`` event with the headcount and the site's gates whenever either changes, and a
        comment line now and then so that proxies and the browser keep the connection."""
        store = None
        try:
            store = await run_in_threadpool(self._store)
            sent, version, computed, spoke = None, None, 0.0, time.monotonic()
            yield "retry: 3000\n\n"
            while not self._stopping:
                now = time.monotonic()
                current = await run_in_threadpool(_data_version, store)
                if current != version or now - computed >= RECOMPUTE_SECONDS:
                    if session is not None and await run_in_threadpool(session_scope, store, session) is None:
                        return
                    snapshot = await self._round(store, site, bank=bank)  # None: the next poll tries again
                    if snapshot is not None:
                        version, computed = current, now
                        # as_of changes every time; only a change of substance is news.
                        key = json.dumps({**snapshot, "headcount": {**snapshot["headcount"], "as_of": None}},
                                         sort_keys=True)
                        if key != sent:
                            sent, spoke = key, now
                            yield f"event: update\ndata: {safe_json(snapshot)}\n\n"
                if now - spoke >= KEEPALIVE_SECONDS:
                    spoke = now
                    yield ": keepalive\n\n"
                await anyio.sleep(self.poll_seconds)
        finally:
            if store is not None:
                store.close()

    async def _round(self, store: Store, site: str, *, bank: bool) -> dict | None:
        """A stream's snapshot, worked out as work of its site like a request's (its slot held meanwhile);
        None when the site holds as many as it may: the round is put off and the stream stays open. A
        bank's stream is never put off, as a bank token's requests are not."""
        try:
            release = self.bounds.take(sites=() if bank else (site,))
        except Refused:
            self.bounds.count("live_round")
            return None
        try:
            return await run_in_threadpool(_snapshot, store, site)
        finally:
            release()


class StreamSlots:
    """Live streams held open, each polling the database about once a second: at most ``total`` in all
    and ``per_token`` per token, and site tokens together at most ``total - per_token``, so a bank token
    always finds a slot however many streams the sites hold.

    Used on the event loop only, where a method without an await runs whole: no two requests can both
    pass the check for the last slot.
    """

    def __init__(self, total: int, per_token: int):
        self.total, self.per_token = total, per_token
        self.by_token: Counter[object] = Counter()
        self.held = 0
        self.held_by_sites = 0

    def take(self, holder: object, *, bank: bool) -> Callable[[], None]:
        """Take a slot for token ``holder``; returns its release (safe to call more than once), or raises
        ApiError 503."""
        if self.by_token[holder] >= self.per_token:
            raise ApiError(503, f"this token already holds {self.per_token} live streams; close one first")
        if self.held >= self.total or (not bank and self.held_by_sites >= self.total - self.per_token):
            raise ApiError(503, "too many live streams; try again later")
        self.by_token[holder] += 1
        self.held += 1
        self.held_by_sites += not bank
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            self.by_token[holder] -= 1
            if not self.by_token[holder]:
                del self.by_token[holder]
            self.held -= 1
            self.held_by_sites -= not bank

        return release


class _SlotResponse(StreamingResponse):
    """A stream that gives back its slot when it ends: finished, client gone, server stopping or failed."""

    release: Callable[[], None] = staticmethod(lambda: None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.release()


def _data_version(store: Store) -> object:
    """Changes whenever another connection (the daemon, an admin command) commits."""
    return store.change_marker()


def _snapshot(store: Store, site: str) -> dict:
    # Gaps as the daemon recorded them: working them out from the punches reads, for a gate with a hole,
    # every punch above it, at each recomputation of each stream.
    trouble = trouble_report(store, site)["trouble"]
    # A retired gate leaves the page, unless it still sends (then it shows, marked: it is trouble).
    sending = retired_sending(trouble)
    gates = [{**gate, "retired_sending": gate["gate"] in sending}
             for gate in gate_health(store, site, gaps="recorded") if gate["active"] or gate["gate"] in sending]
    return {"headcount": headcount(store, site), "gates": gates, "trouble": trouble,
            # Counts only: the page fetches the disputes themselves (/api/disputes) when these change.
            "disputes": store.dispute_counts(site) if store.has("worker_access") else None}

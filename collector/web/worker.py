"""The worker's own page and its API, and the disputes API for site and bank tokens.

``/w`` is the page; a worker arrives there through the personal link the bank issued
(``/w#SECRET``). The page trades the secret for a session of this browser (``POST /api/worker/session``),
whose own secret an HttpOnly SameSite=Strict cookie holds, and removes the link from the address bar and
the history; a browser never sends a fragment to a server, so the link is in no access log either.
``POST /api/worker/logout`` revokes the session; re-issuing or revoking the link ends all its sessions.
Every ``/api/worker/...`` answer is computed from that worker's own punches and rows only.

`collector serve` reads the database read-only; the few writes the worker's page makes (the access log,
disputes, evidence requests) go through a second, writable connection opened for that request alone, which never changes
the schema (``upgrade=False``). A presented secret is checked first and a valid one always served; wrong ones
are counted per client address (``[web] trusted_proxy``), per secret and in all, and past a limit answered
429 (worker_links.Attempts); a request presenting none is answered 401 and counted as nothing.
This process holds no signing key: evidence is asked for here, signed by the collector daemon
(``collector/evidence/signer.py``) and served from the bytes it stored.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from collector.attendance.reports import check_period
from collector.config import CollectorConfig
from collector.evidence.page import content_security_policy, render_evidence_bytes
from collector.localtime import check_date
from collector.store import Store, StoreError
from collector.store.evidence_requests import EvidenceRefused
from collector.web.common import (
    LANGUAGES,
    PUBLIC,
    WORKER,
    WORKER_COOKIE,
    Access,
    ApiError,
    ClientAddress,
    Holder,
    JSONResponse,
    hold,
    holding,
    page,
    page_language,
    read_store,
    route,
    secret_key,
)
from collector.web.stores import kept_store
from collector.workers import disputes as dispute_rules
from collector.workers import links as worker_links
from collector.workers.record import access_entries, record
from gate_agent.protocol import valid_id

log = logging.getLogger(__name__)

COOKIE = WORKER_COOKIE
COOKIE_DAYS = worker_links.SESSION_DAYS
#: Worker requests carry a small JSON body at most.
MAX_BODY = 4096
#: What the worker's page needs of the schema (links, access log, disputes; corrections citing them).
NEEDS = "dispute_answers"


class WorkerApi:
    """Routes of the worker's page, and the disputes of sites for their foremen and the bank (``access``:
    collector.web.app's, so that a token or a session reads here what it reads there)."""

    def __init__(self, config: CollectorConfig, access: Access, *, attempts: worker_links.Attempts | None = None,
                 client: ClientAddress | None = None):
        self.config = config
        self.access = access
        self.attempts = attempts or worker_links.Attempts()
        self.client = client or ClientAddress(config.trusted_proxies, config.forwarded_header)
        self.grace = timedelta(hours=config.final_grace_hours)

    def routes(self) -> list[Route]:
        # /api/worker/session checks the link it is given; the WORKER routes, the cookie it sets (_worker).
        return [
            route("/w", self.page, PUBLIC),
            route("/api/worker/session", self.session, PUBLIC, methods=["POST"]),
            route("/api/worker/logout", self.logout, PUBLIC, methods=["POST"]),
            route("/api/worker/record", self.api_record, WORKER),
            route("/api/worker/disputes", self.api_file_dispute, WORKER, methods=["POST"]),
            route("/api/worker/evidence", self.api_request_evidence, WORKER, methods=["POST"]),
            route("/api/worker/evidence/{number:int}", self.api_evidence_state, WORKER),
            route("/api/worker/evidence/{number:int}/file", self.api_evidence_file, WORKER),
            route("/api/worker/evidence/{number:int}/page", self.api_evidence_page, WORKER),
            route("/api/disputes", self.api_disputes, self.access.site),
        ]

    # ------------------------------------------------------------------ stores

    def _reader(self) -> Store:
        store = read_store(self.config.db)
        if not store.has(NEEDS):
            store.close()
            raise ApiError(503, "the database has no worker pages yet (collector db upgrade)")
        return store

    def _writer(self, refusal: str = "the record cannot be shown now: access cannot be logged") -> Store:
        """For sessions, the access log and disputes only; never upgrades the schema."""
        try:
            return kept_store(self.config.db, readonly=False)
        except StoreError as error:
            log.error("the worker page cannot write to the database: %s", error)
            raise ApiError(503, refusal) from None

    def _write(self, action: Callable[[Store], object], *,
               refusal: str = "the record cannot be shown now: access cannot be logged"):
        """``action`` on a writable store; 503 with ``refusal`` when the database refuses the write."""
        with self._writer(refusal) as store:
            try:
                return action(store)
            except StoreError as error:
                log.error("the worker page cannot write to the database: %s", error)
                raise ApiError(503, refusal) from None

    # ------------------------------------------------------------------ who is asking

    def _worker(self, request: Request, store: Store) -> str:
        """The worker whose live session the cookie holds; else 401, or 429 once this client, this cookie's
        value or everyone has presented too many wrong ones (a valid session is never refused for that)."""
        return self._session_of(request, store)["worker"]

    def _session_of(self, request: Request, store: Store) -> dict:
        """The live session, its worker holding a slot of theirs and of each site they work at now for the
        rest of the request (collector/web/bounds.py: every browser of one link counts as the one worker);
        429 or 503 when there is none."""
        presented = request.cookies.get(COOKIE)
        found = worker_links.session(store, presented) if presented else None
        if found is not None:
            worker = found["worker"]
            sites = [a["site"] for a in store.assignments(worker=worker) if a["valid_to"] is None]
            hold(request, credential=("worker", worker), sites=sites)
            return found
        if presented:  # nothing presented is no guess
            self._refuse_wrong(request, presented)
        raise ApiError(401, "this link is not valid (any more): ask the bank for your new link")

    def _refuse_wrong(self, request: Request, presented: object) -> None:
        """Count a wrong secret; 429 with Retry-After when past a limit (else the caller answers 401)."""
        client = self.client(request)
        wait = self.attempts.wrong(client, presented)
        if wait is not None:
            log.info("wrong worker secrets from %s limited for %d s", client, math.ceil(wait))
            raise ApiError(429, "too many attempts; try again later",
                           headers={"Retry-After": str(max(1, math.ceil(wait)))})

    def _json_body(self, request: Request, body: bytes) -> dict:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise ApiError(415, "send JSON (Content-Type: application/json)")
        if len(body) > MAX_BODY:
            raise ApiError(413, "too large")
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise ApiError(400, "not JSON") from None
        if not isinstance(data, dict):
            raise ApiError(400, "expected a JSON object")
        return data

    # ------------------------------------------------------------------ the page and the session

    def page(self, request: Request) -> Response:
        return page(request, "worker.html")

    async def session(self, request: Request) -> Response:
        body = await _body(request)
        return await run_in_threadpool(self._session, request, body)

    def _session(self, request: Request, body: bytes) -> Response:
        """A valid link opens a session of this browser (the cookie holds its secret, never the link's)."""
        secret = self._json_body(request, body).get("secret")
        if not isinstance(secret, str) or not secret:
            raise ApiError(400, 'expected {"secret": "..."}')  # presents nothing: not a guess
        # A link traded in a crowd waits on itself, as a session's requests do (collector/web/bounds.py).
        with holding(request, credential=secret_key(secret)):
            return self._open(request, secret)

    def _open(self, request: Request, secret: str) -> Response:
        # Checked on the read-only connection first: a wrong link never takes the database's write lock.
        with self._reader() as store:
            valid = worker_links.holder(store, secret) is not None
        opened = self._write(lambda store: worker_links.open_session(store, secret),
                             refusal="the page cannot be opened now; try again later") if valid else None
        if opened is None:
            log.info("worker link refused (client %s)", self.client(request))
            self._refuse_wrong(request, secret)
            # Whoever's page this browser held before is closed too: a shared phone shows nobody's record.
            response = JSONResponse({"error": "this link is not valid (any more): ask the bank for your new link"},
                                    status_code=401)
            response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=not _loopback(request))
            return response
        cookie, _ = opened
        response = Response(status_code=204)
        response.set_cookie(COOKIE, cookie, max_age=COOKIE_DAYS * 86400, path="/", httponly=True, samesite="strict",
                            secure=not _loopback(request))
        return response

    async def logout(self, request: Request) -> Response:
        body = await _body(request)
        return await run_in_threadpool(self._logout, request, body)

    def _logout(self, request: Request, body: bytes) -> Response:
        """End this browser's session in the database (its cookie's value reads nothing after this)."""
        self._json_body(request, body)  # JSON only: a form posted from elsewhere cannot sign a worker out
        presented = request.cookies.get(COOKIE)
        if presented and self._write(lambda store: worker_links.end_session(store, presented),
                                     refusal="signing out is not possible now; try again later"):
            log.info("a worker signed out of a browser")
        response = Response(status_code=204)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=not _loopback(request))
        return response

    # ------------------------------------------------------------------ the worker's API

    def api_record(self, request: Request) -> Response:
        month = request.query_params.get("month")
        now = datetime.now(UTC)
        with self._reader() as store:
            worker = self._worker(request, store)
            check = record(store, worker, month, now=now, grace=self.grace)
            self._write(lambda w: w.log_access(worker, via="worker link", who="the worker",
                                               what=f"days {check['month']}"))
            check["access"] = access_entries(store, worker, check["zone"]["timezone"])
        return JSONResponse(check)

    async def api_file_dispute(self, request: Request) -> Response:
        body = await _body(request)
        return await run_in_threadpool(self._file_dispute, request, body)

    def _file_dispute(self, request: Request, body: bytes) -> Response:
        with self._reader() as store:
            worker = self._worker(request, store)
        data = self._json_body(request, body)

        def file(writer: Store) -> dict:
            return dispute_rules.file(writer, worker, site=data.get("site"), day=data.get("day"),
                                      note=data.get("note"))

        filed = self._write(file)  # a DisputeError is answered 400 by collector.web.app's handler
        log.info("dispute %s filed by worker %s for %s at %s", filed["ref"], worker, filed["day"], filed["site"])
        return JSONResponse({k: filed[k] for k in ("ref", "site", "day", "note", "filed_at", "status")},
                                 status_code=201)

    # ------------------------------------------------------------------ evidence, signed by the collector daemon

    def _evidence_reader(self) -> Store:
        store = self._reader()
        if not store.has("evidence_requests"):
            store.close()
            raise ApiError(503, "the database has no evidence requests yet (collector db upgrade)")
        return store

    async def api_request_evidence(self, request: Request) -> Response:
        body = await _body(request)
        return await run_in_threadpool(self._request_evidence, request, body)

    def _request_evidence(self, request: Request, body: bytes) -> Response:
        """Record the worker's request, within what one worker may cost (``[evidence]``); a collector
        process signs it (this process holds no key)."""
        with self._evidence_reader() as store:
            holder = self._session_of(request, store)
        worker = holder["worker"]
        first, last = self._dates(self._json_body(request, body))
        by = f"worker link issued {holder['link_issued_at']}"
        try:
            with self._writer() as writer:
                asked = writer.request_evidence(worker, first.isoformat(), last.isoformat(), by=by,
                                                limits=self.config.evidence_limits)
        except EvidenceRefused as error:
            # Too many or too much for now: 429, ask later; a period too long or too large: 400, ask otherwise.
            log.info("evidence request of worker %s for %s..%s refused: %s", worker, first, last, error)
            raise ApiError(429 if error.busy else 400, str(error)) from None
        except StoreError as error:
            log.error("the worker page cannot record an evidence request: %s", error)
            raise ApiError(503, "the request cannot be recorded now; try again later") from None
        log.info("evidence request %d recorded for worker %s (%s..%s)", asked["id"], worker, first, last)
        return JSONResponse(_shown(asked), status_code=202)

    def api_evidence_state(self, request: Request) -> Response:
        with self._evidence_reader() as store:
            worker = self._worker(request, store)
            asked = store.evidence_request(request.path_params["number"], worker=worker)
        if asked is None:
            raise ApiError(404, "no such request for evidence")
        return JSONResponse(_shown(asked))

    def _ready_evidence(self, request: Request) -> tuple[str, dict, str]:
        """The worker's request named in the path and its signed file (404: not theirs or none; 409: not
        ready yet); the look goes into the worker's access log, whether as a download or as the page."""
        with self._evidence_reader() as store:
            worker = self._worker(request, store)
            asked = store.evidence_request(request.path_params["number"], worker=worker)
            if asked is None:
                raise ApiError(404, "no such request for evidence")
            document = store.evidence_document(asked["id"], worker=worker)
        if document is None:
            raise ApiError(409, f"the file is not ready ({asked['state']})")
        first, last = asked["first_day"], asked["last_day"]
        self._write(lambda w: w.log_access(worker, via="worker link", who="the worker", what=f"evidence {first}..{last}"))
        return worker, asked, document

    def api_evidence_file(self, request: Request) -> Response:
        """The signed file exactly as the collector stored it; the download goes into the access log."""
        worker, asked, document = self._ready_evidence(request)
        first, last = asked["first_day"], asked["last_day"]
        name = f"evidence-{worker}-{first}-{last}.json"
        return Response(document.encode("ascii"), media_type="application/json",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    def api_evidence_page(self, request: Request) -> Response:
        """The same signed file as a page to read on a phone (collector/evidence/page.py), made from the
        stored bytes alone, in ``?lang=`` (else the browser's language); the look goes into the access log
        as the download does. The page has no script, and its one inline style is allowed by its hash."""
        _, _, document = self._ready_evidence(request)
        lang = request.query_params.get("lang")
        if lang not in LANGUAGES:
            lang = page_language(request.headers.get("accept-language"))
        return HTMLResponse(render_evidence_bytes(document.encode("utf-8"), lang),
                            headers={"Content-Security-Policy": content_security_policy()})

    def _dates(self, data: dict) -> tuple[date, date]:
        try:
            texts = [data.get(k) for k in ("from", "to")]
            first, last = (check_date(date.fromisoformat(t)) if isinstance(t, str) and len(t) == 10 else None
                           for t in texts)
        except ValueError:
            first = last = None
        if first is None or last is None:
            raise ApiError(400, "from and to must be dates YYYY-MM-DD")
        return check_period(first, last)  # an InputError: the app answers 400 with its message

    # ------------------------------------------------------------------ disputes for sites and the bank

    def api_disputes(self, request: Request) -> Response:
        """Disputes of the token's or the sign-in session's site (a bank token: every site, or ``?site=``);
        ``?open=1``: open only."""
        holder: Holder = request.state.holder
        site = request.query_params.get("site")
        if site is not None and not valid_id(site):
            raise ApiError(404, f"there is no site {site}")
        if site is None and not holder.bank:
            site = holder.scope
        status = "open" if request.query_params.get("open") in ("1", "true") else None
        with self._reader() as store:
            rows = store.disputes(site=site, status=status)
            names = {w["worker"]: w["name"] for w in store.workers()}
        for row in rows:
            row["name"] = names.get(row["worker"])
        workers = sorted({row["worker"] for row in rows})
        if workers:
            self._write(lambda w: [w.log_access(worker, via=holder.kind, who="bank" if holder.bank else holder.scope,
                                                what="disputes") for worker in workers])
        return JSONResponse(rows)


async def _body(request: Request) -> bytes:
    """The request's body, read no further than one byte past what a worker's request can carry (a larger
    one is refused by ``_json_body``): a body of gigabytes is never held in memory."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            break
    return body


def _shown(asked: dict) -> dict:
    """What the page is told of a request: its state, and why it failed."""
    return {"id": asked["id"], "from": asked["first_day"], "to": asked["last_day"], "state": asked["state"],
            "requested_at": asked["requested_at"], "reason": asked["reason"]}


def _loopback(request: Request) -> bool:
    """A page served to the same machine (tests, a local demo) may use a cookie without Secure."""
    host = request.url.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False

"""What every route of `collector serve` shares: the error it refuses with, its JSON, who may read what,
and the pages' templates.

Access is decided here, once, for every route: each route is declared with ``route(path, endpoint,
access)``, and ``access`` says who may call it. ``PUBLIC`` routes hold no data (the pages, whose script
fetches it, and sign-in); ``WORKER`` routes answer only the worker whose link's cookie the request holds
(collector/web/worker.py checks it against the database); ``Access.site`` lets any holder of a bank token,
a site token or a foreman's sign-in session in, and refuses one of another site than the request names;
``Access.bank`` lets bank tokens only in. tests/test_web_access.py walks every route of the app, so that
a route declared without one fails there.

The pages are Jinja2 templates with autoescaping on, each extending ``base.html``, which carries the head
and the ``lang`` the server chose from the request's Accept-Language; their text comes from the message
catalogs in static/i18n/, applied by static/i18n.js.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import inspect
import ipaddress
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse as StarletteJSONResponse
from starlette.responses import Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from collector.errors import CollectorError
from collector.signin import COOKIE, session_scope
from collector.store import Store, StoreError
from collector.web.bounds import RETRY_SECONDS, Bounds, Refused
from collector.web.stores import kept_store
from gate_agent.logsetup import safe_json

STATIC = Path(__file__).parent / "static"
TEMPLATES = Path(__file__).parent / "templates"
#: The scope of a token that reads every site: the bank's.
ALL_SITES = "*"
#: The page languages, the first the default (static/i18n/<lang>.json each).
LANGUAGES = ("zh-CN", "en")
#: Who may call a route that is not for holders of a token or a session (see the module's docstring).
PUBLIC, WORKER = "public", "worker"
#: The cookie of a worker's session (collector/web/worker.py), which a WORKER route is counted by first.
WORKER_COOKIE = "worker_link"


class ApiError(CollectorError):
    """A request refused with this HTTP status; the message is the answer's ``error``."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None,
                 busy: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers
        #: A refusal for want of a slot (collector/web/bounds.py): its reason, answered as ``busy``, so that
        #: a page can say it in its own words.
        self.busy = busy


class JSONResponse(StarletteJSONResponse):
    """Starlette's compact JSON, with what a gate, a file or a worker list sent (DEL, C1 controls, bidi
    overrides: Starlette writes them raw) as JSON escapes; names in any script stay as they are."""

    def render(self, content: object) -> bytes:
        return safe_json(content, allow_nan=False, indent=None, separators=(",", ":")).encode("utf-8")


def read_store(db) -> Store:
    """A read-only store for one request, kept open for the next (collector.web.stores); ApiError 503
    when the database cannot be opened."""
    try:
        return kept_store(db, readonly=True)
    except StoreError as error:
        raise ApiError(503, str(error)) from None


# ---------------------------------------------------------------------------------------------- who asks


class ClientAddress:
    """The client's address, which limits are counted by: the connection's, or, for a connection from a
    configured trusted proxy (``[web] trusted_proxy``), the address that proxy names in its header
    (``[web] forwarded_header``). Nobody else's header is believed: a client cannot pick its own address.
    An IPv6 client is counted by its /64, the block one subscriber holds."""

    def __init__(self, proxies=(), header: str = "X-Forwarded-For"):
        self.proxies = tuple(proxies)
        self.header = header

    def __call__(self, request: Request) -> str:
        peer = request.client.host if request.client else "unknown"
        if not self.proxies or not self._trusted(peer):
            return _counted(peer)
        values = request.headers.getlist(self.header)
        if self.header.lower() == "x-forwarded-for":
            # Each proxy appends the address it saw: from the right, the first one that is not ours.
            hops = [hop.strip() for value in values for hop in value.split(",")]
            named = next((hop for hop in reversed(hops) if not self._trusted(hop)), None)
        else:
            named = values[-1].strip() if len(values) == 1 else None
        try:
            return _counted(str(ipaddress.ip_address(named or "")))
        except ValueError:
            return f"behind {peer}: no address in {self.header}"

    def _trusted(self, text: str) -> bool:
        try:
            address = ipaddress.ip_address(text)
        except ValueError:
            return False
        return any(address in network for network in self.proxies)


def _counted(text: str) -> str:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return text
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class Tokens:
    """Bearer tokens and their scopes, compared in constant time and never logged."""

    def __init__(self, tokens: dict[str, str]):
        self._tokens = [(token.encode(), scope) for token, scope in tokens.items()]

    def identify(self, authorization: str | None) -> tuple[int, str]:
        """(which configured token, its scope) for the presented token; ApiError 401 when there is none or
        it is not ours."""
        if authorization is None:
            raise ApiError(401, "an Authorization: Bearer token is required")
        scheme, _, presented = authorization.partition(" ")
        presented = presented.strip()
        if scheme.lower() != "bearer" or not presented or " " in presented:
            raise ApiError(401, "malformed Authorization header (expected: Bearer TOKEN)")
        given = presented.encode("utf-8", "replace")
        found = None
        # Every token is compared, whichever matches, so timing tells nothing about the others.
        for index, (token, scope) in enumerate(self._tokens):
            if hmac.compare_digest(token, given) and found is None:
                found = (index, scope)
        if found is None:
            raise ApiError(401, "unknown token")
        return found


@dataclass(frozen=True)
class Holder:
    """Who holds a request's access: a configured bearer token (``key`` ("token", its index)) or a
    foreman's sign-in session (("session", its id), with the cookie that holds it), and its scope: one
    site, or ALL_SITES for the bank's."""

    key: tuple[str, object]
    scope: str
    cookie: str | None = field(default=None, repr=False)

    @property
    def bank(self) -> bool:
        return self.scope == ALL_SITES

    @property
    def session(self) -> bool:
        return self.key[0] == "session"

    def may_read(self, site: str) -> bool:
        return self.bank or self.scope == site

    @property
    def kind(self) -> str:
        """How the access log names it."""
        return "bank token" if self.bank else "site sign-in" if self.session else "site token"


class Access:
    """The two checks every route that reads data goes through, over the configured tokens and the
    database that holds the sign-in sessions."""

    def __init__(self, tokens: dict[str, str], db):
        self.tokens = Tokens(tokens)
        self.db = db

    def holder(self, request: Request) -> Holder:
        """The bearer token if one is sent, else the sign-in session's cookie (a session reads its own
        site only); ApiError 401 when neither is good."""
        authorization = request.headers.get("authorization")
        cookie = request.cookies.get(COOKIE)
        if authorization is not None or not cookie:
            index, scope = self.tokens.identify(authorization)
            return Holder(("token", index), scope)
        with read_store(self.db) as store:
            session = session_scope(store, cookie)
        if session is None:
            raise ApiError(401, "the sign-in session has ended; sign in again")
        return Holder(("session", session["id"]), session["site"], cookie)

    def site(self, request: Request) -> Holder:
        """May this holder read the site the request names (its path's ``{site}``, else ``?site=``)? A
        request naming none reads the holder's own scope. 401, then 403 (another site's holder, whether
        or not the site exists; a route answers 404 for a site the database does not hold)."""
        holder = self.holder(request)
        site = request.path_params.get("site", request.query_params.get("site"))
        if site is not None and not holder.may_read(site):
            raise ApiError(403, f"this token is for site {holder.scope} only")
        return holder

    def bank(self, request: Request) -> Holder:
        """Bank tokens only: 401, then 403 for a site's token or session."""
        holder = self.holder(request)
        if not holder.bank:
            raise ApiError(403, f"{request.url.path} is for bank tokens only")
        return holder


def route(path: str, endpoint: Callable, access: str | Callable[[Request], Holder], *,
          methods: list[str] | None = None, stream: bool = False) -> Route:
    """A route with who may call it: PUBLIC, WORKER, or a check of Access (``access.site``,
    ``access.bank``), which runs before the endpoint and leaves its Holder in ``request.state.holder``.
    The route keeps the kind in ``.access`` ("public", "worker", "site" or "bank") for the tests.

    Every route but a PUBLIC one is bounded (collector/web/bounds.py, the app's ``state.bounds``): the
    secret as presented takes a slot on the event loop, before any thread or database is used; a site's
    or session's holder then takes one of its site (a bank token none), and a worker's route takes the
    worker's and their sites' once it knows the worker (``hold``). All are given back when the work ends;
    a sync endpoint runs in the thread pool, so its slots are held until its thread is done. A ``stream``
    (the live stream) is long-lived: it holds a stream slot instead (collector/web/app.py: StreamSlots),
    and each of its rounds a slot of its site, never a request's slot, which it would hold for hours."""
    if isinstance(access, str):
        if access not in (PUBLIC, WORKER):
            raise ValueError(f"unknown access {access!r}")
        kind, check = access, None
    else:
        kind, check = access.__name__, access
        if kind not in ("site", "bank"):
            raise ValueError(f"unknown access check {kind!r}")
    if kind == PUBLIC:
        made = Route(path, endpoint, methods=methods)
        made.access = kind
        return made
    asynchronous = inspect.iscoroutinefunction(endpoint)

    def checked(request: Request) -> None:
        if check is not None:  # a session is read from the database: in a thread
            holder = request.state.holder = check(request)
            if not holder.bank and not stream:
                hold(request, sites=[request.path_params.get("site", request.query_params.get("site"))
                                     or holder.scope])

    def work(request: Request) -> Response:
        checked(request)
        return endpoint(request)

    async def guarded(request: Request) -> Response:
        bounds: Bounds = request.app.state.bounds
        request.state.releases = releases = []
        ended = None
        try:
            secret = presented(request, worker=kind == WORKER) if not stream else None
            if secret is not None:
                hold(request, credential=secret)
            ended = bounds.start() if not stream else None  # once it holds its slot: what the gauge counts
            if not asynchronous:
                return await run_in_threadpool(work, request)
            await run_in_threadpool(checked, request)
            return await endpoint(request)  # its work runs in threads it awaits: the slots are held meanwhile
        finally:
            for release in releases:
                release()
            if ended is not None:
                ended()

    guarded.__name__ = getattr(endpoint, "__name__", "guarded")
    guarded.__doc__ = endpoint.__doc__
    made = Route(path, guarded, methods=methods)
    made.access = kind
    return made


def presented(request: Request, *, worker: bool = False) -> tuple[str, bytes] | None:
    """What a request's first slot is counted by: a digest of the secret it presents (the bearer token,
    else the sign-in session's cookie; a worker route's session cookie), or None for none. Read before the
    secret is looked up, so one value sent in a flood waits on itself without any database work."""
    if worker:
        value = request.cookies.get(WORKER_COOKIE)
    else:
        authorization = request.headers.get("authorization")
        # As Tokens.identify reads it: "bearer  X " and "Bearer X" present the same token.
        value = authorization.partition(" ")[2].strip() if authorization is not None else request.cookies.get(COOKIE)
    return secret_key(value) if value else None


def secret_key(value: str) -> tuple[str, bytes]:
    """The slot key of a secret as presented: a digest, so that no secret is kept in the counts."""
    return ("presented", hashlib.sha256(value.encode("utf-8", "replace")).digest()[:16])


def hold(request: Request, *, credential: object = None, sites: Iterable[str] = ()) -> None:
    """Take a slot of ``credential`` and of each site for the rest of this request's work (a guarded
    route gives it back); ApiError 429 (the credential's) or 503 (a site's) with Retry-After, in the
    request's language, when there is none."""
    try:
        release = request.app.state.bounds.take(credential=credential, sites=sites)
    except Refused as refused:
        raise busy(request, refused) from None
    request.state.releases.append(release)


@contextlib.contextmanager
def holding(request: Request, *, credential: object = None, sites: Iterable[str] = ()) -> Iterator[None]:
    """``hold`` for a block of a route that is not guarded (a PUBLIC one): the slot is given back when the
    block ends."""
    bounds: Bounds = request.app.state.bounds
    try:
        release = bounds.take(credential=credential, sites=sites)
    except Refused as refused:
        raise busy(request, refused) from None
    ended = bounds.start()
    try:
        yield
    finally:
        release()
        ended()


def busy(request: Request, refused: Refused) -> ApiError:
    """The refusal of a request for want of a slot, in the language its page is shown in."""
    text = server_text(page_language(request.headers.get("accept-language")), f"server.busy_{refused.reason}")
    return ApiError(429 if refused.reason == "credential" else 503, text.replace("{seconds}", str(RETRY_SECONDS)),
                    headers={"Retry-After": str(RETRY_SECONDS)}, busy=refused.reason)


@functools.cache
def _catalog(lang: str) -> dict[str, str]:
    return json.loads((STATIC / "i18n" / f"{lang}.json").read_text(encoding="utf-8"))


def server_text(lang: str, key: str) -> str:
    """A text the server answers with, from the pages' catalog of ``lang`` (so both languages hold it)."""
    return _catalog(lang)[key]


# ---------------------------------------------------------------------------------------------- pages


def _environment() -> jinja2.Environment:
    # StrictUndefined: a name a template uses and the server does not give fails loudly, not as "".
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


TEMPLATE_SET = Jinja2Templates(env=_environment())


def page(request: Request, name: str, **context) -> Response:
    """The page ``name`` (a template extending base.html) in the language the request asks for."""
    lang = page_language(request.headers.get("accept-language"))
    return TEMPLATE_SET.TemplateResponse(request, name, {"lang": lang, **context})


def page_language(accept_language: str | None) -> str:
    """zh-CN, or en when the browser ranks English above Chinese (Accept-Language, q-values honoured)."""
    best = []
    for index, part in enumerate((accept_language or "")[:1000].split(",")[:32]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
            if not 0.0 <= quality <= 1.0:  # nan, inf, negative: not a quality
                quality = 0.0
        tag = tag.strip().lower()
        if tag.startswith("zh") or tag.startswith("en"):
            best.append((-quality, index, "en" if tag.startswith("en") else "zh-CN"))
    return min(best)[2] if best else LANGUAGES[0]


def asked_day(request, tz) -> date:
    """The local date a page asks for in ``?date=YYYY-MM-DD`` (400 otherwise), or today in ``tz``."""
    from collector.attendance.reports import check_period

    text = request.query_params.get("date")
    if text is None:
        return datetime.now(UTC).astimezone(tz).date()
    try:
        day = date.fromisoformat(text) if len(text) == 10 else None
    except ValueError:
        day = None
    if day is None:
        raise ApiError(400, "date must be YYYY-MM-DD")
    check_period(day, day)  # an InputError: the app answers 400 with its message
    return day

"""Every route of `collector serve` says who may call it, and the one access check holds for each: a site's
token or sign-in session never reads another site, and only bank tokens reach the bank's routes.

Parametrised over the app's own routes (collector/web/common.py: ``route``), so a route added without a
declared access, or with one its answers do not keep, fails here. Requests go through the ASGI
application itself over a real SQLite database (no server, no HTTP client library).
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import anyio
import pytest

from collector.config import CollectorConfig, load_config
from collector.signin import COOKIE, issue_link, redeem
from collector.web.app import WebApp
from collector.web.common import PUBLIC, WORKER
from tests.helpers import CollectorSetup

BANK = "bank-ops-token-all-sites-0003"
SITE1 = "site-one-manager-token-0001"
SITE2 = "site-two-manager-token-0002"
#: The routes anyone may call: the pages (their script fetches the data), their static files, sign-in,
#: and the worker's link being traded for its cookie. A new one belongs here only deliberately.
PUBLIC_ROUTES = {"GET /", "GET /sites/{site}", "* /static", "GET /signin", "POST /api/signin", "POST /api/signout",
                 "GET /w", "POST /api/worker/session", "POST /api/worker/logout"}
#: The bank's routes: across sites (the quarantine, arrears and their chart) or about the whole collector
#: (metrics).
BANK_ROUTES = {"GET /api/quarantine", "GET /api/arrears", "GET /api/charts/arrears", "GET /metrics"}


def route_id(route) -> str:
    methods = sorted((route.methods or set()) - {"HEAD"}) if getattr(route, "methods", None) else ["*"]
    return f"{','.join(methods)} {route.path}"


#: The app's routes, as a configuration with no database lists them (making the app opens nothing).
ROUTES = WebApp(CollectorConfig(db="unused.sqlite3", read_mqtt=lambda: None)).routes


def declared(access: str) -> list:
    return [r for r in ROUTES if getattr(r, "access", None) == access]


def asgi(app, method: str, path: str, *, token: str | None = None, cookies: dict[str, str] | None = None,
         query: str = "", body: bytes = b"", headers: dict[str, str] | None = None) -> SimpleNamespace:
    """One request through the ASGI application: (status, headers, body). A stream is read to its first
    chunk, then the client goes away, as a browser closing the page does."""
    sent: list[dict] = []
    raw = [(b"host", b"127.0.0.1")]
    if token is not None:
        raw.append((b"authorization", f"Bearer {token}".encode()))
    if cookies:
        raw.append((b"cookie", "; ".join(f"{k}={v}" for k, v in cookies.items()).encode()))
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query.encode(),
             "root_path": "", "headers": raw, "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8080)}

    async def run() -> None:
        answered = anyio.Event()
        asked = False

        async def receive():
            nonlocal asked
            if not asked:
                asked = True
                return {"type": "http.request", "body": body, "more_body": False}
            await answered.wait()
            return {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)
            if message["type"] == "http.response.body" and message.get("body"):
                answered.set()

        await app(scope, receive, send)

    anyio.run(run)
    start = next(m for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return SimpleNamespace(status=start["status"], headers={k.decode(): v.decode() for k, v in start["headers"]},
                           body=content)


@pytest.fixture(scope="module")
def bank(tmp_path_factory):
    """Sites S1 and S2, a token of each and a bank token, and a foreman's sign-in session of each site."""
    directory = tmp_path_factory.mktemp("access")
    setup = CollectorSetup.create(directory / "collector", broker=SimpleNamespace(port=1883),
                                  **{"web.tokens": {BANK: "*", SITE1: "S1", SITE2: "S2"}})
    sessions = {}
    with setup.store() as store:
        for site in ("S1", "S2"):
            store.add_site(site, timezone="Asia/Shanghai")
            sessions[site] = redeem(store, issue_link(store, site).secret)[0]
    return SimpleNamespace(config=load_config(setup.config_path), sessions=sessions)


def call(bank, route, *, site: str = "S1", **credentials) -> SimpleNamespace:
    """The route asked about ``site``: in its path, else as ``?site=``; POSTs carry a JSON body."""
    method = "POST" if route.methods and "POST" in route.methods else "GET"
    path = route.path.replace("{site}", site).replace("{number:int}", "1")
    query = "" if "{site}" in route.path else f"site={site}"
    return asgi(WebApp(bank.config).app, method, path, query=query, body=b"{}",
                headers={"content-type": "application/json"} if method == "POST" else None, **credentials)


def error(answer) -> str:
    assert answer.headers["content-type"] == "application/json", answer
    return json.loads(answer.body)["error"]


def test_every_route_declares_who_may_call_it():
    undeclared = [route_id(r) for r in ROUTES if getattr(r, "access", None) not in (PUBLIC, WORKER, "site", "bank")]
    assert undeclared == [], "routes without a declared access (collector/web/common.route)"
    assert {route_id(r) for r in declared(PUBLIC)} == PUBLIC_ROUTES
    assert {route_id(r) for r in declared("bank")} == BANK_ROUTES
    assert {r.access for r in ROUTES} == {PUBLIC, WORKER, "site", "bank"}


@pytest.mark.parametrize("route", declared("site"), ids=route_id)
def test_a_site_route_reads_only_the_holders_site(bank, route):
    assert call(bank, route).status == 401
    for refused in ({"token": SITE2}, {"cookies": {COOKIE: bank.sessions["S2"]}}):
        answer = call(bank, route, **refused)
        assert answer.status == 403 and error(answer) == "this token is for site S2 only", refused
    for allowed in ({"token": SITE1}, {"cookies": {COOKIE: bank.sessions["S1"]}}, {"token": BANK}):
        assert call(bank, route, **allowed).status == 200, allowed


@pytest.mark.parametrize("route", declared("bank"), ids=route_id)
def test_a_bank_route_refuses_every_site_holder(bank, route):
    answer = call(bank, route)
    assert answer.status == 401 and answer.headers["www-authenticate"] == 'Bearer realm="collector"'
    for refused in ({"token": SITE1}, {"cookies": {COOKIE: bank.sessions["S1"]}}):
        answer = call(bank, route, **refused)
        assert answer.status == 403 and error(answer) == f"{route.path} is for bank tokens only", refused
    assert call(bank, route, token=BANK).status == 200


@pytest.mark.parametrize("route", declared(WORKER), ids=route_id)
def test_a_worker_route_answers_no_token_or_session(bank, route):
    """Only a worker's link opens the worker's routes: a bank token or a foreman's session is no link."""
    for holder in ({}, {"token": BANK}, {"cookies": {COOKIE: bank.sessions["S1"]}}):
        answer = call(bank, route, **holder)
        assert answer.status == 401 and "link is not valid" in error(answer), holder


def test_a_site_holder_lists_its_own_site_only(bank):
    app = WebApp(bank.config).app
    assert [s["site"] for s in json.loads(asgi(app, "GET", "/api/sites", token=SITE2).body)] == ["S2"]
    assert [s["site"] for s in json.loads(asgi(app, "GET", "/api/sites", token=BANK).body)] == ["S1", "S2"]

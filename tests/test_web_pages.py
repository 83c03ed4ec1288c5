"""Every page `collector serve` answers is its template over base.html: the head they share, and the
language the server chose from the request's Accept-Language on <html lang>, in both languages.

Parametrised over the app's routes: a public GET route is a page (data needs a token, a session or a
worker's link), so a page added later is checked here too.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from collector.config import load_config
from collector.web.app import WebApp
from collector.web.common import PUBLIC
from tests.helpers import CollectorSetup
from tests.test_web_access import ROUTES, asgi, route_id

CATALOGS = Path(__file__).parent.parent / "collector" / "web" / "static" / "i18n"
PAGES = [r for r in ROUTES if getattr(r, "access", None) == PUBLIC and "GET" in (getattr(r, "methods", None) or ())]
#: What a browser sends, and the page language it gets.
LANGUAGES = [(None, "zh-CN"), ("zh-CN,zh;q=0.9", "zh-CN"), ("en-US,en;q=0.9", "en"), ("fr-FR,en;q=0.5", "en")]
HEAD = re.compile(
    r'<!doctype html>\n<html lang="(?P<lang>[^"]+)">\n<head>\n<meta charset="utf-8">\n'
    r'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
    r'<meta name="referrer" content="no-referrer">\n<title data-i18n="(?P<title>[a-z._]+)"></title>\n'
    r'<link rel="stylesheet" href="/static/[a-z]+\.css">\n<script src="/static/i18n\.js" defer></script>\n'
    r'<script src="/static/[a-z]+\.js" defer></script>\n</head>\n<body data-page="[a-z]+">\n')


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    setup = CollectorSetup.create(tmp_path_factory.mktemp("pages") / "collector", broker=SimpleNamespace(port=1883),
                                  **{"web.tokens": {"bank-ops-token-all-sites-0003": "*"}})
    return WebApp(load_config(setup.config_path)).app


def test_the_pages_are_the_ones_we_know():
    assert sorted(route_id(r) for r in PAGES) == ["GET /", "GET /signin", "GET /sites/{site}", "GET /w"]


@pytest.mark.parametrize("accept, lang", LANGUAGES, ids=[lang for _, lang in LANGUAGES])
@pytest.mark.parametrize("route", PAGES, ids=route_id)
def test_every_page_has_the_base_head_and_the_servers_language(app, route, accept, lang):
    answer = asgi(app, "GET", route.path.replace("{site}", "S1"),
                  headers={"accept-language": accept} if accept else None)
    assert answer.status == 200 and answer.headers["content-type"] == "text/html; charset=utf-8"
    page = answer.body.decode()
    head = HEAD.match(page)
    assert head, page[:800]
    assert head["lang"] == lang
    assert page.count("<html") == 1 and page.rstrip().endswith("</body>\n</html>")
    for language in ("zh-CN", "en"):  # the title is a catalog's, in both
        assert head["title"] in json.loads((CATALOGS / f"{language}.json").read_text(encoding="utf-8"))
    assert answer.headers["cache-control"] == "no-store" and "script-src 'self'" in answer.headers[
        "content-security-policy"]


def test_a_page_takes_nothing_from_the_request_but_its_language(app):
    """What the address or the header carries is never written into the page."""
    hostile = '"><script>alert(1)</script>'
    answer = asgi(app, "GET", "/w", headers={"accept-language": hostile})
    assert answer.status == 200 and "<script>alert" not in answer.body.decode()
    assert '<html lang="zh-CN">' in answer.body.decode()
    assert asgi(app, "GET", "/sites/<script>").status == 404

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
    r'<script src="/static/charts\.js" defer></script>\n'
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


def test_the_chinese_catalog_speaks_as_a_site_office_does():
    """Every key in both catalogs; no Chinese text holds a command line or an English word left untranslated
    (the language switch names English on purpose); one term per thing: 申诉 for a dispute, 未校准 for a
    clock, 登录码 for what a foreman types, never the engineers' 令牌, 心跳 or 异议."""
    from collector.web import app as web_app

    folder = Path(web_app.__file__).parent / "static" / "i18n"
    zh = json.loads((folder / "zh-CN.json").read_text(encoding="utf-8"))
    en = json.loads((folder / "en.json").read_text(encoding="utf-8"))
    assert set(zh) == set(en)
    for key, value in zh.items():
        text = re.sub(r"\{[a-z_]+\}", "", value)  # placeholders are filled in by the page
        assert not re.search(r"collector |gate-agent|--[a-z]", text), f"{key}: a command on a page: {value}"
        if key not in ("lang.switch", "lang.switch.label"):
            assert not re.search(r"[A-Za-z]{3,}", text), f"{key}: English left in the Chinese catalog: {value}"
        for word in ("令牌", "心跳", "异议", "未同步"):
            assert word not in value, f"{key}: {word} (say it as a site office does): {value}"

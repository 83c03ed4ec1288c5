"""Sign-in links and sessions in the store (both engines), the attempt limit, the page's language choice,
and `collector web link` / `collector web signout`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from collector.signin import (
    AttemptLimit,
    SignInError,
    cookie_header,
    digest,
    issue_link,
    redeem,
    session_scope,
    sign_out,
    well_formed,
)
from collector.store import Store
from collector.web.common import page_language
from tests.helpers import CollectorSetup

NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)


@pytest.fixture
def store(database):
    with Store(database) as store:
        store.add_site("S1", timezone="Asia/Shanghai")
        store.add_site("S2", timezone="Asia/Shanghai")
        yield store


def test_a_link_signs_in_once_before_it_expires(store):
    link = issue_link(store, "S1", minutes=15, session_hours=8, now=NOW)
    assert well_formed(link.secret) and link.url("https://x.example/") == f"https://x.example/signin#{link.secret}"
    rows = store.execute("SELECT secret_sha256, site, used_at FROM web_signin_links").fetchall()
    assert [tuple(r) for r in rows] == [(digest(link.secret), "S1", None)]  # the digest only

    assert redeem(store, link.secret, now=NOW + timedelta(minutes=16)) is None  # expired
    other = issue_link(store, "S1", now=NOW)
    cookie, session = redeem(store, other.secret, now=NOW + timedelta(minutes=1))
    assert session == {"site": "S1", "expires_at": "2026-11-28T18:01:00.000Z"}
    assert redeem(store, other.secret, now=NOW + timedelta(minutes=2)) is None  # used
    assert store.execute("SELECT secret_sha256 FROM web_sessions").fetchall()[0][0] == digest(cookie)

    assert session_scope(store, cookie, NOW + timedelta(hours=1))["site"] == "S1"
    assert session_scope(store, cookie, NOW + timedelta(hours=13)) is None  # the session expired
    assert session_scope(store, link.secret, NOW) is None  # a link is no session
    assert sign_out(store, cookie, NOW + timedelta(hours=2)) is True
    assert session_scope(store, cookie, NOW + timedelta(hours=2)) is None
    assert sign_out(store, cookie, NOW + timedelta(hours=2)) is False


@pytest.mark.parametrize("secret", [None, "", "short", "A" * 42 + "!", "A" * 44, "Ä" * 43, 43, ["A" * 43]])
def test_anything_but_a_secret_of_ours_is_refused_without_a_query(store, secret):
    assert not well_formed(secret)
    assert redeem(store, secret, NOW) is None and session_scope(store, secret, NOW) is None
    assert sign_out(store, secret, NOW) is False


def test_links_are_refused_for_an_unknown_site_or_out_of_range(store):
    with pytest.raises(SignInError, match="no site S9"):
        issue_link(store, "S9")
    with pytest.raises(SignInError):
        issue_link(store, "S1", minutes=0)
    with pytest.raises(SignInError):
        issue_link(store, "S1", session_hours=24 * 365)


def test_the_bank_ends_every_session_of_a_site(store):
    first, second, unused, elsewhere = (issue_link(store, s, now=NOW) for s in ("S1", "S1", "S1", "S2"))
    cookies = [redeem(store, link.secret, NOW)[0] for link in (first, second, elsewhere)]
    assert store.revoke_site_sessions("S1", "2026-11-28T07:00:00.000Z") == 2
    assert [session_scope(store, c, NOW + timedelta(hours=1)) is not None for c in cookies] == [False, False, True]
    assert redeem(store, unused.secret, NOW) is None  # the site's unused links are void too


def test_the_cookie_is_http_only_strict_and_secure_over_tls():
    assert cookie_header("abc", max_age=60, secure=False) == \
        "collector_session=abc; Path=/; Max-Age=60; HttpOnly; SameSite=Strict"
    assert cookie_header("abc", max_age=60, secure=True).endswith("; Secure")


def test_attempts_are_limited_per_address_and_in_all():
    clock = [0.0]
    limit = AttemptLimit(per_address=3, total=5, window=60, clock=lambda: clock[0])
    assert [limit.allow("a") for _ in range(3)] == [None, None, None]
    assert limit.allow("a") == 60
    assert [limit.allow("b") for _ in range(2)] == [None, None]
    assert limit.allow("c") == 60  # five in all: everyone waits
    clock[0] = 30
    assert limit.allow("c") == 30
    clock[0] = 61
    assert limit.allow("a") is None
    assert "b" not in limit.by_address  # addresses whose attempts aged out are forgotten (bounded memory)


@pytest.mark.parametrize("header, lang", [
    (None, "zh-CN"), ("", "zh-CN"), ("de", "zh-CN"), ("en", "en"), ("en-US,en;q=0.9", "en"),
    ("zh-TW", "zh-CN"), ("en;q=0.4,zh;q=0.8", "zh-CN"), ("zh;q=0.1,en;q=0.2", "en"), ("en;q=bad,zh", "zh-CN"),
    ("x" * 5000, "zh-CN"), (",,,;;;q=", "zh-CN"), ("en;q=inf,zh", "zh-CN"), ("en;q=nan,zh;q=0.1", "zh-CN"),
])
def test_the_page_language_from_accept_language(header, lang):
    assert page_language(header) == lang


def test_the_cli_issues_a_link_and_ends_sessions(tmp_path):
    from types import SimpleNamespace

    setup = CollectorSetup.create(tmp_path / "c", broker=SimpleNamespace(port=1883))
    setup.run("site", "add", "S1", "--timezone", "Asia/Shanghai")
    made = setup.json("web", "link", "--site", "S1", "--minutes", "5", "--url", "https://att.example")
    assert made["url"].startswith("https://att.example/signin#") and made["site"] == "S1"
    text = setup.run("web", "link", "--site", "S1").stdout
    assert text.startswith("http://127.0.0.1:8080/signin#") and "works once" in text
    with setup.store() as store:
        redeem(store, made["url"].split("#")[1])
    assert setup.json("web", "signout", "--site", "S1") == {"site": "S1", "sessions_ended": 1}
    refused = setup.run("web", "link", "--site", "S9", check=False)
    assert refused.returncode != 0 and "no site S9" in refused.stderr
    bad = setup.run("web", "link", "--site", "S1", "--url", "javascript:alert(1)", check=False)
    assert bad.returncode != 0 and "must start with http" in bad.stderr

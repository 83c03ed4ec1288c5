"""The worker's sessions and limits over a real `collector serve`, each built from an attack that once
worked: a crowd of anonymous requests locked every worker out for ten minutes (and, behind the reverse
proxy, ten requests did); signing out left the cookie's value able to read the record; fifty lists
fetched with a site token pushed the bank's look off the worker's page."""

from __future__ import annotations

import http.client
import json
import secrets
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from collector.config import ConfigError, load_config
from tests.helpers import start_web, stop_process
from tests.test_web_worker import BANK, SITE1, Bank


class Client:
    """HTTP from one loopback source address (Linux lets a socket bind any of 127/8)."""

    def __init__(self, url: str, source: str = "127.0.0.1"):
        parts = urlsplit(url)
        self.host, self.port, self.source = parts.hostname, parts.port, source

    def call(self, method: str, path: str, *, cookie: str | None = None, data: object = None,
             content_type: str = "application/json", headers: dict | None = None):
        """(status, headers, parsed JSON body or None)."""
        connection = http.client.HTTPConnection(self.host, self.port, timeout=30, source_address=(self.source, 0))
        sent = dict(headers or {})
        if cookie is not None:
            sent["Cookie"] = f"worker_link={cookie}"
        body = None
        if data is not None:
            body = data if isinstance(data, bytes) else json.dumps(data).encode()
            sent["Content-Type"] = content_type
        try:
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            raw = response.read()
            try:
                parsed = json.loads(raw) if raw else None
            except ValueError:
                parsed = None
            return response.status, response.headers, parsed
        finally:
            connection.close()

    def session(self, link: str) -> str:
        """Trade a link for a session; the cookie's value."""
        status, headers, _ = self.call("POST", "/api/worker/session", data={"secret": link.split("#")[1]})
        assert status == 204, status
        return headers["Set-Cookie"].split(";")[0].split("=", 1)[1]

    def record(self, cookie: str | None, **kwargs) -> int:
        return self.call("GET", "/api/worker/record", cookie=cookie, **kwargs)[0]


@pytest.fixture
def served(tmp_path):
    bank = Bank(tmp_path / "collector")
    process, url = start_web(bank.setup)
    bank.url = url
    yield bank
    stop_process(process, signal.SIGKILL)


def test_a_crowd_of_anonymous_requests_locks_no_worker_out(served):
    url = served.url
    w1 = served.link("W1", url)
    w2_link = served.link("W2", url)
    cookie = Client(url).session(w1)

    # Ten requests without any cookie from one address: nothing was guessed, nothing is counted.
    lone = Client(url, "127.0.0.30")
    assert [lone.record(None) for _ in range(10)] == [401] * 10
    assert lone.record(secrets.token_urlsafe(32)) == 401  # its first wrong secret: 401, not 429

    # 600 anonymous requests from 21 addresses at once (400 wrong secrets: past every address's limit and
    # the limit of all together): no cookie, wrong cookies, wrong links.
    def anonymous(i: int) -> int:
        client = Client(url, f"127.0.1.{i % 21 + 1}")
        kind = i // 21 % 3
        if kind == 0:
            return client.record(None)
        if kind == 1:
            return client.record(secrets.token_urlsafe(32))
        return client.call("POST", "/api/worker/session", data={"secret": secrets.token_urlsafe(32)})[0]

    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(anonymous, range(600)))
    assert set(statuses) <= {401, 429} and 429 in statuses

    # A worker holding a session is served from any of those addresses, and so is a link opened now.
    for source in ("127.0.0.1", "127.0.1.1", "127.0.1.21"):
        assert Client(url, source).record(cookie) == 200
    assert Client(url, "127.0.1.5").record(Client(url, "127.0.1.5").session(w2_link)) == 200
    # Wrong secrets are what waits, told when to come back.
    status, headers, body = Client(url, "127.0.1.1").call("GET", "/api/worker/record",
                                                          cookie=secrets.token_urlsafe(32))
    assert status == 429 and int(headers["Retry-After"]) > 0 and "too many" in body["error"]
    # Without a configured proxy a forwarded header is the client's word, and changes nothing.
    spoofed = [Client(url, "127.0.1.2").record(secrets.token_urlsafe(32),
                                               headers={"X-Forwarded-For": f"198.51.100.{i}"}) for i in range(3)]
    assert spoofed == [429] * 3


def test_behind_the_trusted_proxy_each_client_is_counted_apart(tmp_path):
    """The reverse proxy at 127.0.0.1 names the client in X-Forwarded-For: one client's wrong secrets
    limit that client, not the others behind the same proxy; no one else's header is believed."""
    bank = Bank(tmp_path / "collector")
    bank.setup.write_config(web={"trusted_proxy": ["127.0.0.1"], "forwarded_header": "X-Forwarded-For"})
    process, url = start_web(bank.setup)
    try:
        proxy = Client(url, "127.0.0.1")
        cookie = proxy.session(bank.link("W1", url))

        def via_proxy(client: str, presented: str | None) -> int:
            return proxy.record(presented, headers={"X-Forwarded-For": f"10.9.9.9, {client}"})

        assert [via_proxy("203.0.113.5", secrets.token_urlsafe(32)) for _ in range(10)] == [401] * 10
        assert via_proxy("203.0.113.5", secrets.token_urlsafe(32)) == 429
        assert via_proxy("203.0.113.6", secrets.token_urlsafe(32)) == 401  # a neighbour behind the same proxy
        assert via_proxy("203.0.113.5", cookie) == 200  # the guesser's own valid session: served
        # IPv6 clients are counted by their /64: changing the last bits is no new client.
        assert [via_proxy(f"2001:db8::{i:x}", secrets.token_urlsafe(32)) for i in range(11)] == [401] * 10 + [429]
        # A client that is not the proxy names itself in vain: counted by its own address.
        other = Client(url, "127.0.0.2")
        statuses = [other.record(secrets.token_urlsafe(32), headers={"X-Forwarded-For": f"198.51.100.{i}"})
                    for i in range(11)]
        assert statuses == [401] * 10 + [429]
        assert other.record(cookie) == 200
        log = (bank.setup.directory / "serve.log").read_text()
        assert "203.0.113.5" in log and cookie not in log
    finally:
        stop_process(process, signal.SIGKILL)


@pytest.mark.parametrize("value, problem", [
    ('"not-an-address"', "not an IP address"),
    ('"0.0.0.0/0"', "every address"),
    ("[]", "must be an address"),
    ("5", "must be an address"),
    ('["127.0.0.1", 7]', "must be an address"),
])
def test_a_trusted_proxy_must_be_addresses(tmp_path, value, problem):
    path = tmp_path / "c.toml"
    path.write_text(f'db = "{tmp_path / "c.sqlite3"}"\n[web]\ntrusted_proxy = {value}\n')
    with pytest.raises(ConfigError, match=problem):
        load_config(path)


def test_the_forwarded_header_is_one_a_proxy_sets(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(f'db = "{tmp_path / "c.sqlite3"}"\n[web]\ntrusted_proxy = "10.0.0.0/24"\nforwarded_header = "Cookie"\n')
    with pytest.raises(ConfigError, match="forwarded_header"):
        load_config(path)
    path.write_text(f'db = "{tmp_path / "c.sqlite3"}"\n[web]\ntrusted_proxy = "::1"\nforwarded_header = "X-Real-IP"\n')
    config = load_config(path)
    assert [str(n) for n in config.trusted_proxies] == ["::1/128"] and config.forwarded_header == "X-Real-IP"
    path.write_text(f'db = "{tmp_path / "c.sqlite3"}"\n')
    assert load_config(path).trusted_proxies == ()  # off unless configured


def test_signing_out_ends_the_session_and_the_banks_look_stays_shown(tmp_path, database):
    """Sign-out revokes the session the cookie holds (its value reads nothing after), JSON only; a new
    link ends the other browsers' sessions. Fifty lists by a site token make one entry of the access log."""
    bank = Bank(tmp_path / "collector", db=None if isinstance(database, Path) else database)
    process, url = start_web(bank.setup)
    try:
        client = Client(url)
        link = bank.link("W1", url)
        phone, laptop = client.session(link), client.session(link)
        assert link.split("#")[1] not in (phone, laptop) and phone != laptop
        assert client.record(link.split("#")[1]) == 401  # the link itself is no cookie
        assert client.record(phone) == 200 and client.record(laptop) == 200

        for data, content_type in ((b"{}", "text/plain"), (b"x=1", "application/x-www-form-urlencoded")):
            status, _, _ = client.call("POST", "/api/worker/logout", cookie=phone, data=data, content_type=content_type)
            assert status == 415
        assert client.record(phone) == 200  # a form from elsewhere signed nobody out
        status, headers, _ = client.call("POST", "/api/worker/logout", cookie=phone, data={})
        assert status == 204 and headers["Set-Cookie"].startswith('worker_link="";')
        assert client.record(phone) == 401  # the copied value is dead
        assert client.record(laptop) == 200  # the other browser is not signed out
        assert client.call("POST", "/api/worker/logout", data={})[0] == 204  # nobody to sign out: fine

        # A dispute for the bank and the site to list; the bank looks once, the site fifty times.
        status, _, _ = client.call("POST", "/api/worker/disputes", cookie=laptop,
                                   data={"site": "S1", "day": "2026-10-15", "note": "下班没刷上"})
        assert status == 201
        assert Client(url).call("GET", "/api/disputes", headers={"Authorization": f"Bearer {BANK}"})[0] == 200
        for _ in range(50):
            assert Client(url).call("GET", "/api/disputes", headers={"Authorization": f"Bearer {SITE1}"})[0] == 200
        status, _, record = client.call("GET", "/api/worker/record?month=2026-10", cookie=laptop)
        assert status == 200
        looks = {(a["via"], a["who"], a["what"]): a["looks"] for a in record["access"]}
        assert looks[("bank token", "bank", "disputes")] == 1
        assert looks[("site token", "S1", "disputes")] == 1  # fifty lists within the hour: one look, one entry
        assert ("bank CLI", "ops-li", "link issued") in looks and len(record["access"]) <= 6

        # A new link (a lost phone) ends every session of the old one.
        renewed = bank.link("W1", url)
        assert client.record(laptop) == 401
        assert client.record(client.session(renewed)) == 200
    finally:
        stop_process(process, signal.SIGKILL)


def _request(peer: str, headers: list[tuple[str, str]]):
    from starlette.requests import Request

    raw = [(k.lower().encode("latin-1"), v.encode("latin-1", "replace")) for k, v in headers]
    return Request({"type": "http", "method": "GET", "path": "/", "headers": raw, "client": (peer, 50000)})


def test_the_client_address_never_believes_a_stranger_and_never_fails():
    """Whatever a forwarded header holds: a stranger is counted by its own address, the trusted proxy's
    client by an address or by one bucket of its own, and nothing raises."""
    import ipaddress

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from collector.web.common import ClientAddress

    proxies = (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("10.0.0.0/24"))
    text = st.one_of(st.text(max_size=80), st.ip_addresses().map(str),
                     st.lists(st.ip_addresses().map(str), max_size=4).map(", ".join))

    @settings(max_examples=300, deadline=None)
    @given(header=st.sampled_from(["X-Forwarded-For", "X-Real-IP"]), values=st.lists(text, max_size=3))
    def check(header, values):
        client = ClientAddress(proxies, header)
        sent = [(header, v.encode("latin-1", "replace").decode("latin-1")) for v in values]
        assert client(_request("192.0.2.7", sent)) == "192.0.2.7"
        named = client(_request("127.0.0.1", sent))
        assert isinstance(named, str) and named
        if header == "X-Forwarded-For" and not named.startswith("behind "):  # our own hops are skipped
            address = ipaddress.ip_network(named, strict=False)
            assert not any(address.overlaps(p) for p in proxies)

    check()
    client = ClientAddress(proxies)
    assert client(_request("127.0.0.1", [("X-Forwarded-For", "198.51.100.1, 203.0.113.9, 10.0.0.5")])) == "203.0.113.9"
    assert client(_request("2001:db8::1", [])) == "2001:db8::/64"
    assert client(_request("::ffff:192.0.2.1", [])) == "192.0.2.1"

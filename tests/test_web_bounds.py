"""Requests in the works per credential and per site, over a real `collector serve` on both engines, built
from the attack that worked: ten concurrent loads of one worker's page made another worker's page take
154.5 s. A worker's requests are held in the works by the database itself (the test holds the writes their
page makes: SQLite's one write lock, PostgreSQL's rows of that worker's access log), so that what is
asserted is behaviour, never timing: the next request of the same credential is refused at once, while
requests of other credentials are served; every slot comes back, also from a client that went away."""

from __future__ import annotations

import http.client
import re
import signal
import sqlite3
import threading
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from collector.web.bounds import REASONS, Bounds, Refused
from tests.helpers import start_web, stop_process, wait_for
from tests.test_web_worker import BANK, SITE1, SITE2, Bank
from tests.test_web_worker_sessions import Client

pytestmark = pytest.mark.slow


class HeldWrites:
    """The writes of the given workers' pages wait until ``release``: on SQLite the database's write lock
    (every writer waits), on PostgreSQL those workers' rows of the access log (others write on), or with
    ``sessions`` the sessions' table (every link traded waits)."""

    def __init__(self, location: str | Path, workers: tuple[str, ...] = (), *, sessions: bool = False):
        if isinstance(location, Path):
            self.connection = sqlite3.connect(location, isolation_level=None)
            self.connection.execute("BEGIN IMMEDIATE")
        else:
            import psycopg

            self.connection = psycopg.connect(location)
            if sessions:  # every session opened waits; reads go on
                self.connection.execute("LOCK TABLE worker_sessions IN EXCLUSIVE MODE")
                return
            rows = self.connection.execute("SELECT id FROM record_access WHERE worker = ANY(%s) FOR UPDATE",
                                           (list(workers),)).fetchall()
            assert rows, "each worker's page was loaded once today: its access-log row is there to hold"

    def release(self) -> None:
        if isinstance(self.connection, sqlite3.Connection):
            self.connection.execute("ROLLBACK")
        else:
            self.connection.rollback()
        self.connection.close()


class Pending:
    """Requests sent from threads, their answers collected when they come."""

    def __init__(self):
        self.threads: list[threading.Thread] = []
        self.statuses: list[int] = []

    def send(self, call, *args, **kwargs) -> None:
        def run():
            self.statuses.append(call(*args, **kwargs))

        thread = threading.Thread(target=run)
        thread.start()
        self.threads.append(thread)

    def wait(self) -> list[int]:
        for thread in self.threads:
            thread.join(120)
        assert not any(thread.is_alive() for thread in self.threads)
        return sorted(self.statuses)


def gone(url: str, cookie: str) -> http.client.HTTPConnection:
    """A worker's page requested by a client that will close the connection without reading the answer."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    connection.request("GET", "/api/worker/record", headers={"Cookie": f"worker_link={cookie}"})
    return connection


def metrics(url: str) -> dict[str, float]:
    """This process's own figures of /metrics: refusals by reason, requests being worked on (the /metrics
    request itself among them), and the slots each site holds (a request holds its site's once it is
    past its checks: what the crowds below wait for)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request("GET", "/metrics", headers={"Authorization": f"Bearer {BANK}"})
        response = connection.getresponse()
        assert response.status == 200
        text = response.read().decode()
    finally:
        connection.close()
    figures = {}
    for line in text.splitlines():
        if found := re.fullmatch(r'collector_web_refusals_total\{reason="([a-z_]+)"\} (\S+)', line):
            figures[f"refused_{found[1]}"] = float(found[2])
        elif found := re.fullmatch(r"collector_web_requests_working (\S+)", line):
            figures["working"] = float(found[1])
        elif found := re.fullmatch(r'collector_web_site_slots\{site="([A-Za-z0-9]+)"\} (\S+)', line):
            figures[f"slots_{found[1]}"] = float(found[2])
    return figures


def served(request, tmp_path, database, **web) -> tuple[Bank, str]:
    bank = Bank(tmp_path / "collector", db=None if isinstance(database, Path) else database)
    if web:
        bank.setup.write_config(web=web)
    process, url = start_web(bank.setup)
    request.addfinalizer(lambda: stop_process(process, signal.SIGKILL))
    return bank, url


def get(url: str, path: str, *, token: str | None = None, cookie: str | None = None, lang: str | None = None):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if lang:
        headers["Accept-Language"] = lang
    return Client(url).call("GET", path, cookie=cookie, headers=headers)


def test_one_workers_crowd_of_requests_is_bounded_and_the_others_are_served(request, tmp_path, database):
    bank, url = served(request, tmp_path, database)
    client = Client(url)
    link = bank.link("W1", url)
    phone, laptop = client.session(link), client.session(link)  # two browsers of one worker's link
    w2 = client.session(bank.link("W2", url))
    assert client.record(phone) == client.record(w2) == 200  # each page loaded once today
    before = metrics(url)
    assert before["refused_credential"] == before["refused_site"] == 0 and before["working"] == 1

    held = HeldWrites(bank.setup.location, ("W1",))
    crowd = Pending()
    try:
        for _ in range(4):  # [web] requests_per_credential: 4 by default
            crowd.send(client.record, phone)
        wait_for(lambda: metrics(url).get("slots_S1") == 4, message="W1's four requests in the works")
        # The fifth of the same browser is refused at once, as is one of the worker's other browser.
        status, headers, body = client.call("GET", "/api/worker/record", cookie=phone)
        assert status == 429 and headers["Retry-After"] == "2" and body["busy"] == "credential"
        assert body["error"] == "此链接、会话或登录码同时发出的请求太多，请等待 2 秒后再试。"  # the page's language
        status, _, body = client.call("GET", "/api/worker/record", cookie=laptop, headers={"Accept-Language": "en"})
        assert status == 429 and body["error"].startswith("Too many requests at once with this link")
        # Everyone else is served meanwhile: another worker, the site's foreman, the bank.
        if not isinstance(database, Path):  # PostgreSQL holds W1's rows only: W2's whole page is served
            assert client.record(w2) == 200
        assert get(url, "/api/worker/evidence/1", cookie=w2)[0] == 404  # a worker's read: answered, not refused
        assert get(url, "/api/sites/S1/headcount", token=SITE1)[0] == 200
        assert get(url, "/api/disputes", token=BANK)[0] == 200
    finally:
        held.release()
    assert crowd.wait() == [200] * 4  # the held ones are answered in full
    assert client.record(phone) == client.record(laptop) == 200
    after = metrics(url)
    assert after["refused_credential"] == 2 and after["refused_site"] == 0 and after["working"] == 1


def test_a_sites_crowd_is_bounded_and_other_sites_and_the_bank_are_served(request, tmp_path, database):
    bank, url = served(request, tmp_path, database, requests_per_credential=2, requests_per_site=3)
    client = Client(url)
    w1, w2 = client.session(bank.link("W1", url)), client.session(bank.link("W2", url))
    assert client.record(w1) == client.record(w2) == 200

    held = HeldWrites(bank.setup.location, ("W1", "W2"))
    crowd = Pending()
    try:
        for cookie in (w1, w1, w2):  # site S1's three
            crowd.send(client.record, cookie)
        wait_for(lambda: metrics(url).get("slots_S1") == 3, message="S1's three requests in the works")
        status, headers, body = get(url, "/api/sites/S1/headcount", token=SITE1, lang="en-GB,en;q=0.9")
        assert status == 503 and headers["Retry-After"] == "2" and body["busy"] == "site"
        assert body["error"] == "This site's pages are busy: wait 2 s and try again."
        assert get(url, "/api/sites/S1/headcount", token=SITE1)[2]["error"].startswith("本工地的页面正忙")
        assert get(url, "/api/worker/record", cookie=w1)[0] == 429  # W1's own bound comes first
        assert get(url, "/api/sites/S1/headcount", token=BANK)[0] == 200  # the bank is never refused a site
        assert get(url, "/api/sites/S2/headcount", token=SITE2)[0] == 200  # another site is served
    finally:
        held.release()
    assert crowd.wait() == [200] * 3
    assert get(url, "/api/sites/S1/headcount", token=SITE1)[0] == 200
    after = metrics(url)
    assert (after["refused_site"], after["refused_credential"], after["working"]) == (2, 1, 1)


def test_a_client_that_goes_away_keeps_its_slot_until_its_work_ends(request, tmp_path, database):
    """A thread's work cannot be stopped: the slot is the work's, held until it ends, then given back."""
    bank, url = served(request, tmp_path, database, requests_per_credential=1)
    client = Client(url)
    cookie = client.session(bank.link("W1", url))
    assert client.record(cookie) == 200
    held = HeldWrites(bank.setup.location, ("W1",))
    try:
        left = gone(url, cookie)
        wait_for(lambda: metrics(url).get("slots_S1") == 1, message="the request in the works")
        left.close()  # the client is gone; its page is still being worked on
        assert client.record(cookie) == 429
    finally:
        held.release()
    wait_for(lambda: (m := metrics(url))["working"] == 1 and "slots_S1" not in m, message="the work done, its slot back")
    assert client.record(cookie) == 200


def test_a_live_stream_stays_open_while_its_site_is_full_and_its_update_comes_after(request, tmp_path, database):
    """The stream holds no request slot; each of its rounds is work of its site, put off while the site is
    full (counted), never ended; a bank's stream is never put off."""
    bank, url = served(request, tmp_path, database, requests_per_credential=2, requests_per_site=2)
    client = Client(url)
    w1 = client.session(bank.link("W1", url))
    assert client.record(w1) == 200
    parts = urlsplit(url)

    def stream(token: str) -> http.client.HTTPResponse:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        connection.request("GET", "/api/sites/S1/live", headers={"Authorization": f"Bearer {token}"})
        response = connection.getresponse()
        assert response.status == 200 and response.readline() == b"retry: 3000\n"
        return response

    def update(response: http.client.HTTPResponse) -> bytes:
        while (line := response.readline()) != b"event: update\n":
            assert line, "the stream ended"
        return response.readline()

    held = HeldWrites(bank.setup.location, ("W1",))
    crowd = Pending()
    try:
        for _ in range(2):
            crowd.send(client.record, w1)
        wait_for(lambda: metrics(url).get("slots_S1") == 2, message="S1 full")
        foreman = stream(SITE1)  # opened: no request slot is taken for it
        wait_for(lambda: metrics(url)["refused_live_round"] >= 2, message="the foreman's rounds put off")
        bank_stream = stream(BANK)
        assert update(bank_stream).startswith(b"data: ")  # the bank's round is not put off
        bank_stream.close()
    finally:
        held.release()
    assert update(foreman).startswith(b"data: ")  # the site has room again: the update comes on the open stream
    assert crowd.wait() == [200, 200]
    foreman.close()


def test_one_link_traded_in_a_crowd_waits_on_itself(request, tmp_path, database):
    """Trading a worker's link for a session (a public route: the link is the credential) is bounded per
    link as a session's requests are."""
    bank, url = served(request, tmp_path, database, requests_per_credential=2)
    client = Client(url)
    secret = bank.link("W1", url).split("#")[1]

    def trade() -> int:
        return client.call("POST", "/api/worker/session", data={"secret": secret})[0]

    held = HeldWrites(bank.setup.location, sessions=True)
    crowd = Pending()
    try:
        for _ in range(2):
            crowd.send(trade)
        wait_for(lambda: metrics(url)["working"] == 3, message="two trades of the link in the works")
        status, headers, body = client.call("POST", "/api/worker/session", data={"secret": secret})
        assert status == 429 and headers["Retry-After"] == "2" and body["busy"] == "credential"
        assert get(url, "/api/sites/S1/headcount", token=SITE1)[0] == 200
    finally:
        held.release()
    assert crowd.wait() == [204, 204]
    assert trade() == 204 and metrics(url)["refused_credential"] == 1


def test_a_body_is_read_no_further_than_a_workers_request_can_carry(request, tmp_path):
    """A request announcing a gigabyte is answered 413 once it has sent a few kilobytes: the rest is never
    waited for nor held (before, the whole body was read, then measured)."""
    import socket

    bank, url = served(request, tmp_path, tmp_path / "collector.sqlite3")
    cookie = Client(url).session(bank.link("W1", url))
    parts = urlsplit(url)
    for path in ("/api/worker/session", "/api/worker/disputes", "/api/worker/evidence"):
        with socket.create_connection((parts.hostname, parts.port), timeout=30) as connection:
            connection.sendall(f"POST {path} HTTP/1.1\r\nHost: {parts.hostname}\r\nCookie: worker_link={cookie}\r\n"
                               "Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n".encode())
            connection.sendall(b"{" + b" " * 65536)
            answer = connection.recv(65536).decode("latin-1")
        assert answer.startswith("HTTP/1.1 413"), (path, answer[:300])


# ---------------------------------------------------------------------------------------------- the bounds alone


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["take", "release"]), st.integers(0, 3), st.sets(st.sampled_from("AB"))),
                max_size=60),
       st.integers(1, 3), st.integers(1, 4))
def test_slots_never_pass_a_bound_and_all_come_back(steps, per_credential, per_site):
    """Generated histories of takes and releases (a release of the oldest slot still held, some twice): no
    credential or site ever holds more than its bound, a take is refused exactly when one is full, and once
    everything is given back nothing is held."""
    bounds = Bounds(per_credential, per_site)
    held: list[tuple[int, frozenset, object]] = []
    refusals = {"credential": 0, "site": 0}
    for action, credential, sites in steps:
        if action == "release" and held:
            _, _, release = held.pop(0)
            release()
            release()  # idempotent
            continue
        mine = sum(1 for c, _, _ in held if c == credential)
        full_site = any(sum(1 for _, s, _ in held if site in s) >= per_site for site in sites)
        try:
            release = bounds.take(credential=credential, sites=sites)
        except Refused as refused:
            assert mine >= per_credential or full_site
            assert refused.reason == ("credential" if mine >= per_credential else "site")
            refusals[refused.reason] += 1
            continue
        assert mine < per_credential and not full_site
        held.append((credential, frozenset(sites), release))
        assert bounds.held(credential=credential) <= per_credential
        assert all(bounds.held(site=site) <= per_site for site in "AB")
        assert bounds.snapshot()[2] == {site: n for site in "AB" if (n := sum(site in s for _, s, _ in held))}
    for _, _, release in held:
        release()
    assert bounds.idle()
    counted, working, sites = bounds.snapshot()
    assert set(counted) == set(REASONS) and working == 0 and sites == {}
    assert (counted["credential"], counted["site"]) == (refusals["credential"], refusals["site"])

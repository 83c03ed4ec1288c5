"""Personal links without a server: the secret's shape, the hash kept, the sessions a link opens, the
limits on wrong secrets, and the access log, on both engines where the store is involved."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from collector.store import Store, StoreError, schema
from collector.workers import links as worker_links


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_secret_is_43_url_safe_characters_and_only_its_hash_is_kept(tmp_path):
    with Store(tmp_path / "c.sqlite3") as store:
        store.add_site("S1", timezone="Asia/Shanghai")
        store.add_worker("W1", name="张伟", sites=["S1"])
        secret, issued = worker_links.issue(store, "W1", by="ops-li")
        assert worker_links.well_formed(secret) and len(secret) == 43 and issued["revoked"] == 0
        rows = store.execute("SELECT secret_sha256 FROM worker_links").fetchall()
        assert rows == [(hashlib.sha256(secret.encode()).hexdigest(),)]
        assert worker_links.holder(store, secret) == "W1"
        second, issued = worker_links.issue(store, "W1", by="ops-li")
        assert second != secret and issued["revoked"] == 1
        assert worker_links.holder(store, secret) is None and worker_links.holder(store, second) == "W1"
        assert worker_links.revoke(store, "W1", by="ops-li") == 1 and worker_links.holder(store, second) is None
        assert worker_links.revoke(store, "W1", by="ops-li") == 0
        for presented in (None, 42, "", second[:-1], second + "A", second[:-1] + "=", "é" * 43, ["x"]):
            assert worker_links.holder(store, presented) is None


def test_nobody_else_gets_a_link(tmp_path):
    with Store(tmp_path / "c.sqlite3") as store:
        with pytest.raises(StoreError, match="does not exist"):
            worker_links.issue(store, "W9", by="ops-li")


def test_wrong_secrets_are_limited_per_client_per_secret_and_in_all():
    clock = Clock()
    attempts = worker_links.Attempts(per_client=3, in_all=5, per_secret=4, window=60, clock=clock)
    guesses = [worker_links.new_secret() for _ in range(8)]
    assert [attempts.wrong("10.0.0.1", g) for g in guesses[:3]] == [None] * 3
    assert attempts.wrong("10.0.0.1", guesses[3]) == 60  # a fourth distinct one: this client waits
    assert attempts.wrong("10.0.0.1", guesses[0]) is None  # the same wrong one again is no new guess
    assert attempts.wrong("10.0.0.2", guesses[4]) is None
    assert attempts.wrong("10.0.0.3", guesses[5]) is None
    assert attempts.wrong("10.0.0.4", guesses[6]) == 60  # five distinct in all: new ones wait, from anywhere
    clock.now += 30
    for _ in range(3):
        assert attempts.wrong("10.0.0.2", guesses[4]) is None
    assert attempts.wrong("10.0.0.2", guesses[4]) == 30  # one value presented over and over
    clock.now += 31
    assert attempts.wrong("10.0.0.1", guesses[3]) is None and attempts.wrong("10.0.0.4", guesses[7]) is None
    for hostile in (None, 42, "é" * 43, "x" * 100_000, ["x"]):  # whatever is presented is counted, never a crash
        attempts.wrong("10.0.0.9", hostile)


def test_a_flood_of_wrong_secrets_keeps_bounded_memory():
    clock = Clock()
    attempts = worker_links.Attempts(per_client=10, in_all=200, window=600, clock=clock)
    for i in range(20_000):
        attempts.wrong(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", worker_links.new_secret())
    assert len(attempts._all) == 200 and len(attempts._by_client) <= 200 and len(attempts._by_secret) <= 200


def people(store: Store) -> None:
    store.add_site("S1", timezone="Asia/Shanghai")
    store.add_worker("W1", name="张伟", sites=["S1"])
    store.add_worker("W2", name="李娜", sites=["S1"])


def test_a_link_opens_sessions_that_sign_out_and_end_with_it(database):
    """The cookie holds a session's secret, never the link's; signing out ends that session alone;
    re-issuing or revoking the link ends them all; a worker holds a bounded number."""
    with Store(database) as store:
        people(store)
        link, _ = worker_links.issue(store, "W1", by="ops-li")
        other, _ = worker_links.issue(store, "W2", by="ops-li")
        phone, opened = worker_links.open_session(store, link)
        laptop, _ = worker_links.open_session(store, link)
        assert opened["worker"] == "W1" and phone not in (link, laptop) and worker_links.well_formed(phone)
        assert worker_links.session(store, link) is None  # the link itself is no cookie
        assert worker_links.session(store, phone)["worker"] == "W1"
        stored = store.execute("SELECT secret_sha256 FROM worker_sessions").fetchall()
        assert sorted(r[0] for r in stored) == sorted(worker_links.secret_hash(s) for s in (phone, laptop))

        assert worker_links.end_session(store, phone) and not worker_links.end_session(store, phone)
        assert worker_links.session(store, phone) is None and worker_links.session(store, laptop)["worker"] == "W1"
        later = datetime.now(UTC) + timedelta(days=worker_links.SESSION_DAYS, minutes=1)
        assert worker_links.session(store, laptop, now=later) is None  # expired

        w2, _ = worker_links.open_session(store, other)
        renewed, _ = worker_links.issue(store, "W1", by="ops-li")  # a lost phone: a new link for W1
        assert worker_links.session(store, laptop) is None and worker_links.open_session(store, link) is None
        assert worker_links.session(store, w2)["worker"] == "W2"  # another worker's sessions go on
        again, _ = worker_links.open_session(store, renewed)
        worker_links.revoke(store, "W1", by="ops-li")
        assert worker_links.session(store, again) is None

        # However often a link is traded, a worker's rows stay bounded; the newest sessions work.
        newest = [worker_links.open_session(store, other)[0] for _ in range(worker_links.SESSIONS_PER_WORKER + 5)]
        assert store.execute("SELECT COUNT(*) FROM worker_sessions WHERE worker = 'W2'").fetchone()[0] == \
            worker_links.SESSIONS_PER_WORKER
        assert worker_links.session(store, newest[-1])["worker"] == "W2" and worker_links.session(store, w2) is None
        for presented in (None, 42, "", newest[-1][:-1], "é" * 43, ["x"]):
            assert worker_links.session(store, presented) is None and not worker_links.end_session(store, presented)


def test_before_the_upgrade_the_cookie_is_the_link_as_it_was(tmp_path):
    """A database the daemon has not upgraded yet keeps working: the cookie holds the link, looks are one
    row each."""
    path = tmp_path / "older.sqlite3"
    with Store(path, upgrade=False) as store:
        schema.upgrade(store.db, until=schema.CAPABILITIES["worker_sessions"] - 1)
        people(store)
        link, _ = worker_links.issue(store, "W1", by="ops-li")
        cookie, opened = worker_links.open_session(store, link)
        assert cookie == link and opened["worker"] == "W1"
        assert worker_links.session(store, cookie)["worker"] == "W1" and not worker_links.end_session(store, cookie)
        for _ in range(2):
            store.log_access("W1", via="site token", who="S1", what="disputes")
        assert [(a["via"], a["looks"]) for a in store.access_log("W1")] == [("site token", 1), ("site token", 1)]
    with Store(path) as store:  # upgraded: the looks are kept, the link's cookie reads nothing any more
        assert worker_links.session(store, cookie) is None
        assert [(a["via"], a["who"], a["looks"]) for a in store.access_log("W1")] == [("site token", "S1", 2)]


class Moment:
    """A store clock the test moves."""

    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def test_looks_are_counted_per_viewer_and_day_and_the_banks_stay_visible(database):
    """Fifty site-token lists in a row once pushed the bank's look off the worker's page; a page reloaded
    fifty times made fifty looks. One entry per viewer, thing and day of the worker's site (Asia/Shanghai
    here, UTC+8), and looks less than an hour after the last one are that look."""
    clock = Moment(datetime(2026, 12, 1, 8, 0, tzinfo=UTC))
    with Store(database, clock=clock) as store:
        people(store)
        assert store.record_zone("W1") == {"site": "S1", "name": "S1", "timezone": "Asia/Shanghai", "zones": 1}
        store.log_access("W1", via="bank token", who="bank", what="evidence 2026-10-01..2026-10-31")
        for minute in range(50):  # a reload a minute: one look
            clock.now = datetime(2026, 12, 1, 9, minute, tzinfo=UTC)
            store.log_access("W1", via="site token", who="S1", what="disputes")
        for hour in (11, 12, 15):  # 19:00, 20:00 and 23:00 at the site: three more
            clock.now = datetime(2026, 12, 1, hour, 0, tzinfo=UTC)
            store.log_access("W1", via="site token", who="S1", what="disputes")
        clock.now = datetime(2026, 12, 1, 16, 30, tzinfo=UTC)  # 00:30 on the 2nd at the site: its next day
        store.log_access("W1", via="site token", who="S1", what="disputes")
        clock.now = datetime(2026, 12, 2, 7, 0, tzinfo=UTC)
        store.log_access("W1", via="site token", who="S1", what="disputes")
        store.log_access("W2", via="site token", who="S1", what="disputes")
        shown = store.access_log("W1")
        assert [(a["at"], a["first_at"], a["looks"], a["via"], a["who"], a["what"]) for a in shown] == [
            ("2026-12-02T07:00:00.000Z", "2026-12-01T16:30:00.000Z", 2, "site token", "S1", "disputes"),
            ("2026-12-01T15:00:00.000Z", "2026-12-01T09:00:00.000Z", 4, "site token", "S1", "disputes"),
            ("2026-12-01T08:00:00.000Z", "2026-12-01T08:00:00.000Z", 1, "bank token", "bank",
             "evidence 2026-10-01..2026-10-31")]
        assert store.execute("SELECT COUNT(*) FROM record_access WHERE worker = 'W1'").fetchone()[0] == 3

        # Others looking at as many different things, day after day, still leave the bank's look shown.
        for day in range(3, 3 + 60):
            clock.now = datetime(2026, 12, 1, tzinfo=UTC) + timedelta(days=day)
            store.log_access("W1", via="worker link", who="the worker", what="days 2026-11")
        shown = store.access_log("W1")
        assert len(shown) == 51 and shown[-1]["via"] == "bank token"
        assert all(a["via"] == "worker link" for a in shown[:50])



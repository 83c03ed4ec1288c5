"""Personal links without a server: the secret's shape, the hash kept, and the attempt limits."""

from __future__ import annotations

import hashlib

import pytest

from collector import worker_links
from collector.store import Store, StoreError


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


def test_failed_attempts_block_a_client_then_everyone_for_a_while():
    clock = Clock()
    attempts = worker_links.Attempts(per_client=3, in_all=5, window=60, clock=clock)
    for _ in range(3):
        assert not attempts.blocked("10.0.0.1")
        attempts.failed("10.0.0.1")
    assert attempts.blocked("10.0.0.1") and not attempts.blocked("10.0.0.2")
    attempts.failed("10.0.0.2")
    attempts.failed("10.0.0.3")
    assert attempts.blocked("10.0.0.4")  # five failures in all: nobody tries for a while
    clock.now += 61
    assert not attempts.blocked("10.0.0.1") and not attempts.blocked("10.0.0.4")

"""Stores kept open between web requests: handed back open after a request, closed when the database
failed in one or a transaction is left open, never more than IDLE waiting."""

from __future__ import annotations

import pytest

from collector.store import DatabaseError, Store
from collector.web import stores
from collector.web.common import ApiError


@pytest.fixture
def db(database):
    with Store(database):  # the schema, as the daemon makes it
        pass
    yield database
    stores.close_all()


def test_a_request_hands_its_store_back_open_and_the_next_one_gets_it(db):
    with stores.kept_store(db, readonly=True) as first:
        first.sites()
    assert stores.waiting(db, readonly=True) == 1
    with stores.kept_store(db, readonly=True) as second:
        assert second is first and second.sites() == []
    with pytest.raises(ApiError), stores.kept_store(db, readonly=True) as third:
        raise ApiError(404, "no such worker")  # an answer, not a broken database: kept
    assert third is first and stores.waiting(db, readonly=True) == 1
    # Readers and writers wait apart: a reader is never handed to a request that writes.
    with stores.kept_store(db, readonly=False) as writer:
        assert writer is not first and not writer.db.readonly
        writer.add_site("S1", timezone="Asia/Shanghai")
    with stores.kept_store(db, readonly=True) as reader:
        assert reader is first and [s["site"] for s in reader.sites()] == ["S1"]  # what the writer committed


def test_a_store_the_database_failed_or_left_in_a_transaction_is_closed(db):
    with pytest.raises(DatabaseError), stores.kept_store(db, readonly=True) as failed:
        failed.execute("SELECT * FROM no_such_table")
    assert stores.waiting(db, readonly=True) == 0
    with stores.kept_store(db, readonly=False) as writer:
        writer.db._begin()
        writer.db._depth = 1  # a transaction a bug left open
    assert stores.waiting(db, readonly=False) == 0
    writer.db._depth = 0
    with stores.kept_store(db, readonly=True) as fresh:
        assert fresh is not failed and fresh.sites() == []


def test_no_more_than_idle_stores_wait(db):
    borrowed = [stores.kept_store(db, readonly=True) for _ in range(stores.IDLE + 3)]
    for store in borrowed:
        store.__exit__(None, None, None)
    assert stores.waiting(db, readonly=True) == stores.IDLE


def test_stores_of_databases_used_long_ago_are_closed_first(tmp_path):
    """A process that opened many databases one after another keeps at most TOTAL_IDLE stores open."""
    paths = [tmp_path / f"db{n}.sqlite3" for n in range(stores.TOTAL_IDLE + 2)]
    for path in paths:
        with Store(path):
            pass
        with stores.kept_store(path, readonly=True) as store:
            store.sites()
    try:
        assert sum(stores.waiting(p, readonly=True) for p in paths) == stores.TOTAL_IDLE
        assert stores.waiting(paths[0], readonly=True) == 0 and stores.waiting(paths[-1], readonly=True) == 1
    finally:
        stores.close_all()

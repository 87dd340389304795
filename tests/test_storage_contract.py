"""The storage contract that every module above storage relies on.

One suite runs against SQLite and PostgreSQL alike through the ``db`` fixture:
transactions, error translation, TRNR allocation, shop set interning, the
conflict-tolerant inserts and the locks.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import concurrency_helpers as helpers
from conftest import postgresql_base_url
from posoutbox import outbox
from posoutbox.db import migrate, schema, storage
from posoutbox.db.sets import ShopSetCache, intern_all
from posoutbox.db.storage import (
    Database,
    allocate_trnrs,
    insert_ignoring_conflicts,
    normalise_url,
    open_database,
    redact_url,
    upsert,
    utcnow,
)
from posoutbox.errors import Busy, StorageError

#: Upper bound for a lock to be given up or a thread to end, in seconds.
TIMEOUT = 60.0


@pytest.fixture
def pg_db(postgresql_url: str) -> Iterator[Database]:
    database = open_database(postgresql_url)
    migrate.upgrade(database)
    try:
        yield database
    finally:
        database.close()


def _counter(db: Database, name: str) -> int | None:
    counters = schema.counters
    with db.reading() as conn:
        value = conn.execute(
            sa.select(counters.c.value).where(counters.c.name == name)
        ).scalar_one_or_none()
    return None if value is None else int(value)


def _set_counter(conn: sa.Connection, name: str, value: int) -> None:
    upsert(conn, schema.counters, [{"name": name, "value": value}], ["name"], ["value"])


class _Thread:
    """A thread that keeps the exception its work raised, for the test to check."""

    def __init__(self, work: Callable[[], object]) -> None:
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(work,))
        self.thread.start()

    def _run(self, work: Callable[[], object]) -> None:
        try:
            work()
        except BaseException as error:
            self.error = error

    def join(self) -> None:
        self.thread.join(TIMEOUT)
        assert not self.thread.is_alive(), "the thread did not end"
        if self.error is not None:
            raise self.error


# URLs


def test_postgresql_url_means_psycopg_3() -> None:
    assert normalise_url("postgresql://u@h/d") == "postgresql+psycopg://u@h/d"
    assert normalise_url("postgres://u@h/d") == "postgresql+psycopg://u@h/d"
    assert normalise_url("sqlite:///x.db") == "sqlite:///x.db"


def test_redacted_url_hides_password() -> None:
    redacted = redact_url("postgresql://user:secret@host/db")
    assert "secret" not in redacted
    assert redacted == "postgresql://user:***@host/db"


def test_unsupported_url_is_rejected() -> None:
    with pytest.raises(StorageError) as raised:
        open_database("mysql://user:secret@host/db")
    assert "secret" not in raised.value.message
    assert "sqlite:///FILE or postgresql://" in raised.value.message


# Transactions


def test_transaction_commits(db: Database) -> None:
    with db.transaction() as conn:
        _set_counter(conn, "probe", 1)
    assert _counter(db, "probe") == 1


def test_transaction_rolls_back_on_error(db: Database) -> None:
    with pytest.raises(ValueError, match="stop"), db.transaction() as conn:
        _set_counter(conn, "probe", 1)
        raise ValueError("stop")
    assert _counter(db, "probe") is None


def test_reading_sees_only_committed_and_never_waits(db: Database) -> None:
    with db.transaction() as conn:
        _set_counter(conn, "probe", 1)
    with db.transaction() as writer:
        _set_counter(writer, "probe", 2)
        # The writer holds its locks (on SQLite the database's write lock) and
        # a reader on another connection still gets the committed value.
        assert _counter(db, "probe") == 1
    assert _counter(db, "probe") == 2


def test_second_writer_sees_first_commit(db: Database) -> None:
    """A write transaction that starts while another is open works on what the
    other committed, never on what it read before."""
    with db.transaction() as conn:
        _set_counter(conn, "probe", 0)

    def increment() -> None:
        with db.transaction() as conn:
            db.lock_subscribers(conn, ["LOCK1"])
            value = _counter_in(conn, "probe")
            _set_counter(conn, "probe", value + 1)

    threads = [_Thread(increment) for _ in range(8)]
    for thread in threads:
        thread.join()
    assert _counter(db, "probe") == 8


def _counter_in(conn: sa.Connection, name: str) -> int:
    counters = schema.counters
    return int(
        conn.execute(
            sa.select(counters.c.value).where(counters.c.name == name)
        ).scalar_one()
    )


# Error translation


def test_lost_connection_is_storage_error(pg_db: Database) -> None:
    killer = open_database(pg_db.url)
    try:
        with pytest.raises(StorageError) as raised, pg_db.transaction() as conn:
            pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
            with killer.transaction() as other:
                other.execute(
                    sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}
                )
            conn.execute(sa.text("SELECT 1"))
    finally:
        killer.close()
    assert isinstance(raised.value.__cause__, sa.exc.DBAPIError)
    assert "failed" in raised.value.message
    # The pool drops the dead connection and the next transaction works.
    with pg_db.transaction() as conn:
        assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1


def test_locked_sqlite_database_is_storage_error(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(storage, "SQLITE_BUSY_TIMEOUT_MS", 50)
    assert isinstance(sqlite_db, storage.SQLiteDatabase)
    assert sqlite_db.path is not None
    impatient = open_database(sqlite_db.url)
    holder = sqlite3.connect(sqlite_db.path, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(StorageError) as raised, impatient.transaction():
            pass
        assert "database is locked" in raised.value.message
        assert isinstance(raised.value.__cause__, sa.exc.OperationalError)
        # Reading needs no write lock, so it goes on meanwhile.
        with impatient.reading() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar_one() == 1
    finally:
        holder.rollback()
        holder.close()
        impatient.close()


def test_lock_timeout_is_storage_error(pg_db: Database) -> None:
    with pg_db.transaction() as holder:
        pg_db.lock_subscribers(holder, ["LOCK1"])
        with pytest.raises(StorageError) as raised, pg_db.transaction() as conn:
            conn.execute(sa.text("SET LOCAL lock_timeout = '50ms'"))
            pg_db.lock_subscribers(conn, ["LOCK1"])
    assert "lock timeout" in raised.value.message


def test_shared_subscriber_lock_modes(pg_db: Database) -> None:
    with pg_db.transaction() as holder:
        pg_db.lock_subscribers(holder, ["LOCK1"], shared=True)
        with pg_db.transaction() as conn:
            conn.execute(sa.text("SET LOCAL lock_timeout = '50ms'"))
            pg_db.lock_subscribers(conn, ["LOCK1"], shared=True)
        with pytest.raises(StorageError) as raised, pg_db.transaction() as conn:
            conn.execute(sa.text("SET LOCAL lock_timeout = '50ms'"))
            pg_db.lock_subscribers(conn, ["LOCK1"])
    assert "lock timeout" in raised.value.message


def test_deadlock_is_recognised(pg_db: Database) -> None:
    both_locked = threading.Barrier(2, timeout=TIMEOUT)
    errors: list[StorageError] = []

    def lock(first: str, second: str) -> None:
        try:
            with pg_db.transaction() as conn:
                pg_db.lock_subscribers(conn, [first])
                both_locked.wait()
                pg_db.lock_subscribers(conn, [second])
        except StorageError as error:
            errors.append(error)

    threads = [
        _Thread(lambda: lock("LOCK1", "LOCK2")),
        _Thread(lambda: lock("LOCK2", "LOCK1")),
    ]
    for thread in threads:
        thread.join()

    assert len(errors) == 1
    assert storage.is_deadlock(errors[0])
    assert not storage.is_deadlock(StorageError("database failed: no deadlock"))


# TRNR allocation


def test_trnrs_increase_across_transactions(db: Database) -> None:
    allocated: list[int] = []
    for count in (3, 1, 5):
        with db.transaction() as conn:
            numbers = allocate_trnrs(conn, count)
        assert len(numbers) == count
        assert numbers == sorted(set(numbers))
        assert not allocated or numbers[0] > allocated[-1]
        allocated.extend(numbers)
    with db.transaction() as conn:
        assert allocate_trnrs(conn, 0) == []


def test_trnrs_increase_after_cleanup_removed_highest(db: Database) -> None:
    with db.transaction() as conn:
        numbers = allocate_trnrs(conn, 4)
        now = utcnow()
        conn.execute(
            sa.insert(schema.records),
            [
                {
                    "trnr": trnr,
                    "sbs1": "S1",
                    "trtp": "OCUSMA",
                    "acct": "*DEL",
                    "cuno": "C1",
                    "data": "C1",
                    "set_id": 0,
                    "origin": "net",
                    "created_at": now,
                }
                for trnr in numbers
            ],
        )
        # Listed and confirmed up to the highest of them.
        conn.execute(
            sa.insert(schema.outbox_positions).values(
                sbs1="S1", listed_trnr=numbers[-1], confirmed_trnr=numbers[-1]
            )
        )

    assert outbox.cleanup(db).total == 4

    with db.transaction() as conn:
        after = allocate_trnrs(conn, 2)
    assert after[0] > numbers[-1]


def test_trnrs_of_concurrent_transactions_are_distinct(db: Database) -> None:
    allocated: list[list[int]] = []

    def allocate() -> None:
        for _ in range(20):
            with db.transaction() as conn:
                allocated.append(allocate_trnrs(conn, 3))

    threads = [_Thread(allocate) for _ in range(4)]
    for thread in threads:
        thread.join()
    numbers = [number for chunk in allocated for number in chunk]
    assert len(numbers) == len(set(numbers)) == 240


# Shop sets


def test_shop_set_interning_is_idempotent(db: Database) -> None:
    shops = frozenset({3, 1, 2})
    with db.transaction() as conn:
        cache = ShopSetCache(conn, "S1")
        first = cache.intern(shops)
        assert cache.intern(shops) == first
    with db.transaction() as conn:
        cache = ShopSetCache(conn, "S1")
        assert cache.intern(frozenset({1, 2, 3})) == first
        assert cache.intern(frozenset({1, 2})) != first
        assert ShopSetCache(conn, "S2").intern(shops) != first
        assert ShopSetCache(conn, "S1").members([first]) == {first: shops}
    with db.reading() as conn:
        members = conn.execute(
            sa.select(sa.func.count())
            .select_from(schema.shop_set_members)
            .where(schema.shop_set_members.c.set_id == first)
        ).scalar_one()
    assert members == 3


def test_shop_sets_of_several_subscribers_interned_at_once(db: Database) -> None:
    """New and known sets of two subscribers, a set repeated, the same members
    in both: each gets the id that interning it alone gives."""
    known = frozenset({1, 2})
    with db.transaction() as conn:
        known_id = ShopSetCache(conn, "S1").intern(known)
    with db.transaction() as conn:
        first, second = ShopSetCache(conn, "S1"), ShopSetCache(conn, "S2")
        ids = intern_all(
            [
                (first, known),
                (second, known),
                (first, frozenset({4})),
                (second, known),
                (first, known),
            ]
        )
    assert ids[0] == ids[4] == known_id
    assert ids[1] == ids[3]
    assert len({known_id, ids[1], ids[2]}) == 3
    with db.transaction() as conn:
        assert ShopSetCache(conn, "S2").intern(known) == ids[1]
        assert ShopSetCache(conn, "S1").intern(frozenset({4})) == ids[2]
        assert ShopSetCache(conn, "S2").members([ids[1]]) == {ids[1]: known}
        assert intern_all([]) == []


def test_shop_set_interned_by_two_transactions_at_once(
    pg_db: Database, postgresql_url: str
) -> None:
    """The second transaction waits for the first one's new set and then uses it
    instead of failing on the unique constraint."""
    second = open_database(helpers.with_session_settings(postgresql_url, "test-intern"))
    shops = frozenset({7, 8})
    ids: list[int] = []

    def intern() -> None:
        with second.transaction() as conn:
            ids.append(ShopSetCache(conn, "S1").intern(shops))

    try:
        with pg_db.transaction() as conn:
            ids.append(ShopSetCache(conn, "S1").intern(shops))
            thread = _Thread(intern)
            helpers.wait_for_lock_wait(pg_db, "test-intern")
        thread.join()
    finally:
        second.close()
    assert ids[0] == ids[1]


# Conflict-tolerant inserts


def test_insert_ignoring_conflicts_keeps_existing_rows(db: Database) -> None:
    with db.transaction() as conn:
        insert_ignoring_conflicts(
            conn, schema.counters, [{"name": "a", "value": 1}], ["name"]
        )
        insert_ignoring_conflicts(
            conn,
            schema.counters,
            [{"name": "a", "value": 5}, {"name": "b", "value": 2}],
            ["name"],
        )
        insert_ignoring_conflicts(conn, schema.counters, [], ["name"])
    assert _counter(db, "a") == 1
    assert _counter(db, "b") == 2


def test_upsert_inserts_or_updates(db: Database) -> None:
    with db.transaction() as conn:
        upsert(conn, schema.counters, [{"name": "a", "value": 1}], ["name"], ["value"])
        upsert(
            conn,
            schema.counters,
            [{"name": "a", "value": 5}, {"name": "b", "value": 2}],
            ["name"],
            ["value"],
        )
        upsert(conn, schema.counters, [], ["name"], ["value"])
    assert _counter(db, "a") == 5
    assert _counter(db, "b") == 2


# Locks


def _acquire_eventually(db: Database, name: str) -> None:
    """Take the run lock with wait=False, retrying while the server has not yet
    noticed that the previous holder's connection ended."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            with db.run_lock(name, wait=False):
                return
        except Busy:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_run_lock_is_exclusive_across_processes(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    name = "net transfer of subscriber LOCK1"
    held = helpers.new_event()
    release = helpers.new_event()
    result_path = tmp_path / "holder.json"
    holder = helpers.spawn(
        helpers.hold_run_lock_main, database_url, str(result_path), name, held, release
    )
    try:
        assert held.wait(TIMEOUT), "the other process never took the lock"
        with pytest.raises(Busy) as raised, db.run_lock(name, wait=False):
            pass
        assert "already running" in raised.value.message
        with db.run_lock("net transfer of subscriber LOCK2", wait=False):
            pass
    finally:
        release.set()
    helpers.join_all([holder], TIMEOUT)
    assert helpers.read_result(result_path)["released"] is True

    with db.run_lock(name, wait=False):
        pass


def test_run_lock_released_when_holder_killed(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    name = "net transfer of subscriber LOCK1"
    held = helpers.new_event()
    # Kept referenced until the end: the child process opens it by name.
    release = helpers.new_event()
    holder = helpers.spawn(
        helpers.hold_run_lock_main,
        database_url,
        str(tmp_path / "holder.json"),
        name,
        held,
        release,
    )
    try:
        assert held.wait(TIMEOUT), "the other process never took the lock"
        with pytest.raises(Busy), db.run_lock(name, wait=False):
            pass
    finally:
        holder.kill()
        holder.join(TIMEOUT)
    _acquire_eventually(db, name)


def test_lock_subscribers_serialises_connections(
    pg_db: Database, postgresql_url: str
) -> None:
    """A transaction waits for a subscriber lock that another transaction has,
    and then reads what the other committed. Another subscriber's lock is free."""
    second = open_database(helpers.with_session_settings(postgresql_url, "test-locker"))
    seen: list[int] = []

    def lock_and_read() -> None:
        with second.transaction() as conn:
            second.lock_subscribers(conn, ["LOCK2", "LOCK1"])
            seen.append(_counter_in(conn, "probe"))

    try:
        with pg_db.transaction() as conn:
            _set_counter(conn, "probe", 0)
        with pg_db.transaction() as holder:
            pg_db.lock_subscribers(holder, ["LOCK1"])
            with second.transaction() as other:
                other.execute(sa.text("SET LOCAL lock_timeout = '5s'"))
                second.lock_subscribers(other, ["LOCK2"])
            thread = _Thread(lock_and_read)
            helpers.wait_for_lock_wait(pg_db, "test-locker")
            _set_counter(holder, "probe", 1)
        thread.join()
    finally:
        second.close()
    assert seen == [1]


def test_lock_subscribers_in_other_schema_is_separate(pg_db: Database) -> None:
    """Advisory locks belong to the whole database; the schema in the lock key
    keeps installations in two schemas apart."""
    other_schema = open_database(postgresql_base_url())
    try:
        with pg_db.transaction() as holder:
            pg_db.lock_subscribers(holder, ["LOCK1"])
            with other_schema.transaction() as conn:
                conn.execute(sa.text("SET LOCAL lock_timeout = '5s'"))
                other_schema.lock_subscribers(conn, ["LOCK1"])
    finally:
        other_schema.close()


def test_subscriber_list_lock_modes(pg_db: Database) -> None:
    with pg_db.transaction() as first:
        pg_db.lock_subscriber_list(first, exclusive=False)
        with pg_db.transaction() as conn:
            conn.execute(sa.text("SET LOCAL lock_timeout = '5s'"))
            pg_db.lock_subscriber_list(conn, exclusive=False)
        with pytest.raises(StorageError), pg_db.transaction() as conn:
            conn.execute(sa.text("SET LOCAL lock_timeout = '50ms'"))
            pg_db.lock_subscriber_list(conn, exclusive=True)

"""The database handle: engine set-up, transactions, locks and error translation.

Every module above this one writes SQLAlchemy Core expressions that run
unchanged on SQLite and PostgreSQL. What differs between the two (how a write
transaction starts, how work is serialised, how a lock survives a crash) lives
in the two subclasses at the end of this module.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import logging
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from posoutbox.errors import Busy, SchemaNotCurrent, StorageError

logger = logging.getLogger(__name__)

DEFAULT_URL = "sqlite:///posoutbox.db"

# SQLite waits this long for another process's write lock before giving up.
SQLITE_BUSY_TIMEOUT_MS = 60_000

_READ_ONLY = "posoutbox_read_only"


def normalise_url(url: str) -> str:
    """Return the SQLAlchemy URL for a user's database URL.

    A plain ``postgresql://`` URL means psycopg 3 here, while SQLAlchemy would
    pick psycopg2 for it.
    """
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def redact_url(url: str) -> str:
    """Return the URL with its password replaced, for messages and logs."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


def open_database(url: str | None = None) -> Database:
    """Open the database at ``url`` (default: ``posoutbox.db`` in the working
    directory) without checking its schema."""
    url = normalise_url(url or DEFAULT_URL)
    if url.startswith("sqlite"):
        return SQLiteDatabase(url)
    if url.startswith("postgresql"):
        return PostgreSQLDatabase(url)
    raise StorageError(
        f"unsupported database URL {redact_url(url)!r}: "
        "expected sqlite:///FILE or postgresql://USER@HOST/DATABASE"
    )


class Database:
    """One database, shared by every command and request of a process."""

    dialect = ""

    def __init__(self, url: str, engine: Engine) -> None:
        self.url = url
        self.engine = engine

    def close(self) -> None:
        self.engine.dispose()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """Run a write transaction: committed on success, rolled back on error."""
        with self._translate(), self.engine.connect() as conn, conn.begin():
            yield conn

    @contextlib.contextmanager
    def reading(self) -> Iterator[Connection]:
        """Run a read-only transaction, which never waits for writers."""
        with (
            self._translate(),
            self.engine.connect().execution_options(**{_READ_ONLY: True}) as conn,
            conn.begin(),
        ):
            yield conn

    def lock_subscribers(self, conn: Connection, sbs1s: Iterable[str]) -> None:
        """Serialise record creation per subscriber until the transaction ends.

        Exports and net transfer batches take these locks so that the record with
        the higher TRNR for a customer always carries the newer state.
        """

    def lock_subscriber_list(self, conn: Connection, *, exclusive: bool) -> None:
        """Hold the list of subscribers still until the transaction ends.

        A master change writes a change row per subscriber under the shared lock,
        and adding or deleting a subscriber takes it exclusively, so no change
        can miss a subscriber created while it was being written.
        """

    @contextlib.contextmanager
    def run_lock(self, name: str, *, wait: bool) -> Iterator[None]:
        """Hold a named lock across transactions that a crash releases."""
        raise NotImplementedError
        yield  # pragma: no cover

    def check_schema(self) -> None:
        """Raise SchemaNotCurrent unless the schema is at the newest migration."""
        from posoutbox.db import migrate

        current = migrate.current_revision(self)
        head = migrate.head_revision()
        if current == head:
            return
        if current is None:
            problem = "has no posoutbox schema"
        else:
            problem = f"has schema revision {current}, expected {head}"
        raise SchemaNotCurrent(
            f"database {redact_url(self.url)} {problem}: "
            "run 'posoutbox db upgrade' first"
        )

    @contextlib.contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except sa.exc.OperationalError as error:
            raise StorageError(
                f"database {redact_url(self.url)} failed: {error.orig}"
            ) from error
        except sa.exc.InterfaceError as error:
            raise StorageError(
                f"database {redact_url(self.url)} failed: {error.orig}"
            ) from error


class SQLiteDatabase(Database):
    """SQLite in WAL mode: readers never wait, one writer at a time.

    Every write transaction starts with BEGIN IMMEDIATE, so it takes the write
    lock before reading anything. All writes are therefore serialised across
    processes and the per-subscriber locks need no further work here.
    """

    dialect = "sqlite"

    def __init__(self, url: str) -> None:
        engine = sa.create_engine(url, connect_args={"timeout": 60})
        event.listen(engine, "connect", _configure_sqlite_connection)
        event.listen(engine, "begin", _begin_sqlite_transaction)
        super().__init__(url, engine)
        database = engine.url.database or ""
        self.path = Path(database) if database not in ("", ":memory:") else None

    @contextlib.contextmanager
    def run_lock(self, name: str, *, wait: bool) -> Iterator[None]:
        # A lock file beside the database: the operating system releases it when
        # the process ends, killed or not.
        if self.path is None:
            yield
            return
        digest = hashlib.sha256(name.encode()).hexdigest()[:16]
        lock_path = self.path.with_name(f"{self.path.name}.{digest}.lock")
        with open(lock_path, "a+") as handle:
            flags = fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB
            try:
                fcntl.flock(handle.fileno(), flags)
            except BlockingIOError:
                raise Busy(f"{name} is already running in another process") from None
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _configure_sqlite_connection(dbapi_connection: Any, record: Any) -> None:
    # Take transaction control away from the sqlite3 module, which would
    # otherwise start deferred transactions on its own.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _begin_sqlite_transaction(conn: Connection) -> None:
    if conn.get_execution_options().get(_READ_ONLY):
        conn.exec_driver_sql("BEGIN")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


class PostgreSQLDatabase(Database):
    """PostgreSQL through psycopg 3, at READ COMMITTED, with advisory locks."""

    dialect = "postgresql"

    def __init__(self, url: str) -> None:
        engine = sa.create_engine(url, pool_pre_ping=True, pool_size=10)
        super().__init__(url, engine)

    def lock_subscribers(self, conn: Connection, sbs1s: Iterable[str]) -> None:
        # Sorted, so that two transactions locking several subscribers cannot
        # deadlock on each other.
        for sbs1 in sorted(set(sbs1s)):
            conn.execute(
                sa.text("SELECT pg_advisory_xact_lock(:key)"),
                {"key": _lock_key("subscriber", sbs1)},
            )

    def lock_subscriber_list(self, conn: Connection, *, exclusive: bool) -> None:
        function = (
            "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        )
        conn.execute(
            sa.text(f"SELECT {function}(:key)"),
            {"key": _lock_key("subscriber-list", "")},
        )

    @contextlib.contextmanager
    def run_lock(self, name: str, *, wait: bool) -> Iterator[None]:
        # A session-level advisory lock on a connection of its own: PostgreSQL
        # releases it when that connection ends, also when the process is killed.
        key = _lock_key("run", name)
        with self._translate(), self.engine.connect() as conn:
            if wait:
                conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": key})
            else:
                acquired = conn.execute(
                    sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": key}
                ).scalar_one()
                if not acquired:
                    conn.rollback()
                    raise Busy(f"{name} is already running in another process")
            conn.commit()
            try:
                yield
            finally:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                conn.commit()


def _lock_key(kind: str, name: str) -> int:
    digest = hashlib.blake2b(f"{kind}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def process_identity() -> tuple[int, str]:
    """Return this process's id and host name, recorded on runs."""
    return os.getpid(), os.uname().nodename


def insert_ignoring_conflicts(
    conn: Connection,
    table: sa.Table,
    rows: list[dict[str, Any]],
    index_elements: list[str],
) -> None:
    """Insert rows, skipping those whose key already exists."""
    if not rows:
        return
    statement: Any
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        statement = postgresql.insert(table).on_conflict_do_nothing(
            index_elements=index_elements
        )
    else:
        from sqlalchemy.dialects import sqlite

        statement = sqlite.insert(table).on_conflict_do_nothing(
            index_elements=index_elements
        )
    conn.execute(statement, rows)


def upsert(
    conn: Connection,
    table: sa.Table,
    rows: list[dict[str, Any]],
    index_elements: list[str],
    update_columns: list[str],
) -> None:
    """Insert rows, or update the given columns of those whose key exists."""
    if not rows:
        return
    statement: Any
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        statement = postgresql.insert(table)
    else:
        from sqlalchemy.dialects import sqlite

        statement = sqlite.insert(table)
    statement = statement.on_conflict_do_update(
        index_elements=index_elements,
        set_={name: statement.excluded[name] for name in update_columns},
    )
    conn.execute(statement, rows)


def allocate_trnrs(conn: Connection, count: int) -> list[int]:
    """Return ``count`` new transaction numbers, each higher than any before.

    The numbers are taken inside the caller's transaction, which holds the
    subscriber lock, so records of one customer and subscriber get increasing
    numbers in the order they are created.
    """
    if count == 0:
        return []
    if conn.dialect.name == "postgresql":
        rows = conn.execute(
            sa.text("SELECT nextval('records_trnr_seq') FROM generate_series(1, :n)"),
            {"n": count},
        )
        return sorted(row[0] for row in rows)

    from posoutbox.db import schema

    counters = schema.counters
    updated = conn.execute(
        sa.update(counters)
        .where(counters.c.name == "trnr")
        .values(value=counters.c.value + count)
        .returning(counters.c.value)
    ).scalar_one_or_none()
    if updated is None:
        conn.execute(sa.insert(counters).values(name="trnr", value=count))
        updated = count
    return list(range(updated - count + 1, updated + 1))


def utcnow() -> datetime.datetime:
    """Return the current time as naive UTC, the form stored in the database."""
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)

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
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.types import JSON

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

    #: Net transfer batches of one run that the database writes at once.
    concurrent_batches = 1

    def lock_subscribers(
        self, conn: Connection, sbs1s: Iterable[str], *, shared: bool = False
    ) -> None:
        """Serialise record creation per subscriber until the transaction ends.

        Exports and net transfer batches take these locks so that the record with
        the higher TRNR for a customer always carries the newer state. The
        batches of one run cover different customers and share the lock, which
        still excludes exports.
        """

    def open_batch(self, conn: Connection, sbs1: str) -> None:
        """Hold back listings of the subscriber at the TRNRs this transaction
        is about to create, until it ends.

        Call it after the subscriber lock, before the first record. One writer
        at a time, as on SQLite, commits its records in TRNR order, so there is
        nothing to hold back.
        """

    def listable(
        self, trnr: sa.ColumnElement[int], sbs1: str
    ) -> sa.ColumnElement[bool]:
        """Return the condition that a record of the subscriber may be listed:
        no batch still in progress can create a lower TRNR for it."""
        return sa.true()

    def refresh_statistics(self, tables: Iterable[str]) -> None:
        """Update the query planner's statistics of tables that grew a lot.

        SQLite keeps no statistics unless ANALYZE ran, and none ran here.
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

        with self._translate():
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
        self._schema: str | None = None

    def refresh_statistics(self, tables: Iterable[str]) -> None:
        # With the default settings autovacuum analyzes a table once a tenth of
        # it changed, looking once a minute. During a long initial load the
        # planner would meanwhile go on believing that the subscriber has no
        # records, and read all of them for every batch. ANALYZE samples at
        # most 30,000 rows by default, so it stays cheap on a large outbox.
        with self.transaction() as conn:
            for table in tables:
                conn.execute(sa.text(f"ANALYZE {table}"))

    # PostgreSQL runs each connection's statements in a process of its own, so
    # two batches use both cores of a small server while Python plans the next.
    concurrent_batches = 2

    def lock_subscribers(
        self, conn: Connection, sbs1s: Iterable[str], *, shared: bool = False
    ) -> None:
        # Sorted, so that two transactions locking several subscribers cannot
        # deadlock on each other. One statement takes them in that order.
        keys = [self._lock_key(conn, "subscriber", sbs1) for sbs1 in sorted(set(sbs1s))]
        if not keys:
            return
        function = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        conn.execute(
            sa.text(
                f"SELECT {function}(key) "
                "FROM unnest(CAST(:keys AS bigint[])) WITH ORDINALITY AS locks(key, n) "
                "ORDER BY n"
            ),
            {"keys": keys},
        )

    def open_batch(self, conn: Connection, sbs1: str) -> None:
        from posoutbox.db import schema

        batches = schema.open_batches
        xid = conn.execute(
            sa.select(sa.cast(sa.func.pg_current_xact_id(), sa.Text))
        ).scalar_one()
        # The row must be visible to listings before this transaction takes its
        # first TRNR, so it is written by a transaction of its own. The floor is
        # the last TRNR taken so far: every TRNR this transaction takes is higher.
        sequence = sa.table(
            "records_trnr_seq", sa.column("last_value"), sa.column("is_called")
        )
        last_taken = sa.case(
            (sequence.c.is_called, sequence.c.last_value),
            else_=sequence.c.last_value - 1,
        )
        with self.engine.connect().execution_options(
            isolation_level="AUTOCOMMIT"
        ) as other:
            other.execute(
                sa.delete(batches).where(batches.c.sbs1 == sbs1, _gone(batches.c.xid))
            )
            batch_id = other.execute(
                sa.insert(batches)
                .values(
                    sbs1=sbs1,
                    xid=int(xid),
                    trnr_floor=sa.select(last_taken).scalar_subquery(),
                    opened_at=utcnow(),
                )
                .returning(batches.c.batch_id)
            ).scalar_one()
        # Deleted by this transaction, the row goes when its records come.
        conn.execute(sa.delete(batches).where(batches.c.batch_id == batch_id))
        logger.debug(
            "batch %s opened",
            batch_id,
            extra={"action": "open_batch", "sbs1": sbs1, "xid": xid},
        )

    def listable(
        self, trnr: sa.ColumnElement[int], sbs1: str
    ) -> sa.ColumnElement[bool]:
        from posoutbox.db import schema

        batches = schema.open_batches
        # A row visible to the listing belongs to a batch whose commit is not in
        # the listing's snapshot, even when pg_xact_status (the status at this
        # moment) already reports the batch committed.
        floor = (
            sa.select(sa.func.min(batches.c.trnr_floor))
            .where(batches.c.sbs1 == sbs1, sa.not_(_gone(batches.c.xid)))
            .scalar_subquery()
        )
        # trnr + 0 keeps the planner from scanning the primary key for this
        # bound, whose value it cannot know when planning, instead of the
        # subscriber's index of unconfirmed records.
        return trnr + sa.literal_column("0") <= sa.func.coalesce(floor, _MAX_BIGINT)

    def lock_subscriber_list(self, conn: Connection, *, exclusive: bool) -> None:
        function = (
            "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        )
        conn.execute(
            sa.text(f"SELECT {function}(:key)"),
            {"key": self._lock_key(conn, "subscriber-list", "")},
        )

    def _lock_key(self, conn: Connection, kind: str, name: str) -> int:
        # Advisory locks belong to the database, not to a schema. The schema in
        # the key keeps installations in two schemas of one database (the
        # tests' schemas, for instance) from blocking each other.
        if self._schema is None:
            self._schema = str(
                conn.execute(sa.text("SELECT current_schema()")).scalar_one()
            )
        return _lock_key(kind, f"{self._schema}.{name}")

    @contextlib.contextmanager
    def run_lock(self, name: str, *, wait: bool) -> Iterator[None]:
        # A session-level advisory lock on a connection of its own: PostgreSQL
        # releases it when that connection ends, also when the process is killed.
        with self._translate(), self.engine.connect() as conn:
            key = self._lock_key(conn, "run", name)
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


_MAX_BIGINT = 2**63 - 1


def _gone(xid: sa.ColumnElement[int]) -> sa.ColumnElement[bool]:
    """Return the condition that the PostgreSQL transaction ``xid`` (its 64-bit
    id as bigint) rolled back, or is too old for PostgreSQL to remember.

    A transaction cut off with its connection counts as rolled back.
    """
    status = sa.func.pg_xact_status(sa.cast(sa.cast(xid, sa.Text), _TransactionId()))
    return sa.func.coalesce(status, "aborted") == "aborted"


class _TransactionId(sa.types.UserDefinedType[str]):
    """PostgreSQL's 64-bit transaction id type, only for casts to it."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "xid8"


def is_deadlock(error: BaseException) -> bool:
    """Tell whether a storage error is PostgreSQL's rollback of one transaction
    of a deadlock (SQLSTATE 40P01)."""
    cause = error.__cause__
    original = getattr(cause, "orig", None)
    return getattr(original, "sqlstate", None) == "40P01"


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


def one_of(
    dialect: str, column: sa.ColumnElement[Any], name: str
) -> sa.ColumnElement[bool]:
    """Return the condition "column is one of values", with the values given
    when the query runs, in the parameter ``name`` that `json_values` makes.

    A plain IN list of thousands of values costs more to render and to pass
    than the query costs to run, while one JSON string is made and parsed in C.
    The query does not depend on the values either, so it can be built once.
    """
    array_json = sa.bindparam(name, type_=sa.Text)
    if dialect == "postgresql":
        elements = sa.select(
            sa.cast(
                sa.func.json_array_elements_text(sa.cast(array_json, JSON)), column.type
            )
        )
        return column == sa.any_(sa.func.array(elements.scalar_subquery()))
    elements = sa.select(sa.column("value")).select_from(sa.func.json_each(array_json))
    return column.in_(elements)


def json_values(values: Sequence[Any]) -> str:
    """Return the value of a `one_of` parameter for these values."""
    return json.dumps(list(values))


def insert_rows(
    conn: Connection,
    table: sa.Table,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
) -> None:
    """Insert many rows given as tuples in the order of ``columns``.

    PostgreSQL gets them through a binary COPY on the transaction's own
    connection, which costs a fraction of a multi-row INSERT per row; SQLite
    through executemany. Driver errors come out as SQLAlchemy's, like those of
    ``conn.execute``.
    """
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        conn.execute(
            sa.insert(table), [dict(zip(columns, row, strict=True)) for row in rows]
        )
        return

    import psycopg

    statement = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"
    types = [_binary_copy_type(table.c[name]) for name in columns]
    driver_connection: Any = conn.connection.driver_connection
    try:
        with (
            driver_connection.cursor() as cursor,
            cursor.copy(statement) as copy,
        ):
            copy.set_types(types)
            for row in rows:
                copy.write_row(row)
    except psycopg.Error as error:
        raise sa.exc.DBAPIError.instance(
            statement, None, error, psycopg.Error
        ) from error


def insert_numbered_records(
    conn: Connection, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Insert outbox records, each with a new TRNR, increasing in row order.

    ``columns`` leave out trnr. On PostgreSQL the column's default takes the
    numbers from the records sequence as COPY inserts the rows, one by one in
    order, which spares fetching them first; on SQLite ``allocate_trnrs``
    numbers them. Either way the caller holds the subscriber lock, so the
    records of one customer and subscriber are numbered in the order created.
    """
    from posoutbox.db import schema

    if not rows:
        return
    if conn.dialect.name == "postgresql":
        insert_rows(conn, schema.records, columns, rows)
        return
    trnrs = allocate_trnrs(conn, len(rows))
    insert_rows(
        conn,
        schema.records,
        ("trnr", *columns),
        [(trnr, *row) for trnr, row in zip(trnrs, rows, strict=True)],
    )


def _binary_copy_type(column: sa.Column[Any]) -> str:
    """Return the PostgreSQL type that a binary COPY sends for a column."""
    column_type = column.type
    if isinstance(column_type, sa.BigInteger):
        return "int8"
    if isinstance(column_type, sa.Integer):
        return "int4"
    if isinstance(column_type, sa.Boolean):
        return "bool"
    if isinstance(column_type, sa.DateTime):
        return "timestamptz" if column_type.timezone else "timestamp"
    if isinstance(column_type, sa.String):
        return "text" if isinstance(column_type, sa.Text) else "varchar"
    raise TypeError(f"no binary COPY type for column {column} of type {column_type}")


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
        numbers = conn.execute(
            sa.text("SELECT nextval('records_trnr_seq') FROM generate_series(1, :n)"),
            {"n": count},
        ).scalars()
        return sorted(numbers.all())

    updated = increment_counter(conn, TRNR_COUNTER, count)
    return list(range(updated - count + 1, updated + 1))


#: The counter that TRNR comes from on SQLite: the last number given out.
TRNR_COUNTER = "trnr"


def increment_counter(conn: Connection, name: str, count: int = 1) -> int:
    """Raise a named counter by ``count`` and return its new value.

    The counter's row stays locked until the transaction ends.
    """
    from posoutbox.db import schema

    counters = schema.counters
    statement: Any
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        statement = postgresql.insert(counters)
    else:
        from sqlalchemy.dialects import sqlite

        statement = sqlite.insert(counters)
    statement = (
        statement.values(name=name, value=count)
        .on_conflict_do_update(
            index_elements=["name"], set_={"value": counters.c.value + count}
        )
        .returning(counters.c.value)
    )
    return int(conn.execute(statement).scalar_one())


def read_counter(conn: Connection, name: str) -> int:
    """Return a named counter's value, 0 before it was first raised."""
    from posoutbox.db import schema

    counters = schema.counters
    value = conn.execute(
        sa.select(counters.c.value).where(counters.c.name == name)
    ).scalar_one_or_none()
    return int(value or 0)


def utcnow() -> datetime.datetime:
    """Return the current time as naive UTC, the form stored in the database."""
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)

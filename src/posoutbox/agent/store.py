"""The POS agent's local SQLite store: each shop's copy of its customers, with
their delivery addresses, cards and messages, and the last TRNR applied.

One store serves one subscriber. Every record of a LstCus result is applied to
each shop on its mailing list, or to shop ``*`` when the server sends no SHOP.
A whole batch is applied in one transaction together with its last TRNR, so
after a crash the store is either before or after the batch, never in between.
Applying is idempotent because an ``*UPD`` replaces by key and a ``*DEL`` deletes
by key, so records listed again after a crash can be applied again without harm.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection, Engine

from posoutbox.agent.client import DELETE, AgentError, TransferRecord
from posoutbox.fields import FIELDS, FieldType, Value, to_api
from posoutbox.layouts import KEY_FIELDS, LAYOUTS

#: Shop of the records of a server that sends no mailing list (plain M3): the
#: store then keeps one copy for the whole subscriber.
ALL_SHOPS = "*"

#: Kept in PRAGMA user_version; a store of a newer version is not opened.
SCHEMA_VERSION = 1

CUSTOMER = "OCUSMA"
ADDRESS = "OCUSAD"
CARD = "OPCARD"
MESSAGE = "OOEMSG"

#: Customers read per query by `Store.iter_customers`.
PAGE_SIZE = 500

metadata = sa.MetaData()


def _record_table(name: str, trtp: str) -> sa.Table:
    columns = [sa.Column("whlo", sa.Text, nullable=False)]
    for field_name in LAYOUTS[trtp]:
        column_type: Any = (
            sa.Integer if FIELDS[field_name].type is FieldType.NUMERIC else sa.Text
        )
        columns.append(sa.Column(field_name.lower(), column_type, nullable=False))
    key = ["whlo", *(field_name.lower() for field_name in KEY_FIELDS[trtp])]
    return sa.Table(name, metadata, *columns, sa.PrimaryKeyConstraint(*key))


customers = _record_table("customers", CUSTOMER)
addresses = _record_table("addresses", ADDRESS)
cards = _record_table("cards", CARD)
messages = _record_table("messages", MESSAGE)

#: One row: the subscriber the store serves and the last TRNR applied (NULL
#: until a server that sends TRNR has been polled).
agent_state = sa.Table(
    "agent_state",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("sbs1", sa.Text, nullable=False),
    sa.Column("last_trnr", sa.Integer, nullable=True),
    sa.Column("updated_at", sa.Text, nullable=False),
)

TABLES: dict[str, sa.Table] = {
    CUSTOMER: customers,
    ADDRESS: addresses,
    CARD: cards,
    MESSAGE: messages,
}
CHILD_TABLES = (addresses, cards, messages)


@dataclass
class StoredCustomer:
    """A customer as one shop holds it, with its children in key order."""

    whlo: str
    customer: dict[str, Value]
    addresses: list[dict[str, Value]] = field(default_factory=list)
    cards: list[dict[str, Value]] = field(default_factory=list)
    messages: list[dict[str, Value]] = field(default_factory=list)

    def as_fields(self) -> dict[str, object]:
        """Return the customer keyed by M3 field names, values as API strings,
        with ADDRESSES, CARDS and MESSAGES as arrays of the same form."""
        result: dict[str, object] = _api_strings(self.customer)
        result["ADDRESSES"] = [_api_strings(row) for row in self.addresses]
        result["CARDS"] = [_api_strings(row) for row in self.cards]
        result["MESSAGES"] = [_api_strings(row) for row in self.messages]
        return result


def _api_strings(values: dict[str, Value]) -> dict[str, object]:
    return {name: to_api(name, value) for name, value in values.items()}


@dataclass(frozen=True)
class ShopSummary:
    """Counts of the customers, addresses, cards and messages of one shop."""

    whlo: str
    customers: int
    addresses: int
    cards: int
    messages: int


class Store:
    """A local store file, opened with `open_store`."""

    def __init__(self, path: Path, engine: Engine) -> None:
        self.path = path
        self.engine = engine
        self._upserts = {
            trtp: _upsert_statement(table) for trtp, table in TABLES.items()
        }

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the store for one agent; raise AgentError if another has it.

        The lock is on a file beside the store, so the operating system releases
        it when the agent ends, killed or not.
        """
        lock_path = self.path.with_name(f"{self.path.name}.lock")
        with open(lock_path, "a+") as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise AgentError(
                    f"store {self.path} is in use by another pos-agent process; "
                    "run one agent per store"
                ) from None
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def subscriber(self) -> str | None:
        """Return the subscriber the store serves, or None for a new store."""
        with self._reading() as conn:
            row = conn.execute(sa.select(agent_state.c.sbs1)).first()
        return None if row is None else str(row.sbs1)

    def bind_subscriber(self, sbs1: str) -> None:
        """Dedicate a new store to ``sbs1``; raise AgentError if it serves another.

        The copies of two subscribers must not mix, because without SHOP both
        would be kept as shop ``*``.
        """
        with self._writing() as conn:
            row = conn.execute(sa.select(agent_state.c.sbs1)).first()
            if row is None:
                conn.execute(
                    sa.insert(agent_state).values(
                        id=1, sbs1=sbs1, last_trnr=None, updated_at=_now()
                    )
                )
            elif row.sbs1 != sbs1:
                raise AgentError(
                    f"SBS1: store {self.path} serves subscriber {row.sbs1}, not "
                    f"{sbs1}; use one store file per subscriber",
                    field="SBS1",
                )

    def last_trnr(self) -> int | None:
        """Return the highest TRNR applied, or None when none was."""
        with self._reading() as conn:
            value = conn.execute(sa.select(agent_state.c.last_trnr)).scalar()
        return None if value is None else int(value)

    def apply(
        self,
        records: Sequence[TransferRecord],
        *,
        last_trnr: int | None = None,
        after_record: Callable[[int], None] | None = None,
    ) -> None:
        """Apply records in the order given, in one transaction.

        ``last_trnr``, when given, is stored as the last TRNR applied in the same
        transaction. ``after_record`` is called with the count applied so far
        after each record, before the commit.
        """
        with self._writing() as conn:
            for count, record in enumerate(records, start=1):
                self._apply_record(conn, record)
                if after_record is not None:
                    after_record(count)
            if last_trnr is not None:
                conn.execute(
                    sa.update(agent_state).values(
                        last_trnr=last_trnr, updated_at=_now()
                    )
                )

    def _apply_record(self, conn: Connection, record: TransferRecord) -> None:
        whlos = list(record.shops) if record.shops is not None else [ALL_SHOPS]
        if not whlos:
            return
        table = TABLES[record.trtp]
        columns = {name.lower(): value for name, value in record.values.items()}
        if record.acct != DELETE:
            conn.execute(
                self._upserts[record.trtp],
                [{"whlo": whlo, **columns} for whlo in whlos],
            )
            return
        key = [
            table.c[name.lower()] == columns[name.lower()]
            for name in KEY_FIELDS[record.trtp]
        ]
        conn.execute(sa.delete(table).where(table.c.whlo.in_(whlos), *key))
        if record.trtp == CUSTOMER:
            for child in CHILD_TABLES:
                conn.execute(
                    sa.delete(child).where(
                        child.c.whlo.in_(whlos), child.c.cuno == record.cuno
                    )
                )

    def shops(self) -> list[ShopSummary]:
        """Return every shop that holds anything, with its counts, by WHLO."""
        counts: dict[str, dict[str, int]] = {}
        with self._reading() as conn:
            for table in TABLES.values():
                rows = conn.execute(
                    sa.select(table.c.whlo, sa.func.count()).group_by(table.c.whlo)
                )
                for whlo, count in rows:
                    counts.setdefault(whlo, {})[table.name] = count
        return [
            ShopSummary(
                whlo=whlo,
                customers=by_table.get("customers", 0),
                addresses=by_table.get("addresses", 0),
                cards=by_table.get("cards", 0),
                messages=by_table.get("messages", 0),
            )
            for whlo, by_table in sorted(counts.items())
        ]

    def iter_customers(
        self, whlo: str, cuno: str | None = None
    ) -> Iterator[StoredCustomer]:
        """Yield the customers a shop holds in CUNO order, or only ``cuno``.

        Reads a page of customers and their children per query, so a shop of any
        size is shown without loading it whole.
        """
        after = ""
        while True:
            with self._reading() as conn:
                query = (
                    sa.select(customers)
                    .where(customers.c.whlo == whlo, customers.c.cuno > after)
                    .order_by(customers.c.cuno)
                    .limit(PAGE_SIZE)
                )
                if cuno is not None:
                    query = query.where(customers.c.cuno == cuno)
                page = [
                    StoredCustomer(whlo, _values(row, CUSTOMER))
                    for row in conn.execute(query)
                ]
                if not page:
                    return
                self._add_children(conn, whlo, page)
            yield from page
            if len(page) < PAGE_SIZE:
                return
            after = str(page[-1].customer["CUNO"])

    def _add_children(
        self, conn: Connection, whlo: str, page: list[StoredCustomer]
    ) -> None:
        by_cuno = {str(stored.customer["CUNO"]): stored for stored in page}
        for trtp, attribute in (
            (ADDRESS, "addresses"),
            (CARD, "cards"),
            (MESSAGE, "messages"),
        ):
            table = TABLES[trtp]
            order = [table.c[name.lower()] for name in KEY_FIELDS[trtp]]
            rows = conn.execute(
                sa.select(table)
                .where(table.c.whlo == whlo, table.c.cuno.in_(list(by_cuno)))
                .order_by(*order)
            )
            for row in rows:
                getattr(by_cuno[row.cuno], attribute).append(_values(row, trtp))

    @contextlib.contextmanager
    def _writing(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    @contextlib.contextmanager
    def _reading(self) -> Iterator[Connection]:
        with (
            self.engine.connect().execution_options(agent_read_only=True) as conn,
            conn.begin(),
        ):
            yield conn


def open_store(path: Path | str, *, create: bool = True) -> Store:
    """Open the store at ``path``, creating it with its schema when ``create``.

    Raises AgentError when the file is missing and ``create`` is false, when it
    is not a pos-agent store, or when a newer version of posoutbox wrote it.
    """
    path = Path(path)
    if not create and not path.exists():
        raise AgentError(f"store {path} not found: run 'posoutbox pos-agent run' first")
    engine = sa.create_engine(f"sqlite:///{path}", connect_args={"timeout": 60})
    event.listen(engine, "connect", _configure_connection)
    event.listen(engine, "begin", _begin_transaction)
    store = Store(path, engine)
    try:
        _prepare_schema(store)
    except sa.exc.DatabaseError as error:
        engine.dispose()
        raise AgentError(f"store {path} cannot be opened: {error.orig}") from error
    except AgentError:
        engine.dispose()
        raise
    return store


def _prepare_schema(store: Store) -> None:
    with store._writing() as conn:
        version = conn.exec_driver_sql("PRAGMA user_version").scalar_one()
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise AgentError(
                f"store {store.path} has schema version {version}, newer than "
                f"{SCHEMA_VERSION}: use the posoutbox version that wrote it"
            )
        tables = conn.exec_driver_sql(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
        ).scalar_one()
        if tables:
            raise AgentError(
                f"store {store.path} is an SQLite database but not a pos-agent "
                "store; give a new file name"
            )
        metadata.create_all(conn)
        conn.exec_driver_sql(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _configure_connection(dbapi_connection: sqlite3.Connection, record: Any) -> None:
    # Transactions are started by _begin_transaction, not by the sqlite3 module.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL, because the agent confirms a batch to the server right after the
    # commit: a commit lost to a power failure would be a batch lost for good.
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()


def _begin_transaction(conn: Connection) -> None:
    if conn.get_execution_options().get("agent_read_only"):
        conn.exec_driver_sql("BEGIN")
    else:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _upsert_statement(table: sa.Table) -> Any:
    statement = sqlite.insert(table)
    key = {column.name for column in table.primary_key.columns}
    return statement.on_conflict_do_update(
        index_elements=[column.name for column in table.primary_key.columns],
        set_={
            column.name: statement.excluded[column.name]
            for column in table.columns
            if column.name not in key
        },
    )


def _values(row: sa.Row[Any], trtp: str) -> dict[str, Value]:
    mapping = row._mapping
    return {name: mapping[name.lower()] for name in LAYOUTS[trtp]}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")

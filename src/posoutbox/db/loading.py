"""Initial loads that the database writes itself, records encoded in SQL.

Take a customer that no shop of a subscriber holds, with no change row and no
new record of the subscriber. A sweep sends it every record it has for POS, all
with the same mailing list: the customer's *UPD first, then the *UPD of each
delivery address, card and message in key order. That is what
``planning.plan_customer`` returns for it. Building and encoding those records
in Python costs several times what the database needs to write them, so for
such customers one INSERT ... SELECT per batch reads the master rows, encodes
them with the fixed-width layouts of ``posoutbox.layouts`` and writes the
records. Tests compare the outbox of both paths record for record.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from posoutbox import layouts
from posoutbox.db import schema
from posoutbox.db.storage import TRNR_COUNTER, increment_counter, read_counter
from posoutbox.fields import FieldType
from posoutbox.planning import (
    ADDRESS,
    CARD,
    CUSTOMER,
    DELIVERY_ADDRESS_TYPE,
    MESSAGE,
    UPDATE,
)

#: The master table of each record type, in the order a customer's records
#: are sent: the customer before its children.
_TABLES: tuple[tuple[str, sa.Table], ...] = (
    (CUSTOMER, schema.customers),
    (ADDRESS, schema.addresses),
    (CARD, schema.cards),
    (MESSAGE, schema.messages),
)


def supported(conn: Connection) -> bool:
    """Tell whether the database pads text by characters, as the layouts do.

    SQLite always counts characters of its UTF-8 text. A PostgreSQL database in
    another encoding than UTF8 pads by its own characters, so loads there go
    through Python.
    """
    if conn.dialect.name != "postgresql":
        return True
    encoding = conn.execute(sa.text("SHOW server_encoding")).scalar_one()
    return str(encoding).upper() in ("UTF8", "UTF-8")


@dataclass
class Loaded:
    """Counts of an initial load written by the database: records per TRTP and
    customers per shop set."""

    records: Counter[str] = field(default_factory=Counter)
    customers: Counter[int] = field(default_factory=Counter)


def insert_initial_loads(
    conn: Connection,
    sbs1: str,
    loads: Sequence[tuple[str, int]],
    *,
    origin: str,
    run_id: int | None,
    now: Any,
) -> Loaded:
    """Write the records and holdings of customers loaded to a shop set's shops.

    ``loads`` pairs a customer number with the set_id of the shops that load
    it. The caller holds the subscriber lock and has checked that the customer
    has no holdings, no new record and no change row for the subscriber. A
    customer deleted from the master since the caller read it gets neither
    records nor holdings.
    """
    if not loads:
        return Loaded()
    cunos = sorted(cuno for cuno, _ in loads)
    targets = _loads_table(conn, loads)
    parts = [
        _records_of(conn, rank, trtp, table, targets, cunos)
        for rank, (trtp, table) in enumerate(_TABLES)
    ]
    union = sa.union_all(*parts).subquery("planned")
    order = (union.c.cuno, union.c.rank, union.c.number_key, union.c.text_key)
    records = schema.records
    constants = {
        "sbs1": sbs1,
        "acct": UPDATE,
        "origin": origin,
        "run_id": run_id,
        "created_at": now,
    }
    value = {
        name: _typed(conn, constant, records.c[name].type).label(name)
        for name, constant in constants.items()
    }
    columns = [
        value["sbs1"],
        union.c.trtp,
        value["acct"],
        union.c.cuno,
        union.c.record_key,
        union.c.data,
        union.c.set_id,
        value["origin"],
        value["run_id"],
        value["created_at"],
    ]
    names = [column.name for column in columns]
    returned = (records.c.trtp, records.c.cuno, records.c.set_id)
    if conn.dialect.name == "postgresql":
        # The sequence default numbers the rows in the order the SELECT
        # returns them, so each customer's parent precedes its children.
        select = sa.select(*columns).order_by(*order)
        insert = sa.insert(records).from_select(names, select).returning(*returned)
        return _write_with_holdings(conn, sbs1, insert.cte("created"))

    # SQLite's write lock, which the transaction took first, keeps the TRNR
    # counter still until the counter is raised by what was inserted.
    last = read_counter(conn, TRNR_COUNTER)
    number = last + sa.func.row_number().over(order_by=order)
    select = sa.select(number.label("trnr"), *columns)
    created = conn.execute(
        sa.insert(records).from_select(["trnr", *names], select).returning(*returned)
    ).all()
    if created:
        increment_counter(conn, TRNR_COUNTER, len(created))
    loaded = Loaded(records=Counter(trtp for trtp, _, _ in created))
    holdings = []
    for trtp, cuno, set_id in created:
        if trtp == CUSTOMER:
            holdings.append({"sbs1": sbs1, "cuno": cuno, "set_id": set_id})
            loaded.customers[set_id] += 1
    if holdings:
        conn.execute(sa.insert(schema.holdings), holdings)
    return loaded


def _write_with_holdings(conn: Connection, sbs1: str, created: sa.CTE) -> Loaded:
    """Run the insert of records with the insert of holdings in one statement,
    and return only the counts, not a row per record."""
    holdings = schema.holdings
    holdings_written = (
        sa.insert(holdings)
        .from_select(
            ["sbs1", "cuno", "set_id"],
            sa.select(
                _typed(conn, sbs1, holdings.c.sbs1.type),
                created.c.cuno,
                created.c.set_id,
            ).where(created.c.trtp == CUSTOMER),
        )
        .cte("holdings_written")
    )
    loaded = Loaded()
    rows = conn.execute(
        sa.select(created.c.trtp, created.c.set_id, sa.func.count())
        .group_by(created.c.trtp, created.c.set_id)
        .add_cte(holdings_written)
    ).all()
    for trtp, set_id, count in rows:
        loaded.records[trtp] += count
        if trtp == CUSTOMER:
            loaded.customers[set_id] += count
    return loaded


def _typed(
    conn: Connection, constant: Any, type_: sa.types.TypeEngine[Any]
) -> sa.ColumnElement[Any]:
    # PostgreSQL cannot infer the type of a bare parameter in a select list,
    # while a CAST on SQLite would turn a timestamp's text into a number.
    if conn.dialect.name == "postgresql":
        return sa.cast(sa.literal(constant), type_)
    return sa.literal(constant, type_)


def _loads_table(conn: Connection, loads: Sequence[tuple[str, int]]) -> sa.Subquery:
    """Return the (cuno, set_id) pairs as a table, passed in one JSON parameter."""
    document = sa.bindparam(None, json.dumps(list(loads)), type_=sa.Text)
    if conn.dialect.name == "postgresql":
        pairs = sa.func.json_array_elements(sa.cast(document, sa.JSON)).table_valued(
            "value"
        )
        return sa.select(
            pairs.c.value.op("->>")(0).label("cuno"),
            sa.cast(pairs.c.value.op("->>")(1), sa.Integer).label("set_id"),
        ).subquery("loads")
    pairs = sa.func.json_each(document).table_valued("value")
    return sa.select(
        sa.func.json_extract(pairs.c.value, "$[0]").label("cuno"),
        sa.func.json_extract(pairs.c.value, "$[1]").label("set_id"),
    ).subquery("loads")


def _records_of(
    conn: Connection,
    rank: int,
    trtp: str,
    table: sa.Table,
    targets: sa.Subquery,
    cunos: Sequence[str],
) -> sa.Select[Any]:
    """Select the records of one type for the loaded customers, with sort keys."""
    # Constants are written into the statement, so that the branches of the
    # UNION agree on their types without parameters to infer them from.
    text_key: sa.ColumnElement[str] = sa.literal_column("''", sa.String)
    number_key: sa.ColumnElement[int] = sa.literal_column("0", sa.BigInteger)
    record_key: sa.ColumnElement[str] = sa.literal_column("''", sa.String)
    conditions: list[sa.ColumnElement[bool]] = [
        # The bounds let the planner read one range of the table's index.
        table.c.cuno >= cunos[0],
        table.c.cuno <= cunos[-1],
    ]
    if trtp == ADDRESS:
        text_key = record_key = table.c.adid
        conditions.append(table.c.adrt == DELIVERY_ADDRESS_TYPE)
    elif trtp == CARD:
        number_key = table.c.ccnr
        record_key = sa.cast(table.c.ccnr, sa.String)
    elif trtp == MESSAGE:
        text_key = record_key = table.c.msid
    if conn.dialect.name == "postgresql":
        # Keys sort by code point, as Python sorts them, whatever the
        # database's collation.
        text_key = text_key.collate("C")
    return (
        sa.select(
            targets.c.cuno,
            sa.literal_column(str(rank), sa.Integer).label("rank"),
            number_key.label("number_key"),
            text_key.label("text_key"),
            sa.literal_column(f"'{trtp}'", sa.String).label("trtp"),
            record_key.label("record_key"),
            _encoded(conn, trtp, table).label("data"),
            targets.c.set_id,
        )
        .select_from(table.join(targets, targets.c.cuno == table.c.cuno))
        .where(*conditions)
    )


def _encoded(conn: Connection, trtp: str, table: sa.Table) -> sa.ColumnElement[str]:
    """Return the SQL that encodes a master row as ``layouts.encode_stored`` does,
    right-trimmed as records are stored.

    Stored values were validated when saved, so they fit their fields: text is
    padded with blanks and numbers with zeros, never cut.
    """
    layout_fields = layouts.layout(trtp)
    columns = [table.c[field.name.lower()] for field in layout_fields]
    if conn.dialect.name == "postgresql":
        # One format() call pads every text field; format() has no zero
        # padding, so numbers go through lpad first.
        template = "".join(f"%-{field.length}s" for field in layout_fields)
        arguments = [
            sa.func.lpad(sa.cast(column, sa.Text), field.length, "0", type_=sa.Text)
            if field.type is FieldType.NUMERIC
            else column
            for field, column in zip(layout_fields, columns, strict=True)
        ]
        data = sa.func.format(template, *arguments, type_=sa.String)
    else:
        # SQLite's printf counts the width of %s in characters with the "!" flag.
        template = "".join(
            f"%0{field.length}d"
            if field.type is FieldType.NUMERIC
            else f"%!-{field.length}s"
            for field in layout_fields
        )
        data = sa.func.printf(template, *columns, type_=sa.String)
    return sa.func.rtrim(data, " ", type_=sa.String)

"""Outbox records written directly by SQL, for scenarios that need a backlog.

A cleanup of ten million confirmed records, or ten subscribers with a backlog
each, would take far longer to produce through net transfers than to measure.
These rows copy the data of records that a net transfer created, so their
sizes are real, and they take TRNRs the way posoutbox does: from the records
sequence on PostgreSQL and from the trnr counter on SQLite.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from posoutbox import positions, shops
from posoutbox.db import schema
from posoutbox.db.sets import ShopSetCache
from posoutbox.db.storage import Database, allocate_trnrs, utcnow

#: Rows per INSERT ... SELECT transaction.
FILL_CHUNK = 1_000_000

#: Distinct source records that filled rows cycle through.
SAMPLE_ROWS = 1_000


def _shop_set(conn: Connection, sbs1: str) -> int:
    shop_ids = frozenset(shop.shop_id for shop in shops.shops_of(conn, sbs1))
    return ShopSetCache(conn, sbs1).intern(shop_ids)


def _first_trnr(conn: Connection, count: int) -> int | None:
    """Reserve ``count`` TRNRs on SQLite and return the first; None on PostgreSQL,
    where each row takes its own from the sequence."""
    if conn.dialect.name == "postgresql":
        return None
    # allocate_trnrs returns the whole range, which is fine for a million.
    return allocate_trnrs(conn, count)[0]


def _numbers(conn: Connection, count: int) -> str:
    """Return a FROM item ``g(n)`` counting 0 to count - 1."""
    if conn.dialect.name == "postgresql":
        return f"generate_series(0, {count - 1}) AS g(n)"
    return (
        f"(WITH RECURSIVE c(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM c "
        f"WHERE n < {count - 1}) SELECT n FROM c) AS g"
    )


def _trnr_expression(first: int | None, number: str) -> str:
    if first is None:
        return "nextval('records_trnr_seq')"
    return f"{first} + {number}"


def confirmed_records(db: Database, sbs1: str, count: int) -> int:
    """Write ``count`` confirmed records for ``sbs1``; return how many."""
    written = 0
    while written < count:
        chunk = min(FILL_CHUNK, count - written)
        with db.transaction() as conn:
            db.lock_subscribers(conn, [sbs1])
            set_id = _shop_set(conn, sbs1)
            first = _first_trnr(conn, chunk)
            _create_sample(conn)
            statement = sa.text(
                "INSERT INTO records (trnr, sbs1, trtp, acct, cuno, record_key, data, "
                "set_id, origin, created_at) "
                f"SELECT {_trnr_expression(first, 'g.n')}, :sbs1, s.trtp, s.acct, "
                "s.cuno, s.record_key, s.data, :set_id, 'net', :now "
                f"FROM {_numbers(conn, chunk)} "
                f"JOIN bench_sample s ON s.i = g.n % {SAMPLE_ROWS}"
            )
            now = utcnow()
            conn.execute(statement, {"sbs1": sbs1, "set_id": set_id, "now": now})
            # Listed and confirmed at once, as a POS that drained them would.
            last = conn.execute(
                sa.select(sa.func.max(schema.records.c.trnr)).where(
                    schema.records.c.sbs1 == sbs1
                )
            ).scalar_one()
            for kind in (positions.LISTED, positions.CONFIRMED):
                positions.move(conn, sbs1, kind, int(last), "bench")
        written += chunk
    return written


def _create_sample(conn: Connection) -> None:
    """Create a temporary table of the data of existing records, numbered."""
    conn.execute(sa.text("DROP TABLE IF EXISTS bench_sample"))
    conn.execute(
        sa.text(
            "CREATE TEMPORARY TABLE bench_sample AS "
            "SELECT (ROW_NUMBER() OVER (ORDER BY trnr)) - 1 AS i, trtp, acct, cuno, "
            f"record_key, data FROM records ORDER BY trnr LIMIT {SAMPLE_ROWS}"
        )
    )
    found = conn.execute(sa.text("SELECT COUNT(*) FROM bench_sample")).scalar_one()
    if found < SAMPLE_ROWS:
        raise RuntimeError(
            f"need {SAMPLE_ROWS} records to copy data from, found {found}: "
            "run an initial load first"
        )


def copy_records(db: Database, source_sbs1: str, sbs1: str, count: int) -> int:
    """Copy the oldest ``count`` records of ``source_sbs1`` as new records of
    ``sbs1``, mailed to all its shops; return how many were copied."""
    records = schema.records
    with db.transaction() as conn:
        db.lock_subscribers(conn, [sbs1])
        set_id = _shop_set(conn, sbs1)
        available = conn.execute(
            sa.select(sa.func.count())
            .select_from(records)
            .where(records.c.sbs1 == source_sbs1)
        ).scalar_one()
        count = min(count, int(available))
        if count == 0:
            return 0
        first = _first_trnr(conn, count)
        numbered = (
            "SELECT (ROW_NUMBER() OVER (ORDER BY trnr)) - 1 AS n, trtp, acct, cuno, "
            "record_key, data FROM records WHERE sbs1 = :source "
            f"ORDER BY trnr LIMIT {count}"
        )
        statement = sa.text(
            "INSERT INTO records (trnr, sbs1, trtp, acct, cuno, record_key, data, "
            "set_id, origin, created_at) "
            f"SELECT {_trnr_expression(first, 's.n')}, :sbs1, s.trtp, s.acct, "
            "s.cuno, s.record_key, s.data, :set_id, 'net', :now "
            f"FROM ({numbered}) AS s ORDER BY s.n"
        )
        conn.execute(
            statement,
            {"source": source_sbs1, "sbs1": sbs1, "set_id": set_id, "now": utcnow()},
        )
    return count

"""The database's own figures for the same work, measured in the same run.

Each posoutbox figure is set next to one of these: the initial load next to
one INSERT ... SELECT that writes the same record and holding rows into tables
with the same columns and indexes, and the HTTP drain next to a plain loop
that reads the same records a page at a time through an index and keeps its
position in a table. Both run through the driver
(psycopg or sqlite3) without SQLAlchemy or posoutbox in between.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from bench.measure import Stopwatch, table_bytes
from bench.sizes import MAXRECS
from posoutbox.db.storage import Database

RECORDS_COPY = "bench_records"
HOLDINGS_COPY = "bench_holdings"
POSITIONS_COPY = "bench_positions"


def _create_copy(db: Database, conn: Any, table: str, copy: str) -> None:
    """Create an empty table with the columns and indexes of ``table``."""
    conn.execute(sa.text(f"DROP TABLE IF EXISTS {copy}"))
    if db.dialect == "postgresql":
        conn.execute(sa.text(f"CREATE TABLE {copy} (LIKE {table} INCLUDING ALL)"))
        return
    statements = conn.execute(
        sa.text(
            "SELECT sql FROM sqlite_master WHERE tbl_name = :t AND sql IS NOT NULL "
            "ORDER BY type DESC"
        ),
        {"t": table},
    ).scalars()
    # Index names contain the table name, so one replacement renames both.
    for statement in list(statements):
        conn.execute(sa.text(statement.replace(table, copy)))


def insert_select(db: Database, params: dict[str, Any]) -> dict[str, Any]:
    """Write the records and holdings of ``sbs1`` again with one INSERT ... SELECT
    each, in one transaction, and report time and bytes."""
    sbs1 = params["sbs1"]
    with db.transaction() as conn:
        _create_copy(db, conn, "records", RECORDS_COPY)
        _create_copy(db, conn, "holdings", HOLDINGS_COPY)

    raw = db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        marker = "%s" if db.dialect == "postgresql" else "?"
        with Stopwatch() as watch:
            if db.dialect == "sqlite":
                cursor.execute("BEGIN IMMEDIATE")
            # In TRNR order, as posoutbox numbers them, whatever order the
            # rows have on disk: net transfer batches written side by side
            # interleave their rows.
            cursor.execute(
                f"INSERT INTO {RECORDS_COPY} SELECT * FROM records "
                f"WHERE sbs1 = {marker} ORDER BY trnr",
                (sbs1,),
            )
            records = cursor.rowcount
            cursor.execute(
                f"INSERT INTO {HOLDINGS_COPY} SELECT * FROM holdings "
                f"WHERE sbs1 = {marker} ORDER BY cuno",
                (sbs1,),
            )
            holdings = cursor.rowcount
            raw.commit()
        cursor.close()
    finally:
        raw.close()

    sizes = table_bytes(db, [RECORDS_COPY, HOLDINGS_COPY])
    # Not timed: the copies start the drain as vacuumed as the real records.
    if db.dialect == "postgresql":
        with db.engine.connect().execution_options(
            isolation_level="AUTOCOMMIT"
        ) as conn:
            conn.execute(sa.text(f"VACUUM (ANALYZE) {RECORDS_COPY}"))
    return {
        "records": records,
        "holdings": holdings,
        "seconds": round(watch.seconds, 3),
        "records_bytes": sizes[RECORDS_COPY],
        "holdings_bytes": sizes[HOLDINGS_COPY],
    }


def drain(db: Database, params: dict[str, Any]) -> dict[str, Any]:
    """Drain up to ``records`` rows of the copied records, 1000 at a time.

    Each page is two transactions, like LstCus and CnfCus: one reads the rows
    after the confirmed position in TRNR order and moves a listed position to
    the last of them, the next moves the confirmed position there. The
    positions are one row of a table of their own.
    """
    sbs1 = params["sbs1"]
    record_limit = params["records"]
    postgresql = db.dialect == "postgresql"
    marker = "%s" if postgresql else "?"
    with db.transaction() as conn:
        conn.execute(sa.text(f"DROP TABLE IF EXISTS {POSITIONS_COPY}"))
        conn.execute(
            sa.text(
                f"CREATE TABLE {POSITIONS_COPY} (sbs1 VARCHAR(10) PRIMARY KEY, "
                "listed BIGINT NOT NULL, confirmed BIGINT NOT NULL)"
            )
        )
        conn.execute(
            sa.text(f"INSERT INTO {POSITIONS_COPY} VALUES (:sbs1, 0, 0)"),
            {"sbs1": sbs1},
        )
    lock = f"SELECT confirmed FROM {POSITIONS_COPY} WHERE sbs1 = {marker}"
    if postgresql:
        lock += " FOR UPDATE"
    listing = (
        f"SELECT trnr, trtp, acct, cuno, data, set_id FROM {RECORDS_COPY} "
        f"WHERE sbs1 = {marker} AND trnr > {marker} ORDER BY trnr LIMIT {MAXRECS}"
    )
    moving = f"UPDATE {POSITIONS_COPY} SET {{}} = {marker} WHERE sbs1 = {marker}"

    drained = 0
    raw = db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        started = time.perf_counter()
        while drained < record_limit:
            if not postgresql:
                cursor.execute("BEGIN IMMEDIATE")
            cursor.execute(lock, (sbs1,))
            (confirmed,) = cursor.fetchone()
            cursor.execute(listing, (sbs1, confirmed))
            rows = cursor.fetchall()
            if rows:
                cursor.execute(moving.format("listed"), (rows[-1][0], sbs1))
            raw.commit()
            if not rows:
                break
            if not postgresql:
                cursor.execute("BEGIN IMMEDIATE")
            cursor.execute(lock, (sbs1,))
            cursor.execute(moving.format("confirmed"), (rows[-1][0], sbs1))
            raw.commit()
            drained += len(rows)
        seconds = time.perf_counter() - started
        cursor.close()
    finally:
        raw.close()
    return {
        "records": drained,
        "seconds": round(seconds, 3),
        "records_per_second": round(drained / seconds) if seconds else 0,
    }


def drop_copies(db: Database, params: dict[str, Any]) -> dict[str, Any]:
    with db.transaction() as conn:
        for table in (RECORDS_COPY, HOLDINGS_COPY, POSITIONS_COPY):
            conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
    return {}


SCENARIOS = {
    "baseline_insert": insert_select,
    "baseline_drain": drain,
    "baseline_drop": drop_copies,
}

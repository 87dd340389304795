"""Fill a PostgreSQL outbox with millions of records and print the query plans
of LstCus, CnfCus, an export and cleanup.

The statements are not copied into this script. It runs the real functions of
posoutbox and captures each statement they send; just before a statement runs,
EXPLAIN (ANALYZE, BUFFERS) runs it with the same parameters inside a savepoint
that is rolled back, so the plan and timing are those of the statement as sent
and the data it sees.

The outbox is filled with INSERT ... SELECT over generate_series, inside the
server, and then vacuumed and analysed. Most records are confirmed; three
subscribers have backlogs of different sizes (a healthy POS, one a few hours
behind, one offline for days). The database must exist and be empty:

    createdb -h 127.0.0.1 -U postgres posoutbox_plans
    .venv/bin/python bench/explain_plans.py \\
        postgresql://postgres@127.0.0.1:5432/posoutbox_plans --output plans.md
    dropdb -h 127.0.0.1 -U postgres posoutbox_plans
"""

from __future__ import annotations

import argparse
import datetime
import functools
import os
import platform
import random
import re
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection

from posoutbox import layouts, outbox, shops, transfer
from posoutbox.db import migrate, schema
from posoutbox.db.sets import ShopSetCache
from posoutbox.db.storage import Database, open_database, redact_url

#: Subscriber, unconfirmed records (its backlog), and what the backlog models.
SUBSCRIBERS: tuple[tuple[str, int, str], ...] = (
    ("SUB1", 2_000, "healthy POS"),
    ("SUB2", 60_000, "POS a few hours behind"),
    ("SUB3", 600_000, "POS offline for days"),
)

#: Records of a backlog that a LstCus has already returned.
LISTED_PER_SUBSCRIBER = 100

SHOPS_PER_SUBSCRIBER = 50
SHOP_SETS_PER_SUBSCRIBER = 20

#: Days over which the records were created and confirmed.
HISTORY_DAYS = 30

#: Customers whose changes wait for the next net transfer, per subscriber.
CHANGED_CUSTOMERS = 5_000

#: Share of the records per record type, in tenths.
RECORD_TYPE_SHARES = (("OCUSMA", 4), ("OPCARD", 3), ("OCUSAD", 2), ("OOEMSG", 1))

SAMPLE_VALUES: dict[str, dict[str, Any]] = {
    "OCUSMA": {
        "CUNO": "C000000001",
        "CUNM": "Königlich Essen Kunde 000000001",
        "CUA1": "Hauptstraße 123",
        "CUA2": "Hinterhaus, 2. Etage",
        "PONO": "10115",
        "TOWN": "Berlin",
        "CSCD": "DE",
        "PHNO": "+49 30 1234567",
        "MAIL": "kunde000000001@example.com",
        "YREF": "Frau Beispiel",
        "LNCD": "DE",
        "CUCD": "EUR",
        "CUTP": 1,
        "CUCL": "RET",
        "SDST": "NO",
        "STAT": "20",
        "LMDT": 20260101,
    },
    "OPCARD": {
        "CUNO": "C000000001",
        "CCNR": 4000000000000001,
        "CTP1": 1,
        "MCRD": "1",
        "VTMM": 12,
        "VTYY": 2030,
        "REFE": "Kundenkarte",
    },
    "OCUSAD": {
        "CUNO": "C000000001",
        "ADRT": 1,
        "ADID": "DEL1",
        "CUNM": "Königlich Essen Lieferadresse",
        "CUA1": "Lieferweg 7",
        "PONO": "10117",
        "TOWN": "Berlin",
        "CSCD": "DE",
        "PHNO": "+49 30 7654321",
    },
    "OOEMSG": {
        "CUNO": "C000000001",
        "MSID": "CASH",
        "PRIO": 5,
        "MSTX": "Bitte Kundenkarte vorzeigen lassen",
    },
}


#: Statements on these tables are shown with their plans; the others, which
#: touch small tables or look up one customer, only summed up.
OUTBOX_TABLES = re.compile(r"\b(records|shop_sets)\b")

#: Characters of a statement shown; long IN lists are cut.
MAX_SQL_SHOWN = 600


@dataclass
class Captured:
    """One statement an operation sent, with its plan."""

    sql: str
    parameters: str
    plan: str


@dataclass
class Operation:
    name: str
    description: str
    seconds: float = 0.0
    statements: list[Captured] = field(default_factory=list)


class PlanCapture:
    """A listener that runs EXPLAIN (ANALYZE, BUFFERS) on each distinct statement
    of an operation just before the statement itself runs, inside a savepoint
    that is rolled back afterwards."""

    def __init__(self, db: Database) -> None:
        self.operation: Operation | None = None
        event.listen(db.engine, "before_cursor_execute", self._explain)

    @contextmanager
    def capture(self, operation: Operation) -> Iterator[None]:
        self.operation = operation
        started = time.perf_counter()
        try:
            yield
        finally:
            operation.seconds = time.perf_counter() - started
            self.operation = None

    def _explain(
        self,
        conn: Connection,
        cursor: Any,
        statement: str,
        parameters: Any,
        context: Any,
        executemany: bool,
    ) -> None:
        operation = self.operation
        if operation is None or executemany:
            return
        verb = statement.lstrip().split(None, 1)[0].upper()
        # EXPLAIN ANALYZE would take a session-level advisory lock a second
        # time, and a rollback to the savepoint does not release it.
        if verb not in (
            "SELECT",
            "INSERT",
            "UPDATE",
            "DELETE",
            "WITH",
        ) or "advisory" in (statement):
            return
        if any(captured.sql == statement for captured in operation.statements):
            return
        self.operation = None
        try:
            raw = cursor.connection
            with raw.cursor() as explain:
                explain.execute("SAVEPOINT explain_plan")
                explain.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
                plan = "\n".join(row[0] for row in explain.fetchall())
                explain.execute("ROLLBACK TO SAVEPOINT explain_plan")
                explain.execute("RELEASE SAVEPOINT explain_plan")
        finally:
            self.operation = operation
        operation.statements.append(Captured(statement, _shorten(parameters), plan))


def _shorten(parameters: Any) -> str:
    text = repr(parameters)
    return text if len(text) <= 300 else text[:297] + "..."


# Filling


def _timed(label: str, timings: list[tuple[str, float]]) -> Callable[..., Any]:
    @contextmanager
    def timer() -> Iterator[None]:
        started = time.perf_counter()
        print(f"{label} ...", file=sys.stderr, flush=True)
        yield
        timings.append((label, time.perf_counter() - started))

    return timer


def fill(
    db: Database, records: int, customers: int, timings: list[tuple[str, float]]
) -> dict[str, list[int]]:
    """Fill the outbox; return each subscriber's shop set ids."""
    with _timed("subscribers, shops and shop sets", timings)():
        set_ids = _fill_settings(db)
    with db.engine.connect() as conn:
        with _timed(f"{customers:,} customers with a card each", timings)():
            _fill_customers(conn, customers)
        with _timed(f"holdings of {customers:,} customers per subscriber", timings)():
            _fill_holdings(conn, set_ids)
        with _timed(f"{records:,} records", timings)():
            _fill_records(conn, records, customers, set_ids)
        with _timed("change rows", timings)():
            _fill_changes(conn, customers)
        conn.commit()
    with (
        _timed("VACUUM ANALYZE", timings)(),
        db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn,
    ):
        conn.execute(sa.text("VACUUM ANALYZE"))
    return set_ids


def _fill_settings(db: Database) -> dict[str, list[int]]:
    shops.add_segment(db, "ALL", description="every customer")
    rng = random.Random(1)
    set_ids: dict[str, list[int]] = {}
    for number, (sbs1, _, description) in enumerate(SUBSCRIBERS):
        shops.add_subscriber(db, sbs1, name=description)
        letter = "ABCDEFGH"[number]
        shop_ids = [
            shops.add_shop(db, f"{letter}{index:02d}", sbs1, segments=["ALL"]).shop_id
            for index in range(SHOPS_PER_SUBSCRIBER)
        ]
        with db.transaction() as conn:
            cache = ShopSetCache(conn, sbs1)
            ids = [cache.intern(frozenset(shop_ids))]
            for _ in range(SHOP_SETS_PER_SUBSCRIBER - 1):
                subset = rng.sample(shop_ids, rng.randint(1, len(shop_ids) - 1))
                ids.append(cache.intern(frozenset(subset)))
        set_ids[sbs1] = ids
    return set_ids


def _fill_customers(conn: Connection, count: int) -> None:
    conn.execute(
        sa.text(
            "INSERT INTO customers (cuno, cunm, cua1, pono, town, cscd, phno, mail,"
            " lncd, cucd, cucl, stat, lmdt, changed_at, changed_by)"
            " SELECT 'C' || lpad(i::text, 9, '0'), 'Customer ' || i,"
            " 'Street ' || i, lpad((i % 99999)::text, 5, '0'), 'Berlin', 'DE',"
            " '+49 30 ' || i, 'customer' || i || '@example.com', 'DE', 'EUR', 'RET',"
            " '20', 20260101, now(), 'bench' FROM generate_series(1, :count) AS i"
        ),
        {"count": count},
    )
    conn.execute(
        sa.text(
            "INSERT INTO cards (ccnr, cuno, ctp1, mcrd, vtmm, vtyy, changed_at)"
            " SELECT 4000000000000000 + i, 'C' || lpad(i::text, 9, '0'), 1, '1',"
            " 12, 2030, now() FROM generate_series(1, :count) AS i"
        ),
        {"count": count},
    )


def _fill_holdings(conn: Connection, set_ids: dict[str, list[int]]) -> None:
    for sbs1, ids in set_ids.items():
        conn.execute(
            sa.text(
                "INSERT INTO holdings (sbs1, cuno, set_id)"
                " SELECT :sbs1, cuno, :set_id FROM customers"
            ),
            {"sbs1": sbs1, "set_id": ids[0]},
        )


def _templates() -> dict[str, str]:
    return {
        trtp: layouts.encode(trtp, values).rstrip(" ")
        for trtp, values in SAMPLE_VALUES.items()
    }


def _fill_records(
    conn: Connection, count: int, customers: int, set_ids: dict[str, list[int]]
) -> None:
    """Insert ``count`` records, spread evenly over the subscribers.

    Record i belongs to subscriber i % 3. The newest records of each subscriber
    form its backlog: the oldest LISTED_PER_SUBSCRIBER of those are listed,
    the rest new. Every other record is confirmed, two hours after it was
    created; creation times spread over HISTORY_DAYS up to now.
    """
    # The secondary indexes are dropped for the insert and built again from the
    # schema's own definitions, rather than updated row by row.
    definitions = conn.execute(
        sa.text(
            "SELECT indexname, indexdef FROM pg_indexes"
            " WHERE schemaname = current_schema() AND tablename = 'records'"
            " AND indexname <> 'pk_records'"
        )
    ).all()
    for name, _ in definitions:
        conn.execute(sa.text(f'DROP INDEX "{name}"'))
    _insert_records(conn, count, customers, set_ids)
    conn.execute(sa.text("SET maintenance_work_mem = '1GB'"))
    for _, definition in definitions:
        conn.execute(sa.text(definition))
    conn.execute(sa.text("SELECT setval('records_trnr_seq', :count)"), {"count": count})


def _insert_records(
    conn: Connection, count: int, customers: int, set_ids: dict[str, list[int]]
) -> None:
    # The per-type and per-subscriber values come in as small tables joined on
    # the record number. Subscripting array parameters on every row took 50 s
    # instead of 38 s for 2,000,000 records on the benchmark machine.
    templates = _templates()
    type_by_tenth = [trtp for trtp, share in RECORD_TYPE_SHARES for _ in range(share)]
    subscriber_count = len(SUBSCRIBERS)
    key_by_type = {"OCUSMA": "", "OPCARD": "1", "OCUSAD": "DEL1", "OOEMSG": "CASH"}
    parameters: dict[str, Any] = {
        "count": count,
        "customers": customers,
        "types": type_by_tenth,
        "templates": [templates[trtp] for trtp in type_by_tenth],
        "keys": [key_by_type[trtp] for trtp in type_by_tenth],
        "subscribers": [sbs1 for sbs1, _, _ in SUBSCRIBERS],
        # Records numbered up to the first bound are confirmed, up to the
        # second listed, and new above it, per subscriber.
        "confirmed_to": [
            count - backlog * subscriber_count for _, backlog, _ in SUBSCRIBERS
        ],
        "listed_to": [
            count - (backlog - LISTED_PER_SUBSCRIBER) * subscriber_count
            for _, backlog, _ in SUBSCRIBERS
        ],
        "set_subscribers": [
            number
            for number, (sbs1, _, _) in enumerate(SUBSCRIBERS, start=1)
            for _ in set_ids[sbs1]
        ],
        "set_numbers": [
            number
            for sbs1, _, _ in SUBSCRIBERS
            for number in range(1, len(set_ids[sbs1]) + 1)
        ],
        "set_ids": [set_id for sbs1, _, _ in SUBSCRIBERS for set_id in set_ids[sbs1]],
        "set_count": SHOP_SETS_PER_SUBSCRIBER,
        "history": f"{HISTORY_DAYS} days",
        "subscriber_count": subscriber_count,
    }
    conn.execute(
        sa.text(
            """
            WITH types AS (
                SELECT * FROM unnest(
                    CAST(:types AS text[]), CAST(:keys AS text[]),
                    CAST(:templates AS text[])
                ) WITH ORDINALITY AS types (trtp, record_key, template, t)
            ), subscribers AS (
                SELECT * FROM unnest(
                    CAST(:subscribers AS text[]), CAST(:confirmed_to AS bigint[]),
                    CAST(:listed_to AS bigint[])
                ) WITH ORDINALITY AS subscribers (sbs1, confirmed_to, listed_to, s)
            ), sets AS (
                SELECT * FROM unnest(
                    CAST(:set_subscribers AS integer[]),
                    CAST(:set_numbers AS integer[]), CAST(:set_ids AS integer[])
                ) AS sets (s, k, set_id)
            ), numbered AS (
                SELECT i, 1 + i % :subscriber_count AS s, 1 + i % 10 AS t,
                       1 + (i / 7) % :set_count AS k,
                       'C' || lpad((1 + (i * 7919) % :customers)::text, 9, '0')
                           AS cuno,
                       now() - CAST(:history AS interval) * (:count - i) / :count
                           AS created_at
                FROM generate_series(CAST(1 AS bigint), :count) AS i
            ), described AS (
                SELECT numbered.*, subscribers.sbs1, types.trtp, types.record_key,
                       types.template, sets.set_id
                FROM numbered
                JOIN subscribers USING (s)
                JOIN types USING (t)
                JOIN sets USING (s, k)
            )
            INSERT INTO records (trnr, sbs1, trtp, acct, cuno, record_key, data,
                                 set_id, origin, created_at)
            SELECT i, sbs1, trtp,
                   CASE WHEN i % 20 = 0 THEN '*DEL' ELSE '*UPD' END,
                   cuno, record_key, rpad(cuno, 10) || substr(template, 11),
                   set_id, 'net', created_at
            FROM described
            """
        ),
        parameters,
    )
    _set_positions(conn, parameters)


#: Records of a subscriber between two moves of its positions in the fill.
RECORDS_PER_MOVE = 100


def _set_positions(conn: Connection, parameters: dict[str, Any]) -> None:
    """Move each subscriber's positions to the last of its records up to the
    fill's bounds, in moves of RECORDS_PER_MOVE records each, listed an hour
    and confirmed two hours after the last record they reach was created."""
    count = parameters["count"]
    subscriber_count = parameters["subscriber_count"]
    for number, sbs1 in enumerate(parameters["subscribers"]):
        # The subscriber's records are numbered number + k * subscriber_count,
        # from 1 (the fill gives record i to subscriber 1 + i % count).
        def last_up_to(bound: int, number: int = number) -> int:
            return bound - (bound - number) % subscriber_count

        listed = last_up_to(parameters["listed_to"][number])
        confirmed = last_up_to(parameters["confirmed_to"][number])
        conn.execute(
            sa.text(
                "UPDATE outbox_positions SET listed_trnr = :listed, "
                "confirmed_trnr = :confirmed WHERE sbs1 = :sbs1"
            ),
            {"sbs1": sbs1, "listed": listed, "confirmed": confirmed},
        )
        conn.execute(
            sa.text(
                "INSERT INTO outbox_moves (sbs1, kind, trnr, moved_at, moved_by) "
                "SELECT :sbs1, kinds.kind, moves.trnr, now() "
                "- CAST(:history AS interval) * (:count - moves.trnr) / :count "
                "+ kinds.delay, 'fill' "
                "FROM (VALUES ('listed', :listed, interval '1 hour'), "
                "('confirmed', :confirmed, interval '2 hours')) "
                "AS kinds (kind, position, delay), "
                "LATERAL (SELECT generate_series(:first, kinds.position, :step) "
                "UNION SELECT kinds.position) AS moves (trnr) "
                "ORDER BY moves.trnr, kinds.kind DESC"
            ),
            {
                "sbs1": sbs1,
                "listed": listed,
                "confirmed": confirmed,
                "first": number or subscriber_count,
                "step": subscriber_count * RECORDS_PER_MOVE,
                "history": parameters["history"],
                "count": count,
            },
        )


def _fill_changes(conn: Connection, customers: int) -> None:
    conn.execute(
        sa.text(
            "INSERT INTO changes (sbs1, kind, cuno, record_key, changed_at)"
            " SELECT sbs1, 'OCUSMA', 'C' || lpad((1 + i * 97 % :customers)::text, 9,"
            " '0'), '', now() FROM generate_series(1, :changed) AS i,"
            " unnest(CAST(:subscribers AS text[])) AS sbs1"
        ),
        {
            "customers": customers,
            "changed": CHANGED_CUSTOMERS,
            "subscribers": [sbs1 for sbs1, _, _ in SUBSCRIBERS],
        },
    )


# Operations


def run_operations(db: Database, capture: PlanCapture) -> list[Operation]:
    operations: list[Operation] = []

    def run(name: str, description: str, work: Callable[[], object]) -> object:
        operation = Operation(name, description)
        operations.append(operation)
        print(f"{name} ...", file=sys.stderr, flush=True)
        with capture.capture(operation):
            return work()

    for sbs1, backlog, what in SUBSCRIBERS:
        # The first page, already listed by the fill, is confirmed unmeasured,
        # so that the measured listing marks new records listed.
        listed = outbox.list_records(db, sbs1, maxrecs=100)
        outbox.confirm_records(db, sbs1, up_to=listed[-1].trnr)
        page = run(
            f"LstCus {sbs1}",
            f"list 100 records of {sbs1} ({what}, {backlog:,} unconfirmed)",
            functools.partial(outbox.list_records, db, sbs1, maxrecs=100),
        )
        assert isinstance(page, list) and page
        last = page[-1].trnr
        run(
            f"CnfCus {sbs1}",
            f"confirm those 100 records of {sbs1} with TRNR {last}",
            functools.partial(outbox.confirm_records, db, sbs1, up_to=last),
        )

    offline = SUBSCRIBERS[-1][0]
    page = run(
        f"LstCus {offline} maxrecs 10000",
        f"list 10,000 records of {offline}, the server-wide ceiling",
        lambda: outbox.list_records(db, offline, maxrecs=10_000),
    )
    assert isinstance(page, list) and page
    last = page[-1].trnr
    run(
        f"CnfCus {offline} 10000",
        f"confirm those 10,000 records of {offline}",
        lambda: outbox.confirm_records(db, offline, up_to=last),
    )

    cuno = _customer_with_new_records(db, offline)
    run(
        "export",
        f"export customer {cuno}, which has new records at {offline}",
        lambda: transfer.export_customer(db, cuno),
    )
    before = (
        datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=HISTORY_DAYS - 1)
    ).date()
    run(
        "cleanup",
        f"remove the records confirmed before {before} (the oldest day)",
        lambda: outbox.cleanup(db, before=before),
    )
    return operations


def _customer_with_new_records(db: Database, sbs1: str) -> str:
    records = schema.records
    with db.reading() as conn:
        cuno = conn.execute(
            sa.select(records.c.cuno)
            .where(records.c.sbs1 == sbs1)
            .order_by(records.c.trnr.desc())
            .limit(1)
        ).scalar_one()
    return str(cuno)


def repeated_listing(db: Database, calls: int) -> list[tuple[int, float, float]]:
    """List and confirm one page ``calls`` times and return (call, LstCus ms,
    CnfCus ms) for each.

    psycopg prepares a statement on the server after its fifth run on a pooled
    connection, and PostgreSQL may then switch to a generic plan, so later
    calls would show a plan gone wrong.
    """
    sbs1 = SUBSCRIBERS[-1][0]
    timings = []
    for call in range(1, calls + 1):
        started = time.perf_counter()
        page = outbox.list_records(db, sbs1, maxrecs=100)
        listed = time.perf_counter()
        outbox.confirm_records(db, sbs1, up_to=page[-1].trnr)
        confirmed = time.perf_counter()
        timings.append((call, (listed - started) * 1000, (confirmed - listed) * 1000))
    return timings


def prepared_statements(db: Database) -> list[str]:
    """Describe the statements psycopg prepared on a pooled connection, with
    how often PostgreSQL planned each for its parameters or generically."""
    with db.reading() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT left(regexp_replace(statement, '\\s+', ' ', 'g'), 90),"
                " custom_plans, generic_plans FROM pg_prepared_statements"
                " ORDER BY custom_plans + generic_plans DESC"
            )
        ).all()
    lines = ["| statement | custom plans | generic plans |", "|---|---|---|"]
    lines += [f"| `{text}` | {custom} | {generic} |" for text, custom, generic in rows]
    return lines


# Report


def machine(db: Database) -> list[str]:
    with db.reading() as conn:
        version = conn.execute(sa.text("SELECT version()")).scalar_one()
        settings = {
            name: conn.execute(sa.text(f"SHOW {name}")).scalar_one()
            for name in ("shared_buffers", "work_mem", "effective_cache_size")
        }
    memory = "unknown"
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return [
        f"- CPUs (nproc): {os.cpu_count()}",
        f"- memory: {memory}",
        f"- system: {platform.platform()}",
        f"- PostgreSQL: {version}",
        "- server settings: "
        + ", ".join(f"{name} {value}" for name, value in settings.items()),
    ]


def sizes(db: Database) -> list[str]:
    with db.reading() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT c.relname, c.reltuples::bigint,"
                " pg_size_pretty(pg_table_size(c.oid)),"
                " pg_size_pretty(pg_indexes_size(c.oid))"
                " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE c.relkind = 'r' AND n.nspname = current_schema()"
                " AND c.reltuples > 1000 ORDER BY pg_total_relation_size(c.oid) DESC"
            )
        ).all()
    lines = [
        "| table | rows (estimate) | table size | index size |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {name} | {rows:,} | {table} | {index} |"
        for name, rows, table, index in rows
    ]
    with db.reading() as conn:
        indexes = conn.execute(
            sa.text(
                "SELECT indexrelname, pg_size_pretty(pg_relation_size(indexrelid))"
                " FROM pg_stat_user_indexes"
                " WHERE schemaname = current_schema() AND relname = 'records'"
                " ORDER BY indexrelname"
            )
        ).all()
    lines += ["", "| index of records | size |", "|---|---|"]
    lines += [f"| {name} | {size} |" for name, size in indexes]
    return lines


def report(
    command: str,
    machine_lines: Sequence[str],
    timings: Sequence[tuple[str, float]],
    size_lines: Sequence[str],
    operations: Sequence[Operation],
    repeated: Sequence[tuple[int, float, float]],
    prepared: Sequence[str],
) -> str:
    """Return the Markdown report: machine, fill, operations and their plans."""
    lines = ["## Machine", "", *machine_lines, "", "## Command", "", "```", command]
    lines += ["```", "", "## Fill", "", "| step | seconds |", "|---|---|"]
    lines += [f"| {label} | {seconds:.1f} |" for label, seconds in timings]
    lines += ["", *size_lines, ""]

    lines += ["## Operations", "", "| operation | what | seconds, with EXPLAIN |"]
    lines += ["|---|---|---|"]
    lines += [
        f"| {operation.name} | {operation.description} | {operation.seconds:.3f} |"
        for operation in operations
    ]

    lines += ["", "## Repeated LstCus and CnfCus on one connection", ""]
    lines += [*prepared, ""]
    lines += ["| call | LstCus ms | CnfCus ms |", "|---|---|---|"]
    lines += [
        f"| {call} | {listed:.1f} | {confirmed:.1f} |"
        for call, listed, confirmed in repeated
    ]

    for operation in operations:
        lines += ["", f"## {operation.name}", "", operation.description, ""]
        lines += _statements(operation)
    return "\n".join(lines) + "\n"


def _statements(operation: Operation) -> list[str]:
    """Return the plans of an operation's statements on the outbox tables, and
    the summed time of the others."""
    lines: list[str] = []
    others = [
        captured
        for captured in operation.statements
        if not OUTBOX_TABLES.search(captured.sql)
    ]
    if others:
        milliseconds = sum(_execution_ms(captured.plan) for captured in others)
        lines += [
            f"{len(others)} statements on other tables (subscribers, shops,"
            f" master data, change rows, holdings) ran in {milliseconds:.1f} ms"
            " together.",
            "",
        ]

    for number, captured in enumerate(operation.statements, start=1):
        if captured in others:
            continue
        sql = captured.sql.strip()
        if len(sql) > MAX_SQL_SHOWN:
            sql = sql[:MAX_SQL_SHOWN] + " ..."
        lines += [f"### {operation.name}, statement {number}", "", "```sql"]
        lines += [sql, "```", "", f"Parameters: `{captured.parameters}`"]
        lines += ["", "```", captured.plan, "```", ""]
    return lines


def _execution_ms(plan: str) -> float:
    found = re.search(r"Execution Time: ([0-9.]+) ms", plan)
    return float(found.group(1)) if found else 0.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", help="URL of an empty PostgreSQL database to fill")
    parser.add_argument(
        "--records", type=int, default=10_000_000, help="records to create"
    )
    parser.add_argument(
        "--customers", type=int, default=1_000_000, help="customers to create"
    )
    parser.add_argument("--output", type=Path, help="Markdown file for the report")
    arguments = parser.parse_args(argv)

    db = open_database(arguments.url)
    if db.dialect != "postgresql":
        parser.error("the URL must name a PostgreSQL database")
    migrate.upgrade(db)
    with db.reading() as conn:
        if conn.execute(
            sa.select(sa.func.count()).select_from(schema.records)
        ).scalar_one():
            parser.error("the database already has records: give an empty one")

    timings: list[tuple[str, float]] = []
    fill(db, arguments.records, arguments.customers, timings)
    capture = PlanCapture(db)
    operations = run_operations(db, capture)
    repeated = repeated_listing(db, 15)
    prepared = prepared_statements(db)
    command = (
        f".venv/bin/python bench/explain_plans.py {redact_url(arguments.url)}"
        f" --records {arguments.records} --customers {arguments.customers}"
    )
    text = report(
        command, machine(db), timings, sizes(db), operations, repeated, prepared
    )
    db.close()
    if arguments.output:
        arguments.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

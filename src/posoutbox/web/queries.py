"""Read-only queries of the console that no service module offers.

Customer search with keyset paging, the match count of a segment, the run
history and the backlog samples. Nothing here writes the master, the settings
or the outbox; the sampler's inserts into backlog_samples live in
``posoutbox.metrics``.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa

from posoutbox import fields, layouts, rules
from posoutbox.db import schema
from posoutbox.db.storage import Database
from posoutbox.fields import Value

# Customers


@dataclass(frozen=True)
class CustomerPage:
    """One page of customers in CUNO order, with the keys to the pages around it."""

    customers: list[dict[str, Value]]
    #: CUNO to pass as ``after`` for the next page, or "" on the last page.
    next_after: str
    #: CUNO to pass as ``before`` for the previous page, or "" on the first page.
    previous_before: str


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search_customers(
    db: Database,
    text: str = "",
    *,
    after: str = "",
    before: str = "",
    limit: int = 50,
) -> CustomerPage:
    """Return a page of customers whose number starts with ``text`` or whose name
    contains it, both case-insensitive, in CUNO order.

    Paging is by key: ``after`` starts just after that CUNO, ``before`` ends just
    before it, so a page costs the same at customer 10 and at customer 1,000,000.
    """
    table = schema.customers
    query = sa.select(table)
    text = text.strip()
    if text:
        pattern = _escape_like(text)
        query = query.where(
            sa.or_(
                table.c.cuno.ilike(pattern + "%", escape="\\"),
                table.c.cunm.ilike("%" + pattern + "%", escape="\\"),
            )
        )
    backwards = bool(before) and not after
    if backwards:
        query = query.where(table.c.cuno < before).order_by(table.c.cuno.desc())
    else:
        query = query.where(table.c.cuno > after).order_by(table.c.cuno)
    # One row beyond the page shows whether another page follows.
    query = query.limit(limit + 1)

    with db.reading() as conn:
        rows = list(conn.execute(query).all())
    more = len(rows) > limit
    rows = rows[:limit]
    if backwards:
        rows.reverse()
    customers = [
        {name: row._mapping[name.lower()] for name in fields.CUSTOMER_FIELDS}
        for row in rows
    ]
    if not customers:
        return CustomerPage([], "", "")

    first, last = str(customers[0]["CUNO"]), str(customers[-1]["CUNO"])
    if backwards:
        return CustomerPage(customers, last, first if more else "")
    return CustomerPage(customers, last if more else "", first if after else "")


# Segments


@dataclass(frozen=True)
class SegmentMatches:
    """Customers that meet a segment's conditions now, and how many of them are
    definite (STAT 20), the only ones that qualify for a shop."""

    matching: int
    definite: int


def count_segment_matches(
    db: Database, conditions: Sequence[rules.Condition]
) -> SegmentMatches:
    """Count the customers that meet every condition, as ``rules.matches`` does."""
    table = schema.customers
    clauses = [
        table.c[condition.field.lower()].in_(sorted(condition.values, key=str))
        for condition in conditions
    ]
    definite = sa.func.sum(sa.case((table.c.stat == rules.ACTIVE_STATUS, 1), else_=0))
    query = sa.select(sa.func.count(), definite).select_from(table).where(*clauses)
    with db.reading() as conn:
        matching, definite_count = conn.execute(query).one()
    return SegmentMatches(int(matching), int(definite_count or 0))


# Runs


@dataclass(frozen=True)
class Run:
    """A row of the runs table: one net transfer or delete function of a subscriber."""

    run_id: int
    sbs1: str
    function: str
    force: bool
    from_cuno: str
    to_cuno: str
    state: str
    started_at: datetime.datetime
    heartbeat_at: datetime.datetime
    finished_at: datetime.datetime | None
    customers_total: int
    customers_done: int
    error: str
    pid: int
    host: str
    started_by: str
    summary_customers: int = 0
    #: Records created, as (TRTP, ACCT, count).
    summary_records: list[tuple[str, str, int]] = field(default_factory=list)
    #: Customers loaded per shop by an initial load, keyed by WHLO.
    summary_loaded: dict[str, int] = field(default_factory=dict)

    @property
    def records(self) -> int:
        return sum(count for _, _, count in self.summary_records)

    @property
    def percent(self) -> int:
        if self.customers_total <= 0:
            return 100 if self.state == "finished" else 0
        return min(100, self.customers_done * 100 // self.customers_total)


def _record_order(entry: tuple[str, str, int]) -> tuple[int, str]:
    """Sort record counts as a POS applies the records: customer first."""
    trtp, acct, _ = entry
    order = layouts.RECORD_TYPES.index(trtp) if trtp in layouts.RECORD_TYPES else 9
    return order, acct


def _to_run(row: sa.Row[tuple[object, ...]]) -> Run:
    mapping = row._mapping
    summary = json.loads(str(mapping["summary"])) if mapping["summary"] else {}
    return Run(
        run_id=int(mapping["run_id"]),
        sbs1=str(mapping["sbs1"]),
        function=str(mapping["function"]),
        force=bool(mapping["force"]),
        from_cuno=str(mapping["from_cuno"]),
        to_cuno=str(mapping["to_cuno"]),
        state=str(mapping["state"]),
        started_at=mapping["started_at"],
        heartbeat_at=mapping["heartbeat_at"],
        finished_at=mapping["finished_at"],
        customers_total=int(mapping["customers_total"]),
        customers_done=int(mapping["customers_done"]),
        error=str(mapping["error"]),
        pid=int(mapping["pid"]),
        host=str(mapping["host"]),
        started_by=str(mapping["started_by"]),
        summary_customers=int(summary.get("customers", 0)),
        summary_records=sorted(
            (
                (str(trtp), str(acct), int(count))
                for trtp, acct, count in summary.get("records", [])
            ),
            key=_record_order,
        ),
        summary_loaded={
            str(whlo): int(count) for whlo, count in summary.get("loaded", {}).items()
        },
    )


def list_runs(
    db: Database,
    *,
    before_run_id: int | None = None,
    sbs1: str = "",
    limit: int = 25,
) -> list[Run]:
    """Return runs newest first, from just before ``before_run_id``."""
    table = schema.runs
    query = sa.select(table).order_by(table.c.run_id.desc()).limit(limit)
    if before_run_id is not None:
        query = query.where(table.c.run_id < before_run_id)
    if sbs1:
        query = query.where(table.c.sbs1 == sbs1)
    with db.reading() as conn:
        return [_to_run(row) for row in conn.execute(query)]


def running_runs(db: Database) -> list[Run]:
    """Return the runs recorded as running, which includes runs cut off by a
    crash until the next run of their subscriber marks them interrupted."""
    table = schema.runs
    query = sa.select(table).where(table.c.state == "running").order_by(table.c.run_id)
    with db.reading() as conn:
        return [_to_run(row) for row in conn.execute(query)]


def get_run(db: Database, run_id: int) -> Run | None:
    table = schema.runs
    with db.reading() as conn:
        row = conn.execute(sa.select(table).where(table.c.run_id == run_id)).first()
    return None if row is None else _to_run(row)


# Backlog samples


@dataclass(frozen=True)
class BacklogPoint:
    """The backlog of one series (a subscriber, or a shop of one) at one time."""

    sampled_at: datetime.datetime
    series: str
    unconfirmed: int
    oldest_age_seconds: int


def backlog_series(
    db: Database, *, since: datetime.datetime, sbs1: str = ""
) -> list[BacklogPoint]:
    """Return sampled backlog points since a time, in time order.

    Without ``sbs1`` there is one series per subscriber: the sum over its shops
    of their unconfirmed records, so a record for three shops counts three
    times, once per delivery still owed. With ``sbs1`` there is one series per
    shop of that subscriber.
    """
    table = schema.backlog_samples
    series = table.c.whlo if sbs1 else table.c.sbs1
    query = (
        sa.select(
            table.c.sampled_at,
            series.label("series"),
            sa.func.sum(table.c.unconfirmed).label("unconfirmed"),
            sa.func.max(table.c.oldest_age_seconds).label("oldest"),
        )
        .where(table.c.sampled_at >= since)
        .group_by(table.c.sampled_at, series)
        .order_by(table.c.sampled_at, series)
    )
    if sbs1:
        query = query.where(table.c.sbs1 == sbs1)
    with db.reading() as conn:
        return [
            BacklogPoint(
                row.sampled_at, str(row.series), int(row.unconfirmed), int(row.oldest)
            )
            for row in conn.execute(query)
        ]

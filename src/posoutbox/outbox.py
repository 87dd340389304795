"""The outbox as a POS sees it: list, confirm, backlog and cleanup.

These are the functions behind OPS600MI LstCus and CnfCus, the CLI's ``outbox``
commands and the console. A record is new until a listing returns it, listed
until a confirmation covers it, then confirmed. Only listed records are ever
confirmed, so a record created between a POS's LstCus and its CnfCus stays
unconfirmed until a later listing returns it. The states are kept as two
positions per subscriber (see ``posoutbox.positions``), not on each record.
"""

from __future__ import annotations

import datetime
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from posoutbox import fields, layouts, positions, shops
from posoutbox.db import schema
from posoutbox.db.sets import ShopSetCache
from posoutbox.db.storage import Database, utcnow
from posoutbox.errors import InvalidValue
from posoutbox.positions import CONFIRMED, LISTED, NEW, STATES, Positions

logger = logging.getLogger(__name__)

#: Records a listing returns when the caller sets no maximum, as M3 does.
DEFAULT_MAX_RECORDS = 100

# The columns a listing reads: every field of OutboxRecord but its state.
_RECORD_COLUMNS = (
    schema.records.c.trnr,
    schema.records.c.sbs1,
    schema.records.c.trtp,
    schema.records.c.acct,
    schema.records.c.cuno,
    schema.records.c.data,
    schema.records.c.set_id,
    schema.records.c.origin,
    schema.records.c.created_at,
)
_SET_ID = [column.name for column in _RECORD_COLUMNS].index("set_id")

#: Records deleted per transaction by cleanup, so that listing and confirming
#: never wait long behind it.
CLEANUP_CHUNK = 20_000


class OutboxRecord(NamedTuple):
    """A transfer record with its mailing list as WHLO values.

    A named tuple, because a listing makes a thousand at a time: as a frozen
    dataclass, making 1,000 took 3.5 ms against 1.2 ms (Python 3.11).
    """

    trnr: int
    sbs1: str
    trtp: str
    acct: str
    cuno: str
    data: str
    shops: tuple[str, ...]
    state: str
    origin: str
    created_at: datetime.datetime

    @property
    def rdda(self) -> str:
        return layouts.split_data(self.data)[0]

    @property
    def rdd2(self) -> str:
        return layouts.split_data(self.data)[1]

    def as_fields(self) -> dict[str, object]:
        """Return the record keyed by M3 field names, as ``outbox list`` prints it."""
        rdda, rdd2 = layouts.split_data(self.data)
        return {
            "TRNR": str(self.trnr),
            "TRTP": self.trtp,
            "ACCT": self.acct,
            "CUNO": self.cuno,
            "SHOP": list(self.shops),
            "RDDA": rdda,
            "RDD2": rdd2,
        }

    def decoded(self) -> dict[str, fields.Value]:
        return layouts.decode(self.trtp, self.data)


def _validate_max(maxrecs: int | None) -> int | None:
    """Return the row limit for a maximum where 0 or None means no limit."""
    if maxrecs is None or maxrecs == 0:
        return None
    if maxrecs < 0:
        raise InvalidValue("maxrecs", maxrecs, "0 (no limit) or a positive number")
    return maxrecs


def list_records(
    db: Database,
    sbs1: str,
    maxrecs: int | None = DEFAULT_MAX_RECORDS,
    *,
    user: str = "",
) -> list[OutboxRecord]:
    """List a subscriber's oldest unconfirmed records and mark the new ones listed.

    Records come in TRNR order, listed ones again until they are confirmed, so
    paging is list, confirm, list again. ``maxrecs`` 0 or None means no limit.
    A listing stops below the TRNRs that a batch still in progress may create,
    so a record never comes before a lower TRNR of the subscriber.
    """
    sbs1 = str(fields.validate_key("SBS1", sbs1))
    limit = _validate_max(maxrecs)
    records = schema.records
    with db.transaction() as conn:
        position = positions.lock(conn, sbs1)
        # sbs1 is bounded by a range and kept in the ORDER BY, so that only
        # ix_records_subscriber (sbs1, trnr) returns the rows in order. Given
        # sbs1 = :sbs1, PostgreSQL drops sbs1 from the ordering and may walk
        # the primary key in TRNR order instead, through the records of every
        # other subscriber. PostgreSQL 15 did so on an outbox of 2,000,000
        # records filled by bench/explain_plans.py: 2.3 s per call.
        page = (
            sa.select(*_RECORD_COLUMNS)
            .where(records.c.sbs1 >= sbs1, records.c.sbs1 <= sbs1)
            .order_by(records.c.sbs1, records.c.trnr)
        )
        # Listed records come first. They never change, so they are read
        # without locks.
        rows: list[sa.Row[Any]] = []
        if position.listed > position.confirmed:
            listed_ones = page.where(
                records.c.trnr > position.confirmed, records.c.trnr <= position.listed
            )
            if limit is not None:
                listed_ones = listed_ones.limit(limit)
            rows.extend(conn.execute(listed_ones).all())
        # New records are locked: an export or a net transfer coalesces a new
        # record in place while holding its lock, and the listing then waits
        # and returns the record as coalesced. A batch that finds the record
        # listed after waiting for its lock leaves it alone.
        if limit is None or len(rows) < limit:
            new_ones = page.where(
                records.c.trnr > position.listed, db.listable(records.c.trnr, sbs1)
            ).with_for_update(of=records)
            if limit is not None:
                new_ones = new_ones.limit(limit - len(rows))
            rows.extend(conn.execute(new_ones).all())
        if rows and rows[-1].trnr > position.listed:
            positions.move(conn, sbs1, LISTED, rows[-1].trnr, user)
        listed = _to_records(conn, rows, lambda trnr: LISTED)
    if listed:
        logger.debug(
            "listed %d records",
            len(listed),
            extra={
                "action": "outbox_list",
                "sbs1": sbs1,
                "first_trnr": listed[0].trnr,
                "last_trnr": listed[-1].trnr,
            },
        )
    return listed


def browse_records(
    db: Database,
    sbs1: str,
    *,
    states: Iterable[str] = (NEW, LISTED),
    after_trnr: int = 0,
    limit: int = 100,
    cuno: str | None = None,
) -> list[OutboxRecord]:
    """Read a subscriber's records without marking them, for operators."""
    sbs1 = str(fields.validate_key("SBS1", sbs1))
    records = schema.records
    with db.reading() as conn:
        shops.require_subscriber(conn, sbs1)
        position = positions.read(conn, [sbs1]).get(sbs1, Positions())
        query = (
            sa.select(*_RECORD_COLUMNS)
            .where(
                records.c.sbs1 == sbs1,
                position.in_states(records.c.trnr, states),
                records.c.trnr > after_trnr,
            )
            .order_by(records.c.trnr)
            .limit(limit)
        )
        if cuno is not None:
            query = query.where(records.c.cuno == cuno)
        return _to_records(conn, conn.execute(query).all(), position.state_of)


def _to_records(
    conn: Connection, rows: Sequence[sa.Row[Any]], state_of: Callable[[int], str]
) -> list[OutboxRecord]:
    if not rows:
        return []
    # Rows are unpacked, in the order of _RECORD_COLUMNS, because reading ten
    # attributes of each Row took 7 ms per 1,000 rows (SQLAlchemy 2.0.44),
    # more than the rest of this function.
    whlos = _mailing_lists(conn, {row[_SET_ID] for row in rows})
    return [
        OutboxRecord(
            trnr=trnr,
            sbs1=row_sbs1,
            trtp=trtp,
            acct=acct,
            cuno=cuno,
            data=data,
            shops=whlos[set_id],
            state=state_of(trnr),
            origin=origin,
            created_at=created_at,
        )
        for (
            trnr,
            row_sbs1,
            trtp,
            acct,
            cuno,
            data,
            set_id,
            origin,
            created_at,
        ) in rows
    ]


def _mailing_lists(conn: Connection, set_ids: set[int]) -> dict[int, tuple[str, ...]]:
    """Return the sorted WHLO values of each shop set, read with one query."""
    members = schema.shop_set_members
    shop_table = schema.shops
    found: dict[int, list[str]] = {set_id: [] for set_id in set_ids}
    rows = conn.execute(
        sa.select(members.c.set_id, shop_table.c.whlo)
        .join(shop_table, shop_table.c.shop_id == members.c.shop_id)
        .where(members.c.set_id.in_(set_ids))
    )
    for set_id, whlo in rows:
        found[set_id].append(whlo)
    return {set_id: tuple(sorted(whlos)) for set_id, whlos in found.items()}


def confirm_records(
    db: Database, sbs1: str, up_to: int | None = None, *, user: str = ""
) -> int:
    """Confirm a subscriber's listed records, with ``up_to`` only those up to
    that TRNR; return how many were confirmed.

    New records are never confirmed, and confirming twice is harmless.
    """
    sbs1 = str(fields.validate_key("SBS1", sbs1))
    if up_to is not None:
        up_to = int(fields.validate_key("TRNR", up_to))
    records = schema.records
    with db.transaction() as conn:
        position = positions.lock(conn, sbs1)
        last = position.listed if up_to is None else min(up_to, position.listed)
        confirmed = 0
        if last > position.confirmed:
            confirmed = conn.execute(
                sa.select(sa.func.count()).where(
                    records.c.sbs1 == sbs1,
                    records.c.trnr > position.confirmed,
                    records.c.trnr <= last,
                )
            ).scalar_one()
            positions.move(conn, sbs1, CONFIRMED, last, user)
    if confirmed:
        logger.info(
            "confirmed %d records",
            confirmed,
            extra={"action": "outbox_confirm", "sbs1": sbs1, "up_to_trnr": up_to},
        )
    return int(confirmed)


@dataclass
class Backlog:
    """Record counts of one shop of a subscriber, by state."""

    sbs1: str
    whlo: str
    new: int = 0
    listed: int = 0
    confirmed: int = 0
    oldest_unconfirmed: datetime.datetime | None = None

    @property
    def unconfirmed(self) -> int:
        return self.new + self.listed

    def age_seconds(self, now: datetime.datetime | None = None) -> int | None:
        if self.oldest_unconfirmed is None:
            return None
        now = now or utcnow()
        return max(0, int((now - self.oldest_unconfirmed).total_seconds()))


def backlog(
    db: Database, sbs1: str | None = None, *, confirmed: bool = True
) -> list[Backlog]:
    """Count records per subscriber, shop and state, with the oldest unconfirmed.

    Every current shop appears, also with nothing in the outbox. Without
    ``confirmed`` the confirmed records are not counted (left at 0), which
    spares a pass over every shop set's records.
    """
    if sbs1 is not None:
        sbs1 = str(fields.validate_key("SBS1", sbs1))
    query = _backlog_query(sbs1, confirmed=confirmed)

    result: dict[tuple[str, str], Backlog] = {}
    with db.reading() as conn:
        if sbs1 is not None:
            shops.require_subscriber(conn, sbs1)
        whlo_by_id: dict[int, str] = {}
        for row in conn.execute(sa.select(schema.shops)):
            whlo_by_id[row.shop_id] = row.whlo
            if row.deleted_at is None and sbs1 in (None, row.sbs1):
                result[(row.sbs1, row.whlo)] = Backlog(row.sbs1, row.whlo)
        counts = _backlog_counts(conn.execute(query).all())
        members_by_subscriber: dict[str, dict[int, frozenset[int]]] = {}
        for subscriber in {count.sbs1 for count in counts}:
            members_by_subscriber[subscriber] = ShopSetCache(conn, subscriber).members(
                {count.set_id for count in counts if count.sbs1 == subscriber}
            )
    for count in counts:
        for shop_id in members_by_subscriber[count.sbs1][count.set_id]:
            key = (count.sbs1, whlo_by_id.get(shop_id, "?"))
            entry = result.setdefault(key, Backlog(*key))
            setattr(entry, count.state, getattr(entry, count.state) + count.records)
            if count.oldest is not None and (
                entry.oldest_unconfirmed is None
                or count.oldest < entry.oldest_unconfirmed
            ):
                entry.oldest_unconfirmed = count.oldest
    return [result[key] for key in sorted(result)]


#: The state column of the rows of _backlog_query that count all records of
#: a shop set, whatever their state.
_ALL_STATES = "*"


def _backlog_query(
    sbs1: str | None, *, confirmed: bool
) -> sa.CompoundSelect[Any] | sa.Select[Any]:
    """Return one statement that counts unconfirmed records per subscriber, shop
    set and state, and all records per shop set.

    Grouping the whole table reads every confirmed record, and most records
    are confirmed. The unconfirmed ones, those after their subscriber's
    confirmed position, come through ix_records_subscriber, and the totals per
    set from ix_records_set_id alone (an index-only scan on PostgreSQL once
    vacuum has marked the pages all-visible), so the confirmed counts are the
    differences. One statement reads one snapshot, so a record confirmed
    meanwhile cannot be counted twice or not at all.
    """
    records = schema.records
    sets = schema.shop_sets
    positions_table = schema.outbox_positions
    # Only records after the confirmed position are joined, so every state
    # here is new or listed.
    state = positions.state_of_record(records.c.trnr).label("state")
    unconfirmed = (
        sa.select(
            records.c.sbs1,
            records.c.set_id,
            state,
            sa.func.count().label("count"),
            sa.func.min(records.c.created_at).label("oldest"),
        )
        .join_from(
            positions_table,
            records,
            sa.and_(
                records.c.sbs1 == positions_table.c.sbs1,
                records.c.trnr > positions_table.c.confirmed_trnr,
            ),
        )
        .group_by(records.c.sbs1, records.c.set_id, state)
    )
    totals = sa.select(records.c.set_id, sa.func.count().label("count")).group_by(
        records.c.set_id
    )
    if sbs1 is not None:
        unconfirmed = unconfirmed.where(positions_table.c.sbs1 == sbs1)
    if not confirmed:
        return unconfirmed
    if sbs1 is not None:
        totals = totals.where(
            records.c.set_id.in_(sa.select(sets.c.set_id).where(sets.c.sbs1 == sbs1))
        )
    counted = totals.subquery("counted")
    # A shop set belongs to one subscriber (ShopSetCache interns sets per
    # subscriber), so the set's subscriber is that of all its records.
    per_set = sa.select(
        sets.c.sbs1,
        counted.c.set_id,
        sa.literal(_ALL_STATES).label("state"),
        counted.c.count,
        sa.null().label("oldest"),
    ).join_from(counted, sets, sets.c.set_id == counted.c.set_id)
    return sa.union_all(unconfirmed, per_set)


@dataclass(frozen=True)
class _StateCount:
    """Records of one subscriber, shop set and state, and the oldest one's
    creation time, which only unconfirmed counts carry."""

    sbs1: str
    set_id: int
    state: str
    records: int
    oldest: datetime.datetime | None


def _backlog_counts(rows: Sequence[sa.Row[Any]]) -> list[_StateCount]:
    """Turn the rows of _backlog_query into counts per subscriber, set and
    state, confirmed ones included, as grouping all records would return."""
    counts: list[_StateCount] = []
    totals: dict[tuple[str, int], int] = {}
    unconfirmed: dict[int, int] = defaultdict(int)
    for sbs1, set_id, state, count, oldest in rows:
        if state == _ALL_STATES:
            totals[(sbs1, set_id)] = count
        else:
            counts.append(_StateCount(sbs1, set_id, state, count, oldest))
            unconfirmed[set_id] += count
    for (subscriber, set_id), total in totals.items():
        confirmed = total - unconfirmed[set_id]
        if confirmed > 0:
            counts.append(_StateCount(subscriber, set_id, CONFIRMED, confirmed, None))
    return counts


@dataclass
class CleanupResult:
    """Records removed (or, in a preview, to be removed) per subscriber."""

    removed: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    shop_sets_removed: int = 0
    preview: bool = False

    @property
    def total(self) -> int:
        return sum(self.removed.values())


def cleanup(
    db: Database,
    *,
    sbs1: str | None = None,
    before: datetime.date | None = None,
    preview: bool = False,
) -> CleanupResult:
    """Remove confirmed records, optionally only those confirmed before a date.

    An unconfirmed record is never removed, however old. Records go in chunks,
    each its own transaction, so listing and confirming go on meanwhile. Mailing
    lists that no record or holding uses any more are removed with them.
    """
    if sbs1 is not None:
        sbs1 = str(fields.validate_key("SBS1", sbs1))
    result = CleanupResult(preview=preview)
    records = schema.records
    with db.reading() as conn:
        if sbs1 is not None:
            shops.require_subscriber(conn, sbs1)
        found = positions.read(conn, [sbs1] if sbs1 else None)
        # A subscriber's records up to its confirmed position are confirmed,
        # and those confirmed before the date are the ones the last
        # confirmation before it reached.
        limits: dict[str, int] = {}
        for subscriber, position in sorted(found.items()):
            limit = position.confirmed
            if before is not None:
                cutoff = datetime.datetime.combine(before, datetime.time())
                limit = min(limit, positions.confirmed_before(conn, subscriber, cutoff))
            if limit > 0:
                limits[subscriber] = limit
        if preview:
            for subscriber, limit in limits.items():
                count = conn.execute(
                    sa.select(sa.func.count()).where(
                        records.c.sbs1 == subscriber, records.c.trnr <= limit
                    )
                ).scalar_one()
                if count:
                    result.removed[subscriber] = int(count)
            return result

    for subscriber, limit in limits.items():
        after = 0
        while True:
            with db.transaction() as conn:
                removed, after = _remove_chunk(conn, subscriber, after, limit)
            if removed:
                result.removed[subscriber] += removed
            if after >= limit:
                break
        with db.transaction() as conn:
            positions.forget_moves_up_to(conn, subscriber, limit)
        if result.removed.get(subscriber):
            result.shop_sets_removed += _remove_unused_shop_sets(db, subscriber)
    logger.info(
        "cleanup removed %d records",
        result.total,
        extra={"action": "cleanup", "sbs1": sbs1, "before": str(before or "")},
    )
    return result


def _remove_chunk(
    conn: Connection, sbs1: str, after: int, limit: int
) -> tuple[int, int]:
    """Remove up to CLEANUP_CHUNK records of a subscriber after TRNR ``after``
    and up to ``limit``; return how many were removed and the TRNR reached.

    Confirmed records never change, so no lock is needed. Each chunk starts
    where the last one ended: started from the beginning, an index scan would
    step again over the entries of every record removed before, which only a
    vacuum removes.
    """
    records = schema.records
    in_range = (records.c.sbs1 == sbs1, records.c.trnr > after)
    last = conn.execute(
        sa.select(records.c.trnr)
        .where(*in_range, records.c.trnr <= limit)
        .order_by(records.c.trnr)
        .offset(CLEANUP_CHUNK - 1)
        .limit(1)
    ).scalar()
    reached = limit if last is None else int(last)
    removed = conn.execute(
        sa.delete(records).where(*in_range, records.c.trnr <= reached)
    ).rowcount
    return int(removed), reached


def _remove_unused_shop_sets(db: Database, sbs1: str) -> int:
    # Shop sets are only looked up and referenced under the subscriber lock, so
    # holding it here means no transaction is about to reference an old set.
    sets = schema.shop_sets
    # NOT EXISTS rather than NOT IN: PostgreSQL turns it into an anti-join that
    # probes ix_records_set_id and ix_holdings_set_id once per set, while NOT
    # IN over millions of records rescans them for every set.
    used_by_record = sa.exists().where(schema.records.c.set_id == sets.c.set_id)
    used_by_holding = sa.exists().where(schema.holdings.c.set_id == sets.c.set_id)
    with db.transaction() as conn:
        db.lock_subscribers(conn, [sbs1])
        set_ids = (
            conn.execute(
                sa.select(sets.c.set_id).where(
                    sets.c.sbs1 == sbs1, ~used_by_record, ~used_by_holding
                )
            )
            .scalars()
            .all()
        )
        if set_ids:
            conn.execute(
                sa.delete(schema.shop_set_members).where(
                    schema.shop_set_members.c.set_id.in_(set_ids)
                )
            )
            conn.execute(sa.delete(sets).where(sets.c.set_id.in_(set_ids)))
    return len(set_ids)


__all__ = [
    "CONFIRMED",
    "DEFAULT_MAX_RECORDS",
    "LISTED",
    "NEW",
    "STATES",
    "Backlog",
    "CleanupResult",
    "OutboxRecord",
    "backlog",
    "browse_records",
    "cleanup",
    "confirm_records",
    "list_records",
]

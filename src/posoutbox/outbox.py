"""The outbox as a POS sees it: list, confirm, backlog and cleanup.

These are the functions behind OPS600MI LstCus and CnfCus, the CLI's ``outbox``
commands and the console. A record is new until a listing returns it, listed
until a confirmation covers it, then confirmed. Only listed records are ever
confirmed, so a record created between a POS's LstCus and its CnfCus stays
unconfirmed until a later listing returns it.
"""

from __future__ import annotations

import datetime
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from posoutbox import fields, layouts, shops
from posoutbox.db import schema
from posoutbox.db.sets import ShopSetCache
from posoutbox.db.storage import Database, one_of, utcnow
from posoutbox.errors import InvalidValue

logger = logging.getLogger(__name__)

NEW = "new"
LISTED = "listed"
CONFIRMED = "confirmed"
STATES = (NEW, LISTED, CONFIRMED)

#: Records a listing returns when the caller sets no maximum, as M3 does.
DEFAULT_MAX_RECORDS = 100

# The columns a listing reads: everything OutboxRecord holds, without the
# timestamps and user names of listing and confirming.
_RECORD_COLUMNS = (
    schema.records.c.trnr,
    schema.records.c.sbs1,
    schema.records.c.trtp,
    schema.records.c.acct,
    schema.records.c.cuno,
    schema.records.c.data,
    schema.records.c.set_id,
    schema.records.c.state,
    schema.records.c.origin,
    schema.records.c.created_at,
)
_SET_ID = [column.name for column in _RECORD_COLUMNS].index("set_id")

#: Records deleted per transaction by cleanup, so that listing and confirming
#: never wait long behind it.
CLEANUP_CHUNK = 20_000


@dataclass(frozen=True)
class OutboxRecord:
    """A transfer record with its mailing list as WHLO values."""

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
        shops.require_subscriber(conn, sbs1)
        # sbs1 is bounded by a range and kept in the ORDER BY, so that only
        # ix_records_unconfirmed (sbs1, trnr) returns the rows in order. Given
        # sbs1 = :sbs1, PostgreSQL drops sbs1 from the ordering and may walk
        # the primary key in TRNR order instead, through every confirmed
        # record older than the backlog. PostgreSQL 15 did so on an outbox of
        # 2,000,000 records filled by bench/explain_plans.py: 2.3 s per call.
        query = (
            sa.select(*_RECORD_COLUMNS)
            .where(
                records.c.sbs1 >= sbs1,
                records.c.sbs1 <= sbs1,
                records.c.state != CONFIRMED,
                db.listable(records.c.trnr, sbs1),
            )
            .order_by(records.c.sbs1, records.c.trnr)
            .with_for_update(of=records)
        )
        if limit is not None:
            query = query.limit(limit)
        rows = conn.execute(query).all()
        new = [row.trnr for row in rows if row.state == NEW]
        if new:
            # The TRNRs go in one parameter. An IN list of a thousand values is
            # a new statement text for each page length, which SQLAlchemy
            # renders and PostgreSQL parses and plans anew on every call.
            conn.execute(
                sa.update(records)
                .where(one_of(conn, records.c.trnr, new), records.c.state == NEW)
                .values(state=LISTED, listed_at=utcnow(), listed_by=user)
            )
        listed = _to_records(conn, rows, state=LISTED)
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
    query = (
        sa.select(*_RECORD_COLUMNS)
        .where(
            records.c.sbs1 == sbs1,
            records.c.state.in_(list(states)),
            records.c.trnr > after_trnr,
        )
        .order_by(records.c.trnr)
        .limit(limit)
    )
    if cuno is not None:
        query = query.where(records.c.cuno == cuno)
    with db.reading() as conn:
        shops.require_subscriber(conn, sbs1)
        return _to_records(conn, conn.execute(query).all())


def _to_records(
    conn: Connection, rows: Sequence[sa.Row[Any]], state: str = ""
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
            state=state or row_state,
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
            row_state,
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
    conditions = [records.c.sbs1 == sbs1, records.c.state == LISTED]
    if up_to is not None:
        conditions.append(records.c.trnr <= up_to)
    # The rows are locked in TRNR order, the order a listing locks them in.
    # Locked in the order of the UPDATE's plan instead (a sequential scan
    # follows the heap, not TRNR), a confirmation and a listing of the same
    # records can deadlock on PostgreSQL. ix_records_listed holds only listed
    # records, so it returns them in that order without walking the others.
    locking = (
        sa.select(records.c.trnr)
        .where(*conditions)
        .order_by(records.c.trnr)
        .with_for_update()
    )
    with db.transaction() as conn:
        shops.require_subscriber(conn, sbs1)
        # Two statements: as a subquery of the UPDATE, PostgreSQL 15 ran the
        # locking SELECT again for every listed record, which took 320 ms to
        # confirm a page of 1,000 records.
        locked = conn.execute(locking).scalars().all()
        confirmed = 0
        if locked:
            confirmed = conn.execute(
                sa.update(records)
                .where(one_of(conn, records.c.trnr, locked), records.c.state == LISTED)
                .values(state=CONFIRMED, confirmed_at=utcnow(), confirmed_by=user)
            ).rowcount
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
    are confirmed. The unconfirmed ones come through ix_records_unconfirmed,
    and the totals per set from ix_records_set_id alone (an index-only scan on
    PostgreSQL once vacuum has marked the pages all-visible), so the confirmed
    counts are the differences. One statement reads one snapshot, so a record
    confirmed meanwhile cannot be counted twice or not at all.
    """
    records = schema.records
    sets = schema.shop_sets
    unconfirmed = (
        sa.select(
            records.c.sbs1,
            records.c.set_id,
            records.c.state,
            sa.func.count().label("count"),
            sa.func.min(records.c.created_at).label("oldest"),
        )
        .where(records.c.state != CONFIRMED)
        .group_by(records.c.sbs1, records.c.set_id, records.c.state)
    )
    totals = sa.select(records.c.set_id, sa.func.count().label("count")).group_by(
        records.c.set_id
    )
    if sbs1 is not None:
        unconfirmed = unconfirmed.where(records.c.sbs1 == sbs1)
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
    records = schema.records
    conditions = [records.c.state == CONFIRMED]
    if sbs1 is not None:
        sbs1 = str(fields.validate_key("SBS1", sbs1))
        conditions.append(records.c.sbs1 == sbs1)
    if before is not None:
        conditions.append(
            records.c.confirmed_at < datetime.datetime.combine(before, datetime.time())
        )
    result = CleanupResult(preview=preview)

    if sbs1 is not None or preview:
        with db.reading() as conn:
            if sbs1 is not None:
                shops.require_subscriber(conn, sbs1)
            if preview:
                counts = conn.execute(
                    sa.select(records.c.sbs1, sa.func.count())
                    .where(*conditions)
                    .group_by(records.c.sbs1)
                ).all()
                result.removed.update({row[0]: row[1] for row in counts})
                return result

    while True:
        with db.transaction() as conn:
            removed = _remove_chunk(conn, conditions)
        for subscriber, count in removed.items():
            result.removed[subscriber] += count
        if sum(removed.values()) < CLEANUP_CHUNK:
            break

    for subscriber in sorted(result.removed):
        result.shop_sets_removed += _remove_unused_shop_sets(db, subscriber)
    logger.info(
        "cleanup removed %d records",
        result.total,
        extra={"action": "cleanup", "sbs1": sbs1, "before": str(before or "")},
    )
    return result


def _remove_chunk(
    conn: Connection, conditions: Sequence[sa.ColumnElement[bool]]
) -> dict[str, int]:
    """Remove up to CLEANUP_CHUNK records that meet the conditions, oldest
    confirmation first; return how many were removed per subscriber."""
    records = schema.records
    # Oldest first through ix_records_confirmed. Without an order, a sequential
    # scan would step again over the dead rows of every earlier chunk, which
    # only a vacuum removes.
    if conn.dialect.name != "postgresql":
        chunk = (
            sa.select(records.c.trnr)
            .where(*conditions)
            .order_by(records.c.confirmed_at)
            .limit(CLEANUP_CHUNK)
        ).scalar_subquery()
        deleted = (
            conn.execute(
                sa.delete(records)
                .where(records.c.trnr.in_(chunk))
                .returning(records.c.sbs1)
            )
            .scalars()
            .all()
        )
        return dict(Counter(deleted))

    # PostgreSQL deletes the chosen rows by their ctid. A Tid Scan reads each
    # heap tuple directly, while a match on trnr descends pk_records once per
    # row. In EXPLAIN ANALYZE on PostgreSQL 15, with records filled by
    # bench/fill.py, a chunk of 20,000 took 55 ms this way and 145 ms by trnr.
    # The DELETE repeats none of the conditions, because the planner then
    # filtered ix_records_confirmed by ctid instead, which took 322 s for one
    # chunk when the statistics predated the fill. A row that another
    # transaction changes meanwhile gets a new ctid, fails the recheck and
    # stays. Confirmed records are never changed, so none is missed that way.
    # Counting in the statement spares sending each removed record's sbs1 to
    # Python.
    chosen = (
        sa.select(sa.literal_column("ctid"))
        .select_from(records)
        .where(*conditions)
        .order_by(records.c.confirmed_at)
        .limit(CLEANUP_CHUNK)
        .correlate(None)
        .scalar_subquery()
    )
    removed = (
        sa.delete(records)
        .where(sa.literal_column("records.ctid") == sa.any_(sa.func.array(chosen)))
        .returning(records.c.sbs1)
        .cte("removed")
    )
    rows = conn.execute(
        sa.select(removed.c.sbs1, sa.func.count()).group_by(removed.c.sbs1)
    ).all()
    return {row[0]: int(row[1]) for row in rows}


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

"""Exports, net transfers and the delete function: turning changes into records.

A run works through customers in batches. Each batch is one transaction that
holds the subscriber lock, reads the change rows, the master data, the holdings
and the new records of its customers, plans and coalesces their records, writes
them, updates the holdings and deletes exactly the change rows it processed.
A crash therefore loses at most the batches in flight, whose change rows are
still there for the next run. The batches of one run cover different customers
and share the subscriber lock, so the database may write several at once (two
on PostgreSQL). Listings stop below the TRNRs of a batch still in progress.

Settings changes (SHOP change rows) make a full run sweep every customer for the
shops concerned: a new shop gets its initial load, a shop whose segments changed
gets its deletes and loads, a shop switched back on is brought from its copy to
its target. A sweep only sends what a shop lacks, so an interrupted sweep is
simply repeated by the next run.
"""

from __future__ import annotations

import datetime
import functools
import json
import logging
import time
import weakref
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from posoutbox import fields, positions, shops
from posoutbox.changelog import SHOP_SETTINGS
from posoutbox.db import loading, schema
from posoutbox.db.sets import ShopSetCache, intern_all, load_members
from posoutbox.db.storage import (
    Database,
    insert_numbered_records,
    insert_rows,
    is_deadlock,
    json_values,
    one_of,
    process_identity,
    upsert,
    utcnow,
)
from posoutbox.errors import InvalidValue, NotFound, StorageError
from posoutbox.fields import Value
from posoutbox.planning import (
    CUSTOMER_KEY,
    DELETE,
    UPDATE,
    Coalesced,
    CustomerState,
    NewRecord,
    Plan,
    PlannedRecord,
    RecordKey,
    coalesce,
    plan_customer,
)
from posoutbox.rules import Qualifier, ShopSettings

logger = logging.getLogger(__name__)

UPDATE_FUNCTION = "update"
DELETE_FUNCTION = "delete"
EXPORT_FUNCTION = "export"
FUNCTIONS = (UPDATE_FUNCTION, DELETE_FUNCTION)

ORIGIN_EXPORT = "export"
ORIGIN_NET = "net"
ORIGIN_DELETE = "delete"

DEFAULT_BATCH_SIZE = 2_000

#: Times a batch runs before a deadlock fails the run.
BATCH_ATTEMPTS = 3

#: Records a run creates before it first refreshes the planner's statistics of
#: the outbox; it refreshes them again each time the count has doubled.
ANALYZE_AFTER_RECORDS = 100_000

#: Progress callback: customers done so far, customers expected in all.
Progress = Callable[[int, int], None]


@dataclass
class TransferResult:
    """Outcome of a run: records created per (SBS1, TRTP, ACCT), and customers done."""

    function: str
    run_ids: list[int] = field(default_factory=list)
    counts: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    customers: int = 0
    loaded: Counter[str] = field(default_factory=Counter)

    @property
    def records(self) -> int:
        return sum(self.counts.values())

    def merge(self, other: TransferResult) -> None:
        self.run_ids.extend(other.run_ids)
        self.counts.update(other.counts)
        self.customers += other.customers
        self.loaded.update(other.loaded)

    def summary_rows(self) -> list[dict[str, object]]:
        return [
            {"SBS1": sbs1, "TRTP": trtp, "ACCT": acct, "records": count}
            for (sbs1, trtp, acct), count in sorted(self.counts.items())
        ]


@dataclass
class _ChangeRow:
    change_id: int
    shop_id: int | None
    key: RecordKey


@dataclass
class _Batch:
    """Everything one batch needs to know about its customers."""

    states: dict[str, CustomerState]
    changes: dict[str, list[_ChangeRow]]
    holders: dict[str, frozenset[int]]
    new_records: dict[str, list[NewRecord]]
    #: The shop sets that the holdings and new records refer to, by id.
    set_members: dict[int, frozenset[int]]


def export_customer(db: Database, cuno: str, *, user: str = "") -> TransferResult:
    """Bring every enabled shop of every subscriber to a customer's current state.

    Shops that qualify get the full state whether or not anything changed, and
    shops that hold the customer but no longer qualify get an OCUSMA *DEL. The
    customer's recorded changes are consumed, since its records reflect them.
    """
    cuno = str(fields.validate_key("CUNO", cuno))
    result = TransferResult(EXPORT_FUNCTION)
    with db.transaction() as conn:
        if (
            conn.execute(
                sa.select(schema.customers.c.cuno).where(
                    schema.customers.c.cuno == cuno
                )
            ).first()
            is None
        ):
            raise NotFound("customer", "CUNO", cuno)
        subscribers = (
            conn.execute(
                sa.select(schema.subscribers.c.sbs1).order_by(schema.subscribers.c.sbs1)
            )
            .scalars()
            .all()
        )
        db.lock_subscribers(conn, subscribers)
        batches = _load_batches(conn, subscribers, [cuno])
        settings = load_settings(conn, subscribers)
        # One customer gives each subscriber a row or two: written together,
        # they cost one statement per table instead of one per subscriber.
        writes = _Writes(ORIGIN_EXPORT, None, utcnow())
        for sbs1 in subscribers:
            _process_batch(
                conn,
                sbs1,
                [cuno],
                function=EXPORT_FUNCTION,
                origin=ORIGIN_EXPORT,
                run_id=None,
                sweep=frozenset(),
                result=result,
                batch=batches[sbs1],
                settings=settings[sbs1],
                writes=writes,
            )
        writes.write(conn)
    result.customers = 1
    logger.info(
        "customer exported",
        extra={
            "action": "export",
            "cuno": cuno,
            "records": result.records,
            "user": user,
        },
    )
    return result


def net_transfer(
    db: Database,
    *,
    sbs1: str | None = None,
    function: str = UPDATE_FUNCTION,
    force: bool = False,
    from_cuno: str | None = None,
    to_cuno: str | None = None,
    user: str = "",
    wait: bool = True,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Progress | None = None,
) -> TransferResult:
    """Run the update or delete function for one subscriber or all of them.

    The update function processes every change recorded since the subscriber's
    last run, and sweeps for shops whose settings changed. A run limited to a
    customer range (inclusive, compared as strings) consumes only the customer
    changes in the range and leaves settings changes for the next full run.
    The delete function produces only *DEL records. With ``force`` it sends an
    OCUSMA *DEL for every customer in the range to every enabled shop, held or
    not, and records a change for each so the next update run reloads them.

    Two runs of the same subscriber never overlap: with ``wait`` the second
    waits for the first, otherwise it raises Busy.
    """
    if function not in FUNCTIONS:
        raise InvalidValue("function", function, "update or delete")
    if force and function != DELETE_FUNCTION:
        raise InvalidValue("force", force, "force only with the delete function")
    if from_cuno is not None:
        from_cuno = str(fields.validate_key("CUNO", from_cuno))
    if to_cuno is not None:
        to_cuno = str(fields.validate_key("CUNO", to_cuno))
    if from_cuno is not None and to_cuno is not None and from_cuno > to_cuno:
        raise InvalidValue("to", to_cuno, f"a customer number from {from_cuno} on")

    with db.reading() as conn:
        if sbs1 is None:
            subscribers = list(
                conn.execute(
                    sa.select(schema.subscribers.c.sbs1).order_by(
                        schema.subscribers.c.sbs1
                    )
                ).scalars()
            )
        else:
            sbs1 = str(fields.validate_key("SBS1", sbs1))
            shops.require_subscriber(conn, sbs1)
            subscribers = [sbs1]

    result = TransferResult(function)
    for subscriber in subscribers:
        run = _Run(
            db,
            subscriber,
            function=function,
            force=force,
            from_cuno=from_cuno,
            to_cuno=to_cuno,
            user=user,
            batch_size=batch_size,
            progress=progress,
        )
        result.merge(run.execute(wait=wait))
    return result


class _Run:
    """One run of the update or delete function for one subscriber."""

    def __init__(
        self,
        db: Database,
        sbs1: str,
        *,
        function: str,
        force: bool,
        from_cuno: str | None,
        to_cuno: str | None,
        user: str,
        batch_size: int,
        progress: Progress | None,
    ) -> None:
        self.db = db
        self.sbs1 = sbs1
        self.function = function
        self.force = force
        self.from_cuno = from_cuno
        self.to_cuno = to_cuno
        self.ranged = from_cuno is not None or to_cuno is not None
        self.user = user
        self.batch_size = batch_size
        self.progress = progress
        self.result = TransferResult(function)
        self.run_id = 0

    def execute(self, *, wait: bool) -> TransferResult:
        with self.db.run_lock(f"net transfer of subscriber {self.sbs1}", wait=wait):
            self.run_id = self._start()
            self.result.run_ids.append(self.run_id)
            try:
                self._work()
            except BaseException as error:
                self._finish(
                    "failed" if isinstance(error, Exception) else "interrupted",
                    error=repr(error),
                )
                raise
            self._finish("finished")
        return self.result

    def _start(self) -> int:
        pid, host = process_identity()
        now = utcnow()
        with self.db.transaction() as conn:
            # This process holds the run lock, so a run of this subscriber still
            # marked running was cut off by a crash.
            conn.execute(
                sa.update(schema.runs)
                .where(
                    schema.runs.c.sbs1 == self.sbs1, schema.runs.c.state == "running"
                )
                .values(state="interrupted", finished_at=now)
            )
            run_id = conn.execute(
                sa.insert(schema.runs)
                .values(
                    sbs1=self.sbs1,
                    function=self.function,
                    force=self.force,
                    from_cuno=self.from_cuno or "",
                    to_cuno=self.to_cuno or "",
                    state="running",
                    started_at=now,
                    heartbeat_at=now,
                    pid=pid,
                    host=host,
                    started_by=self.user,
                )
                .returning(schema.runs.c.run_id)
            ).scalar_one()
        logger.info(
            "net transfer started",
            extra={
                "action": "net_transfer_start",
                "run_id": run_id,
                "sbs1": self.sbs1,
                "function": self.function,
                "force": self.force,
            },
        )
        return int(run_id)

    def _finish(self, state: str, *, error: str = "") -> None:
        summary = json.dumps(
            {
                "customers": self.result.customers,
                "records": [
                    [trtp, acct, count]
                    for (_, trtp, acct), count in sorted(self.result.counts.items())
                ],
                "loaded": dict(self.result.loaded),
            }
        )
        try:
            with self.db.transaction() as conn:
                conn.execute(
                    sa.update(schema.runs)
                    .where(schema.runs.c.run_id == self.run_id)
                    .values(
                        state=state,
                        finished_at=utcnow(),
                        summary=summary,
                        error=error,
                        customers_done=self.result.customers,
                    )
                )
        except Exception:
            logger.exception(
                "could not record the end of run %s",
                self.run_id,
                extra={"action": "net_transfer_end", "run_id": self.run_id},
            )
            if state == "finished":
                raise
        log = logger.info if state == "finished" else logger.warning
        log(
            "net transfer %s",
            state,
            extra={
                "action": "net_transfer_end",
                "run_id": self.run_id,
                "sbs1": self.sbs1,
                "state": state,
                "customers": self.result.customers,
                "records": self.result.records,
            },
        )

    def _work(self) -> None:
        setting_change_ids: list[int] = []
        sweep: frozenset[int] = frozenset()
        if self.function == UPDATE_FUNCTION and not self.ranged:
            with self.db.reading() as conn:
                rows = conn.execute(
                    sa.select(
                        schema.changes.c.change_id, schema.changes.c.shop_id
                    ).where(
                        schema.changes.c.sbs1 == self.sbs1,
                        schema.changes.c.kind == SHOP_SETTINGS,
                    )
                ).all()
            setting_change_ids = [row.change_id for row in rows]
            sweep = frozenset(row.shop_id for row in rows if row.shop_id is not None)

        with self.db.reading() as conn:
            total = self._count(conn, sweeping=bool(sweep))
            qualifier, _ = shops.load_qualifier(conn, self.sbs1)
            sweeping = bool(sweep & qualifier.enabled)
            initial_loads = (
                sweeping
                and self.function == UPDATE_FUNCTION
                and loading.supported(conn)
            )
        if self.progress:
            self.progress(0, total)

        batch = functools.partial(
            self._batch,
            sweep=sweep,
            initial_loads=initial_loads,
            origin=ORIGIN_DELETE if self.function == DELETE_FUNCTION else ORIGIN_NET,
        )
        workers = self.db.concurrent_batches
        after: str | None = None
        analyze_at = ANALYZE_AFTER_RECORDS
        in_flight: deque[Future[TransferResult]] = deque()
        # The next batch is chosen while the others are written, and its
        # customers' rows are read again under the lock.
        exhausted = False
        with ThreadPoolExecutor(workers, thread_name_prefix="net-transfer") as pool:
            try:
                while True:
                    if not exhausted and len(in_flight) < workers:
                        with self.db.reading() as conn:
                            cunos = self._next_customers(conn, after, sweeping=sweeping)
                        if cunos:
                            in_flight.append(pool.submit(batch, cunos))
                            after = cunos[-1]
                            continue
                        exhausted = True
                    if not in_flight:
                        break
                    self._batch_done(in_flight.popleft().result(), total)
                    if self.result.records >= analyze_at:
                        self.db.refresh_statistics(["records"])
                        analyze_at = 2 * self.result.records
            except BaseException:
                for future in in_flight:
                    future.cancel()
                raise

        if setting_change_ids:
            with self.db.transaction() as conn:
                conn.execute(
                    sa.delete(schema.changes).where(
                        schema.changes.c.change_id.in_(setting_change_ids)
                    )
                )

    def _batch(
        self,
        cunos: list[str],
        *,
        sweep: frozenset[int],
        initial_loads: bool,
        origin: str,
    ) -> TransferResult:
        """Process one batch in a transaction of its own, and return what it made.

        Two batches that create the same new shop sets in opposite order can
        deadlock on the sets' unique key: the database then rolls one back, and
        it runs again.
        """
        for attempt in range(1, BATCH_ATTEMPTS + 1):
            started = time.monotonic()
            result = TransferResult(self.function)
            try:
                with self.db.transaction() as conn:
                    self.db.lock_subscribers(conn, [self.sbs1], shared=True)
                    self.db.open_batch(conn, self.sbs1)
                    _process_batch(
                        conn,
                        self.sbs1,
                        cunos,
                        function=self.function,
                        force=self.force,
                        origin=origin,
                        run_id=self.run_id,
                        sweep=sweep,
                        result=result,
                        initial_loads=initial_loads,
                    )
            except StorageError as error:
                if attempt == BATCH_ATTEMPTS or not is_deadlock(error):
                    raise
                logger.warning(
                    "batch from customer %s rolled back by a deadlock, running it "
                    "again",
                    cunos[0],
                    extra={
                        "action": "net_transfer_batch",
                        "run_id": self.run_id,
                        "first_cuno": cunos[0],
                        "attempt": attempt,
                    },
                )
                continue
            result.customers = len(cunos)
            logger.debug(
                "batch of %d customers done in %.3f s",
                len(cunos),
                time.monotonic() - started,
                extra={
                    "action": "net_transfer_batch",
                    "run_id": self.run_id,
                    "last_cuno": cunos[-1],
                },
            )
            return result
        raise AssertionError("unreachable")  # pragma: no cover

    def _batch_done(self, done: TransferResult, total: int) -> None:
        """Count a committed batch and write the run's progress and heartbeat."""
        self.result.merge(done)
        expected = max(total, self.result.customers)
        with self.db.transaction() as conn:
            conn.execute(
                sa.update(schema.runs)
                .where(schema.runs.c.run_id == self.run_id)
                .values(
                    heartbeat_at=utcnow(),
                    customers_done=self.result.customers,
                    customers_total=expected,
                )
            )
        if self.progress:
            self.progress(self.result.customers, expected)

    def _range(
        self, column: sa.ColumnElement[str], after: str | None
    ) -> list[sa.ColumnElement[bool]]:
        conditions = []
        if after is not None:
            conditions.append(column > after)
        elif self.from_cuno is not None:
            conditions.append(column >= self.from_cuno)
        if self.to_cuno is not None:
            conditions.append(column <= self.to_cuno)
        return conditions

    def _count(self, conn: Connection, *, sweeping: bool) -> int:
        if sweeping or self.force:
            table = schema.customers
            query = (
                sa.select(sa.func.count())
                .select_from(table)
                .where(*self._range(table.c.cuno, None))
            )
        elif self.function == DELETE_FUNCTION:
            table = schema.holdings
            query = (
                sa.select(sa.func.count())
                .select_from(table)
                .where(table.c.sbs1 == self.sbs1, *self._range(table.c.cuno, None))
            )
        else:
            changes = schema.changes
            query = sa.select(sa.func.count(sa.distinct(changes.c.cuno))).where(
                changes.c.sbs1 == self.sbs1,
                changes.c.kind != SHOP_SETTINGS,
                *self._range(changes.c.cuno, None),
            )
        return int(conn.execute(query).scalar_one())

    def _next_customers(
        self, conn: Connection, after: str | None, *, sweeping: bool
    ) -> list[str]:
        """Return the next batch of customer numbers after ``after``, in order."""
        changes = schema.changes
        changed = sa.select(changes.c.cuno).where(
            changes.c.sbs1 == self.sbs1,
            changes.c.kind != SHOP_SETTINGS,
            *self._range(changes.c.cuno, after),
        )
        if sweeping or self.force:
            base = sa.select(schema.customers.c.cuno).where(
                *self._range(schema.customers.c.cuno, after)
            )
        elif self.function == DELETE_FUNCTION:
            base = sa.select(schema.holdings.c.cuno).where(
                schema.holdings.c.sbs1 == self.sbs1,
                *self._range(schema.holdings.c.cuno, after),
            )
        else:
            base = None

        if base is None:
            query = changed.distinct().order_by(changes.c.cuno).limit(self.batch_size)
            return list(conn.execute(query).scalars())

        # Customers of the base set plus those with change rows only (deleted
        # from the master, for instance) up to the last customer of the batch.
        base_cunos = list(
            conn.execute(
                base.order_by(base.selected_columns[0]).limit(self.batch_size)
            ).scalars()
        )
        if len(base_cunos) == self.batch_size:
            changed = changed.where(changes.c.cuno <= base_cunos[-1])
        extra = set(conn.execute(changed.distinct()).scalars())
        return sorted(set(base_cunos) | extra)


def _process_batch(
    conn: Connection,
    sbs1: str,
    cunos: Sequence[str],
    *,
    function: str,
    origin: str,
    run_id: int | None,
    sweep: frozenset[int],
    result: TransferResult,
    force: bool = False,
    batch: _Batch | None = None,
    settings: SubscriberSettings | None = None,
    initial_loads: bool = False,
    writes: _Writes | None = None,
) -> None:
    """Plan, coalesce and write the records of one subscriber for a batch.

    ``batch`` and ``settings`` are what `_load_batches` and `load_settings`
    read in this transaction; without them, they are read here. With
    ``initial_loads``, customers that only need an initial load are left to
    the database (`posoutbox.db.loading`) and only the others are planned here.
    With ``writes``, the rows are added to it for the caller to write, together
    with those of other subscribers; without, they are written here.
    """
    if settings is None:
        settings = load_settings(conn, [sbs1])[sbs1]
    qualifier = settings.qualifier
    current_shops = settings.current_shops
    enabled = qualifier.enabled
    whlo_by_id = settings.whlo_by_id
    if batch is None:
        batch = _load_batches(conn, [sbs1], cunos, with_states=not initial_loads)[sbs1]
    sets = ShopSetCache(conn, sbs1)
    sets.remember(batch.set_members)
    qualifying_shops = _QualifyingCache(qualifier)
    swept = sweep & enabled
    loads: list[tuple[str, int]] = []
    if initial_loads:
        cunos, load_shops = _initial_loads(conn, batch, cunos, swept, qualifying_shops)
        set_ids = intern_all([(sets, shop_set) for _, shop_set in load_shops])
        loads = [
            (cuno, set_id)
            for (cuno, _), set_id in zip(load_shops, set_ids, strict=True)
        ]
        batch.states.update(load_states(conn, cunos))

    own_writes = writes is None
    if writes is None:
        writes = _Writes(origin, run_id, utcnow())
    now = writes.now
    loaded: Counter[frozenset[int]] = Counter()

    for cuno in cunos:
        state = batch.states.get(cuno) or CustomerState(cuno)
        rows = batch.changes.get(cuno, [])
        holders = batch.holders.get(cuno, frozenset())
        current_holders = holders & current_shops
        qualifying = qualifying_shops(state.customer)

        everywhere = frozenset(row.key for row in rows if row.shop_id is None)
        per_shop: dict[int, set[RecordKey]] = {}
        for row in rows:
            if row.shop_id is not None and row.shop_id in enabled:
                per_shop.setdefault(row.shop_id, set()).add(row.key)

        if function == DELETE_FUNCTION:
            plan, used = _plan_delete(
                state, enabled, current_holders, qualifying, rows, force=force
            )
            if force and state.customer is not None:
                writes.new_changes.append(_change_row(sbs1, cuno, CUSTOMER_KEY, now))
        else:
            if function == EXPORT_FUNCTION:
                everywhere = everywhere | frozenset(state.current_records())
            if everywhere:
                evaluated = enabled
            elif per_shop:
                evaluated = swept | frozenset(per_shop)
            else:
                evaluated = swept
            plan = plan_customer(
                state,
                evaluated=evaluated,
                holders=current_holders,
                qualifying=qualifying,
                changed_everywhere=everywhere,
                changed_per_shop={
                    shop: frozenset(keys) for shop, keys in per_shop.items()
                },
            )
            used = [
                row
                for row in rows
                if row.shop_id is None
                or row.shop_id in enabled
                or row.shop_id not in current_shops
            ]

        # A switched-off shop that holds the customer keeps the changes consumed
        # here for when it is switched on again, the delete function's included.
        global_keys = {row.key for row in used if row.shop_id is None}
        for shop_id in current_holders - enabled:
            writes.kept_back.extend(
                _change_row(sbs1, cuno, key, now, shop_id=shop_id)
                for key in global_keys
            )

        writes.consumed.extend(row.change_id for row in used)
        if plan.loaded_at:
            loaded[plan.loaded_at] += 1

        outcome = coalesce(batch.new_records.get(cuno, []), plan.records)
        writes.add_records(sets, outcome)
        for record in outcome.appended:
            result.counts[(sbs1, record.trtp, record.acct)] += 1

        if plan.holders_after != holders:
            # Holdings are written only under the subscriber lock, which this
            # batch holds, so a customer without a row here still has none.
            if plan.holders_after and cuno not in batch.holders:
                writes.new_holdings.append((sets, cuno, plan.holders_after))
            elif plan.holders_after:
                writes.holdings.append((sets, cuno, plan.holders_after))
            else:
                writes.emptied_holdings.append((sbs1, cuno))

    if own_writes:
        writes.write(conn)
    if loads:
        written = loading.insert_initial_loads(
            conn, sbs1, loads, origin=origin, run_id=run_id, now=now
        )
        for trtp, count in written.records.items():
            result.counts[(sbs1, trtp, UPDATE)] += count
        for set_id, count in written.customers.items():
            loaded[sets.members([set_id])[set_id]] += count
    for shop_set, customers in loaded.items():
        for shop_id in shop_set:
            result.loaded[whlo_by_id.get(shop_id, str(shop_id))] += customers


@dataclass(frozen=True)
class SubscriberSettings:
    """A subscriber's current shops and the qualifier over them."""

    qualifier: Qualifier
    current_shops: frozenset[int]
    whlo_by_id: dict[int, str]


#: The settings last read per database engine, with the settings version and
#: the subscribers they were read for.
_SETTINGS_READ: weakref.WeakKeyDictionary[
    Engine, tuple[int, tuple[str, ...], dict[str, SubscriberSettings]]
] = weakref.WeakKeyDictionary()


def load_settings(
    conn: Connection, subscribers: Sequence[str]
) -> dict[str, SubscriberSettings]:
    """Return the shops and segments of several subscribers.

    Every change of the settings raises their version, so settings read before
    at the same version are still current and are used again. Otherwise three
    queries read them for all the subscribers at once: read per subscriber,
    they took most of the time of an export to several subscribers.
    """
    version = shops.settings_version(conn)
    requested = tuple(sorted(subscribers))
    known = _SETTINGS_READ.get(conn.engine)
    if known is not None and known[:2] == (version, requested):
        return known[2]
    result = _read_settings(conn, requested)
    _SETTINGS_READ[conn.engine] = (version, requested, result)
    return result


def _read_settings(
    conn: Connection, subscribers: Sequence[str]
) -> dict[str, SubscriberSettings]:
    """Read the shops and segments of several subscribers in three queries, and
    build what ``shops.load_qualifier`` builds for each."""
    table = schema.shops
    links = schema.shop_segments
    rows = conn.execute(
        sa.select(
            table.c.shop_id,
            table.c.whlo,
            table.c.sbs1,
            table.c.active,
            table.c.pos_interface,
            table.c.customer_interface,
            links.c.seid,
        )
        .select_from(table.outerjoin(links, links.c.shop_id == table.c.shop_id))
        .where(table.c.deleted_at.is_(None), table.c.sbs1.in_(subscribers))
    ).all()

    shop_rows: dict[int, Any] = {}
    seids_by_shop: dict[int, set[str]] = {}
    for row in rows:
        shop_rows[row.shop_id] = row
        seids = seids_by_shop.setdefault(row.shop_id, set())
        if row.seid is not None:
            seids.add(row.seid)
    used = {seid for seids in seids_by_shop.values() for seid in seids}
    segments = shops.load_segments(conn, used)

    by_subscriber: dict[str, dict[int, ShopSettings]] = {
        sbs1: {} for sbs1 in subscribers
    }
    for shop_id, row in shop_rows.items():
        by_subscriber[row.sbs1][shop_id] = ShopSettings(
            shop_id=shop_id,
            whlo=row.whlo,
            active=row.active,
            pos_interface=row.pos_interface,
            customer_interface=row.customer_interface,
            segments=frozenset(seids_by_shop[shop_id]),
        )
    result = {}
    for sbs1, settings in by_subscriber.items():
        seids = {seid for shop in settings.values() for seid in shop.segments}
        result[sbs1] = SubscriberSettings(
            qualifier=Qualifier(
                settings, {seid: segments[seid] for seid in seids if seid in segments}
            ),
            current_shops=frozenset(settings),
            whlo_by_id={shop_id: shop.whlo for shop_id, shop in settings.items()},
        )
    return result


class _QualifyingCache:
    """The qualifier's answers, remembered by the values the segments test.

    Segment conditions test only a few customer fields, and qualification also
    reads the status, so customers alike in those fields share one answer.
    """

    def __init__(self, qualifier: Qualifier) -> None:
        self.qualifier = qualifier
        tested = {
            condition.field
            for conditions in qualifier.segments.values()
            for condition in conditions
        }
        self.fields = ("STAT", *sorted(tested))
        self.answers: dict[tuple[Value | None, ...], frozenset[int]] = {}

    def __call__(self, customer: dict[str, Value] | None) -> frozenset[int]:
        if customer is None:
            return self.qualifier.qualifying_shops(None)
        return self.for_values(tuple(customer.get(name) for name in self.fields))

    def for_values(self, values: tuple[Value | None, ...]) -> frozenset[int]:
        """Return the qualifying shops of a customer given by the values of
        ``fields``, in order."""
        answer = self.answers.get(values)
        if answer is None:
            customer = {
                name: value
                for name, value in zip(self.fields, values, strict=True)
                if value is not None
            }
            answer = self.qualifier.qualifying_shops(customer)
            self.answers[values] = answer
        return answer


def _initial_loads(
    conn: Connection,
    batch: _Batch,
    cunos: Sequence[str],
    swept: frozenset[int],
    qualifying_shops: _QualifyingCache,
) -> tuple[list[str], list[tuple[str, frozenset[int]]]]:
    """Split a sweep's batch into customers to plan and customers to load.

    A customer with no change row, no holdings and no new record of the
    subscriber gets from `plan_customer` all its records for the swept shops it
    qualifies for, and nothing if it qualifies for none. Only the fields that
    qualification tests are read for those customers. Returns the customers
    still to plan and the customers to load with their shops.
    """
    candidates = [
        cuno
        for cuno in cunos
        if cuno not in batch.changes
        and cuno not in batch.holders
        and cuno not in batch.new_records
    ]
    if not candidates:
        return list(cunos), []
    customers = schema.customers
    query = sa.select(
        customers.c.cuno,
        *(customers.c[name.lower()] for name in qualifying_shops.fields),
    ).where(*_among(conn.dialect.name, customers.c.cuno, len(candidates)))
    found: set[str] = set()
    loads: list[tuple[str, frozenset[int]]] = []
    for cuno, *values in conn.execute(query, _among_values(candidates)).all():
        found.add(cuno)
        shops_loading = qualifying_shops.for_values(tuple(values)) & swept
        if shops_loading:
            loads.append((cuno, shops_loading))
    return [cuno for cuno in cunos if cuno not in found], loads


def _plan_delete(
    state: CustomerState,
    enabled: frozenset[int],
    holders: frozenset[int],
    qualifying: frozenset[int],
    rows: list[_ChangeRow],
    *,
    force: bool,
) -> tuple[Plan, list[_ChangeRow]]:
    """Plan the delete function: *DEL records only.

    Without force, holders that no longer qualify get an OCUSMA *DEL, and
    removed children get their *DEL; only the change rows of removed children
    are consumed, the others stay for the update function. With force every
    enabled shop gets an OCUSMA *DEL, held or not.
    """
    if force:
        plan = plan_customer(
            state, evaluated=enabled, holders=enabled | holders, qualifying=frozenset()
        )
        return plan, []

    current = state.current_records()
    gone = [
        row
        for row in rows
        if row.key != CUSTOMER_KEY
        and row.key not in current
        and (row.shop_id is None or row.shop_id in enabled)
    ]
    everywhere = frozenset(row.key for row in gone if row.shop_id is None)
    per_shop: dict[int, set[RecordKey]] = {}
    for row in gone:
        if row.shop_id is not None:
            per_shop.setdefault(row.shop_id, set()).add(row.key)
    plan = plan_customer(
        state,
        evaluated=enabled,
        holders=holders,
        qualifying=qualifying,
        changed_everywhere=everywhere,
        changed_per_shop={shop: frozenset(keys) for shop, keys in per_shop.items()},
    )
    deletes = [record for record in plan.records if record.acct == DELETE]
    kept = plan.holders_after - plan.loaded_at
    if not deletes and kept == holders:
        return Plan([], holders, frozenset(), frozenset()), []
    # A holder that is not currently held by this plan keeps being held only
    # if it did before: the delete function never loads a shop.
    return Plan(deletes, kept, plan.deleted_at, frozenset()), gone


def _change_row(
    sbs1: str, cuno: str, key: RecordKey, now: Any, *, shop_id: int | None = None
) -> dict[str, Any]:
    return {
        "sbs1": sbs1,
        "shop_id": shop_id,
        "kind": key[0],
        "cuno": cuno,
        "record_key": key[1],
        "changed_at": now,
        "changed_by": "",
    }


def _load_batches(
    conn: Connection,
    subscribers: Sequence[str],
    cunos: Sequence[str],
    *,
    with_states: bool = True,
) -> dict[str, _Batch]:
    """Read what a batch needs for several subscribers at once, one query per
    table, so that an export costs about as many queries for ten subscribers
    as for one. Without ``with_states`` the master data is left to the caller."""
    queries = _batch_queries(conn.dialect.name, len(cunos))
    parameters = {"subscribers": list(subscribers), **_among_values(cunos)}
    changes: dict[str, dict[str, list[_ChangeRow]]] = {sbs1: {} for sbs1 in subscribers}
    for row in conn.execute(queries.changes, parameters).all():
        changes[row.sbs1].setdefault(row.cuno, []).append(
            _ChangeRow(row.change_id, row.shop_id, (row.kind, row.record_key))
        )

    # The change rows are read before the master data: a change committed in
    # between then leaves a row this batch does not consume, and the next run
    # sends it. Read the other way round, the batch could consume a change
    # whose data it never saw.
    states = load_states(conn, cunos) if with_states else {}

    holding_rows = conn.execute(queries.holdings, parameters).all()

    # Locked, so that a concurrent LstCus cannot list a record while it is being
    # coalesced: a listing locks the records it returns, in the same
    # transaction that moves the listed position. The positions are read
    # before, to lock no listed record, and again once the locks are held: a
    # listing that held a lock first has committed by then, and its records
    # are no longer new.
    first_new = min(
        (position.listed for position in positions.read(conn, subscribers).values()),
        default=0,
    )
    locked_rows = conn.execute(
        queries.new_records, {**parameters, "first_new": first_new}
    ).all()
    new_rows = locked_rows
    if locked_rows:
        listed_up_to = {
            sbs1: position.listed
            for sbs1, position in positions.read(conn, subscribers).items()
        }
        new_rows = [
            row for row in locked_rows if row.trnr > listed_up_to.get(row.sbs1, 0)
        ]

    members = load_members(
        conn, {row.set_id for row in holding_rows} | {row.set_id for row in new_rows}
    )
    batches = {sbs1: _Batch(states, changes[sbs1], {}, {}, {}) for sbs1 in subscribers}
    for row in new_rows:
        batch = batches[row.sbs1]
        batch.set_members[row.set_id] = members[row.set_id]
        batch.new_records.setdefault(row.cuno, []).append(
            NewRecord(
                row.trnr,
                row.trtp,
                row.acct,
                row.record_key,
                row.data,
                members[row.set_id],
            )
        )
    for row in holding_rows:
        batch = batches[row.sbs1]
        batch.set_members[row.set_id] = members[row.set_id]
        batch.holders[row.cuno] = members[row.set_id]
    return batches


class _BatchQueries(NamedTuple):
    changes: sa.Select[Any]
    holdings: sa.Select[Any]
    new_records: sa.Select[Any]
    customers: sa.Select[Any]
    children: tuple[tuple[sa.Select[Any], tuple[str, ...], str], ...]


def _batch_queries(dialect: str, count: int) -> _BatchQueries:
    """Return the queries that read ``count`` customers of a batch, built once
    per dialect for one customer and once for several.

    Building a query with fifty columns and computing its cache key took
    longer than running it (about 0.25 ms against 0.12 ms on PostgreSQL, in a
    loop over one customer), and an export runs about ten of them. The queries
    take the parameters ``subscribers``, ``first_new`` and those of
    `_among_values`.
    """
    return _build_batch_queries(dialect, min(count, 2))


@functools.cache
def _build_batch_queries(dialect: str, count: int) -> _BatchQueries:
    subscribers: sa.BindParameter[list[str]] = sa.bindparam(
        "subscribers", expanding=True
    )
    changes = schema.changes
    holdings = schema.holdings
    records = schema.records
    customers = schema.customers
    children = tuple(
        (
            sa.select(*(table.c[name.lower()] for name in names)).where(
                *_among(dialect, table.c.cuno, count)
            ),
            names,
            attribute,
        )
        for table, names, attribute in (
            (schema.addresses, fields.ADDRESS_FIELDS, "addresses"),
            (schema.cards, fields.CARD_FIELDS, "cards"),
            (schema.messages, fields.MESSAGE_FIELDS, "messages"),
        )
    )
    return _BatchQueries(
        changes=sa.select(
            changes.c.change_id,
            changes.c.sbs1,
            changes.c.shop_id,
            changes.c.kind,
            changes.c.cuno,
            changes.c.record_key,
        )
        .where(
            changes.c.sbs1.in_(subscribers),
            changes.c.kind != SHOP_SETTINGS,
            *_among(dialect, changes.c.cuno, count),
        )
        .order_by(changes.c.change_id),
        holdings=sa.select(holdings.c.sbs1, holdings.c.cuno, holdings.c.set_id).where(
            holdings.c.sbs1.in_(subscribers), *_among(dialect, holdings.c.cuno, count)
        ),
        new_records=sa.select(
            records.c.trnr,
            records.c.sbs1,
            records.c.cuno,
            records.c.trtp,
            records.c.acct,
            records.c.record_key,
            records.c.data,
            records.c.set_id,
        )
        .where(
            records.c.sbs1.in_(subscribers),
            records.c.trnr > sa.bindparam("first_new"),
            *_among(dialect, records.c.cuno, count),
        )
        .order_by(records.c.trnr)
        .with_for_update(),
        customers=sa.select(
            *(customers.c[name.lower()] for name in fields.CUSTOMER_FIELDS)
        ).where(*_among(dialect, customers.c.cuno, count)),
        children=children,
    )


def _among(
    dialect: str, column: sa.Column[str], count: int
) -> list[sa.ColumnElement[bool]]:
    """Return the conditions selecting ``count`` customer numbers, given as the
    parameters that `_among_values` makes.

    The bounds repeat what the list says, but they let the planner scan one
    narrow index range even when its statistics predate a table that grew
    during a long run, where a bare IN list made it read every row of the
    subscriber. One customer, as an export has, is a plain equality.
    """
    if count == 1:
        return [column == sa.bindparam("cuno")]
    return [
        one_of(dialect, column, "cunos"),
        column >= sa.bindparam("first_cuno"),
        column <= sa.bindparam("last_cuno"),
    ]


def _among_values(cunos: Sequence[str]) -> dict[str, str]:
    """Return the parameters of `_among` for these customer numbers."""
    if len(cunos) == 1:
        return {"cuno": cunos[0]}
    return {
        "cunos": json_values(cunos),
        "first_cuno": min(cunos),
        "last_cuno": max(cunos),
    }


def load_states(conn: Connection, cunos: Sequence[str]) -> dict[str, CustomerState]:
    """Read the master data of customers, with their addresses, cards and messages."""
    states: dict[str, CustomerState] = {}
    if not cunos:
        return states
    queries = _batch_queries(conn.dialect.name, len(cunos))
    parameters = _among_values(cunos)
    # all() fetches in one call, where iterating fetches row by row.
    for row in conn.execute(queries.customers, parameters).all():
        values = dict(zip(fields.CUSTOMER_FIELDS, row, strict=True))
        states[row.cuno] = CustomerState(row.cuno, values)
    for query, names, attribute in queries.children:
        for row in conn.execute(query, parameters).all():
            state = states.get(row.cuno)
            if state is None:
                continue
            child: dict[str, Value] = dict(zip(names, row, strict=True))
            getattr(state, attribute).append(child)
    return states


_RECORD_COLUMNS = (
    "sbs1",
    "trtp",
    "acct",
    "cuno",
    "record_key",
    "data",
    "set_id",
    "origin",
    "run_id",
    "created_at",
)


@dataclass
class _Writes:
    """The rows that batches write, gathered so that an export writes the
    batches of every subscriber with one statement per kind of row.

    Records and holdings keep the shop set cache of their subscriber, and their
    sets are interned all at once when the rows are written.
    """

    origin: str
    run_id: int | None
    now: datetime.datetime
    dropped_records: set[int] = field(default_factory=set)
    changed_records: dict[int, tuple[ShopSetCache, NewRecord]] = field(
        default_factory=dict
    )
    appended: list[tuple[ShopSetCache, PlannedRecord]] = field(default_factory=list)
    new_holdings: list[tuple[ShopSetCache, str, frozenset[int]]] = field(
        default_factory=list
    )
    holdings: list[tuple[ShopSetCache, str, frozenset[int]]] = field(
        default_factory=list
    )
    emptied_holdings: list[tuple[str, str]] = field(default_factory=list)
    consumed: list[int] = field(default_factory=list)
    kept_back: list[dict[str, Any]] = field(default_factory=list)
    new_changes: list[dict[str, Any]] = field(default_factory=list)

    def add_records(self, sets: ShopSetCache, outcome: Coalesced) -> None:
        """Add what coalescing one customer's records gave."""
        for trnr, record in outcome.changed.items():
            self.changed_records[trnr] = (sets, record)
        self.dropped_records |= outcome.dropped
        for trnr in outcome.dropped:
            self.changed_records.pop(trnr, None)
        self.appended.extend((sets, record) for record in outcome.appended)

    def write(self, conn: Connection) -> None:
        """Write the gathered rows in this transaction."""
        changed = list(self.changed_records.items())
        set_ids = iter(
            intern_all(
                [(sets, record.shops) for _, (sets, record) in changed]
                + [(sets, record.shops) for sets, record in self.appended]
                + [(sets, shops) for sets, _, shops in self.new_holdings]
                + [(sets, shops) for sets, _, shops in self.holdings]
            )
        )
        records = schema.records
        if self.dropped_records:
            conn.execute(
                sa.delete(records).where(records.c.trnr.in_(self.dropped_records))
            )
        if changed:
            conn.execute(
                sa.update(records)
                .where(records.c.trnr == sa.bindparam("old_trnr"))
                .values(
                    data=sa.bindparam("new_data"), set_id=sa.bindparam("new_set_id")
                ),
                [
                    {
                        "old_trnr": trnr,
                        "new_data": record.data.rstrip(" "),
                        "new_set_id": next(set_ids),
                    }
                    for trnr, (_, record) in changed
                ],
            )
        insert_numbered_records(
            conn,
            _RECORD_COLUMNS,
            [
                (
                    sets.sbs1,
                    record.trtp,
                    record.acct,
                    record.cuno,
                    record.record_key,
                    record.data.rstrip(" "),
                    next(set_ids),
                    self.origin,
                    self.run_id,
                    self.now,
                )
                for sets, record in self.appended
            ],
        )
        insert_rows(
            conn,
            schema.holdings,
            ("sbs1", "cuno", "set_id"),
            [(sets.sbs1, cuno, next(set_ids)) for sets, cuno, _ in self.new_holdings],
        )
        if self.holdings:
            upsert(
                conn,
                schema.holdings,
                [
                    {"sbs1": sets.sbs1, "cuno": cuno, "set_id": next(set_ids)}
                    for sets, cuno, _ in self.holdings
                ],
                ["sbs1", "cuno"],
                ["set_id"],
            )
        if self.emptied_holdings:
            holdings = schema.holdings
            conn.execute(
                sa.delete(holdings).where(
                    sa.tuple_(holdings.c.sbs1, holdings.c.cuno).in_(
                        self.emptied_holdings
                    )
                )
            )
        if self.consumed:
            conn.execute(
                sa.delete(schema.changes).where(
                    schema.changes.c.change_id.in_(self.consumed)
                )
            )
        new_changes = self.kept_back + self.new_changes
        if new_changes:
            conn.execute(sa.insert(schema.changes), new_changes)

"""Set-up, worker processes and checks shared by the concurrency tests.

Workers are top-level functions so that a spawned process can run them. Each
opens its own Database, so it works on connections of its own, and writes what
it saw to a JSON file that the test reads back after the process ended.

The shops' targets are computed here from the master tables and the fixed
segment definitions below, without the planning or qualification code, so a
fault there cannot hide in the comparison.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import random
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.context import SpawnProcess
from multiprocessing.synchronize import Barrier, Event
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection

from posoutbox import customers, layouts, outbox, shops, transfer
from posoutbox.db import migrate, schema
from posoutbox.db.storage import Database, open_database, utcnow
from posoutbox.errors import Busy, NotFound
from posoutbox.fields import Value
from posoutbox.planning import ADDRESS, CARD, CUSTOMER, DELETE, MESSAGE, UPDATE

SUBSCRIBERS = ("CONC1", "CONC2")

#: Segment id to its conditions.
SEGMENTS: dict[str, tuple[str, ...]] = {
    "GA": ("CUCL=A",),
    "GB": ("CUCL=B",),
    "ALL": (),
}

#: The customer groups (CUCL) each segment matches; None matches every group.
SEGMENT_GROUPS: dict[str, frozenset[str] | None] = {
    "GA": frozenset({"A"}),
    "GB": frozenset({"B"}),
    "ALL": None,
}

#: WHLO to (SBS1, segment ids).
SHOPS: dict[str, tuple[str, tuple[str, ...]]] = {
    "A01": ("CONC1", ("GA",)),
    "A02": ("CONC1", ("GA", "GB")),
    "B01": ("CONC2", ("ALL",)),
    "B02": ("CONC2", ("GB",)),
}

#: Card numbers are this plus the customer's index.
CARD_BASE = 100_000

#: Upper bound of list calls in one drain, so that a listing that never empties
#: fails the test instead of looping.
MAX_DRAIN_CALLS = 100_000

#: Upper bound for a session to start waiting for a lock, in seconds.
LOCK_WAIT_TIMEOUT = 60.0

#: A shop's copy or target: CUNO to record ("TRTP/key") to right-trimmed data.
Holding = dict[str, dict[str, str]]


def one_shop_database(url: str, sbs1: str) -> Database:
    """Open a migrated database with subscriber ``sbs1`` and its shop A01,
    whose segment ALL takes every customer."""
    database = open_database(url)
    migrate.upgrade(database)
    shops.add_subscriber(database, sbs1)
    shops.add_segment(database, "ALL")
    shops.add_shop(database, "A01", sbs1, segments=["ALL"])
    return database


def customer_number(index: int) -> str:
    return f"C{index:05d}"


def customer_group(index: int) -> str:
    return "A" if index % 2 else "B"


def build_world(db: Database, customer_count: int, *, card_every: int = 3) -> list[str]:
    """Create the subscribers, segments and shops above and the customers.

    Every ``card_every``-th customer gets a card and a message. Returns the
    customer numbers.
    """
    for sbs1 in SUBSCRIBERS:
        shops.add_subscriber(db, sbs1)
    for seid, conditions in SEGMENTS.items():
        shops.add_segment(db, seid, conditions=list(conditions))
    for whlo, (sbs1, seids) in SHOPS.items():
        shops.add_shop(db, whlo, sbs1, segments=list(seids))

    cunos = [customer_number(index) for index in range(customer_count)]
    rows = [
        (line, {"CUNO": cuno, "CUNM": "v0", "CUCL": customer_group(index)})
        for line, (index, cuno) in enumerate(enumerate(cunos), start=2)
    ]
    result = customers.import_customers(db, rows)
    assert result.rejections == []
    for index, cuno in enumerate(cunos):
        if index % card_every == 0:
            customers.set_card(db, cuno, CARD_BASE + index, {"CTP1": 1})
            customers.set_message(db, cuno, "M1", "welcome")
    return cunos


# Targets and copies


def record_key(trtp: str, data: str) -> str:
    """Return "TRTP/key" of a record, reading the key from its data as a POS does."""
    values = layouts.decode(trtp, data)
    if trtp == ADDRESS:
        return f"{trtp}/{values['ADID']}"
    if trtp == CARD:
        return f"{trtp}/{values['CCNR']}"
    if trtp == MESSAGE:
        return f"{trtp}/{values['MSID']}"
    return f"{trtp}/"


def _encoded(trtp: str, row: Any, names: Sequence[str]) -> str:
    mapping = row._mapping
    values: dict[str, Value] = {name: mapping[name.lower()] for name in names}
    return layouts.encode(trtp, values).rstrip(" ")


def read_targets(db: Database) -> dict[str, Holding]:
    """Return every shop's target: what it must hold after the last run."""
    customer_names = layouts.LAYOUTS[CUSTOMER]
    with db.reading() as conn:
        master = conn.execute(sa.select(schema.customers)).all()
        children: dict[str, dict[str, str]] = {}
        for table, trtp in (
            (schema.addresses, ADDRESS),
            (schema.cards, CARD),
            (schema.messages, MESSAGE),
        ):
            for row in conn.execute(sa.select(table)):
                if trtp == ADDRESS and row.adrt != 1:
                    continue
                data = _encoded(trtp, row, layouts.LAYOUTS[trtp])
                children.setdefault(row.cuno, {})[record_key(trtp, data)] = data

    targets: dict[str, Holding] = {whlo: {} for whlo in SHOPS}
    for row in master:
        if row.stat != "20":
            continue
        state = {f"{CUSTOMER}/": _encoded(CUSTOMER, row, customer_names)}
        state.update(children.get(row.cuno, {}))
        for whlo, (_, seids) in SHOPS.items():
            if any(_matches(seid, row.cucl) for seid in seids):
                targets[whlo][row.cuno] = dict(state)
    return targets


def _matches(seid: str, group: str) -> bool:
    groups = SEGMENT_GROUPS[seid]
    return groups is None or group in groups


@dataclass
class ShopCopies:
    """The shops' copies, built by applying records in the order received."""

    holdings: dict[str, Holding] = field(
        default_factory=lambda: {whlo: {} for whlo in SHOPS}
    )
    #: Records that broke an ordering rule, described.
    violations: list[str] = field(default_factory=list)
    #: Last (ACCT, data) applied per shop and record, to find records sent twice.
    last_applied: dict[tuple[str, str, str], tuple[str, str]] = field(
        default_factory=dict
    )
    #: Records that repeated the previous record of their shop and key.
    repeats: list[str] = field(default_factory=list)

    def apply(self, record: Sequence[Any]) -> None:
        """Apply one record, given as [TRNR, TRTP, ACCT, CUNO, data, shops]."""
        trnr, trtp, acct, cuno, data, whlos = record
        # The API serves data right-trimmed, whatever the outbox stores.
        data = data.rstrip(" ")
        key = record_key(trtp, data)
        for whlo in whlos:
            self._apply_to_shop(whlo, int(trnr), trtp, acct, cuno, key, data)

    def _apply_to_shop(
        self, whlo: str, trnr: int, trtp: str, acct: str, cuno: str, key: str, data: str
    ) -> None:
        holding = self.holdings.setdefault(whlo, {})
        previous = self.last_applied.get((whlo, cuno, key))
        if previous == (acct, data):
            self.repeats.append(f"{whlo}: TRNR {trnr} repeats {acct} {key} of {cuno}")
        self.last_applied[(whlo, cuno, key)] = (acct, data)
        if trtp == CUSTOMER:
            if acct == DELETE:
                holding.pop(cuno, None)
                # An OCUSMA *DEL also removes the children at the POS.
                for child in [k for k in self.last_applied if k[:2] == (whlo, cuno)]:
                    del self.last_applied[child]
            else:
                holding.setdefault(cuno, {})[key] = data
            return
        held = holding.get(cuno)
        if held is None:
            if acct == UPDATE:
                self.violations.append(
                    f"{whlo}: TRNR {trnr} {trtp} *UPD of {cuno} before its OCUSMA"
                )
            return
        if acct == DELETE:
            held.pop(key, None)
        else:
            held[key] = data


def differences(
    copies: Mapping[str, Holding], targets: Mapping[str, Holding]
) -> list[str]:
    """Describe where the shops' copies differ from their targets."""
    found = []
    for whlo in sorted(SHOPS):
        copy = copies.get(whlo, {})
        target = targets.get(whlo, {})
        for cuno in sorted(copy.keys() | target.keys()):
            if copy.get(cuno) != target.get(cuno):
                held, wanted = copy.get(cuno), target.get(cuno)
                found.append(f"{whlo} {cuno}: copy {held!r} target {wanted!r}")
    return found


def as_record(record: outbox.OutboxRecord) -> list[Any]:
    return [
        record.trnr,
        record.trtp,
        record.acct,
        record.cuno,
        record.data,
        list(record.shops),
    ]


def drain(db: Database, sbs1: str, copies: ShopCopies | None = None) -> list[list[Any]]:
    """List and confirm a subscriber's records until none is left, as a POS does."""
    received: list[list[Any]] = []
    for _ in range(MAX_DRAIN_CALLS):
        listed = outbox.list_records(db, sbs1, maxrecs=500)
        if not listed:
            return received
        for record in listed:
            received.append(as_record(record))
            if copies is not None:
                copies.apply(received[-1])
        outbox.confirm_records(db, sbs1, up_to=listed[-1].trnr)
    raise AssertionError(f"the outbox of {sbs1} did not empty")


def all_records(db: Database, sbs1: str | None = None) -> list[list[Any]]:
    """Return the records of the outbox in TRNR order, in any state."""
    records = schema.records
    members = schema.shop_set_members
    with db.reading() as conn:
        whlo_by_id: dict[int, str] = {
            row.shop_id: row.whlo
            for row in conn.execute(
                sa.select(schema.shops.c.shop_id, schema.shops.c.whlo)
            )
        }
        shops_by_set: dict[int, list[str]] = {}
        for set_id, shop_id in conn.execute(
            sa.select(members.c.set_id, members.c.shop_id)
        ):
            shops_by_set.setdefault(set_id, []).append(whlo_by_id[shop_id])
        query = sa.select(records).order_by(records.c.trnr)
        if sbs1 is not None:
            query = query.where(records.c.sbs1 == sbs1)
        rows = conn.execute(query).all()
    return [
        [
            row.trnr,
            row.trtp,
            row.acct,
            row.cuno,
            row.data,
            sorted(shops_by_set.get(row.set_id, [])),
        ]
        for row in rows
    ]


def held_customers(db: Database) -> dict[str, set[str]]:
    """Return the customers each shop holds according to the holdings table."""
    members = schema.shop_set_members
    with db.reading() as conn:
        whlo_by_id: dict[int, str] = {
            row.shop_id: row.whlo
            for row in conn.execute(
                sa.select(schema.shops.c.shop_id, schema.shops.c.whlo)
            )
        }
        rows = conn.execute(
            sa.select(schema.holdings.c.cuno, members.c.shop_id).join(
                members, members.c.set_id == schema.holdings.c.set_id
            )
        ).all()
    held: dict[str, set[str]] = {whlo: set() for whlo in SHOPS}
    for cuno, shop_id in rows:
        held[whlo_by_id[shop_id]].add(cuno)
    return held


def versions_writer_main(
    url: str, result_path: str, cuno: str, operations: int, hold: float
) -> None:
    """Set a customer's name to v1, v2, ... in order, holding each transaction."""
    rng = random.Random(operations)
    with _worker(url, result_path) as (db, result):
        for version in range(1, operations + 1):
            change_customer_slowly(
                db, cuno, {"CUNM": f"v{version}"}, rng.uniform(0, hold)
            )
        result["last_version"] = operations


# PostgreSQL sessions


def with_session_settings(url: str, application_name: str, *settings: str) -> str:
    """Return a PostgreSQL ``url`` whose sessions carry an application name, by
    which pg_stat_activity finds them, and the given ``name=value`` settings."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    options = [query.get("options", ""), *(f"-c{setting}" for setting in settings)]
    query["options"] = " ".join(option for option in options if option)
    query["application_name"] = application_name
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


def wait_for_lock_wait(db: Database, application_name: str) -> None:
    """Poll pg_stat_activity until a session of that name waits for a lock."""
    query = sa.text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE application_name = :name AND wait_event_type = 'Lock'"
    )
    deadline = time.monotonic() + LOCK_WAIT_TIMEOUT
    while time.monotonic() < deadline:
        with db.reading() as conn:
            if conn.execute(query, {"name": application_name}).scalar_one():
                return
        time.sleep(0.02)
    raise AssertionError(f"session {application_name} never waited for a lock")


# Processes


def spawn(target: Callable[..., None], *args: Any) -> SpawnProcess:
    """Start ``target(*args)`` in a new interpreter, as a separate server would be."""
    process = multiprocessing.get_context("spawn").Process(target=target, args=args)
    process.start()
    return process


def new_event() -> Event:
    return multiprocessing.get_context("spawn").Event()


def new_barrier(parties: int) -> Barrier:
    return multiprocessing.get_context("spawn").Barrier(parties)


def join_all(processes: Sequence[SpawnProcess], timeout: float) -> None:
    """Wait for the processes; kill and fail if one is still running at the end."""
    deadline = time.monotonic() + timeout
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
    hanging = [process for process in processes if process.is_alive()]
    for process in hanging:
        process.kill()
        process.join()
    assert not hanging, f"{len(hanging)} worker processes did not end in {timeout} s"
    failed = [process.exitcode for process in processes if process.exitcode != 0]
    assert not failed, f"worker processes exited with {failed}"


def read_result(path: Path) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(path.read_text())
    assert result["errors"] == [], "\n".join(result["errors"])
    return result


@contextlib.contextmanager
def _worker(url: str, result_path: str) -> Iterator[tuple[Database, dict[str, Any]]]:
    """Open the database and always write the result file, errors included."""
    result: dict[str, Any] = {"errors": []}
    db = open_database(url)
    try:
        yield db, result
    except BaseException:
        result["errors"].append(traceback.format_exc())
    finally:
        db.close()
        Path(result_path).write_text(json.dumps(result))


def writer_main(
    url: str,
    result_path: str,
    cunos: list[str],
    operations: int,
    seed: int,
    hold: float,
) -> None:
    """Change random customers, holding each transaction open up to ``hold`` s.

    Changes commit out of the order they were made in, so change rows with a
    lower id may commit after rows with a higher one.
    """
    rng = random.Random(seed)
    with _worker(url, result_path) as (db, result):
        result["changes"] = 0
        for step in range(operations):
            cuno = rng.choice(cunos)
            choice = rng.random()
            if choice < 0.15:
                index = int(cuno[1:])
                number = CARD_BASE + index
                with contextlib.suppress(NotFound):
                    if rng.random() < 0.5:
                        customers.delete_card(db, cuno, number)
                    else:
                        customers.set_card(db, cuno, number, {"VTYY": 2030 + step % 9})
                result["changes"] += 1
                continue
            values: dict[str, object] = {"CUNM": f"w{seed}-{step}"}
            if choice < 0.3:
                values["STAT"] = rng.choice(["20", "20", "90"])
            elif choice < 0.4:
                values["CUCL"] = rng.choice(["A", "B"])
            change_customer_slowly(db, cuno, values, rng.uniform(0, hold))
            result["changes"] += 1


def change_customer_slowly(
    db: Database, cuno: str, values: Mapping[str, object], hold: float
) -> None:
    """Change a customer as `customers.change_customer` does, then hold the
    transaction open for ``hold`` seconds before committing."""
    validated = customers.validate_values(values, customers.CUSTOMER_INPUT_FIELDS)
    with db.transaction() as conn:
        customer = customers._get_customer(conn, cuno, for_update=True)
        customers._apply_customer_change(db, conn, customer, validated, "", utcnow())
        time.sleep(hold)


def transfer_loop_main(
    url: str, result_path: str, stop: Event, batch_size: int
) -> None:
    """Run net transfers of every subscriber until ``stop`` is set."""
    with _worker(url, result_path) as (db, result):
        result["runs"] = 0
        result["records"] = 0
        while not stop.is_set():
            outcome = transfer.net_transfer(db, batch_size=batch_size)
            result["runs"] += 1
            result["records"] += outcome.records
            time.sleep(0.01)


def export_loop_main(url: str, result_path: str, stop: Event, cunos: list[str]) -> None:
    """Export the given customers one after the other until ``stop`` is set."""
    with _worker(url, result_path) as (db, result):
        result["exports"] = 0
        while not stop.is_set():
            for cuno in cunos:
                transfer.export_customer(db, cuno)
                result["exports"] += 1


def cleanup_loop_main(url: str, result_path: str, stop: Event) -> None:
    """Remove confirmed records over and over until ``stop`` is set."""
    with _worker(url, result_path) as (db, result):
        result["removed"] = 0
        while not stop.is_set():
            result["removed"] += outbox.cleanup(db).total
            time.sleep(0.02)


class ConfirmAudit:
    """Recorder of the records that each confirm_records call of this process
    confirmed.

    A confirmation moves its subscriber's confirmed position, and the records
    it confirmed are those between the position before and after. Both are
    read inside the confirming transaction, which holds the position's lock
    (its row lock on PostgreSQL, the write lock on SQLite), around the UPDATE
    that moves it.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self.sbs1 = ""
        self.before = 0
        self.confirmed: set[int] = set()
        event.listen(db.engine, "before_cursor_execute", self._before)
        event.listen(db.engine, "after_cursor_execute", self._after)

    def confirm(self, sbs1: str, up_to: int) -> set[int]:
        self.sbs1, self.confirmed = sbs1, set()
        count = outbox.confirm_records(self.db, sbs1, up_to=up_to)
        assert count == len(self.confirmed)
        return self.confirmed

    @staticmethod
    def _is_confirm(statement: str) -> bool:
        return statement.startswith("UPDATE outbox_positions SET confirmed_trnr")

    def _position(self, conn: Connection, cursor: Any) -> int:
        marker = "?" if conn.dialect.name == "sqlite" else "%s"
        row = cursor.connection.execute(
            f"SELECT confirmed_trnr FROM outbox_positions WHERE sbs1 = {marker}",
            (self.sbs1,),
        ).fetchone()
        return int(row[0])

    def _before(self, conn: Connection, cursor: Any, statement: str, *_: Any) -> None:
        if self._is_confirm(statement):
            self.before = self._position(conn, cursor)

    def _after(self, conn: Connection, cursor: Any, statement: str, *_: Any) -> None:
        if not self._is_confirm(statement):
            return
        marker = "?" if conn.dialect.name == "sqlite" else "%s"
        rows = cursor.connection.execute(
            f"SELECT trnr FROM records WHERE sbs1 = {marker}"
            f" AND trnr > {marker} AND trnr <= {marker}",
            (self.sbs1, self.before, self._position(conn, cursor)),
        ).fetchall()
        self.confirmed = {row[0] for row in rows}


def poller_main(
    url: str,
    result_path: str,
    sbs1: str,
    stop: Event,
    seed: int,
    start: Barrier | None = None,
) -> None:
    """Poll a subscriber as a POS does, confirming with TRNR, until ``stop`` is set
    and the outbox is empty.

    With ``start``, the first listing waits until every party has reached it,
    so that pollers started one after the other begin together. Records count
    as applied once a listing returned them. A confirmation that covers a
    record this poller has not applied is a violation.
    """
    rng = random.Random(seed)
    with _worker(url, result_path) as (db, result):
        audit = ConfirmAudit(db)
        if start is not None:
            start.wait(LOCK_WAIT_TIMEOUT)
        applied: set[int] = set()
        received: list[list[Any]] = []
        violations: list[str] = []
        confirmed_here: list[int] = []
        result.update(
            received=received, violations=violations, confirmed=confirmed_here
        )
        for _ in range(MAX_DRAIN_CALLS):
            stopping = stop.is_set()
            listed = outbox.list_records(db, sbs1, maxrecs=rng.randint(1, 40))
            if not listed:
                if stopping:
                    return
                time.sleep(0.01)
                continue
            for record in listed:
                received.append(as_record(record))
                applied.add(record.trnr)
            # A POS takes a while to apply what it listed. Meanwhile the other
            # poller lists the same records again, as long as they are not
            # confirmed, and one of the two confirms them.
            time.sleep(rng.uniform(0, 0.02))
            confirmed = audit.confirm(sbs1, listed[-1].trnr)
            confirmed_here.extend(sorted(confirmed))
            for trnr in sorted(confirmed - applied):
                violations.append(
                    f"TRNR {trnr} confirmed up to {listed[-1].trnr}"
                    " but never listed here"
                )
        raise AssertionError(f"the outbox of {sbs1} did not empty")


def held_transfer_main(
    url: str, result_path: str, sbs1: str, started: Event, release: Event
) -> None:
    """Run a net transfer that stops at its start, run lock taken, until released."""

    def hold(done: int, total: int) -> None:
        if done == 0:
            started.set()
            if not release.wait(60):
                raise TimeoutError("the test never released the held net transfer")

    with _worker(url, result_path) as (db, result):
        outcome = transfer.net_transfer(db, sbs1=sbs1, progress=hold)
        result["records"] = outcome.records


def hold_run_lock_main(
    url: str, result_path: str, name: str, held: Event, release: Event
) -> None:
    """Take a run lock, report it held, and keep it until released or killed."""
    with _worker(url, result_path) as (db, result), db.run_lock(name, wait=False):
        held.set()
        result["released"] = release.wait(LOCK_WAIT_TIMEOUT)


def second_transfer_main(url: str, result_path: str, sbs1: str, wait: bool) -> None:
    """Run a net transfer of a subscriber; record Busy instead of failing."""
    with _worker(url, result_path) as (db, result):
        try:
            outcome = transfer.net_transfer(db, sbs1=sbs1, wait=wait)
        except Busy as error:
            result["busy"] = str(error)
        else:
            result["records"] = outcome.records

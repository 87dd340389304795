"""Concurrency rules of the outbox, checked with separate processes and connections.

Each test fails if its rule breaks. No change is missed whatever the commit
order, and the record with the higher TRNR carries the newer state. Two net
transfers of one subscriber never overlap, and a poller confirms only what it
listed. Cleanup breaks no listing, and a killed net transfer loses nothing.
"""

from __future__ import annotations

import itertools
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

import concurrency_helpers as helpers
from outbox_states import unconfirmed_count
from posoutbox import customers, layouts, outbox, transfer
from posoutbox.db import migrate, schema
from posoutbox.db.storage import Database, open_database

pytestmark = pytest.mark.slow


@pytest.fixture
def pg_db(postgresql_url: str) -> Iterator[Database]:
    database = open_database(postgresql_url)
    migrate.upgrade(database)
    try:
        yield database
    finally:
        database.close()


def _statement_count(db: Database, work: Callable[[], object]) -> int:
    counter = itertools.count()

    def count(*_: Any) -> None:
        next(counter)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        work()
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    return next(counter)


def _commit_change_before_statement(
    db: Database, index: int, change: Callable[[], None], work: Callable[[], object]
) -> None:
    """Run ``work`` and commit ``change`` on another connection just before the
    ``index``-th statement that ``work`` sends."""
    counter = itertools.count()

    def inject(*_: Any) -> None:
        if next(counter) == index:
            change()

    event.listen(db.engine, "before_cursor_execute", inject)
    try:
        work()
    finally:
        event.remove(db.engine, "before_cursor_execute", inject)


@pytest.mark.parametrize("operation", ["net transfer", "export"])
def test_change_committed_between_statements_is_kept(
    pg_db: Database, postgresql_url: str, operation: str
) -> None:
    """A change that commits between any two statements of a run is never lost.

    The run reads change rows and master data in separate statements, each
    seeing what committed before it started, so a change committing in between
    must be either both seen and sent or left for the next run.
    """
    cunos = helpers.build_world(pg_db, 4)
    cuno = cunos[1]
    copies = helpers.ShopCopies()
    transfer.net_transfer(pg_db)
    for sbs1 in helpers.SUBSCRIBERS:
        helpers.drain(pg_db, sbs1, copies)

    def work() -> object:
        if operation == "export":
            return transfer.export_customer(pg_db, cuno)
        return transfer.net_transfer(pg_db)

    writer = open_database(postgresql_url)
    versions = itertools.count(1)

    def change() -> None:
        customers.change_customer(writer, cuno, {"CUNM": f"v{next(versions)}"})

    try:
        change()
        statements = _statement_count(pg_db, work)
        assert statements > 10
        for index in range(statements):
            change()
            _commit_change_before_statement(pg_db, index, change, work)
            transfer.net_transfer(pg_db)
            for sbs1 in helpers.SUBSCRIBERS:
                helpers.drain(pg_db, sbs1, copies)
            targets = helpers.read_targets(pg_db)
            assert helpers.differences(copies.holdings, targets) == [], (
                f"change committed before statement {index} of the {operation}"
            )
    finally:
        writer.close()
    assert copies.violations == []


def test_confirm_beside_listing_cannot_deadlock(
    pg_db: Database, postgresql_url: str
) -> None:
    """A confirmation and a listing of the same records never deadlock.

    The listing takes the subscriber's positions, then waits for a new record
    that a batch holds, and the confirmation waits for the positions. Both end
    once the record is free.
    """
    helpers.build_world(pg_db, 4)
    sbs1 = helpers.SUBSCRIBERS[0]
    transfer.net_transfer(pg_db)
    new = outbox.browse_records(pg_db, sbs1, limit=1000)
    assert len(new) > 2
    first = new[0].trnr
    records = schema.records

    lister_db = open_database(
        helpers.with_session_settings(postgresql_url, "test-lister")
    )
    confirmer_db = open_database(
        helpers.with_session_settings(
            postgresql_url,
            "test-confirmer",
            "enable_indexscan=off",
            "enable_bitmapscan=off",
        )
    )
    errors: list[BaseException] = []

    def run(work: Callable[[], object]) -> threading.Thread:
        def target() -> None:
            try:
                work()
            except BaseException as error:
                errors.append(error)

        thread = threading.Thread(target=target)
        thread.start()
        return thread

    try:
        with pg_db.transaction() as blocker:
            blocker.execute(
                sa.select(records.c.trnr)
                .where(records.c.trnr == first)
                .with_for_update()
            )
            lister = run(lambda: outbox.list_records(lister_db, sbs1, maxrecs=0))
            helpers.wait_for_lock_wait(pg_db, "test-lister")
            confirmer = run(
                lambda: outbox.confirm_records(confirmer_db, sbs1, up_to=new[-1].trnr)
            )
            helpers.wait_for_lock_wait(pg_db, "test-confirmer")
        lister.join(60)
        confirmer.join(60)
        assert not lister.is_alive()
        assert not confirmer.is_alive()
    finally:
        lister_db.close()
        confirmer_db.close()
    assert errors == []
    assert outbox.list_records(pg_db, sbs1) == []


# Processes beside each other, on both backends

#: Upper bound for a group of worker processes to end, in seconds.
JOIN_TIMEOUT = 240.0


def _result_path(tmp_path: Path, name: str) -> str:
    return str(tmp_path / f"{name}.json")


def _assert_increasing(received: list[list[Any]]) -> None:
    trnrs = [record[0] for record in received]
    for before, after in itertools.pairwise(trnrs):
        assert after > before, f"TRNR {after} listed after {before}"


def _copies_from(*streams: list[list[Any]]) -> helpers.ShopCopies:
    copies = helpers.ShopCopies()
    for stream in streams:
        for record in stream:
            copies.apply(record)
    return copies


def _remaining_changes(db: Database) -> int:
    with db.reading() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).select_from(schema.changes)
            ).scalar_one()
        )


def _hold_seconds(db: Database) -> float:
    # SQLite writes one transaction at a time, so an open write transaction
    # stops every other writer. The transactions stay open shorter there.
    return 0.15 if db.dialect == "postgresql" else 0.04


def test_out_of_order_commits_miss_no_change(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    """Writers keep their transactions open for random times beside two net
    transfer loops and one poller per subscriber. Every shop ends at its target,
    and every poller receives TRNRs in increasing order."""
    cunos = helpers.build_world(db, 40)
    transfer.net_transfer(db)
    stop_transfers = helpers.new_event()
    stop_pollers = helpers.new_event()
    hold = _hold_seconds(db)

    writers = [
        helpers.spawn(
            helpers.writer_main,
            database_url,
            _result_path(tmp_path, f"writer{seed}"),
            cunos,
            40,
            seed,
            hold,
        )
        for seed in range(3)
    ]
    transfers = [
        helpers.spawn(
            helpers.transfer_loop_main,
            database_url,
            _result_path(tmp_path, f"transfer{number}"),
            stop_transfers,
            7,
        )
        for number in range(2)
    ]
    pollers = [
        helpers.spawn(
            helpers.poller_main,
            database_url,
            _result_path(tmp_path, f"poller-{sbs1}"),
            sbs1,
            stop_pollers,
            number,
        )
        for number, sbs1 in enumerate(helpers.SUBSCRIBERS)
    ]

    helpers.join_all(writers, JOIN_TIMEOUT)
    stop_transfers.set()
    helpers.join_all(transfers, JOIN_TIMEOUT)
    transfer.net_transfer(db)
    stop_pollers.set()
    helpers.join_all(pollers, JOIN_TIMEOUT)

    changes = sum(
        helpers.read_result(tmp_path / f"writer{seed}.json")["changes"]
        for seed in range(3)
    )
    assert changes == 120
    runs = [helpers.read_result(tmp_path / f"transfer{n}.json") for n in range(2)]
    assert all(run["runs"] > 0 for run in runs)
    streams = []
    for sbs1 in helpers.SUBSCRIBERS:
        result = helpers.read_result(tmp_path / f"poller-{sbs1}.json")
        assert result["violations"] == []
        _assert_increasing(result["received"])
        streams.append(result["received"])
    copies = _copies_from(*streams)
    assert copies.violations == []
    assert helpers.differences(copies.holdings, helpers.read_targets(db)) == []
    assert _remaining_changes(db) == 0


def _names_by_shop(records: list[list[Any]], cuno: str) -> dict[str, list[str]]:
    names: dict[str, list[str]] = {}
    for _, trtp, acct, record_cuno, data, whlos in records:
        if record_cuno != cuno or trtp != "OCUSMA" or acct != "*UPD":
            continue
        name = str(layouts.decode(trtp, data)["CUNM"])
        for whlo in whlos:
            names.setdefault(whlo, []).append(name)
    return names


def test_export_beside_net_transfer_keeps_order(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    """Exports and net transfers of one customer while it changes: in every shop
    the OCUSMA record with the higher TRNR carries the newer name."""
    cunos = helpers.build_world(db, 6)
    cuno = cunos[1]
    transfer.net_transfer(db)
    stop = helpers.new_event()
    versions = 40

    writer = helpers.spawn(
        helpers.versions_writer_main,
        database_url,
        _result_path(tmp_path, "writer"),
        cuno,
        versions,
        _hold_seconds(db) / 3,
    )
    workers = [
        helpers.spawn(
            helpers.export_loop_main,
            database_url,
            _result_path(tmp_path, "export"),
            stop,
            [cuno],
        ),
        helpers.spawn(
            helpers.transfer_loop_main,
            database_url,
            _result_path(tmp_path, "transfer"),
            stop,
            2,
        ),
    ]
    # The poller lists as the records come, so later records cannot coalesce
    # into earlier ones and every state sent stays visible in the outbox.
    poller = helpers.spawn(
        helpers.poller_main,
        database_url,
        _result_path(tmp_path, "poller"),
        helpers.SUBSCRIBERS[0],
        stop,
        7,
    )
    helpers.join_all([writer], JOIN_TIMEOUT)
    stop.set()
    helpers.join_all([*workers, poller], JOIN_TIMEOUT)
    transfer.net_transfer(db)

    assert helpers.read_result(tmp_path / "export.json")["exports"] > 0
    assert helpers.read_result(tmp_path / "writer.json")["last_version"] == versions
    names = _names_by_shop(helpers.all_records(db), cuno)
    assert names, "no OCUSMA record of the customer"
    for whlo, sequence in names.items():
        numbers = [int(name[1:]) for name in sequence]
        assert numbers == sorted(numbers), f"{whlo} got names in order {sequence}"
        assert numbers[-1] == versions, f"{whlo} ends at {sequence[-1]}"


def test_two_net_transfers_never_overlap(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    """While one net transfer of a subscriber runs, a second one with wait=False
    stops with Busy, and one with wait=True waits and then finds nothing to do."""
    helpers.build_world(db, 30)
    sbs1 = helpers.SUBSCRIBERS[0]
    started = helpers.new_event()
    release = helpers.new_event()

    held = helpers.spawn(
        helpers.held_transfer_main,
        database_url,
        _result_path(tmp_path, "held"),
        sbs1,
        started,
        release,
    )
    try:
        assert started.wait(JOIN_TIMEOUT), "the held net transfer never started"
        refused = helpers.spawn(
            helpers.second_transfer_main,
            database_url,
            _result_path(tmp_path, "refused"),
            sbs1,
            False,
        )
        helpers.join_all([refused], JOIN_TIMEOUT)
        if db.dialect == "postgresql":
            waiting_url = helpers.with_session_settings(
                database_url, "test-waiting-transfer"
            )
        else:
            waiting_url = database_url
        waiting = helpers.spawn(
            helpers.second_transfer_main,
            waiting_url,
            _result_path(tmp_path, "waiting"),
            sbs1,
            True,
        )
        if db.dialect == "postgresql":
            helpers.wait_for_lock_wait(db, "test-waiting-transfer")
    finally:
        release.set()
    helpers.join_all([held, waiting], JOIN_TIMEOUT)

    assert "already running" in helpers.read_result(tmp_path / "refused.json")["busy"]
    assert helpers.read_result(tmp_path / "held.json")["records"] > 0
    assert helpers.read_result(tmp_path / "waiting.json")["records"] == 0

    copies = helpers.ShopCopies()
    helpers.drain(db, sbs1, copies)
    assert copies.repeats == []
    targets = helpers.read_targets(db)
    for whlo, (shop_sbs1, _) in helpers.SHOPS.items():
        if shop_sbs1 == sbs1:
            assert copies.holdings[whlo] == targets[whlo], whlo


def test_two_pollers_confirm_only_what_they_listed(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    """Two pollers list and confirm one subscriber with TRNR while records are
    created: each confirmation covers only records its poller listed, and every
    record is listed by one of them and confirmed exactly once."""
    cunos = helpers.build_world(db, 30)
    transfer.net_transfer(db)
    sbs1 = helpers.SUBSCRIBERS[0]
    stop_transfers = helpers.new_event()
    stop_pollers = helpers.new_event()
    start = helpers.new_barrier(3)

    pollers = [
        helpers.spawn(
            helpers.poller_main,
            database_url,
            _result_path(tmp_path, f"poller{number}"),
            sbs1,
            stop_pollers,
            number,
            start,
        )
        for number in range(2)
    ]
    start.wait(JOIN_TIMEOUT)
    writers = [
        helpers.spawn(
            helpers.writer_main,
            database_url,
            _result_path(tmp_path, f"writer{seed}"),
            cunos,
            40,
            seed,
            _hold_seconds(db),
        )
        for seed in range(2)
    ]
    transfers = [
        helpers.spawn(
            helpers.transfer_loop_main,
            database_url,
            _result_path(tmp_path, "transfer"),
            stop_transfers,
            5,
        )
    ]
    helpers.join_all(writers, JOIN_TIMEOUT)
    stop_transfers.set()
    helpers.join_all(transfers, JOIN_TIMEOUT)
    transfer.net_transfer(db)
    stop_pollers.set()
    helpers.join_all(pollers, JOIN_TIMEOUT)

    results = [helpers.read_result(tmp_path / f"poller{n}.json") for n in range(2)]
    for result in results:
        assert result["violations"] == []
    listed = [{record[0] for record in result["received"]} for result in results]
    confirmed = [set(result["confirmed"]) for result in results]
    assert listed[0] & listed[1], "no record was listed by both pollers"
    assert confirmed[0].isdisjoint(confirmed[1])

    created = {record[0] for record in helpers.all_records(db, sbs1)}
    assert listed[0] | listed[1] == created
    assert confirmed[0] | confirmed[1] == created
    assert unconfirmed_count(db, sbs1) == 0


def test_cleanup_beside_listing_breaks_nothing(
    db: Database, database_url: str, tmp_path: Path
) -> None:
    """Cleanup runs over and over while records are created, listed and
    confirmed: every shop still ends at its target."""
    cunos = helpers.build_world(db, 30)
    transfer.net_transfer(db)
    stop_producers = helpers.new_event()
    stop_pollers = helpers.new_event()

    writers = [
        helpers.spawn(
            helpers.writer_main,
            database_url,
            _result_path(tmp_path, f"writer{seed}"),
            cunos,
            40,
            seed,
            _hold_seconds(db),
        )
        for seed in range(2)
    ]
    producers = [
        helpers.spawn(
            helpers.transfer_loop_main,
            database_url,
            _result_path(tmp_path, "transfer"),
            stop_producers,
            5,
        ),
        helpers.spawn(
            helpers.cleanup_loop_main,
            database_url,
            _result_path(tmp_path, "cleanup"),
            stop_pollers,
        ),
    ]
    pollers = [
        helpers.spawn(
            helpers.poller_main,
            database_url,
            _result_path(tmp_path, f"poller-{sbs1}"),
            sbs1,
            stop_pollers,
            number,
        )
        for number, sbs1 in enumerate(helpers.SUBSCRIBERS)
    ]
    helpers.join_all(writers, JOIN_TIMEOUT)
    stop_producers.set()
    helpers.join_all(producers[:1], JOIN_TIMEOUT)
    transfer.net_transfer(db)
    stop_pollers.set()
    helpers.join_all([producers[1], *pollers], JOIN_TIMEOUT)

    assert helpers.read_result(tmp_path / "cleanup.json")["removed"] > 0
    streams = []
    for sbs1 in helpers.SUBSCRIBERS:
        result = helpers.read_result(tmp_path / f"poller-{sbs1}.json")
        _assert_increasing(result["received"])
        streams.append(result["received"])
    copies = _copies_from(*streams)
    assert copies.violations == []
    assert helpers.differences(copies.holdings, helpers.read_targets(db)) == []


KILLED_TRANSFER = """
import sys
from posoutbox.db.storage import open_database
from posoutbox.transfer import net_transfer
net_transfer(open_database(sys.argv[1]), batch_size=int(sys.argv[2]))
"""


def _run_of(db: Database, pid: int) -> tuple[str, int] | None:
    """Return the state and progress of the last run started by process ``pid``."""
    runs = schema.runs
    with db.reading() as conn:
        row = conn.execute(
            sa.select(runs.c.state, runs.c.customers_done)
            .where(runs.c.pid == pid)
            .order_by(runs.c.run_id.desc())
            .limit(1)
        ).first()
    return None if row is None else (row.state, row.customers_done)


def _kill_net_transfer_midway(
    db: Database, database_url: str, rng: random.Random
) -> bool:
    """Start a net transfer in a new process and kill it with SIGKILL a random
    delay after it committed its first batch.

    Returns whether the run was still going when it was killed.
    """
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_TRANSFER, database_url, "50"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + JOIN_TIMEOUT
        while process.poll() is None and time.monotonic() < deadline:
            run = _run_of(db, process.pid)
            if run is not None and run[1] > 0:
                break
            time.sleep(0.02)
        time.sleep(rng.uniform(0, 0.5))
    finally:
        process.kill()
        _, stderr = process.communicate(timeout=JOIN_TIMEOUT)
    assert process.returncode in (0, -9), stderr.decode()
    run = _run_of(db, process.pid)
    return run is not None and run[0] == "running"


def test_killed_net_transfer_loses_nothing(db: Database, database_url: str) -> None:
    """A net transfer killed with SIGKILL at random points leaves the outbox and
    the holdings consistent, and the next run finishes the work with no record
    lost or sent twice."""
    rng = random.Random(5)
    cunos = helpers.build_world(db, 3000, card_every=10)
    copies = helpers.ShopCopies()
    killed_midway = 0

    for round_number in range(4):
        if round_number:
            rows = [
                (line, {"CUNO": cuno, "CUNM": f"r{round_number}-{line}"})
                for line, cuno in enumerate(cunos, start=2)
                if rng.random() < 0.5
            ]
            customers.import_customers(db, rows)
        killed_midway += _kill_net_transfer_midway(db, database_url, rng)

        for sbs1 in helpers.SUBSCRIBERS:
            helpers.drain(db, sbs1, copies)
        held = helpers.held_customers(db)
        for whlo in helpers.SHOPS:
            assert set(copies.holdings[whlo]) == held[whlo], (
                f"{whlo}: records and holdings disagree after kill {round_number}"
            )

    assert killed_midway > 0, "every net transfer ended before it was killed"
    result = transfer.net_transfer(db)
    assert result.customers > 0
    for sbs1 in helpers.SUBSCRIBERS:
        helpers.drain(db, sbs1, copies)
    assert copies.violations == []
    assert copies.repeats == []
    assert helpers.differences(copies.holdings, helpers.read_targets(db)) == []
    assert _remaining_changes(db) == 0
    runs = schema.runs
    with db.reading() as conn:
        states = conn.execute(sa.select(runs.c.state)).scalars().all()
    assert "running" not in states
    assert states.count("interrupted") == killed_midway

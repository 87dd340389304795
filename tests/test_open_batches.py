"""Listings and the net transfer batches that PostgreSQL writes two at once.

Batches of one run commit in any order, while their TRNRs come from one
sequence. A listing must therefore stop below the TRNRs of a batch still in
progress: a POS that applies records in TRNR order, and remembers the last one,
would otherwise skip the lower TRNRs committed later.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

from concurrency_helpers import one_shop_database
from posoutbox import customers, outbox, shops, transfer
from posoutbox.db import schema
from posoutbox.db.sets import ShopSetCache
from posoutbox.db.storage import (
    Database,
    insert_numbered_records,
    open_database,
    utcnow,
)

SBS1 = "S1"


@pytest.fixture
def pg_db(postgresql_url: str) -> Iterator[Database]:
    database = one_shop_database(postgresql_url, SBS1)
    # Interned once here: two open batches creating the set would wait for
    # each other on its unique key.
    with database.transaction() as conn:
        ShopSetCache(conn, SBS1).intern(frozenset({shop_a01(database)}))
    try:
        yield database
    finally:
        database.close()


def write_record(db: Database, conn: sa.Connection, cuno: str) -> None:
    """Write one OCUSMA record of ``cuno`` for shop A01 as a batch would."""
    set_id = ShopSetCache(conn, SBS1).intern(frozenset({shop_a01(db)}))
    insert_numbered_records(
        conn,
        (
            "sbs1",
            "trtp",
            "acct",
            "cuno",
            "data",
            "set_id",
            "origin",
            "created_at",
        ),
        [(SBS1, "OCUSMA", "*UPD", cuno, cuno, set_id, "net", utcnow())],
    )


def shop_a01(db: Database) -> int:
    with db.reading() as conn:
        shop_id = conn.execute(
            sa.select(schema.shops.c.shop_id).where(schema.shops.c.whlo == "A01")
        ).scalar_one()
    return int(shop_id)


def listed_customers(db: Database) -> list[str]:
    return [record.cuno for record in outbox.list_records(db, SBS1, 0)]


def open_batch_rows(db: Database) -> int:
    with db.reading() as conn:
        count = conn.execute(
            sa.select(sa.func.count()).select_from(schema.open_batches)
        ).scalar_one()
    return int(count)


def open_batch(db: Database, conn: sa.Connection) -> None:
    db.lock_subscribers(conn, [SBS1], shared=True)
    db.open_batch(conn, SBS1)


def test_listing_waits_for_lower_batch(pg_db: Database) -> None:
    with pg_db.transaction() as conn:
        write_record(pg_db, conn, "C0")
    with pg_db.transaction() as first:
        open_batch(pg_db, first)
        write_record(pg_db, first, "C1")
        with pg_db.transaction() as second:
            open_batch(pg_db, second)
            write_record(pg_db, second, "C2")
        # The second batch committed C2 above C1, which is not visible yet.
        assert listed_customers(pg_db) == ["C0"]
    assert listed_customers(pg_db) == ["C0", "C1", "C2"]


def test_empty_open_batch_holds_back(pg_db: Database) -> None:
    with pg_db.transaction() as first:
        open_batch(pg_db, first)
        with pg_db.transaction() as second:
            open_batch(pg_db, second)
            write_record(pg_db, second, "C2")
        assert listed_customers(pg_db) == []
    assert listed_customers(pg_db) == ["C2"]


def test_batch_committed_after_snapshot_holds_back(pg_db: Database) -> None:
    """A listing whose snapshot predates a batch's commit still stops below that
    batch, although PostgreSQL already reports the batch committed."""
    records = schema.records
    query = sa.select(records.c.cuno).where(pg_db.listable(records.c.trnr, SBS1))
    with pg_db.engine.connect().execution_options(
        isolation_level="REPEATABLE READ"
    ) as listing:
        with pg_db.transaction() as first:
            open_batch(pg_db, first)
            write_record(pg_db, first, "C1")
            with pg_db.transaction() as second:
                open_batch(pg_db, second)
                write_record(pg_db, second, "C2")
            listing.begin()
            assert list(listing.execute(query).scalars()) == []
        # The first batch has committed, but not in the listing's snapshot.
        assert list(listing.execute(query).scalars()) == []
        listing.rollback()
    assert listed_customers(pg_db) == ["C1", "C2"]


def test_rolled_back_batch_holds_nothing_back(pg_db: Database) -> None:
    with pytest.raises(RuntimeError), pg_db.transaction() as first:
        open_batch(pg_db, first)
        write_record(pg_db, first, "C1")
        raise RuntimeError("batch failed")
    with pg_db.transaction() as conn:
        write_record(pg_db, conn, "C2")
    assert listed_customers(pg_db) == ["C2"]

    # Deleting the subscriber removes the row left behind.
    outbox.confirm_records(pg_db, SBS1)
    shops.delete_shop(pg_db, "A01")
    shops.delete_subscriber(pg_db, SBS1)
    assert open_batch_rows(pg_db) == 0


def test_killed_batch_holds_nothing_back(pg_db: Database, postgresql_url: str) -> None:
    """A batch whose connection ended without a commit, as when its process was
    killed, stops holding back listings; the next batch removes its row."""
    killed = open_database(postgresql_url)
    try:
        conn = killed.engine.connect()
        conn.begin()
        open_batch(killed, conn)
        write_record(killed, conn, "C1")
        pid = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
        with pg_db.transaction() as other:
            write_record(pg_db, other, "C2")
        assert listed_customers(pg_db) == []

        with pg_db.transaction() as admin:
            admin.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        assert listed_customers(pg_db) == ["C2"]
        conn.invalidate()

        with pg_db.transaction() as batch:
            open_batch(pg_db, batch)
        assert open_batch_rows(pg_db) == 0
    finally:
        killed.engine.dispose()


def poll_during(db: Database, run: Callable[[], object]) -> list[int]:
    """Poll like a POS while ``run`` goes on: list 25, confirm up to the last
    TRNR, and return every TRNR met, in the order met."""
    seen: list[int] = []
    finished = threading.Event()
    errors: list[BaseException] = []

    def poll() -> None:
        try:
            while True:
                done = finished.is_set()
                page = outbox.list_records(db, SBS1, 25)
                if page:
                    seen.extend(record.trnr for record in page)
                    outbox.confirm_records(db, SBS1, up_to=page[-1].trnr)
                elif done:
                    return
        except BaseException as error:
            errors.append(error)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        run()
    finally:
        finished.set()
        poller.join(120)
    assert not poller.is_alive(), "the poller did not end"
    assert not errors
    return seen


def test_poller_meets_trnrs_in_order(
    pg_db: Database,
) -> None:
    """Net transfers written in small batches, two at a time, for changed
    customers and for the initial load of a new shop: a poller that lists,
    confirms and goes on meets every record once, in increasing TRNR order."""
    count = 600
    for number in range(count):
        customers.add_customer(pg_db, f"C{number:05d}", {"CUNM": f"Name {number}"})

    changed = poll_during(
        pg_db, lambda: transfer.net_transfer(pg_db, sbs1=SBS1, batch_size=20)
    )
    assert len(changed) == count
    assert changed == sorted(changed)

    shops.add_shop(pg_db, "A02", SBS1, segments=["ALL"])
    loaded = poll_during(
        pg_db, lambda: transfer.net_transfer(pg_db, sbs1=SBS1, batch_size=20)
    )
    assert len(loaded) == count
    assert loaded == sorted(loaded)
    assert loaded[0] > changed[-1]

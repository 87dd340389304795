"""Listing and coalescing on PostgreSQL, where they meet on the same records.

A batch coalesces a newer *UPD into a new record in place, and a listing moves
the subscriber's listed position over the records it returns. Whichever of the
two takes a record's lock first, the POS must end up with the newer data. A
listing waits for the batch and returns the record as coalesced. A batch that
waited for a listing finds the record listed and appends a new one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa

from concurrency_helpers import one_shop_database
from outbox_states import record_states
from posoutbox import customers, outbox, transfer
from posoutbox.db import schema
from posoutbox.db.storage import Database

SBS1 = "S1"


@pytest.fixture
def pg_db(postgresql_url: str) -> Iterator[Database]:
    database = one_shop_database(postgresql_url, SBS1)
    customers.add_customer(database, "C1", {"CUNM": "First name"})
    transfer.net_transfer(database, sbs1=SBS1)
    try:
        yield database
    finally:
        database.close()


def in_thread(work: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(work())
        except Exception as error:  # reported by the test through outcome
            outcome.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def waits_for_lock(thread: threading.Thread) -> None:
    """Fail unless ``thread`` is still running after its statement has had time
    to reach the lock, which is how a blocked statement looks from outside."""
    thread.join(timeout=1.0)
    assert thread.is_alive(), "the statement did not wait for the lock"


def ocusma_names(db: Database) -> list[tuple[int, str]]:
    records = schema.records
    with db.reading() as conn:
        rows = conn.execute(
            sa.select(records.c.trnr, records.c.data)
            .where(records.c.trtp == "OCUSMA")
            .order_by(records.c.trnr)
        ).all()
    return [(row.trnr, row.data[10:46].rstrip()) for row in rows]


def test_listing_waits_for_a_record_being_coalesced(pg_db: Database) -> None:
    [(trnr, name)] = ocusma_names(pg_db)
    assert name == "First name"
    records = schema.records
    # A batch in the middle of coalescing: the record is locked and rewritten,
    # not yet committed.
    with pg_db.engine.connect() as writer:
        writer.execute(
            sa.select(records.c.trnr).where(records.c.trnr == trnr).with_for_update()
        )
        data = writer.execute(
            sa.select(records.c.data).where(records.c.trnr == trnr)
        ).scalar_one()
        writer.execute(
            sa.update(records)
            .where(records.c.trnr == trnr)
            .values(data=data.replace("First name", "Newer name"))
        )
        thread, outcome = in_thread(lambda: outbox.list_records(pg_db, SBS1, 0))
        waits_for_lock(thread)
        writer.commit()
    thread.join()
    [listing] = outcome
    assert isinstance(listing, list), listing
    [listed] = [record for record in listing if record.trtp == "OCUSMA"]
    assert "Newer name" in listed.data


def test_batch_that_waited_for_a_listing_appends(pg_db: Database) -> None:
    [(trnr, _)] = ocusma_names(pg_db)
    customers.change_customer(pg_db, "C1", {"CUNM": "Newer name"})
    records = schema.records
    positions = schema.outbox_positions
    # A listing in the middle of its transaction: it holds the locks of the
    # records it returns and has moved the listed position over them.
    with pg_db.engine.connect() as lister:
        locked = lister.execute(
            sa.select(records.c.trnr)
            .where(records.c.sbs1 == SBS1)
            .order_by(records.c.trnr)
            .with_for_update()
        ).scalars()
        last = max(locked)
        lister.execute(
            sa.update(positions)
            .where(positions.c.sbs1 == SBS1)
            .values(listed_trnr=last)
        )
        thread, outcome = in_thread(lambda: transfer.net_transfer(pg_db, sbs1=SBS1))
        waits_for_lock(thread)
        lister.commit()
    thread.join()
    assert not isinstance(outcome[0], Exception), outcome[0]

    # The listed record keeps the data the POS received; the newer name
    # comes as a record of its own after it.
    [first, second] = ocusma_names(pg_db)
    assert first == (trnr, "First name")
    assert second[1] == "Newer name"
    assert second[0] > last
    states = record_states(pg_db, SBS1)
    assert states[trnr] == outbox.LISTED
    assert states[second[0]] == outbox.NEW

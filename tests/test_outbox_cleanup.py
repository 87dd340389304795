"""Backlog counts and cleanup in chunks, checked against a count of every record.

The backlog counts confirmed records as the difference between all records of
a shop set and its unconfirmed ones, and cleanup counts what each chunk
removes in the database. These tests compare both with a count made record by
record in Python.
"""

from __future__ import annotations

import datetime
from collections import defaultdict

import pytest
import sqlalchemy as sa

from outbox_states import record_states
from posoutbox import customers, outbox, shops, transfer
from posoutbox.db import schema
from posoutbox.db.sets import load_members
from posoutbox.db.storage import Database

#: Backlog of one shop: (new, listed, confirmed, oldest unconfirmed).
ShopCounts = tuple[int, int, int, datetime.datetime | None]


def build_outbox(db: Database) -> None:
    """Fill the outbox of S1 (shops A01, A02 for all, B01 for Sweden) and S2
    (shop Z01) with records in every state. S3 has a shop for Norway, where
    no customer lives, and so no records."""
    for sbs1 in ("S1", "S2", "S3"):
        shops.add_subscriber(db, sbs1)
    shops.add_segment(db, "ALL")
    shops.add_segment(db, "SE", conditions=["CSCD=SE"])
    shops.add_segment(db, "NO", conditions=["CSCD=NO"])
    shops.add_shop(db, "A01", "S1", segments=["ALL"])
    shops.add_shop(db, "A02", "S1", segments=["ALL"])
    shops.add_shop(db, "B01", "S1", segments=["SE"])
    shops.add_shop(db, "Z01", "S2", segments=["ALL"])
    shops.add_shop(db, "Y01", "S3", segments=["NO"])
    for number in range(1, 9):
        country = "SE" if number % 3 == 0 else "DK"
        customers.add_customer(
            db, f"C{number}", {"CUNM": f"Customer {number}", "CSCD": country}
        )
    transfer.net_transfer(db)

    listed = outbox.list_records(db, "S1", 5)
    outbox.confirm_records(db, "S1", up_to=listed[2].trnr)
    outbox.list_records(db, "S1", 2)
    outbox.list_records(db, "S2", 0)
    outbox.confirm_records(db, "S2")


def counted_record_by_record(
    db: Database, sbs1: str | None = None
) -> dict[tuple[str, str], ShopCounts]:
    """Count every record once per shop of its mailing list."""
    counts: dict[tuple[str, str], dict[str, int]] = defaultdict(
        lambda: {state: 0 for state in outbox.STATES}
    )
    oldest: dict[tuple[str, str], datetime.datetime] = {}
    with db.reading() as conn:
        shop_rows = conn.execute(sa.select(schema.shops)).all()
        rows = conn.execute(sa.select(schema.records)).all()
        members = load_members(conn, {row.set_id for row in rows})
    state_of = record_states(db)
    whlo_by_id = {row.shop_id: row.whlo for row in shop_rows}
    for shop in shop_rows:
        if shop.deleted_at is None and sbs1 in (None, shop.sbs1):
            counts[(shop.sbs1, shop.whlo)]
    for row in rows:
        if sbs1 not in (None, row.sbs1):
            continue
        for shop_id in members[row.set_id]:
            key = (row.sbs1, whlo_by_id[shop_id])
            state = state_of[row.trnr]
            counts[key][state] += 1
            if state != outbox.CONFIRMED and (
                key not in oldest or row.created_at < oldest[key]
            ):
                oldest[key] = row.created_at
    return {
        key: (
            states[outbox.NEW],
            states[outbox.LISTED],
            states[outbox.CONFIRMED],
            oldest.get(key),
        )
        for key, states in counts.items()
    }


def backlog_counts(
    db: Database, sbs1: str | None = None, *, confirmed: bool = True
) -> dict[tuple[str, str], ShopCounts]:
    return {
        (entry.sbs1, entry.whlo): (
            entry.new,
            entry.listed,
            entry.confirmed,
            entry.oldest_unconfirmed,
        )
        for entry in outbox.backlog(db, sbs1, confirmed=confirmed)
    }


def confirmed_count(db: Database, sbs1: str) -> int:
    states = record_states(db, sbs1).values()
    return sum(1 for state in states if state == outbox.CONFIRMED)


def unconfirmed_trnrs(db: Database) -> list[int]:
    states = record_states(db)
    return sorted(trnr for trnr, state in states.items() if state != outbox.CONFIRMED)


def test_backlog_matches_record_count(db: Database) -> None:
    build_outbox(db)
    expected = counted_record_by_record(db)

    assert backlog_counts(db) == expected
    states = list(zip(*expected.values(), strict=True))
    assert sum(states[0]) > 0, "no new records to count"
    assert sum(states[1]) > 0, "no listed records to count"
    assert sum(states[2]) > 0, "no confirmed records to count"
    assert expected[("S3", "Y01")] == (0, 0, 0, None)


@pytest.mark.parametrize("sbs1", ["S1", "S2", "S3"])
def test_backlog_of_subscriber_matches(db: Database, sbs1: str) -> None:
    build_outbox(db)

    assert backlog_counts(db, sbs1) == counted_record_by_record(db, sbs1)


def test_backlog_without_confirmed_counts_unconfirmed(db: Database) -> None:
    build_outbox(db)
    expected = {
        key: (new, listed, 0, oldest)
        for key, (new, listed, _, oldest) in counted_record_by_record(db).items()
    }

    assert backlog_counts(db, confirmed=False) == expected


def test_backlog_matches_after_cleanup(db: Database) -> None:
    build_outbox(db)
    outbox.cleanup(db, sbs1="S2")

    assert backlog_counts(db) == counted_record_by_record(db)
    assert backlog_counts(db, "S2")[("S2", "Z01")] == (0, 0, 0, None)


def test_cleanup_in_chunks_counts_each(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_outbox(db)
    monkeypatch.setattr(outbox, "CLEANUP_CHUNK", 2)
    expected = {"S1": confirmed_count(db, "S1"), "S2": confirmed_count(db, "S2")}
    unconfirmed = unconfirmed_trnrs(db)

    result = outbox.cleanup(db)

    assert expected["S1"] == 3
    assert expected["S2"] > outbox.CLEANUP_CHUNK
    assert dict(result.removed) == expected
    assert confirmed_count(db, "S1") == 0
    assert confirmed_count(db, "S2") == 0
    assert unconfirmed_trnrs(db) == unconfirmed


def test_cleanup_in_chunks_keeps_filters(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_outbox(db)
    monkeypatch.setattr(outbox, "CLEANUP_CHUNK", 2)
    s2_confirmed = confirmed_count(db, "S2")
    today = datetime.datetime.now(datetime.UTC).date()

    too_early = outbox.cleanup(db, sbs1="S2", before=today)
    result = outbox.cleanup(db, sbs1="S2", before=today + datetime.timedelta(days=1))

    assert too_early.total == 0
    assert dict(result.removed) == {"S2": s2_confirmed}
    assert confirmed_count(db, "S1") == 3
    assert confirmed_count(db, "S2") == 0


def test_cleanup_preview_counts_without_removing(db: Database) -> None:
    build_outbox(db)

    preview = outbox.cleanup(db, preview=True)

    assert preview.preview
    assert dict(preview.removed) == {
        "S1": confirmed_count(db, "S1"),
        "S2": confirmed_count(db, "S2"),
    }
    assert preview.shop_sets_removed == 0

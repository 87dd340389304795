"""The state of each outbox record, read from its subscriber's positions.

A subscriber's records up to its confirmed position are confirmed, those after
it up to its listed position are listed, the rest are new.
"""

from __future__ import annotations

import sqlalchemy as sa

from posoutbox.db import schema
from posoutbox.db.storage import Database


def record_states(db: Database, sbs1: str | None = None) -> dict[int, str]:
    """Return the state of every record of the outbox, or of one subscriber's,
    by TRNR."""
    records = schema.records
    positions_table = schema.outbox_positions
    state = sa.case(
        (records.c.trnr <= positions_table.c.confirmed_trnr, "confirmed"),
        (records.c.trnr <= positions_table.c.listed_trnr, "listed"),
        else_="new",
    )
    query = sa.select(records.c.trnr, state).join_from(
        records, positions_table, positions_table.c.sbs1 == records.c.sbs1
    )
    if sbs1 is not None:
        query = query.where(records.c.sbs1 == sbs1)
    with db.reading() as conn:
        return {int(trnr): str(value) for trnr, value in conn.execute(query)}


def unconfirmed_count(db: Database, sbs1: str | None = None) -> int:
    """Return how many records of the outbox, or of one subscriber, are not
    confirmed."""
    return sum(1 for state in record_states(db, sbs1).values() if state != "confirmed")

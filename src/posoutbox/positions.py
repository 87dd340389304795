"""How far each subscriber's POS has got through its records.

A POS receives its subscriber's records in TRNR order, the listed ones again
first until it confirms them, so the listed and the confirmed records are
always the first of the subscriber's records. Two positions per subscriber
mark which: records up to the confirmed position are confirmed, those after it up
to the listed position are listed, and the rest are new. A listing moves the
listed position to the last record it returns, and a confirmation moves the
confirmed position up to the listed one.

This is true because a listing never returns a record while a lower TRNR of the
subscriber may still be committed. Exports and net transfers take the
subscriber lock, and a listing stops below the TRNRs of a batch still in
progress (see ``Database.listable``).

Every move is kept in outbox_moves with its time and user, which shows when a
record was listed or confirmed: by the first move of that kind that reached it.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from posoutbox.db import schema
from posoutbox.db.storage import utcnow
from posoutbox.errors import NotFound

NEW = "new"
LISTED = "listed"
CONFIRMED = "confirmed"
STATES = (NEW, LISTED, CONFIRMED)


@dataclass(frozen=True)
class Positions:
    """The last listed and the last confirmed TRNR of a subscriber."""

    listed: int = 0
    confirmed: int = 0

    def state_of(self, trnr: int) -> str:
        if trnr <= self.confirmed:
            return CONFIRMED
        if trnr <= self.listed:
            return LISTED
        return NEW

    def in_states(
        self, trnr: sa.ColumnElement[int], states: Iterable[str]
    ) -> sa.ColumnElement[bool]:
        """Return the condition that a record of the subscriber is in one of
        the states, as a range of TRNRs."""
        chosen = set(states)
        requested = (NEW in chosen, LISTED in chosen, CONFIRMED in chosen)
        # In TRNR order the states are confirmed, listed, new, so adjacent
        # ones make one range, which an index scans in order. Each key flags
        # whether new, listed and confirmed records are requested.
        bounds = {
            (True, True, True): sa.true(),
            (True, True, False): trnr > self.confirmed,
            (False, True, True): trnr <= self.listed,
            (True, False, False): trnr > self.listed,
            (False, True, False): sa.and_(trnr > self.confirmed, trnr <= self.listed),
            (False, False, True): trnr <= self.confirmed,
            (True, False, True): sa.or_(trnr > self.listed, trnr <= self.confirmed),
        }
        return bounds.get(requested, sa.false())


def state_of_record(trnr: sa.ColumnElement[int]) -> sa.ColumnElement[str]:
    """Return a record's state in SQL, for a query that joins outbox_positions
    on the record's subscriber."""
    table = schema.outbox_positions
    return sa.case(
        (trnr <= table.c.confirmed_trnr, sa.literal(CONFIRMED)),
        (trnr <= table.c.listed_trnr, sa.literal(LISTED)),
        else_=sa.literal(NEW),
    )


def start(conn: Connection, sbs1: str) -> None:
    """Give a new subscriber its positions, before any of its records."""
    conn.execute(sa.insert(schema.outbox_positions).values(sbs1=sbs1))


def forget(conn: Connection, sbs1: str) -> None:
    """Remove a deleted subscriber's positions and their history."""
    for table in (schema.outbox_positions, schema.outbox_moves):
        conn.execute(sa.delete(table).where(table.c.sbs1 == sbs1))


def read(conn: Connection, sbs1s: Iterable[str] | None = None) -> dict[str, Positions]:
    """Return the positions of these subscribers, or of all with None."""
    table = schema.outbox_positions
    query = sa.select(table.c.sbs1, table.c.listed_trnr, table.c.confirmed_trnr)
    if sbs1s is not None:
        query = query.where(table.c.sbs1.in_(sorted(set(sbs1s))))
    return {
        sbs1: Positions(int(listed), int(confirmed))
        for sbs1, listed, confirmed in conn.execute(query)
    }


def lock(conn: Connection, sbs1: str) -> Positions:
    """Return a subscriber's positions, locked until the transaction ends.

    Listings and confirmations of one subscriber take this lock first, so they
    move its positions one at a time. Exports and net transfers never take it:
    they lock the new records they coalesce, and a listing waits for those.
    Every subscriber has positions from the moment it is added until it is
    deleted, so an unknown subscriber raises NotFound.
    """
    table = schema.outbox_positions
    row = conn.execute(
        sa.select(table.c.listed_trnr, table.c.confirmed_trnr)
        .where(table.c.sbs1 == sbs1)
        .with_for_update()
    ).one_or_none()
    if row is None:
        raise NotFound("subscriber", "SBS1", sbs1)
    return Positions(int(row.listed_trnr), int(row.confirmed_trnr))


def move(conn: Connection, sbs1: str, kind: str, trnr: int, user: str) -> None:
    """Move a subscriber's listed or confirmed position forward to ``trnr`` and
    record who did it; the caller holds the lock of ``lock``."""
    table = schema.outbox_positions
    conn.execute(
        sa.update(table).where(table.c.sbs1 == sbs1).values({f"{kind}_trnr": trnr})
    )
    conn.execute(
        sa.insert(schema.outbox_moves).values(
            sbs1=sbs1, kind=kind, trnr=trnr, moved_at=utcnow(), moved_by=user
        )
    )


def confirmed_before(conn: Connection, sbs1: str, before: datetime.datetime) -> int:
    """Return the last TRNR of a subscriber confirmed before a time, 0 if none."""
    moves = schema.outbox_moves
    trnr = conn.execute(
        sa.select(sa.func.max(moves.c.trnr)).where(
            moves.c.sbs1 == sbs1,
            moves.c.kind == CONFIRMED,
            moves.c.moved_at < before,
        )
    ).scalar_one()
    return int(trnr or 0)


def forget_moves_up_to(conn: Connection, sbs1: str, trnr: int) -> None:
    """Remove the moves that reach no record after ``trnr``, once cleanup has
    removed the records up to it."""
    moves = schema.outbox_moves
    conn.execute(sa.delete(moves).where(moves.c.sbs1 == sbs1, moves.c.trnr <= trnr))


__all__ = [
    "CONFIRMED",
    "LISTED",
    "NEW",
    "STATES",
    "Positions",
    "confirmed_before",
    "forget",
    "forget_moves_up_to",
    "lock",
    "move",
    "read",
    "start",
    "state_of_record",
]

"""Writing the change log that exports and net transfers consume.

Every change of the master or of the settings calls one of these functions in
its own transaction, so the change and its change rows commit or fail together.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from posoutbox.db import schema
from posoutbox.db.storage import Database

#: Kind of a change row that asks the next full run to bring a shop up to date
#: after its flags, its segments or the conditions of its segments changed.
SHOP_SETTINGS = "SHOP"


def record_master_changes(
    db: Database,
    conn: Connection,
    changes: Iterable[tuple[str, str, str]],
    *,
    user: str,
    now: datetime.datetime,
) -> None:
    """Record changes of customers or their children for every subscriber.

    ``changes`` are (record type, CUNO, record key) triples. The subscriber list
    is locked in shared mode so that a subscriber added meanwhile either sees
    these rows or is added before they are written.
    """
    changes = list(changes)
    if not changes:
        return
    db.lock_subscriber_list(conn, exclusive=False)
    subscribers = conn.execute(sa.select(schema.subscribers.c.sbs1)).scalars().all()
    rows = [
        {
            "sbs1": sbs1,
            "shop_id": None,
            "kind": kind,
            "cuno": cuno,
            "record_key": record_key,
            "changed_at": now,
            "changed_by": user,
        }
        for sbs1 in subscribers
        for kind, cuno, record_key in changes
    ]
    if rows:
        conn.execute(sa.insert(schema.changes), rows)


def record_shop_changes(
    conn: Connection,
    shops: Iterable[tuple[str, int]],
    *,
    user: str,
    now: datetime.datetime,
) -> None:
    """Record that shops, given as (SBS1, shop id), need bringing up to date."""
    rows = [
        {
            "sbs1": sbs1,
            "shop_id": shop_id,
            "kind": SHOP_SETTINGS,
            "cuno": "",
            "record_key": "",
            "changed_at": now,
            "changed_by": user,
        }
        for sbs1, shop_id in shops
    ]
    if rows:
        conn.execute(sa.insert(schema.changes), rows)

"""Interned shop sets: the mailing lists of records and the holdings of customers.

A set is stored once per subscriber and referenced by id, so a million records
going to the same 500 shops cost 500 member rows, not 500 million.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from posoutbox.db import schema
from posoutbox.db.storage import insert_ignoring_conflicts


def members_hash(shops: frozenset[int]) -> str:
    return hashlib.sha256(",".join(map(str, sorted(shops))).encode()).hexdigest()


class ShopSetCache:
    """Shop sets looked up or created within one transaction.

    The cache lives no longer than its transaction, so a set created by a
    transaction that rolls back is never reused.
    """

    def __init__(self, conn: Connection, sbs1: str) -> None:
        self.conn = conn
        self.sbs1 = sbs1
        self._ids: dict[frozenset[int], int] = {}
        self._members: dict[int, frozenset[int]] = {}

    def intern(self, shops: frozenset[int]) -> int:
        """Return the id of the set of these shops, creating it when needed."""
        set_id = self._ids.get(shops)
        if set_id is not None:
            return set_id

        digest = members_hash(shops)
        select = sa.select(schema.shop_sets.c.set_id).where(
            schema.shop_sets.c.sbs1 == self.sbs1,
            schema.shop_sets.c.members_hash == digest,
        )
        set_id = self.conn.execute(select).scalar_one_or_none()
        if set_id is None:
            # Another transaction may create the same set at the same time: the
            # unique constraint lets one insert win and the other reads it.
            insert_ignoring_conflicts(
                self.conn,
                schema.shop_sets,
                [{"sbs1": self.sbs1, "members_hash": digest, "size": len(shops)}],
                ["sbs1", "members_hash"],
            )
            set_id = self.conn.execute(select).scalar_one()
            insert_ignoring_conflicts(
                self.conn,
                schema.shop_set_members,
                [{"set_id": set_id, "shop_id": shop_id} for shop_id in shops],
                ["set_id", "shop_id"],
            )
        self._ids[shops] = set_id
        self._members[set_id] = shops
        return int(set_id)

    def members(self, set_ids: Iterable[int]) -> dict[int, frozenset[int]]:
        """Return the shops of each set."""
        wanted = set(set_ids)
        missing = wanted - self._members.keys()
        if missing:
            self.remember(load_members(self.conn, missing))
        return {set_id: self._members[set_id] for set_id in wanted}

    def remember(self, members: dict[int, frozenset[int]]) -> None:
        """Add sets of this subscriber read within the same transaction."""
        for set_id, shops in members.items():
            self._members[set_id] = shops
            self._ids.setdefault(shops, set_id)


def load_members(conn: Connection, set_ids: Iterable[int]) -> dict[int, frozenset[int]]:
    """Return the shops of each set, whatever its subscriber."""
    found: dict[int, set[int]] = {set_id: set() for set_id in set_ids}
    if not found:
        return {}
    rows = conn.execute(
        sa.select(
            schema.shop_set_members.c.set_id, schema.shop_set_members.c.shop_id
        ).where(schema.shop_set_members.c.set_id.in_(found))
    )
    for set_id, shop_id in rows:
        found[set_id].add(shop_id)
    return {set_id: frozenset(shops) for set_id, shops in found.items()}

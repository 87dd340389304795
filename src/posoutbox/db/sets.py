"""Interned shop sets: the mailing lists of records and the holdings of customers.

A set is stored once per subscriber and referenced by id, so a million records
going to the same 500 shops cost 500 member rows, not 500 million.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

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
        return intern_all([(self, shops)])[0]

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


def intern_all(requested: Sequence[tuple[ShopSetCache, frozenset[int]]]) -> list[int]:
    """Return the id of each set of shops in its cache's subscriber, creating
    the sets that do not exist yet.

    The caches share one connection. Sets missing from the caches are looked up
    with one query and created with one insert per table, whatever the number
    of subscribers: exporting one customer touches a set of every subscriber.
    """
    missing = {
        (cache.sbs1, shops): cache
        for cache, shops in requested
        if shops not in cache._ids
    }
    if missing:
        conn = next(iter(missing.values())).conn
        digests = {key: members_hash(key[1]) for key in missing}
        found = _find_sets(conn, [(key[0], digest) for key, digest in digests.items()])
        # Sorted, so that two calls creating the same sets insert them in the
        # same order: one waits for the other instead of each holding a set the
        # other needs.
        created = sorted(
            (key for key in missing if (key[0], digests[key]) not in found),
            key=lambda key: (key[0], digests[key]),
        )
        if created:
            # Another transaction may create the same set at the same time: the
            # unique constraint lets one insert win and the other reads it.
            insert_ignoring_conflicts(
                conn,
                schema.shop_sets,
                [
                    {
                        "sbs1": sbs1,
                        "members_hash": digests[sbs1, shops],
                        "size": len(shops),
                    }
                    for sbs1, shops in created
                ],
                ["sbs1", "members_hash"],
            )
            found.update(_find_sets(conn, [(key[0], digests[key]) for key in created]))
            insert_ignoring_conflicts(
                conn,
                schema.shop_set_members,
                [
                    {"set_id": found[sbs1, digests[sbs1, shops]], "shop_id": shop_id}
                    for sbs1, shops in created
                    for shop_id in shops
                ],
                ["set_id", "shop_id"],
            )
        for (sbs1, shops), cache in missing.items():
            cache.remember({found[sbs1, digests[sbs1, shops]]: shops})
    return [cache._ids[shops] for cache, shops in requested]


def _find_sets(
    conn: Connection, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    """Return the ids of the sets among ``keys``, pairs of a subscriber and a
    member hash, that exist."""
    requested = set(keys)
    table = schema.shop_sets
    rows = conn.execute(
        sa.select(table.c.sbs1, table.c.members_hash, table.c.set_id).where(
            table.c.sbs1.in_(sorted({sbs1 for sbs1, _ in requested})),
            table.c.members_hash.in_(sorted({digest for _, digest in requested})),
        )
    )
    found = {(sbs1, digest): int(set_id) for sbs1, digest, set_id in rows}
    return {key: set_id for key, set_id in found.items() if key in requested}


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

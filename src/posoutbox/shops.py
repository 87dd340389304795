"""Subscribers, shops and segments: which shops exist and what each may receive.

A change of a shop's flags or segments, or of a segment's conditions, records a
SHOP change row for each shop concerned, in the same transaction, so the next
full net transfer brings those shops from their copy to their target.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from posoutbox import changelog, fields, positions, rules
from posoutbox.db import schema
from posoutbox.db.storage import Database, increment_counter, read_counter, utcnow
from posoutbox.errors import AlreadyExists, InvalidValue, NotFound, RuleViolation

logger = logging.getLogger(__name__)

# Names and descriptions follow the rules of these M3 text fields.
NAME_LENGTH = fields.FIELDS["REFE"].length
DESCRIPTION_LENGTH = fields.FIELDS["MSTX"].length


# Subscribers


@dataclass(frozen=True)
class Subscriber:
    sbs1: str
    name: str
    shops: tuple[str, ...]

    def as_fields(self) -> dict[str, object]:
        return {"SBS1": self.sbs1, "NAME": self.name, "SHOP": list(self.shops)}


def add_subscriber(db: Database, sbs1: str, *, name: str = "", user: str = "") -> None:
    sbs1 = str(fields.validate_key("SBS1", sbs1))
    name = _validate_name(name)
    with db.transaction() as conn:
        _settings_changing(conn)
        db.lock_subscriber_list(conn, exclusive=True)
        if _subscriber_exists(conn, sbs1):
            raise AlreadyExists("subscriber", "SBS1", sbs1)
        conn.execute(
            sa.insert(schema.subscribers).values(
                sbs1=sbs1, name=name, changed_at=utcnow(), changed_by=user
            )
        )
        positions.start(conn, sbs1)
    logger.info("subscriber added", extra={"action": "subscriber_add", "sbs1": sbs1})


#: Counter raised by every transaction that may change subscribers, shops or
#: segments, so that readers can keep the settings between transactions.
SETTINGS_VERSION = "settings"


def _settings_changing(conn: Connection) -> None:
    # First in the transaction: the counter row then serialises settings
    # changes, and no other transaction waits for it while holding a lock.
    increment_counter(conn, SETTINGS_VERSION)


def settings_version(conn: Connection) -> int:
    """Return the counter that every change of the settings raises."""
    return read_counter(conn, SETTINGS_VERSION)


def _validate_name(name: str) -> str:
    return _validate_text("name", "REFE", name)


def _validate_text(field: str, model: str, value: str) -> str:
    """Validate free text by the rules of the M3 field ``model`` (length after
    NFC, no control characters) and name ``field`` in the error."""
    try:
        return str(fields.validate(model, value))
    except InvalidValue as error:
        raise InvalidValue(field, value, error.expected) from None


def _subscriber_exists(conn: Connection, sbs1: str) -> bool:
    table = schema.subscribers
    return (
        conn.execute(sa.select(table.c.sbs1).where(table.c.sbs1 == sbs1)).first()
        is not None
    )


def require_subscriber(conn: Connection, sbs1: str) -> None:
    if not _subscriber_exists(conn, sbs1):
        raise NotFound("subscriber", "SBS1", sbs1)


def subscriber_exists(db: Database, sbs1: str) -> bool:
    with db.reading() as conn:
        return _subscriber_exists(conn, sbs1)


def list_subscribers(db: Database) -> list[Subscriber]:
    with db.reading() as conn:
        shops_by_subscriber: dict[str, list[str]] = {}
        for row in conn.execute(
            sa.select(schema.shops.c.sbs1, schema.shops.c.whlo)
            .where(schema.shops.c.deleted_at.is_(None))
            .order_by(schema.shops.c.whlo)
        ):
            shops_by_subscriber.setdefault(row.sbs1, []).append(row.whlo)
        rows = conn.execute(
            sa.select(schema.subscribers).order_by(schema.subscribers.c.sbs1)
        )
        return [
            Subscriber(row.sbs1, row.name, tuple(shops_by_subscriber.get(row.sbs1, [])))
            for row in rows
        ]


def delete_subscriber(db: Database, sbs1: str, *, user: str = "") -> None:
    """Delete a subscriber that has no shops and no unconfirmed record."""
    sbs1 = str(fields.validate_key("SBS1", sbs1))
    with db.transaction() as conn:
        _settings_changing(conn)
        db.lock_subscriber_list(conn, exclusive=True)
        db.lock_subscribers(conn, [sbs1])
        require_subscriber(conn, sbs1)
        shops = (
            conn.execute(
                sa.select(schema.shops.c.whlo).where(
                    schema.shops.c.sbs1 == sbs1, schema.shops.c.deleted_at.is_(None)
                )
            )
            .scalars()
            .all()
        )
        if shops:
            raise RuleViolation(
                f"SBS1: subscriber {sbs1} still has shops {', '.join(sorted(shops))}, "
                "delete or move them first",
                field="SBS1",
            )
        records = schema.records
        confirmed = positions.read(conn, [sbs1])[sbs1].confirmed
        unconfirmed = conn.execute(
            sa.select(sa.func.count()).where(
                records.c.sbs1 == sbs1, records.c.trnr > confirmed
            )
        ).scalar_one()
        if unconfirmed:
            raise RuleViolation(
                f"SBS1: subscriber {sbs1} has {unconfirmed} unconfirmed records, "
                "let its POS confirm them first",
                field="SBS1",
            )
        # The subscriber's confirmed records, mailing lists and ended shop rows
        # (deleted or moved away) go with it: the shop rows reference it, and
        # the records and lists would name shops that no longer exist. Rows of
        # net transfer batches rolled back or cut off go too.
        for table in (
            schema.changes,
            schema.holdings,
            schema.records,
            schema.open_batches,
        ):
            conn.execute(sa.delete(table).where(table.c.sbs1 == sbs1))
        positions.forget(conn, sbs1)
        set_ids = sa.select(schema.shop_sets.c.set_id).where(
            schema.shop_sets.c.sbs1 == sbs1
        )
        conn.execute(
            sa.delete(schema.shop_set_members).where(
                schema.shop_set_members.c.set_id.in_(set_ids)
            )
        )
        conn.execute(sa.delete(schema.shop_sets).where(schema.shop_sets.c.sbs1 == sbs1))
        ended_shops = sa.select(schema.shops.c.shop_id).where(
            schema.shops.c.sbs1 == sbs1
        )
        conn.execute(
            sa.delete(schema.shop_segments).where(
                schema.shop_segments.c.shop_id.in_(ended_shops)
            )
        )
        conn.execute(sa.delete(schema.shops).where(schema.shops.c.sbs1 == sbs1))
        conn.execute(
            sa.delete(schema.subscribers).where(schema.subscribers.c.sbs1 == sbs1)
        )
    logger.info(
        "subscriber deleted",
        extra={"action": "subscriber_delete", "sbs1": sbs1, "user": user},
    )


# Shops


@dataclass(frozen=True)
class Shop:
    shop_id: int
    whlo: str
    sbs1: str
    name: str
    active: bool
    pos_interface: bool
    customer_interface: bool
    segments: tuple[str, ...]

    @property
    def enabled(self) -> bool:
        return self.active and self.pos_interface and self.customer_interface

    def warnings(self) -> list[str]:
        """Return why the shop receives no customers, if it does not."""
        problems = []
        if not self.segments:
            problems.append("no segment, so it receives no customers")
        if not self.active:
            problems.append("inactive")
        if not self.pos_interface:
            problems.append("POS interface off")
        if not self.customer_interface:
            problems.append("customer interface off")
        return problems

    def as_fields(self) -> dict[str, object]:
        return {
            "WHLO": self.whlo,
            "SBS1": self.sbs1,
            "NAME": self.name,
            "ACTIVE": "1" if self.active else "0",
            "POS_INTERFACE": "1" if self.pos_interface else "0",
            "CUSTOMER_INTERFACE": "1" if self.customer_interface else "0",
            "SEGMENTS": list(self.segments),
            "WARNINGS": self.warnings(),
        }


def _shops(conn: Connection, *conditions: sa.ColumnElement[bool]) -> list[Shop]:
    table = schema.shops
    segments_by_shop: dict[int, list[str]] = {}
    rows = conn.execute(
        sa.select(table)
        .where(table.c.deleted_at.is_(None), *conditions)
        .order_by(table.c.whlo)
    ).all()
    if rows:
        links = conn.execute(
            sa.select(schema.shop_segments).where(
                schema.shop_segments.c.shop_id.in_([row.shop_id for row in rows])
            )
        )
        for link in links:
            segments_by_shop.setdefault(link.shop_id, []).append(link.seid)
    return [
        Shop(
            shop_id=row.shop_id,
            whlo=row.whlo,
            sbs1=row.sbs1,
            name=row.name,
            active=row.active,
            pos_interface=row.pos_interface,
            customer_interface=row.customer_interface,
            segments=tuple(sorted(segments_by_shop.get(row.shop_id, []))),
        )
        for row in rows
    ]


def _get_shop(conn: Connection, whlo: str) -> Shop:
    found = _shops(conn, schema.shops.c.whlo == whlo)
    if not found:
        raise NotFound("shop", "WHLO", whlo)
    return found[0]


def get_shop(db: Database, whlo: str) -> Shop:
    whlo = str(fields.validate_key("WHLO", whlo))
    with db.reading() as conn:
        return _get_shop(conn, whlo)


def list_shops(db: Database, sbs1: str | None = None) -> list[Shop]:
    with db.reading() as conn:
        if sbs1 is None:
            return _shops(conn)
        return _shops(conn, schema.shops.c.sbs1 == sbs1)


def shops_of(conn: Connection, sbs1: str) -> list[Shop]:
    """Return the current shops of a subscriber, inside a caller's transaction."""
    return _shops(conn, schema.shops.c.sbs1 == sbs1)


def add_shop(
    db: Database,
    whlo: str,
    sbs1: str,
    *,
    name: str = "",
    active: bool = True,
    pos_interface: bool = True,
    customer_interface: bool = True,
    segments: Sequence[str] = (),
    user: str = "",
) -> Shop:
    """Add a shop; the next full net transfer gives it its initial load."""
    whlo = str(fields.validate_key("WHLO", whlo))
    sbs1 = str(fields.validate_key("SBS1", sbs1))
    name = _validate_name(name)
    seids = _validate_segment_ids(segments)
    now = utcnow()
    with db.transaction() as conn:
        _settings_changing(conn)
        require_subscriber(conn, sbs1)
        if _shops(conn, schema.shops.c.whlo == whlo):
            raise AlreadyExists("shop", "WHLO", whlo)
        _require_segments(conn, seids)
        shop_id = _insert_shop(
            conn,
            whlo,
            sbs1,
            name,
            active,
            pos_interface,
            customer_interface,
            seids,
            user=user,
            now=now,
        )
        changelog.record_shop_changes(conn, [(sbs1, shop_id)], user=user, now=now)
        shop = _get_shop(conn, whlo)
    logger.info(
        "shop added",
        extra={"action": "shop_add", "whlo": whlo, "sbs1": sbs1, "shop_id": shop_id},
    )
    return shop


def _insert_shop(
    conn: Connection,
    whlo: str,
    sbs1: str,
    name: str,
    active: bool,
    pos_interface: bool,
    customer_interface: bool,
    seids: Iterable[str],
    *,
    user: str,
    now: object,
) -> int:
    shop_id = conn.execute(
        sa.insert(schema.shops)
        .values(
            whlo=whlo,
            sbs1=sbs1,
            name=name,
            active=active,
            pos_interface=pos_interface,
            customer_interface=customer_interface,
            changed_at=now,
            changed_by=user,
        )
        .returning(schema.shops.c.shop_id)
    ).scalar_one()
    links = [{"shop_id": shop_id, "seid": seid} for seid in seids]
    if links:
        conn.execute(sa.insert(schema.shop_segments), links)
    return int(shop_id)


def change_shop(
    db: Database,
    whlo: str,
    *,
    sbs1: str | None = None,
    name: str | None = None,
    active: bool | None = None,
    pos_interface: bool | None = None,
    customer_interface: bool | None = None,
    user: str = "",
) -> Shop:
    """Change a shop's name or flags, or move it to another subscriber.

    A moved shop is a new shop at its new subscriber: it gets an initial load
    there, and its old holdings no longer count.
    """
    whlo = str(fields.validate_key("WHLO", whlo))
    now = utcnow()
    with db.transaction() as conn:
        _settings_changing(conn)
        shop = _get_shop(conn, whlo)
        new_name = shop.name if name is None else _validate_name(name)
        flags = {
            "active": shop.active if active is None else active,
            "pos_interface": shop.pos_interface
            if pos_interface is None
            else pos_interface,
            "customer_interface": (
                shop.customer_interface
                if customer_interface is None
                else customer_interface
            ),
        }
        if sbs1 is not None:
            sbs1 = str(fields.validate_key("SBS1", sbs1))
        if sbs1 is not None and sbs1 != shop.sbs1:
            require_subscriber(conn, sbs1)
            conn.execute(
                sa.update(schema.shops)
                .where(schema.shops.c.shop_id == shop.shop_id)
                .values(deleted_at=now, changed_at=now, changed_by=user)
            )
            shop_id = _insert_shop(
                conn,
                whlo,
                sbs1,
                new_name,
                flags["active"],
                flags["pos_interface"],
                flags["customer_interface"],
                shop.segments,
                user=user,
                now=now,
            )
            changelog.record_shop_changes(conn, [(sbs1, shop_id)], user=user, now=now)
            logger.info(
                "shop moved",
                extra={
                    "action": "shop_move",
                    "whlo": whlo,
                    "from_sbs1": shop.sbs1,
                    "sbs1": sbs1,
                },
            )
            return _get_shop(conn, whlo)

        flags_changed = any(getattr(shop, key) != value for key, value in flags.items())
        if not flags_changed and new_name == shop.name:
            return shop
        conn.execute(
            sa.update(schema.shops)
            .where(schema.shops.c.shop_id == shop.shop_id)
            .values(name=new_name, **flags, changed_at=now, changed_by=user)
        )
        if flags_changed:
            changelog.record_shop_changes(
                conn, [(shop.sbs1, shop.shop_id)], user=user, now=now
            )
            logger.info(
                "shop flags changed",
                extra={
                    "action": "shop_change",
                    "whlo": whlo,
                    "sbs1": shop.sbs1,
                    **flags,
                },
            )
        return _get_shop(conn, whlo)


def delete_shop(db: Database, whlo: str, *, user: str = "") -> None:
    """Delete a shop: it leaves the mailing lists of future records only."""
    whlo = str(fields.validate_key("WHLO", whlo))
    now = utcnow()
    with db.transaction() as conn:
        _settings_changing(conn)
        shop = _get_shop(conn, whlo)
        conn.execute(
            sa.update(schema.shops)
            .where(schema.shops.c.shop_id == shop.shop_id)
            .values(deleted_at=now, changed_at=now, changed_by=user)
        )
    logger.info(
        "shop deleted", extra={"action": "shop_delete", "whlo": whlo, "sbs1": shop.sbs1}
    )


def set_shop_segments(
    db: Database, whlo: str, seids: Sequence[str], *, user: str = ""
) -> Shop:
    """Replace a shop's segments; an empty list leaves it receiving nobody."""
    whlo = str(fields.validate_key("WHLO", whlo))
    wanted = _validate_segment_ids(seids)
    now = utcnow()
    with db.transaction() as conn:
        _settings_changing(conn)
        shop = _get_shop(conn, whlo)
        _require_segments(conn, wanted)
        if set(wanted) == set(shop.segments):
            return shop
        table = schema.shop_segments
        conn.execute(sa.delete(table).where(table.c.shop_id == shop.shop_id))
        if wanted:
            conn.execute(
                sa.insert(table),
                [{"shop_id": shop.shop_id, "seid": seid} for seid in wanted],
            )
        changelog.record_shop_changes(
            conn, [(shop.sbs1, shop.shop_id)], user=user, now=now
        )
        shop = _get_shop(conn, whlo)
    logger.info(
        "shop segments set",
        extra={"action": "shop_segments", "whlo": whlo, "segments": list(wanted)},
    )
    return shop


def _validate_segment_ids(seids: Iterable[str]) -> tuple[str, ...]:
    validated = [str(fields.validate_key("SEID", seid)) for seid in seids]
    return tuple(sorted(set(validated)))


def _require_segments(conn: Connection, seids: Iterable[str]) -> None:
    seids = list(seids)
    if not seids:
        return
    found = set(
        conn.execute(
            sa.select(schema.segments.c.seid).where(schema.segments.c.seid.in_(seids))
        ).scalars()
    )
    for seid in seids:
        if seid not in found:
            raise NotFound("segment", "SEID", seid)


# Segments


@dataclass(frozen=True)
class Segment:
    seid: str
    description: str
    conditions: tuple[rules.Condition, ...]
    shops: tuple[str, ...]

    def as_fields(self) -> dict[str, object]:
        return {
            "SEID": self.seid,
            "DESCRIPTION": self.description,
            "CONDITIONS": [str(condition) for condition in self.conditions],
            "SHOP": list(self.shops),
        }


def _validate_description(description: str) -> str:
    return _validate_text("description", "MSTX", description)


def load_segments(
    conn: Connection, seids: Iterable[str] | None = None
) -> dict[str, tuple[rules.Condition, ...]]:
    """Return the conditions of segments (all of them without ``seids``)."""
    query = sa.select(schema.segments.c.seid)
    if seids is not None:
        query = query.where(schema.segments.c.seid.in_(list(seids)))
    found: dict[str, list[rules.Condition]] = {
        seid: [] for seid in conn.execute(query).scalars()
    }
    rows = conn.execute(
        sa.select(schema.segment_conditions).where(
            schema.segment_conditions.c.seid.in_(list(found))
        )
    )
    for row in rows:
        found[row.seid].append(
            rules.Condition(
                row.field,
                frozenset(
                    fields.validate(row.field, value) for value in row.values.split(",")
                ),
            )
        )
    return {
        seid: tuple(sorted(conditions, key=lambda condition: condition.field))
        for seid, conditions in found.items()
    }


def list_segments(db: Database) -> list[Segment]:
    with db.reading() as conn:
        return _segments(conn)


def get_segment(db: Database, seid: str) -> Segment:
    seid = str(fields.validate_key("SEID", seid))
    with db.reading() as conn:
        return _get_segment(conn, seid)


def _get_segment(conn: Connection, seid: str) -> Segment:
    for segment in _segments(conn, seid):
        if segment.seid == seid:
            return segment
    raise NotFound("segment", "SEID", seid)


def _segments(conn: Connection, seid: str | None = None) -> list[Segment]:
    conditions = load_segments(conn, None if seid is None else [seid])
    descriptions: dict[str, str] = {
        row.seid: row.description
        for row in conn.execute(
            sa.select(schema.segments.c.seid, schema.segments.c.description)
        )
    }
    users: dict[str, list[str]] = {}
    rows = conn.execute(
        sa.select(schema.shop_segments.c.seid, schema.shops.c.whlo)
        .join(schema.shops, schema.shops.c.shop_id == schema.shop_segments.c.shop_id)
        .where(schema.shops.c.deleted_at.is_(None))
    )
    for row in rows:
        users.setdefault(row.seid, []).append(row.whlo)
    return [
        Segment(
            key, descriptions[key], conditions[key], tuple(sorted(users.get(key, [])))
        )
        for key in sorted(conditions)
    ]


def add_segment(
    db: Database,
    seid: str,
    *,
    description: str = "",
    conditions: Sequence[str] = (),
    user: str = "",
) -> Segment:
    seid = str(fields.validate_key("SEID", seid))
    description = _validate_description(description)
    parsed = rules.parse_conditions(conditions)
    with db.transaction() as conn:
        _settings_changing(conn)
        exists = conn.execute(
            sa.select(schema.segments.c.seid).where(schema.segments.c.seid == seid)
        ).first()
        if exists:
            raise AlreadyExists("segment", "SEID", seid)
        conn.execute(
            sa.insert(schema.segments).values(
                seid=seid, description=description, changed_at=utcnow(), changed_by=user
            )
        )
        _write_conditions(conn, seid, parsed)
    logger.info("segment added", extra={"action": "segment_add", "seid": seid})
    return Segment(seid, description, parsed, ())


def _write_conditions(
    conn: Connection, seid: str, conditions: Sequence[rules.Condition]
) -> None:
    table = schema.segment_conditions
    conn.execute(sa.delete(table).where(table.c.seid == seid))
    rows = [
        {
            "seid": seid,
            "field": condition.field,
            "values": ",".join(sorted(str(value) for value in condition.values)),
        }
        for condition in conditions
    ]
    if rows:
        conn.execute(sa.insert(table), rows)


def change_segment(
    db: Database,
    seid: str,
    *,
    description: str | None = None,
    conditions: Sequence[str] | None = None,
    user: str = "",
) -> Segment:
    """Change a segment's description or replace all its conditions.

    New conditions record a SHOP change for every shop that uses the segment.
    """
    seid = str(fields.validate_key("SEID", seid))
    new_description = (
        None if description is None else _validate_description(description)
    )
    parsed = None if conditions is None else rules.parse_conditions(conditions)
    now = utcnow()
    with db.transaction() as conn:
        _settings_changing(conn)
        segment = _get_segment(conn, seid)
        if new_description is not None and new_description != segment.description:
            conn.execute(
                sa.update(schema.segments)
                .where(schema.segments.c.seid == seid)
                .values(description=new_description, changed_at=now, changed_by=user)
            )
        if parsed is not None and parsed != segment.conditions:
            _write_conditions(conn, seid, parsed)
            users = conn.execute(
                sa.select(schema.shops.c.sbs1, schema.shops.c.shop_id)
                .join(
                    schema.shop_segments,
                    schema.shop_segments.c.shop_id == schema.shops.c.shop_id,
                )
                .where(
                    schema.shop_segments.c.seid == seid,
                    schema.shops.c.deleted_at.is_(None),
                )
            ).all()
            changelog.record_shop_changes(
                conn, [(row.sbs1, row.shop_id) for row in users], user=user, now=now
            )
            logger.info(
                "segment conditions changed",
                extra={"action": "segment_change", "seid": seid},
            )
        return _get_segment(conn, seid)


def delete_segment(db: Database, seid: str, *, user: str = "") -> None:
    """Delete a segment that no shop uses."""
    seid = str(fields.validate_key("SEID", seid))
    with db.transaction() as conn:
        _settings_changing(conn)
        segment = _get_segment(conn, seid)
        if segment.shops:
            raise RuleViolation(
                f"SEID: segment {seid} is used by shops {', '.join(segment.shops)}, "
                "remove it from them first",
                field="SEID",
            )
        # Links of deleted shop incarnations only.
        conn.execute(
            sa.delete(schema.shop_segments).where(schema.shop_segments.c.seid == seid)
        )
        conn.execute(
            sa.delete(schema.segment_conditions).where(
                schema.segment_conditions.c.seid == seid
            )
        )
        conn.execute(sa.delete(schema.segments).where(schema.segments.c.seid == seid))
    logger.info(
        "segment deleted",
        extra={"action": "segment_delete", "seid": seid, "user": user},
    )


def load_qualifier(conn: Connection, sbs1: str) -> tuple[rules.Qualifier, list[Shop]]:
    """Return the qualifier for a subscriber's current shops, and the shops."""
    shops = shops_of(conn, sbs1)
    settings = {
        shop.shop_id: rules.ShopSettings(
            shop_id=shop.shop_id,
            whlo=shop.whlo,
            active=shop.active,
            pos_interface=shop.pos_interface,
            customer_interface=shop.customer_interface,
            segments=frozenset(shop.segments),
        )
        for shop in shops
    }
    used = {seid for shop in shops for seid in shop.segments}
    return rules.Qualifier(settings, load_segments(conn, used)), shops

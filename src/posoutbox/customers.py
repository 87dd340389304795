"""The customer master: customers, delivery addresses, cards and messages.

Values travel as dictionaries keyed by M3 field names. Every function validates
its input completely before it writes, and records its change rows in the same
transaction as the change, so a rejected call leaves nothing behind.
"""

from __future__ import annotations

import datetime
import logging
import os
import zoneinfo
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from posoutbox import changelog, fields
from posoutbox.db import schema
from posoutbox.db.storage import Database, utcnow
from posoutbox.errors import (
    AlreadyExists,
    InvalidValue,
    NotFound,
    PosOutboxError,
    RuleViolation,
    UnknownField,
)
from posoutbox.fields import Value
from posoutbox.planning import ADDRESS, CARD, CUSTOMER, DELIVERY_ADDRESS_TYPE, MESSAGE

logger = logging.getLogger(__name__)

#: Customer fields a caller may set; CUNO is the key and LMDT is set here.
CUSTOMER_INPUT_FIELDS = tuple(
    name for name in fields.CUSTOMER_FIELDS if name not in ("CUNO", "LMDT")
)
ADDRESS_INPUT_FIELDS = tuple(
    name for name in fields.ADDRESS_FIELDS if name not in ("CUNO", "ADID")
)
CARD_INPUT_FIELDS = tuple(
    name for name in fields.CARD_FIELDS if name not in ("CUNO", "CCNR")
)
MESSAGE_INPUT_FIELDS = ("PRIO", "MSTX")

#: Status of a customer added without one: definite.
DEFAULT_STATUS = "20"
DEFAULT_PRIORITY = 5


#: Environment variable naming the IANA time zone of LMDT dates (default UTC).
TIMEZONE_VARIABLE = "POSOUTBOX_TIMEZONE"


def change_date(now: datetime.datetime) -> int:
    """Return LMDT for a change made at ``now`` (naive UTC), as YYYYMMDD.

    The date is taken in the time zone named by POSOUTBOX_TIMEZONE, UTC when
    it is unset.
    """
    name = os.environ.get(TIMEZONE_VARIABLE, "")
    if name:
        try:
            zone = zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise InvalidValue(
                TIMEZONE_VARIABLE, name, "an IANA time zone such as Europe/Berlin"
            ) from None
        now = now.replace(tzinfo=datetime.UTC).astimezone(zone)
    return int(now.strftime("%Y%m%d"))


def validate_values(
    values: Mapping[str, object], allowed: Sequence[str]
) -> dict[str, Value]:
    """Validate input values keyed by M3 field name (any case).

    Raises the first error found; see ``collect_errors`` for every error.
    """
    validated, errors = collect_errors(values, allowed)
    if errors:
        raise errors[0]
    return validated


def collect_errors(
    values: Mapping[str, object], allowed: Sequence[str]
) -> tuple[dict[str, Value], list[PosOutboxError]]:
    """Validate input values and return those that passed with every error."""
    validated: dict[str, Value] = {}
    errors: list[PosOutboxError] = []
    for raw_name, raw_value in values.items():
        name = raw_name.strip().upper()
        if name not in allowed:
            errors.append(UnknownField(name, tuple(allowed)))
            continue
        try:
            validated[name] = fields.validate(name, raw_value)
        except PosOutboxError as error:
            errors.append(error)
    return validated, errors


def _row_values(row: Any, names: Iterable[str]) -> dict[str, Value]:
    mapping = row._mapping
    return {name: mapping[name.lower()] for name in names}


def _columns(values: Mapping[str, Value]) -> dict[str, Value]:
    return {name.lower(): value for name, value in values.items()}


# Customers


def get_customer(db: Database, cuno: str) -> dict[str, Value]:
    cuno = str(fields.validate_key("CUNO", cuno))
    with db.reading() as conn:
        return _get_customer(conn, cuno)


def _get_customer(
    conn: Connection, cuno: str, *, for_update: bool = False
) -> dict[str, Value]:
    query = sa.select(schema.customers).where(schema.customers.c.cuno == cuno)
    if for_update:
        query = query.with_for_update()
    row = conn.execute(query).one_or_none()
    if row is None:
        raise NotFound("customer", "CUNO", cuno)
    return _row_values(row, fields.CUSTOMER_FIELDS)


def customer_exists(db: Database, cuno: str) -> bool:
    with db.reading() as conn:
        query = sa.select(schema.customers.c.cuno).where(
            schema.customers.c.cuno == cuno
        )
        return conn.execute(query).first() is not None


def list_customers(
    db: Database,
    *,
    after: str = "",
    name: str = "",
    limit: int | None = None,
) -> list[dict[str, Value]]:
    """List customers by number, from just after ``after``; with ``name``, only
    those whose name contains it (case-insensitive), ordered by name."""
    table = schema.customers
    query = sa.select(table)
    if name:
        pattern = (
            "%"
            + name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            + "%"
        )
        query = query.where(table.c.cunm.ilike(pattern, escape="\\"))
        query = query.order_by(table.c.cunm, table.c.cuno)
    else:
        query = query.where(table.c.cuno > after).order_by(table.c.cuno)
    if limit is not None:
        query = query.limit(limit)
    with db.reading() as conn:
        return [_row_values(row, fields.CUSTOMER_FIELDS) for row in conn.execute(query)]


def list_customers_by_name(
    db: Database, *, from_name: str = "", limit: int | None = None
) -> list[dict[str, Value]]:
    """List customers ordered by name, from ``from_name`` on."""
    table = schema.customers
    query = (
        sa.select(table)
        .where(table.c.cunm >= from_name)
        .order_by(table.c.cunm, table.c.cuno)
    )
    if limit is not None:
        query = query.limit(limit)
    with db.reading() as conn:
        return [_row_values(row, fields.CUSTOMER_FIELDS) for row in conn.execute(query)]


def count_customers(db: Database) -> int:
    with db.reading() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).select_from(schema.customers)
            ).scalar_one()
        )


def add_customer(
    db: Database, cuno: str, values: Mapping[str, object], *, user: str = ""
) -> dict[str, Value]:
    """Add a customer; unset fields are blank or zero, STAT defaults to 20."""
    cuno = str(fields.validate_key("CUNO", cuno))
    validated = validate_values(values, CUSTOMER_INPUT_FIELDS)
    now = utcnow()
    customer = {name: fields.default(name) for name in fields.CUSTOMER_FIELDS}
    # A dict, not keyword arguments: validated may contain STAT, and a keyword
    # argument given twice raises TypeError.
    customer.update(
        {"STAT": DEFAULT_STATUS, **validated, "CUNO": cuno, "LMDT": change_date(now)}
    )

    with db.transaction() as conn:
        exists = conn.execute(
            sa.select(schema.customers.c.cuno).where(schema.customers.c.cuno == cuno)
        ).first()
        if exists:
            raise AlreadyExists("customer", "CUNO", cuno)
        conn.execute(
            sa.insert(schema.customers).values(
                **_columns(customer), changed_at=now, changed_by=user
            )
        )
        changelog.record_master_changes(
            db, conn, [(CUSTOMER, cuno, "")], user=user, now=now
        )
    logger.info("customer added", extra={"action": "customer_add", "cuno": cuno})
    return customer


def change_customer(
    db: Database, cuno: str, values: Mapping[str, object], *, user: str = ""
) -> tuple[dict[str, Value], bool]:
    """Change a customer's fields; return it and whether anything changed.

    A change that alters nothing records nothing and keeps LMDT.
    """
    cuno = str(fields.validate_key("CUNO", cuno))
    validated = validate_values(values, CUSTOMER_INPUT_FIELDS)
    now = utcnow()
    with db.transaction() as conn:
        customer = _get_customer(conn, cuno, for_update=True)
        changed = _apply_customer_change(db, conn, customer, validated, user, now)
    if changed:
        logger.info(
            "customer changed", extra={"action": "customer_change", "cuno": cuno}
        )
    return customer, changed


def _apply_customer_change(
    db: Database,
    conn: Connection,
    customer: dict[str, Value],
    validated: Mapping[str, Value],
    user: str,
    now: datetime.datetime,
) -> bool:
    differing = {
        name: value for name, value in validated.items() if customer[name] != value
    }
    if not differing:
        return False
    customer.update(differing, LMDT=change_date(now))
    conn.execute(
        sa.update(schema.customers)
        .where(schema.customers.c.cuno == customer["CUNO"])
        .values(
            **_columns(differing),
            lmdt=customer["LMDT"],
            changed_at=now,
            changed_by=user,
        )
    )
    changelog.record_master_changes(
        db, conn, [(CUSTOMER, str(customer["CUNO"]), "")], user=user, now=now
    )
    return True


def delete_customer(db: Database, cuno: str, *, user: str = "") -> None:
    """Delete a customer with its addresses, cards and messages.

    Shops that hold it get an OCUSMA *DEL from the next run, which removes the
    children at the POS too. The children's changes are recorded as well, so
    that if the customer is added again before that run, the shops that hold it
    get a *DEL for each child it no longer has.
    """
    cuno = str(fields.validate_key("CUNO", cuno))
    now = utcnow()
    with db.transaction() as conn:
        _get_customer(conn, cuno, for_update=True)
        changes = [(CUSTOMER, cuno, ""), *_child_keys(conn, cuno)]
        for table in (schema.addresses, schema.cards, schema.messages):
            conn.execute(sa.delete(table).where(table.c.cuno == cuno))
        conn.execute(sa.delete(schema.customers).where(schema.customers.c.cuno == cuno))
        changelog.record_master_changes(db, conn, changes, user=user, now=now)
    logger.info("customer deleted", extra={"action": "customer_delete", "cuno": cuno})


def _child_keys(conn: Connection, cuno: str) -> list[tuple[str, str, str]]:
    """Return the (record type, CUNO, key) of every child a POS holds."""
    addresses = schema.addresses
    keys = [
        (ADDRESS, cuno, str(adid))
        for adid in conn.execute(
            sa.select(addresses.c.adid).where(
                addresses.c.cuno == cuno, addresses.c.adrt == DELIVERY_ADDRESS_TYPE
            )
        ).scalars()
    ]
    keys.extend(
        (CARD, cuno, str(ccnr))
        for ccnr in conn.execute(
            sa.select(schema.cards.c.ccnr).where(schema.cards.c.cuno == cuno)
        ).scalars()
    )
    keys.extend(
        (MESSAGE, cuno, str(msid))
        for msid in conn.execute(
            sa.select(schema.messages.c.msid).where(schema.messages.c.cuno == cuno)
        ).scalars()
    )
    return keys


# Import


#: Key of an import row whose values could not be read, such as a CSV row with
#: the wrong number of columns. Its value is the reason, and `import_customers`
#: reports the row as a rejection on field "row".
ROW_PROBLEM = "*ROW"


@dataclass(frozen=True)
class Rejection:
    """A rejected import row: file line (header = line 1), field, value, reason."""

    line: int
    field: str
    value: object
    reason: str


@dataclass
class ImportResult:
    added: int = 0
    changed: int = 0
    unchanged: int = 0
    rejected_rows: int = 0
    rejections: list[Rejection] = field(default_factory=list)


def import_customers(
    db: Database,
    rows: Iterable[tuple[int, Mapping[str, object]]],
    *,
    user: str = "",
    batch_size: int = 500,
    progress: Callable[[int], None] | None = None,
) -> ImportResult:
    """Add or update customers from (file line, values) rows.

    An existing CUNO is updated with the row's values, a change only where a
    value differs. An invalid row is reported with every field at fault and
    skipped; valid rows are kept. A row holding the ROW_PROBLEM key is rejected
    as a whole, with its reason. Rows are written in batches, each batch one
    transaction.
    """
    result = ImportResult()
    batch: list[tuple[int, str, dict[str, Value]]] = []
    seen: dict[str, int] = {}
    for line, values in rows:
        checked = _check_import_row(line, values, seen, result)
        if checked is not None:
            batch.append(checked)
        if len(batch) >= batch_size:
            _import_batch(db, batch, result, user)
            if progress:
                progress(len(batch))
            batch = []
    if batch:
        _import_batch(db, batch, result, user)
        if progress:
            progress(len(batch))
    return result


def _check_import_row(
    line: int,
    values: Mapping[str, object],
    seen: dict[str, int],
    result: ImportResult,
) -> tuple[int, str, dict[str, Value]] | None:
    if ROW_PROBLEM in values:
        result.rejected_rows += 1
        result.rejections.append(Rejection(line, "row", "", str(values[ROW_PROBLEM])))
        return None
    raw = dict(values)
    raw_cuno = raw.pop("CUNO", "")
    errors: list[PosOutboxError] = []
    cuno = ""
    try:
        cuno = str(fields.validate_key("CUNO", raw_cuno))
    except PosOutboxError as error:
        errors.append(error)
    validated, field_errors = collect_errors(raw, CUSTOMER_INPUT_FIELDS)
    errors.extend(field_errors)
    if cuno and cuno in seen:
        errors.append(
            RuleViolation(
                f"CUNO {cuno} appears again, first on line {seen[cuno]}", field="CUNO"
            )
        )
    if errors:
        result.rejected_rows += 1
        for problem in errors:
            value = getattr(problem, "value", raw.get(problem.field, raw_cuno))
            result.rejections.append(
                Rejection(line, problem.field, value, problem.message)
            )
        return None
    seen[cuno] = line
    return line, cuno, validated


def _import_batch(
    db: Database,
    batch: list[tuple[int, str, dict[str, Value]]],
    result: ImportResult,
    user: str,
) -> None:
    now = utcnow()
    cunos = [cuno for _, cuno, _ in batch]
    with db.transaction() as conn:
        existing = {
            row.cuno: _row_values(row, fields.CUSTOMER_FIELDS)
            for row in conn.execute(
                sa.select(schema.customers)
                .where(schema.customers.c.cuno.in_(cunos))
                .with_for_update()
            )
        }
        new_rows = []
        changed_cunos = []
        for _, cuno, validated in batch:
            customer = existing.get(cuno)
            if customer is None:
                customer = {
                    name: fields.default(name) for name in fields.CUSTOMER_FIELDS
                }
                customer.update(
                    {
                        "STAT": DEFAULT_STATUS,
                        **validated,
                        "CUNO": cuno,
                        "LMDT": change_date(now),
                    }
                )
                new_rows.append(
                    {**_columns(customer), "changed_at": now, "changed_by": user}
                )
                continue
            differing = {
                name: value
                for name, value in validated.items()
                if customer[name] != value
            }
            if not differing:
                result.unchanged += 1
                continue
            conn.execute(
                sa.update(schema.customers)
                .where(schema.customers.c.cuno == cuno)
                .values(
                    **_columns(differing),
                    lmdt=change_date(now),
                    changed_at=now,
                    changed_by=user,
                )
            )
            changed_cunos.append(cuno)
        if new_rows:
            conn.execute(sa.insert(schema.customers), new_rows)
        changelog.record_master_changes(
            db,
            conn,
            [(CUSTOMER, str(row["cuno"]), "") for row in new_rows]
            + [(CUSTOMER, cuno, "") for cuno in changed_cunos],
            user=user,
            now=now,
        )
    result.added += len(new_rows)
    result.changed += len(changed_cunos)


# Delivery addresses


def get_address(db: Database, cuno: str, adid: str) -> dict[str, Value]:
    cuno = str(fields.validate_key("CUNO", cuno))
    adid = str(fields.validate_key("ADID", adid))
    with db.reading() as conn:
        return _get_address(conn, cuno, adid)


def _get_address(conn: Connection, cuno: str, adid: str) -> dict[str, Value]:
    table = schema.addresses
    row = conn.execute(
        sa.select(table).where(table.c.cuno == cuno, table.c.adid == adid)
    ).one_or_none()
    if row is None:
        raise NotFound("address", "ADID", f"{adid} of customer {cuno}")
    return _row_values(row, fields.ADDRESS_FIELDS)


def list_addresses(db: Database, cuno: str) -> list[dict[str, Value]]:
    cuno = str(fields.validate_key("CUNO", cuno))
    table = schema.addresses
    with db.reading() as conn:
        _get_customer(conn, cuno)
        rows = conn.execute(
            sa.select(table)
            .where(table.c.cuno == cuno)
            .order_by(table.c.adrt, table.c.adid)
        )
        return [_row_values(row, fields.ADDRESS_FIELDS) for row in rows]


def set_address(
    db: Database,
    cuno: str,
    adid: str,
    values: Mapping[str, object],
    *,
    user: str = "",
    must_exist: bool | None = None,
) -> tuple[dict[str, Value], bool]:
    """Add or change an address; return it and whether anything changed.

    ``must_exist`` True only changes, False only adds, None does either. ADRT
    defaults to 1 (delivery) for a new address. Only delivery addresses are
    sent to POS, so an address whose type changes from 1 is removed there.
    """
    cuno = str(fields.validate_key("CUNO", cuno))
    adid = str(fields.validate_key("ADID", adid))
    validated = validate_values(values, ADDRESS_INPUT_FIELDS)
    now = utcnow()
    table = schema.addresses
    with db.transaction() as conn:
        _get_customer(conn, cuno, for_update=True)
        try:
            address = _get_address(conn, cuno, adid)
        except NotFound:
            if must_exist:
                raise
            address = {name: fields.default(name) for name in fields.ADDRESS_FIELDS}
            # A dict, not keyword arguments: validated may contain ADRT.
            address.update(
                {"ADRT": DELIVERY_ADDRESS_TYPE, **validated, "CUNO": cuno, "ADID": adid}
            )
            conn.execute(
                sa.insert(table).values(
                    **_columns(address), changed_at=now, changed_by=user
                )
            )
            if address["ADRT"] == DELIVERY_ADDRESS_TYPE:
                changelog.record_master_changes(
                    db, conn, [(ADDRESS, cuno, adid)], user=user, now=now
                )
            return address, True
        if must_exist is False:
            raise AlreadyExists("address", "ADID", f"{adid} of customer {cuno}")
        old_type = address["ADRT"]
        differing = {
            name: value for name, value in validated.items() if address[name] != value
        }
        if not differing:
            return address, False
        address.update(differing)
        conn.execute(
            sa.update(table)
            .where(table.c.cuno == cuno, table.c.adid == adid)
            .values(**_columns(differing), changed_at=now, changed_by=user)
        )
        if DELIVERY_ADDRESS_TYPE in (old_type, address["ADRT"]):
            changelog.record_master_changes(
                db, conn, [(ADDRESS, cuno, adid)], user=user, now=now
            )
    return address, True


def delete_address(db: Database, cuno: str, adid: str, *, user: str = "") -> None:
    cuno = str(fields.validate_key("CUNO", cuno))
    adid = str(fields.validate_key("ADID", adid))
    now = utcnow()
    table = schema.addresses
    with db.transaction() as conn:
        _get_customer(conn, cuno, for_update=True)
        address = _get_address(conn, cuno, adid)
        conn.execute(sa.delete(table).where(table.c.cuno == cuno, table.c.adid == adid))
        if address["ADRT"] == DELIVERY_ADDRESS_TYPE:
            changelog.record_master_changes(
                db, conn, [(ADDRESS, cuno, adid)], user=user, now=now
            )


# Cards


def get_card(db: Database, cuno: str, ccnr: object) -> dict[str, Value]:
    cuno = str(fields.validate_key("CUNO", cuno))
    number = int(fields.validate_key("CCNR", ccnr))
    with db.reading() as conn:
        card = _get_card(conn, number)
    if card is None or card["CUNO"] != cuno:
        raise NotFound("card", "CCNR", f"{number} of customer {cuno}")
    return card


def _get_card(conn: Connection, ccnr: int) -> dict[str, Value] | None:
    row = conn.execute(
        sa.select(schema.cards).where(schema.cards.c.ccnr == ccnr)
    ).one_or_none()
    return None if row is None else _row_values(row, fields.CARD_FIELDS)


def list_cards(db: Database, cuno: str) -> list[dict[str, Value]]:
    cuno = str(fields.validate_key("CUNO", cuno))
    table = schema.cards
    with db.reading() as conn:
        _get_customer(conn, cuno)
        rows = conn.execute(
            sa.select(table).where(table.c.cuno == cuno).order_by(table.c.ccnr)
        )
        return [_row_values(row, fields.CARD_FIELDS) for row in rows]


def set_card(
    db: Database,
    cuno: str,
    ccnr: object,
    values: Mapping[str, object],
    *,
    user: str = "",
    must_exist: bool | None = None,
) -> tuple[dict[str, Value], bool]:
    """Add or change a card; a number used by another customer is rejected."""
    cuno = str(fields.validate_key("CUNO", cuno))
    number = int(fields.validate_key("CCNR", ccnr))
    validated = validate_values(values, CARD_INPUT_FIELDS)
    now = utcnow()
    table = schema.cards
    with db.transaction() as conn:
        _get_customer(conn, cuno, for_update=True)
        card = _get_card(conn, number)
        if card is not None and card["CUNO"] != cuno:
            raise RuleViolation(
                f"CCNR: card {number} already belongs to customer {card['CUNO']}, "
                "delete it there first",
                field="CCNR",
            )
        if card is None:
            if must_exist:
                raise NotFound("card", "CCNR", f"{number} of customer {cuno}")
            card = {name: fields.default(name) for name in fields.CARD_FIELDS}
            card.update(validated, CUNO=cuno, CCNR=number)
            conn.execute(
                sa.insert(table).values(
                    **_columns(card), changed_at=now, changed_by=user
                )
            )
        else:
            if must_exist is False:
                raise AlreadyExists("card", "CCNR", number)
            differing = {
                name: value for name, value in validated.items() if card[name] != value
            }
            if not differing:
                return card, False
            card.update(differing)
            conn.execute(
                sa.update(table)
                .where(table.c.ccnr == number)
                .values(**_columns(differing), changed_at=now, changed_by=user)
            )
        changelog.record_master_changes(
            db, conn, [(CARD, cuno, str(number))], user=user, now=now
        )
    return card, True


def delete_card(db: Database, cuno: str, ccnr: object, *, user: str = "") -> None:
    cuno = str(fields.validate_key("CUNO", cuno))
    number = int(fields.validate_key("CCNR", ccnr))
    now = utcnow()
    with db.transaction() as conn:
        _get_customer(conn, cuno, for_update=True)
        card = _get_card(conn, number)
        if card is None or card["CUNO"] != cuno:
            raise NotFound("card", "CCNR", f"{number} of customer {cuno}")
        conn.execute(sa.delete(schema.cards).where(schema.cards.c.ccnr == number))
        changelog.record_master_changes(
            db, conn, [(CARD, cuno, str(number))], user=user, now=now
        )


# Messages


def list_messages(db: Database, cuno: str) -> list[dict[str, Value]]:
    cuno = str(fields.validate_key("CUNO", cuno))
    table = schema.messages
    with db.reading() as conn:
        _get_customer(conn, cuno)
        rows = conn.execute(
            sa.select(table).where(table.c.cuno == cuno).order_by(table.c.msid)
        )
        return [_row_values(row, fields.MESSAGE_FIELDS) for row in rows]


def set_message(
    db: Database,
    cuno: str,
    msid: str,
    text: object,
    *,
    priority: object | None = None,
    user: str = "",
) -> tuple[dict[str, Value], bool]:
    """Add or change a message; PRIO defaults to 5 for a new one."""
    cuno = str(fields.validate_key("CUNO", cuno))
    msid = str(fields.validate_key("MSID", msid))
    values: dict[str, object] = {"MSTX": text}
    if priority is not None:
        values["PRIO"] = priority
    validated = validate_values(values, MESSAGE_INPUT_FIELDS)
    now = utcnow()
    table = schema.messages
    with db.transaction() as conn:
        _get_customer(conn, cuno, for_update=True)
        row = conn.execute(
            sa.select(table).where(table.c.cuno == cuno, table.c.msid == msid)
        ).one_or_none()
        if row is None:
            message: dict[str, Value] = {
                "CUNO": cuno,
                "MSID": msid,
                "PRIO": DEFAULT_PRIORITY,
                "MSTX": "",
            }
            message.update(validated)
            conn.execute(
                sa.insert(table).values(
                    **_columns(message), changed_at=now, changed_by=user
                )
            )
        else:
            message = _row_values(row, fields.MESSAGE_FIELDS)
            differing = {
                name: value
                for name, value in validated.items()
                if message[name] != value
            }
            if not differing:
                return message, False
            message.update(differing)
            conn.execute(
                sa.update(table)
                .where(table.c.cuno == cuno, table.c.msid == msid)
                .values(**_columns(differing), changed_at=now, changed_by=user)
            )
        changelog.record_master_changes(
            db, conn, [(MESSAGE, cuno, msid)], user=user, now=now
        )
    return message, True


def delete_message(db: Database, cuno: str, msid: str, *, user: str = "") -> None:
    cuno = str(fields.validate_key("CUNO", cuno))
    msid = str(fields.validate_key("MSID", msid))
    now = utcnow()
    table = schema.messages
    with db.transaction() as conn:
        _get_customer(conn, cuno, for_update=True)
        deleted = conn.execute(
            sa.delete(table).where(table.c.cuno == cuno, table.c.msid == msid)
        ).rowcount
        if not deleted:
            raise NotFound("message", "MSID", f"{msid} of customer {cuno}")
        changelog.record_master_changes(
            db, conn, [(MESSAGE, cuno, msid)], user=user, now=now
        )

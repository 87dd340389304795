"""Bad input through the service functions: the right error, and no change.

Every case calls one function of the master, settings, transfer or outbox
layer with one bad value. It expects the error class, the field the error
names and the value quoted in its message. A dump of every table taken before
the call must equal one taken after it.
"""

from __future__ import annotations

import unicodedata
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from conftest import postgresql_base_url
from posoutbox import customers, outbox, shops, transfer
from posoutbox.db import migrate, schema
from posoutbox.db.storage import Database, normalise_url, open_database
from posoutbox.errors import (
    AlreadyExists,
    InvalidValue,
    MissingValue,
    NotFound,
    PosOutboxError,
    RuleViolation,
    UnknownField,
)

Dump = dict[str, list[tuple[Any, ...]]]


def build_world(db: Database) -> None:
    """A subscriber with one shop, two segments, two customers with children,
    and the records of a first net transfer, listed but not confirmed."""
    shops.add_subscriber(db, "S1", name="Nordic POS")
    shops.add_segment(db, "ALL")
    shops.add_segment(db, "SE", conditions=["CSCD=SE"])
    shops.add_shop(db, "A01", "S1", segments=["ALL"])
    customers.add_customer(db, "C1", {"CUNM": "Åsa Lindqvist", "CSCD": "SE"})
    customers.add_customer(db, "C2", {"CUNM": "Jens Hansen", "CSCD": "DK"})
    customers.set_address(db, "C1", "D1", {"TOWN": "Malmö"})
    customers.set_card(db, "C1", 1001, {"CTP1": 1})
    customers.set_message(db, "C1", "M1", "Birthday")
    transfer.net_transfer(db)
    outbox.list_records(db, "S1", 1)


def dump(db: Database) -> Dump:
    """Return every row of every table, in a stable order."""
    found: Dump = {}
    with db.reading() as conn:
        for table in schema.metadata.sorted_tables:
            rows = conn.execute(sa.select(table)).all()
            found[table.name] = sorted((tuple(row) for row in rows), key=repr)
    return found


@dataclass(frozen=True)
class Case:
    """A bad call, the error it must raise, the field it must name and the
    text of the value its message must quote."""

    name: str
    call: Callable[[Database], object]
    error: type[PosOutboxError]
    field: str
    quoted: str


TOO_LONG_NAME = "N" * 37
CONTROL = "Åsa\x00Lindqvist"

CASES = [
    # Customers
    Case(
        "name too long",
        lambda db: customers.add_customer(db, "C9", {"CUNM": TOO_LONG_NAME}),
        InvalidValue,
        "CUNM",
        TOO_LONG_NAME,
    ),
    Case(
        "name too long after change",
        lambda db: customers.change_customer(db, "C1", {"CUNM": TOO_LONG_NAME}),
        InvalidValue,
        "CUNM",
        TOO_LONG_NAME,
    ),
    Case(
        "number as text",
        lambda db: customers.add_customer(db, "C9", {"CUTP": "x"}),
        InvalidValue,
        "CUTP",
        "'x'",
    ),
    Case(
        "boolean as number",
        lambda db: customers.add_customer(db, "C9", {"CUTP": True}),
        InvalidValue,
        "CUTP",
        "True",
    ),
    Case(
        "number too long",
        lambda db: customers.add_customer(db, "C9", {"CUTP": 12}),
        InvalidValue,
        "CUTP",
        "12",
    ),
    Case(
        "number in text field",
        lambda db: customers.add_customer(db, "C9", {"CUNM": 5}),
        InvalidValue,
        "CUNM",
        "5",
    ),
    Case(
        "control character",
        lambda db: customers.add_customer(db, "C9", {"CUNM": CONTROL}),
        InvalidValue,
        "CUNM",
        repr(CONTROL),
    ),
    Case(
        "line break",
        lambda db: customers.change_customer(db, "C1", {"CUA1": "Street\n12"}),
        InvalidValue,
        "CUA1",
        repr("Street\n12"),
    ),
    Case(
        "delete character",
        lambda db: customers.change_customer(db, "C1", {"MAIL": "a\x7f@b.se"}),
        InvalidValue,
        "MAIL",
        repr("a\x7f@b.se"),
    ),
    Case(
        "line separator",
        lambda db: customers.change_customer(db, "C1", {"CUNM": "Åsa\u2028L"}),
        InvalidValue,
        "CUNM",
        repr("Åsa\u2028L"),
    ),
    Case(
        "lone surrogate",
        lambda db: customers.change_customer(db, "C1", {"TOWN": "Lund\ud800"}),
        InvalidValue,
        "TOWN",
        repr("Lund\ud800"),
    ),
    Case(
        "unknown field",
        lambda db: customers.add_customer(db, "C9", {"XXXX": "1"}),
        UnknownField,
        "XXXX",
        "XXXX",
    ),
    Case(
        "change date not settable",
        lambda db: customers.change_customer(db, "C1", {"LMDT": 20240101}),
        UnknownField,
        "LMDT",
        "LMDT",
    ),
    Case(
        "status not allowed",
        lambda db: customers.change_customer(db, "C1", {"STAT": "30"}),
        InvalidValue,
        "STAT",
        "'30'",
    ),
    Case(
        "country unknown",
        lambda db: customers.change_customer(db, "C1", {"CSCD": "XX"}),
        InvalidValue,
        "CSCD",
        "'XX'",
    ),
    Case(
        "good and bad values together",
        lambda db: customers.change_customer(db, "C1", {"TOWN": "Lund", "CUTP": 10}),
        InvalidValue,
        "CUTP",
        "10",
    ),
    Case(
        "customer number too long",
        lambda db: customers.add_customer(db, "C1234567890", {}),
        InvalidValue,
        "CUNO",
        "C1234567890",
    ),
    Case(
        "customer number blank",
        lambda db: customers.add_customer(db, " ", {}),
        MissingValue,
        "CUNO",
        "CUNO",
    ),
    Case(
        "customer number with comma",
        lambda db: customers.add_customer(db, "C9,C8", {}),
        InvalidValue,
        "CUNO",
        "C9,C8",
    ),
    Case(
        "duplicate customer",
        lambda db: customers.add_customer(db, "C1", {"CUNM": "Again"}),
        AlreadyExists,
        "CUNO",
        "C1",
    ),
    Case(
        "unknown customer changed",
        lambda db: customers.change_customer(db, "C9", {"CUNM": "Nobody"}),
        NotFound,
        "CUNO",
        "C9",
    ),
    Case(
        "unknown customer deleted",
        lambda db: customers.delete_customer(db, "C9"),
        NotFound,
        "CUNO",
        "C9",
    ),
    # Addresses
    Case(
        "address of unknown customer",
        lambda db: customers.set_address(db, "C9", "D1", {"TOWN": "Lund"}),
        NotFound,
        "CUNO",
        "C9",
    ),
    Case(
        "address type zero",
        lambda db: customers.set_address(db, "C1", "D2", {"ADRT": 0}),
        InvalidValue,
        "ADRT",
        "0",
    ),
    Case(
        "address id too long",
        lambda db: customers.set_address(db, "C1", "D123456", {}),
        InvalidValue,
        "ADID",
        "D123456",
    ),
    Case(
        "address must exist",
        lambda db: customers.set_address(db, "C1", "D9", {}, must_exist=True),
        NotFound,
        "ADID",
        "D9",
    ),
    Case(
        "duplicate address",
        lambda db: customers.set_address(db, "C1", "D1", {}, must_exist=False),
        AlreadyExists,
        "ADID",
        "D1",
    ),
    Case(
        "unknown address deleted",
        lambda db: customers.delete_address(db, "C1", "D9"),
        NotFound,
        "ADID",
        "D9",
    ),
    Case(
        "address key field as input",
        lambda db: customers.set_address(db, "C1", "D1", {"CUNO": "C2"}),
        UnknownField,
        "CUNO",
        "CUNO",
    ),
    # Cards
    Case(
        "card of another customer",
        lambda db: customers.set_card(db, "C2", 1001, {"CTP1": 2}),
        RuleViolation,
        "CCNR",
        "1001",
    ),
    Case(
        "card number zero",
        lambda db: customers.set_card(db, "C1", 0, {}),
        InvalidValue,
        "CCNR",
        "0",
    ),
    Case(
        "card number too long",
        lambda db: customers.set_card(db, "C1", 10**16, {}),
        InvalidValue,
        "CCNR",
        str(10**16),
    ),
    Case(
        "card blocked code",
        lambda db: customers.set_card(db, "C1", 1001, {"BLCD": 2}),
        InvalidValue,
        "BLCD",
        "2",
    ),
    Case(
        "card month",
        lambda db: customers.set_card(db, "C1", 1002, {"VTMM": 13}),
        InvalidValue,
        "VTMM",
        "13",
    ),
    Case(
        "card main flag",
        lambda db: customers.set_card(db, "C1", 1002, {"MCRD": "x"}),
        InvalidValue,
        "MCRD",
        "'x'",
    ),
    Case(
        "card must exist",
        lambda db: customers.set_card(db, "C1", 1002, {}, must_exist=True),
        NotFound,
        "CCNR",
        "1002",
    ),
    Case(
        "unknown card deleted",
        lambda db: customers.delete_card(db, "C1", 1002),
        NotFound,
        "CCNR",
        "1002",
    ),
    Case(
        "card deleted from wrong customer",
        lambda db: customers.delete_card(db, "C2", 1001),
        NotFound,
        "CCNR",
        "1001",
    ),
    # Messages
    Case(
        "message text too long",
        lambda db: customers.set_message(db, "C1", "M2", "x" * 61),
        InvalidValue,
        "MSTX",
        "x" * 61,
    ),
    Case(
        "message priority zero",
        lambda db: customers.set_message(db, "C1", "M2", "Hi", priority=0),
        InvalidValue,
        "PRIO",
        "0",
    ),
    Case(
        "message id too long",
        lambda db: customers.set_message(db, "C1", "M1234567890", "Hi"),
        InvalidValue,
        "MSID",
        "M1234567890",
    ),
    Case(
        "unknown message deleted",
        lambda db: customers.delete_message(db, "C1", "M9"),
        NotFound,
        "MSID",
        "M9",
    ),
    # Subscribers
    Case(
        "duplicate subscriber",
        lambda db: shops.add_subscriber(db, "S1"),
        AlreadyExists,
        "SBS1",
        "S1",
    ),
    Case(
        "subscriber id too long",
        lambda db: shops.add_subscriber(db, "S1234567890"),
        InvalidValue,
        "SBS1",
        "S1234567890",
    ),
    Case(
        "subscriber name too long",
        lambda db: shops.add_subscriber(db, "S2", name="n" * 41),
        InvalidValue,
        "name",
        "n" * 41,
    ),
    Case(
        "subscriber name with control character",
        lambda db: shops.add_subscriber(db, "S2", name="Nordic\tPOS"),
        InvalidValue,
        "name",
        repr("Nordic\tPOS"),
    ),
    Case(
        "subscriber name not text",
        lambda db: shops.add_subscriber(db, "S2", name=5),  # type: ignore[arg-type]
        InvalidValue,
        "name",
        "5",
    ),
    Case(
        "unknown subscriber deleted",
        lambda db: shops.delete_subscriber(db, "S9"),
        NotFound,
        "SBS1",
        "S9",
    ),
    Case(
        "subscriber with shops deleted",
        lambda db: shops.delete_subscriber(db, "S1"),
        RuleViolation,
        "SBS1",
        "S1",
    ),
    # Shops
    Case(
        "duplicate shop",
        lambda db: shops.add_shop(db, "A01", "S1"),
        AlreadyExists,
        "WHLO",
        "A01",
    ),
    Case(
        "shop id too long",
        lambda db: shops.add_shop(db, "A012", "S1"),
        InvalidValue,
        "WHLO",
        "A012",
    ),
    Case(
        "shop of unknown subscriber",
        lambda db: shops.add_shop(db, "A02", "S9"),
        NotFound,
        "SBS1",
        "S9",
    ),
    Case(
        "shop with unknown segment",
        lambda db: shops.add_shop(db, "A02", "S1", segments=["NOPE"]),
        NotFound,
        "SEID",
        "NOPE",
    ),
    Case(
        "unknown shop changed",
        lambda db: shops.change_shop(db, "Z99", active=False),
        NotFound,
        "WHLO",
        "Z99",
    ),
    Case(
        "shop moved to unknown subscriber",
        lambda db: shops.change_shop(db, "A01", sbs1="S9"),
        NotFound,
        "SBS1",
        "S9",
    ),
    Case(
        "shop name too long",
        lambda db: shops.change_shop(db, "A01", name="n" * 41),
        InvalidValue,
        "name",
        "n" * 41,
    ),
    Case(
        "shop name with control character",
        lambda db: shops.change_shop(db, "A01", name="Malmö\x1b"),
        InvalidValue,
        "name",
        repr("Malmö\x1b"),
    ),
    Case(
        "unknown segment for shop",
        lambda db: shops.set_shop_segments(db, "A01", ["ALL", "NOPE"]),
        NotFound,
        "SEID",
        "NOPE",
    ),
    Case(
        "segments of unknown shop",
        lambda db: shops.set_shop_segments(db, "Z99", ["ALL"]),
        NotFound,
        "WHLO",
        "Z99",
    ),
    Case(
        "unknown shop deleted",
        lambda db: shops.delete_shop(db, "Z99"),
        NotFound,
        "WHLO",
        "Z99",
    ),
    # Segments
    Case(
        "duplicate segment",
        lambda db: shops.add_segment(db, "SE"),
        AlreadyExists,
        "SEID",
        "SE",
    ),
    Case(
        "condition without equals sign",
        lambda db: shops.add_segment(db, "GOLD", conditions=["CUCL"]),
        InvalidValue,
        "condition",
        "CUCL",
    ),
    Case(
        "condition on unknown field",
        lambda db: shops.add_segment(db, "GOLD", conditions=["XXXX=1"]),
        InvalidValue,
        "condition",
        "XXXX=1",
    ),
    Case(
        "condition value of wrong type",
        lambda db: shops.add_segment(db, "GOLD", conditions=["CUTP=x"]),
        InvalidValue,
        "CUTP",
        "'x'",
    ),
    Case(
        "condition value too long",
        lambda db: shops.change_segment(db, "SE", conditions=["CSCD=SWE"]),
        InvalidValue,
        "CSCD",
        "SWE",
    ),
    Case(
        "condition field twice",
        lambda db: shops.change_segment(db, "SE", conditions=["CUCL=A", "CUCL=B"]),
        InvalidValue,
        "condition",
        "CUCL",
    ),
    Case(
        "segment description too long",
        lambda db: shops.change_segment(db, "SE", description="d" * 61),
        InvalidValue,
        "description",
        "d" * 61,
    ),
    Case(
        "segment description with control character",
        lambda db: shops.change_segment(db, "SE", description="Sweden\r"),
        InvalidValue,
        "description",
        repr("Sweden\r"),
    ),
    Case(
        "unknown segment changed",
        lambda db: shops.change_segment(db, "NOPE", conditions=[]),
        NotFound,
        "SEID",
        "NOPE",
    ),
    Case(
        "unknown segment deleted",
        lambda db: shops.delete_segment(db, "NOPE"),
        NotFound,
        "SEID",
        "NOPE",
    ),
    Case(
        "segment in use deleted",
        lambda db: shops.delete_segment(db, "ALL"),
        RuleViolation,
        "SEID",
        "ALL",
    ),
    # Transfers
    Case(
        "export of unknown customer",
        lambda db: transfer.export_customer(db, "C9"),
        NotFound,
        "CUNO",
        "C9",
    ),
    Case(
        "net transfer of unknown subscriber",
        lambda db: transfer.net_transfer(db, sbs1="S9"),
        NotFound,
        "SBS1",
        "S9",
    ),
    Case(
        "unknown function",
        lambda db: transfer.net_transfer(db, function="purge"),
        InvalidValue,
        "function",
        "purge",
    ),
    Case(
        "force with update function",
        lambda db: transfer.net_transfer(db, force=True),
        InvalidValue,
        "force",
        "True",
    ),
    Case(
        "range reversed",
        lambda db: transfer.net_transfer(db, from_cuno="C5", to_cuno="C1"),
        InvalidValue,
        "to",
        "C1",
    ),
    # Outbox
    Case(
        "list of unknown subscriber",
        lambda db: outbox.list_records(db, "S9"),
        NotFound,
        "SBS1",
        "S9",
    ),
    Case(
        "negative maxrecs",
        lambda db: outbox.list_records(db, "S1", -1),
        InvalidValue,
        "maxrecs",
        "-1",
    ),
    Case(
        "confirm of unknown subscriber",
        lambda db: outbox.confirm_records(db, "S9"),
        NotFound,
        "SBS1",
        "S9",
    ),
    Case(
        "confirm up to zero",
        lambda db: outbox.confirm_records(db, "S1", up_to=0),
        InvalidValue,
        "TRNR",
        "0",
    ),
    Case(
        "cleanup of unknown subscriber",
        lambda db: outbox.cleanup(db, sbs1="S9"),
        NotFound,
        "SBS1",
        "S9",
    ),
]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def world(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Database]:
    """One world per backend for every case: a rejected call changes nothing,
    and each case compares the tables before and after its own call."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("master") / "posoutbox.db"
        database = open_database(f"sqlite:///{path}")
        schema_name = ""
    else:
        base = postgresql_base_url()
        schema_name = f"test_{uuid.uuid4().hex[:12]}"
        with sa.create_engine(normalise_url(base)).begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema_name}"'))
        separator = "&" if "?" in base else "?"
        options = quote(f"-csearch_path={schema_name}")
        database = open_database(f"{base}{separator}options={options}")
    migrate.upgrade(database)
    build_world(database)
    try:
        yield database
    finally:
        database.close()
        if schema_name:
            engine = sa.create_engine(normalise_url(postgresql_base_url()))
            with engine.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{schema_name}" CASCADE'))
            engine.dispose()


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_rejected_without_change(world: Database, case: Case) -> None:
    before = dump(world)

    with pytest.raises(case.error) as raised:
        case.call(world)

    assert type(raised.value) is case.error
    assert raised.value.field == case.field
    assert case.quoted in raised.value.message
    assert dump(world) == before


# Unicode normalisation


def test_nfd_name_stored_as_nfc(db: Database) -> None:
    build_world(db)
    decomposed = unicodedata.normalize("NFD", "Café Königlich")

    customers.add_customer(db, "C9", {"CUNM": decomposed})

    assert customers.get_customer(db, "C9")["CUNM"] == "Café Königlich"


def test_nfd_name_fits_after_normalisation(db: Database) -> None:
    build_world(db)
    decomposed = unicodedata.normalize("NFD", "é" * 36)

    customers.add_customer(db, "C9", {"CUNM": decomposed})

    assert len(decomposed) == 72
    assert customers.get_customer(db, "C9")["CUNM"] == "é" * 36


def test_nfd_name_too_long_after_normalisation(db: Database) -> None:
    build_world(db)
    before = dump(db)
    decomposed = unicodedata.normalize("NFD", "é" * 37)

    with pytest.raises(InvalidValue) as raised:
        customers.add_customer(db, "C9", {"CUNM": decomposed})

    assert raised.value.field == "CUNM"
    assert dump(db) == before


def test_nfd_change_equal_to_nfc_changes_nothing(db: Database) -> None:
    build_world(db)
    before = dump(db)

    _, changed = customers.change_customer(
        db, "C1", {"CUNM": unicodedata.normalize("NFD", "Åsa Lindqvist")}
    )

    assert changed is False
    assert dump(db) == before


def test_nfd_shop_name_fits_after_normalisation(db: Database) -> None:
    build_world(db)
    decomposed = unicodedata.normalize("NFD", "Ö" * 40)

    shop = shops.change_shop(db, "A01", name=decomposed)

    assert len(decomposed) == 80
    assert shop.name == "Ö" * 40


def test_nfc_text_reaches_records(db: Database) -> None:
    build_world(db)
    customers.add_customer(
        db, "C9", {"CUNM": unicodedata.normalize("NFD", "Café Königlich")}
    )

    transfer.net_transfer(db)
    records = outbox.browse_records(db, "S1", cuno="C9")

    assert records[0].decoded()["CUNM"] == "Café Königlich"
    assert "Café Königlich" in str(records[0].as_fields()["RDDA"])

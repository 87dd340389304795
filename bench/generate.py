"""Deterministic test data for the benchmarks, loaded through the bulk path.

Faker in several locales fills pools of names, streets, towns, postal codes,
phone numbers and e-mail addresses once per seed. Customers combine pool
entries through a seeded ``random.Random``. Calling Faker per customer would
cost about 100 µs each, longer than the transfer being measured. Every pool
value passes ``fields.validate``, so the bulk-loaded rows are what the master
functions would have stored.

Customers loaded here bypass ``customers.add_customer`` and so have no change
rows: COPY on PostgreSQL, ``executemany`` in large transactions on SQLite.
"""

from __future__ import annotations

import datetime
import random
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from faker import Faker

from posoutbox import fields
from posoutbox.db import schema
from posoutbox.db.storage import Database, insert_rows

#: Locale, country (CSCD), language (LNCD) and currency (CUCD) of each market.
MARKETS: tuple[tuple[str, str, str, str], ...] = (
    ("sv_SE", "SE", "SV", "SEK"),
    ("de_DE", "DE", "DE", "EUR"),
    ("fr_FR", "FR", "FR", "EUR"),
    ("nl_NL", "NL", "NL", "EUR"),
    ("it_IT", "IT", "IT", "EUR"),
    ("es_ES", "ES", "ES", "EUR"),
    ("pl_PL", "PL", "PL", "PLN"),
    ("en_GB", "GB", "EN", "GBP"),
)

#: Customer groups (CUCL) with their weights.
CUSTOMER_GROUPS: tuple[tuple[str, int], ...] = (
    ("RET", 70),
    ("VIP", 10),
    ("EMP", 5),
    ("WHS", 15),
)

#: Entries per pool and market; customers repeat pool entries in new combinations.
POOL_SIZE = 2_000

#: Rows written per COPY or per SQLite transaction.
LOAD_CHUNK = 50_000

FIRST_CARD_NUMBER = 7_000_000_000_000_000


def customer_number(index: int) -> str:
    """Return the CUNO of the customer with this 0-based index."""
    return f"C{index:09d}"


@dataclass
class _Pool:
    names: list[str] = field(default_factory=list)
    streets: list[str] = field(default_factory=list)
    towns: list[str] = field(default_factory=list)
    postcodes: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    mails: list[str] = field(default_factory=list)
    areas: list[str] = field(default_factory=list)


def _fit(name: str, text: str) -> str:
    """Cut a generated value to its field, then check it as a save would."""
    length = fields.FIELDS[name].length
    text = unicodedata.normalize("NFC", text.replace("\n", " "))[:length].rstrip(" ")
    return str(fields.validate(name, text))


def _build_pools(seed: int, size: int) -> dict[str, _Pool]:
    pools: dict[str, _Pool] = {}
    for number, (locale, _, _, _) in enumerate(MARKETS):
        faker = Faker(locale)
        faker.seed_instance(seed * 1_000 + number)
        pool = _Pool()
        for _ in range(size):
            pool.names.append(_fit("CUNM", faker.name()))
            pool.streets.append(_fit("CUA1", faker.street_address()))
            pool.towns.append(_fit("TOWN", faker.city()))
            pool.postcodes.append(_fit("PONO", faker.postcode()))
            pool.phones.append(_fit("PHNO", faker.phone_number()))
            pool.mails.append(_fit("MAIL", faker.email()))
        pool.areas = [f"{number}{letter}" for letter in "ABCDEFGH"]
        pools[locale] = pool
    return pools


@dataclass
class Dataset:
    """Rows of the four master tables for a range of customers."""

    customers: list[tuple[Any, ...]] = field(default_factory=list)
    addresses: list[tuple[Any, ...]] = field(default_factory=list)
    cards: list[tuple[Any, ...]] = field(default_factory=list)
    messages: list[tuple[Any, ...]] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return (
            len(self.customers)
            + len(self.addresses)
            + len(self.cards)
            + len(self.messages)
        )


CUSTOMER_COLUMNS = (
    *(name.lower() for name in fields.CUSTOMER_FIELDS),
    "changed_at",
    "changed_by",
)
ADDRESS_COLUMNS = (
    *(name.lower() for name in fields.ADDRESS_FIELDS),
    "changed_at",
    "changed_by",
)
CARD_COLUMNS = (
    *(name.lower() for name in fields.CARD_FIELDS),
    "changed_at",
    "changed_by",
)
MESSAGE_COLUMNS = (
    *(name.lower() for name in fields.MESSAGE_FIELDS),
    "changed_at",
    "changed_by",
)


class Generator:
    """Customers, delivery addresses, cards and messages, the same for a seed.

    Customer ``i`` depends only on the seed, the pool size and ``i``, so a run
    that loads 100,000 customers and then 900,000 more contains the same data
    as one that loads a million at once.
    """

    def __init__(self, seed: int, pool_size: int = POOL_SIZE) -> None:
        self.seed = seed
        self.pools = _build_pools(seed, pool_size)
        self.loaded_at = datetime.datetime(2026, 1, 1)
        self._groups = [group for group, _ in CUSTOMER_GROUPS]
        self._weights = [weight for _, weight in CUSTOMER_GROUPS]

    def chunk(self, start: int, stop: int) -> Dataset:
        """Return the rows of customers ``start`` to ``stop - 1``."""
        dataset = Dataset()
        for index in range(start, stop):
            self._customer(index, dataset)
        return dataset

    def _customer(self, index: int, dataset: Dataset) -> None:
        rng = random.Random(self.seed * 1_000_003 + index)
        locale, country, language, currency = MARKETS[index % len(MARKETS)]
        pool = self.pools[locale]
        cuno = customer_number(index)
        name = rng.choice(pool.names)
        street = rng.choice(pool.streets)
        town = rng.choice(pool.towns)
        postcode = rng.choice(pool.postcodes)
        area = rng.choice(pool.areas)
        phone = rng.choice(pool.phones)
        draw = rng.random()
        status = "20"
        if draw >= 0.98:
            status = "90"
        elif draw >= 0.95:
            status = "10"
        group = rng.choices(self._groups, self._weights)[0]
        now = self.loaded_at
        dataset.customers.append(
            (
                cuno,
                name,
                street,
                "",
                "",
                "",
                postcode,
                town,
                area,
                country,
                phone,
                rng.choice(pool.phones) if rng.random() < 0.3 else "",
                "",
                rng.choice(pool.mails),
                "",
                language,
                currency,
                9 if rng.random() < 0.05 else 0,
                group,
                f"D{index % 40:02d}",
                status,
                20260101,
                now,
                "bench",
            )
        )
        # A delivery address for everyone, an invoice address (type 2, stored
        # but never sent to POS) for one in five.
        owner = (cuno, name, area, country, phone)
        self._address(rng, pool, owner, (1, "DLV1"), dataset)
        if rng.random() < 0.2:
            self._address(rng, pool, owner, (2, "INV1"), dataset)
        self._cards(rng, index, cuno, dataset)
        if rng.random() < 0.1:
            dataset.messages.append(
                (
                    cuno,
                    "CASH",
                    rng.randint(1, 9),
                    f"Check identity for customer {cuno}",
                    self.loaded_at,
                    "bench",
                )
            )

    def _address(
        self,
        rng: random.Random,
        pool: _Pool,
        customer: tuple[Any, ...],
        address: tuple[int, str],
        dataset: Dataset,
    ) -> None:
        cuno, name, area, country, phone = customer
        address_type, address_id = address
        dataset.addresses.append(
            (
                cuno,
                address_type,
                address_id,
                name,
                rng.choice(pool.streets),
                "",
                "",
                "",
                rng.choice(pool.postcodes),
                rng.choice(pool.towns),
                area,
                country,
                phone,
                self.loaded_at,
                "bench",
            )
        )

    def _cards(
        self, rng: random.Random, index: int, cuno: str, dataset: Dataset
    ) -> None:
        for number in range(1 if rng.random() < 0.7 else 2):
            dataset.cards.append(
                (
                    cuno,
                    FIRST_CARD_NUMBER + index * 4 + number,
                    rng.randint(1, 3),
                    1 if rng.random() < 0.03 else 0,
                    "1" if number == 0 else "0",
                    rng.randint(1, 12),
                    rng.randint(2026, 2030),
                    f"Loyalty {index}/{number}",
                    self.loaded_at,
                    "bench",
                )
            )


_TABLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("customers", CUSTOMER_COLUMNS),
    ("addresses", ADDRESS_COLUMNS),
    ("cards", CARD_COLUMNS),
    ("messages", MESSAGE_COLUMNS),
)


def load_customers(db: Database, generator: Generator, start: int, stop: int) -> int:
    """Bulk-load customers ``start`` to ``stop - 1``; return the rows written.

    No change rows are written, as after a database restore: a net transfer
    sends these customers only through the initial load of a shop.
    """
    written = 0
    for chunk_start in range(start, stop, LOAD_CHUNK):
        dataset = generator.chunk(chunk_start, min(stop, chunk_start + LOAD_CHUNK))
        parts = (dataset.customers, dataset.addresses, dataset.cards, dataset.messages)
        if db.dialect == "postgresql":
            _copy_postgresql(db, parts)
        else:
            _insert_sqlite(db, parts)
        written += dataset.rows
    return written


def _copy_postgresql(db: Database, parts: Sequence[list[tuple[Any, ...]]]) -> None:
    # insert_rows is posoutbox's own binary COPY.
    with db.transaction() as conn:
        for (table, columns), rows in zip(_TABLES, parts, strict=True):
            insert_rows(conn, schema.metadata.tables[table], columns, rows)


def _insert_sqlite(db: Database, parts: Sequence[list[tuple[Any, ...]]]) -> None:
    with db.transaction() as conn:
        for (table, columns), rows in zip(_TABLES, parts, strict=True):
            if not rows:
                continue
            marks = ", ".join("?" for _ in columns)
            statement = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
            conn.exec_driver_sql(statement, rows)


def analyze(db: Database) -> None:
    """Refresh the planner statistics after a bulk load."""
    with db.transaction() as conn:
        conn.execute(sa.text("ANALYZE"))


def check_schema_columns() -> None:
    """Fail early when the schema no longer has the columns loaded here."""
    for table_name, columns in _TABLES:
        table = schema.metadata.tables[table_name]
        missing = [name for name in columns if name not in table.c]
        if missing:
            raise RuntimeError(f"table {table_name} has no column {missing[0]}")

"""Shared fixtures: a fresh, migrated database per test, on SQLite and PostgreSQL.

PostgreSQL tests read the server address from POSOUTBOX_TEST_DATABASE_URL and
give each test a schema of its own. Outside CI they skip when the variable is
unset; in CI (CI=true) a missing address is an error, so nothing skips there.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from posoutbox.db import migrate
from posoutbox.db.storage import Database, normalise_url, open_database

POSTGRESQL_URL_VARIABLE = "POSOUTBOX_TEST_DATABASE_URL"


def postgresql_base_url() -> str:
    """Return the PostgreSQL server URL for tests, or skip (fail in CI)."""
    url = os.environ.get(POSTGRESQL_URL_VARIABLE, "")
    if url:
        return url
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(
            f"{POSTGRESQL_URL_VARIABLE} is not set, and PostgreSQL tests must run in CI"
        )
    pytest.skip(
        f"{POSTGRESQL_URL_VARIABLE} is not set: no PostgreSQL server to test against"
    )


@pytest.fixture
def postgresql_url() -> Iterator[str]:
    """A PostgreSQL URL whose search path is a new, empty schema."""
    base = postgresql_base_url()
    schema_name = f"test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(normalise_url(base))
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema_name}"'))
    separator = "&" if "?" in base else "?"
    options = quote(f"-csearch_path={schema_name}")
    try:
        yield f"{base}{separator}options={options}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema_name}" CASCADE'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'posoutbox.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """The URL of a fresh, empty database, once per backend."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgresql_url"))
    return str(request.getfixturevalue("sqlite_url"))


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    """A migrated database on each backend."""
    database = open_database(database_url)
    migrate.upgrade(database)
    try:
        yield database
    finally:
        database.close()


@pytest.fixture
def sqlite_db(sqlite_url: str) -> Iterator[Database]:
    """A migrated SQLite database, for tests that need one backend only."""
    database = open_database(sqlite_url)
    migrate.upgrade(database)
    try:
        yield database
    finally:
        database.close()

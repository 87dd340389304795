"""Schema migrations: the migrated schema is the one the metadata describes.

A schema built by ``metadata.create_all`` and one built by running every
migration must be the same, on SQLite and PostgreSQL, down to the partial
index predicates and the TRNR sequence that storage relies on.
"""

from __future__ import annotations

import datetime
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from conftest import postgresql_base_url
from outbox_states import record_states
from posoutbox import outbox
from posoutbox.db import migrate, schema
from posoutbox.db.storage import Database, normalise_url, open_database
from posoutbox.errors import RuleViolation, SchemaNotCurrent


@pytest.fixture
def second_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """Another fresh, empty database on the same backend as ``database_url``."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'created.db'}"
        return
    base = postgresql_base_url()
    schema_name = f"test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(normalise_url(base))
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema_name}"'))
    separator = "&" if "?" in base else "?"
    try:
        yield f"{base}{separator}options={quote(f'-csearch_path={schema_name}')}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema_name}" CASCADE'))
        admin.dispose()


def _differences(db: Database) -> list[Any]:
    # Alembic reports every text default as changed on SQLite ('' against
    # "''"), so defaults are compared there by _structure only.
    options = {
        "compare_type": True,
        "compare_server_default": db.dialect == "postgresql",
    }
    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts=options)
        return list(compare_metadata(context, schema.metadata))


def _index_definitions(conn: sa.Connection) -> dict[str, str]:
    """Return each index's definition as the database reports it, predicates
    included, which the inspector leaves out on SQLite."""
    if conn.dialect.name == "postgresql":
        rows = conn.execute(
            sa.text(
                "SELECT indexname, indexdef FROM pg_indexes"
                " WHERE schemaname = current_schema()"
            )
        ).all()
        # The definitions name the schema, which differs between the two.
        definitions = {
            name: re.sub(r" ON \S+\.", " ON ", definition) for name, definition in rows
        }
    else:
        rows = conn.execute(
            sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'index'")
        ).all()
        definitions = {name: " ".join((sql or "").split()) for name, sql in rows}
    return {
        name: definition
        for name, definition in definitions.items()
        if "alembic_version" not in name
    }


def _structure(db: Database) -> dict[str, Any]:
    """Return the tables, columns, constraints, indexes and sequences of a schema."""
    inspector = sa.inspect(db.engine)
    tables: dict[str, Any] = {}
    for table in sorted(inspector.get_table_names()):
        if table == "alembic_version":
            continue
        tables[table] = {
            "columns": [
                (
                    column["name"],
                    str(column["type"]),
                    column["nullable"],
                    column.get("default"),
                )
                for column in inspector.get_columns(table)
            ],
            "primary_key": inspector.get_pk_constraint(table),
            "foreign_keys": sorted(
                (key["name"] or "", key["constrained_columns"], key["referred_table"])
                for key in inspector.get_foreign_keys(table)
            ),
            "unique": sorted(
                (unique["name"] or "", unique["column_names"])
                for unique in inspector.get_unique_constraints(table)
            ),
        }
    with db.engine.connect() as conn:
        indexes = _index_definitions(conn)
    sequences = (
        sorted(inspector.get_sequence_names())
        if db.engine.dialect.name == "postgresql"
        else []
    )
    return {"tables": tables, "indexes": indexes, "sequences": sequences}


def test_migrated_schema_matches_metadata(db: Database) -> None:
    assert _differences(db) == []


def test_created_schema_equals_migrated(db: Database, second_url: str) -> None:
    created = open_database(second_url)
    try:
        schema.metadata.create_all(created.engine)
        assert _differences(created) == []
        assert _structure(created) == _structure(db)
    finally:
        created.close()


def test_migrated_postgresql_has_trnr_sequence(postgresql_url: str) -> None:
    db = open_database(postgresql_url)
    try:
        migrate.upgrade(db)
        assert "records_trnr_seq" in _structure(db)["sequences"]
    finally:
        db.close()


def test_upgrade_twice_changes_nothing(db: Database) -> None:
    head = migrate.head_revision()
    before = _structure(db)

    assert migrate.upgrade(db) == (head, head)

    assert migrate.current_revision(db) == head
    assert _structure(db) == before
    db.check_schema()


def test_check_schema_without_revision(database_url: str) -> None:
    db = open_database(database_url)
    try:
        with pytest.raises(SchemaNotCurrent) as raised:
            db.check_schema()
    finally:
        db.close()
    assert "has no posoutbox schema" in raised.value.message
    assert "run 'posoutbox db upgrade'" in raised.value.message


def test_check_schema_of_created_tables_without_revision(database_url: str) -> None:
    """Tables made without the migrations carry no revision, so posoutbox cannot
    tell which migrations they lack, and the error names the upgrade command."""
    db = open_database(database_url)
    try:
        schema.metadata.create_all(db.engine)
        with pytest.raises(SchemaNotCurrent) as raised:
            db.check_schema()
    finally:
        db.close()
    assert "posoutbox db upgrade" in raised.value.message


def _older_revisions() -> list[str]:
    script = ScriptDirectory.from_config(migrate.alembic_config())
    return [
        revision.revision
        for revision in script.walk_revisions()
        if revision.revision != migrate.head_revision()
    ]


@pytest.mark.parametrize("revision", _older_revisions())
def test_check_schema_at_older_revision(database_url: str, revision: str) -> None:
    db = open_database(database_url)
    try:
        migrate.upgrade(db, revision)
        with pytest.raises(SchemaNotCurrent) as raised:
            db.check_schema()
        migrate.upgrade(db)
        db.check_schema()
        assert _differences(db) == []
    finally:
        db.close()
    expected = f"has schema revision {revision}, expected {migrate.head_revision()}"
    assert expected in raised.value.message
    assert "posoutbox db upgrade" in raised.value.message


def test_downgrade_and_upgrade_again(db: Database) -> None:
    """Every migration's downgrade undoes it, so the schema comes back the same."""
    before = _structure(db)
    revisions = _older_revisions()
    for revision in revisions:
        command.downgrade(migrate.alembic_config(db), revision)
        assert migrate.current_revision(db) == revision
    migrate.upgrade(db)
    assert _structure(db) == before
    assert _differences(db) == []


def _database_at(url: str, revision: str) -> Database:
    database = open_database(url)
    migrate.upgrade(database, revision)
    return database


def test_record_states_become_positions(database_url: str) -> None:
    """Upgrading to outbox positions keeps every record's state, and the time
    and user of each listing and confirmation that cleanup and the audit use."""
    db = _database_at(database_url, "0004")
    day_one = datetime.datetime(2026, 11, 1, 8, 0)
    day_two = datetime.datetime(2026, 11, 2, 8, 0)
    # S1: records 1-2 confirmed on day one, 3 confirmed on day two, 4-5
    # listed, 6 new. S2 has only new records, S3 none at all.
    rows = [
        (1, "S1", "confirmed", day_one, "pos-a", day_one, "pos-a"),
        (2, "S1", "confirmed", day_one, "pos-a", day_one, "pos-a"),
        (3, "S1", "confirmed", day_two, "pos-b", day_two, "pos-b"),
        (4, "S1", "listed", day_two, "pos-b", None, ""),
        (5, "S1", "listed", day_two, "pos-b", None, ""),
        (6, "S1", "new", None, "", None, ""),
        (7, "S2", "new", None, "", None, ""),
    ]
    with db.transaction() as conn:
        for sbs1 in ("S1", "S2", "S3"):
            conn.execute(
                sa.text(
                    "INSERT INTO subscribers (sbs1, name, changed_at, changed_by) "
                    "VALUES (:sbs1, '', :now, '')"
                ),
                {"sbs1": sbs1, "now": day_one},
            )
        for trnr, sbs1, state, listed_at, listed_by, confirmed_at, confirmed_by in rows:
            conn.execute(
                sa.text(
                    "INSERT INTO records (trnr, sbs1, trtp, acct, cuno, data, set_id, "
                    "origin, state, created_at, listed_at, listed_by, confirmed_at, "
                    "confirmed_by) VALUES (:trnr, :sbs1, 'OCUSMA', '*UPD', 'C1', "
                    "'C1', 1, 'net', :state, :created, :listed_at, :listed_by, "
                    ":confirmed_at, :confirmed_by)"
                ),
                {
                    "trnr": trnr,
                    "sbs1": sbs1,
                    "state": state,
                    "created": day_one,
                    "listed_at": listed_at,
                    "listed_by": listed_by,
                    "confirmed_at": confirmed_at,
                    "confirmed_by": confirmed_by,
                },
            )
    db.close()

    db = _database_at(database_url, "head")
    try:
        assert record_states(db) == {
            1: "confirmed",
            2: "confirmed",
            3: "confirmed",
            4: "listed",
            5: "listed",
            6: "new",
            7: "new",
        }
        moves = schema.outbox_moves
        with db.reading() as conn:
            positions = conn.execute(
                sa.select(schema.outbox_positions).order_by("sbs1")
            ).all()
            history = conn.execute(
                sa.select(
                    moves.c.sbs1, moves.c.kind, moves.c.trnr, moves.c.moved_by
                ).order_by(moves.c.kind, moves.c.trnr)
            ).all()
        assert [tuple(row) for row in positions] == [
            ("S1", 5, 3),
            ("S2", 0, 0),
            ("S3", 0, 0),
        ]
        assert [tuple(row) for row in history] == [
            ("S1", "confirmed", 2, "pos-a"),
            ("S1", "confirmed", 3, "pos-b"),
            ("S1", "listed", 2, "pos-a"),
            ("S1", "listed", 5, "pos-b"),
        ]
        # Confirmed before day two: records 1 and 2 only.
        removed = outbox.cleanup(db, sbs1="S1", before=day_two.date())
        assert dict(removed.removed) == {"S1": 2}
        assert sorted(record_states(db)) == [3, 4, 5, 6, 7]
    finally:
        db.close()


def test_records_out_of_order_stop_the_upgrade(database_url: str) -> None:
    """A new record below a listed one cannot be kept as a position: the
    upgrade stops and changes nothing."""
    db = _database_at(database_url, "0004")
    now = datetime.datetime(2026, 11, 1, 8, 0)
    with db.transaction() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO subscribers (sbs1, name, changed_at, changed_by) "
                "VALUES ('S1', '', :now, '')"
            ),
            {"now": now},
        )
        for trnr, state in ((1, "new"), (2, "listed")):
            conn.execute(
                sa.text(
                    "INSERT INTO records (trnr, sbs1, trtp, acct, cuno, data, set_id, "
                    "origin, state, created_at) VALUES (:trnr, 'S1', 'OCUSMA', "
                    "'*UPD', 'C1', 'C1', 1, 'net', :state, :now)"
                ),
                {"trnr": trnr, "state": state, "now": now},
            )
    try:
        with pytest.raises(RuleViolation, match="subscriber\\(s\\) S1 are not listed"):
            migrate.upgrade(db)
        assert migrate.current_revision(db) == "0004"
    finally:
        db.close()

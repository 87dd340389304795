"""Alembic environment: runs migrations on the engine that posoutbox passes in."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Engine

from posoutbox.db.schema import metadata

engine: Engine = context.config.attributes["engine"]

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()

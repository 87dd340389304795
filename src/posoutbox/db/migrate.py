"""Schema migrations through Alembic, configured in code so that the installed
package carries everything it needs."""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING

from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

if TYPE_CHECKING:
    from posoutbox.db.storage import Database

logger = logging.getLogger(__name__)

SCRIPT_LOCATION = "posoutbox.db:migrations"


def alembic_config(database: Database | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    if database is not None:
        config.attributes["engine"] = database.engine
    return config


@functools.cache
def head_revision() -> str:
    """Return the newest migration, read once per process from the scripts."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(database: Database) -> str | None:
    with database.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(database: Database, revision: str = "head") -> tuple[str | None, str]:
    """Create or migrate the schema; return the revisions before and after."""
    from alembic import command

    before = current_revision(database)
    command.upgrade(alembic_config(database), revision)
    after = current_revision(database)
    logger.info(
        "schema upgraded from %s to %s",
        before,
        after,
        extra={"action": "schema_upgrade"},
    )
    assert after is not None
    return before, after

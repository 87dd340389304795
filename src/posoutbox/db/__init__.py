"""Storage: the schema, its migrations and the database handle."""

from posoutbox.db.storage import Database, open_database

__all__ = ["Database", "open_database"]

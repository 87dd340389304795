"""The ``db`` commands: create or migrate the schema, and show its revision."""

from __future__ import annotations

import typer

from posoutbox.cli import common
from posoutbox.db import migrate
from posoutbox.db.storage import redact_url

app = typer.Typer(name="db", help="Create, migrate and inspect the database schema.")


@app.command("upgrade")
def upgrade() -> None:
    """Create the schema, or migrate it to the newest revision."""
    with common.open_db(check_schema=False) as db:
        before, after = migrate.upgrade(db)
    if before == after:
        common.echo(f"schema already at revision {after}")
    else:
        common.echo(f"schema upgraded from revision {before or '(none)'} to {after}")


@app.command("status")
def status(as_json: common.JsonOption = False) -> None:
    """Show the schema revision, and exit 1 when 'posoutbox db upgrade' is needed."""
    with common.open_db(check_schema=False) as db:
        missing = common.missing_sqlite_file(db)
        current = None if missing else migrate.current_revision(db)
        head = migrate.head_revision()
        url = redact_url(db.url)

    if as_json:
        common.print_json(
            {
                "URL": url,
                "REVISION": current or "",
                "HEAD": head,
                "CURRENT": "1" if current == head else "0",
            }
        )
    else:
        common.echo(f"database:  {url}")
        common.echo(f"revision:  {current or '(none)'}")
        common.echo(f"newest:    {head}")
    if current != head:
        common.note("the schema is not current: run 'posoutbox db upgrade'")
        raise typer.Exit(common.EXIT_ERROR)

"""The ``demo`` command: a guided run of posoutbox on a database of its own."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import typer

from posoutbox.cli import common

app = typer.Typer()


@app.command("demo")
def demo(
    database: Annotated[
        Path | None,
        typer.Option(
            "--database",
            metavar="PATH",
            dir_okay=False,
            help="SQLite file for the demo (default: a new file in a new temporary "
            "directory). --database-url is not used.",
        ),
    ] = None,
) -> None:
    """Run a demonstration on a new database: shops, customers, net transfers and
    a POS polling the outbox."""
    # Imported here so that the other commands never load the demo.
    from posoutbox.demo import run_demo

    if database is None:
        directory = Path(tempfile.mkdtemp(prefix="posoutbox-demo-"))
        database = directory / "posoutbox.db"
    common.note(f"demo database: {database}")
    raise typer.Exit(run_demo(database))

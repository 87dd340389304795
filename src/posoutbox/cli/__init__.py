"""The ``posoutbox`` command line: a thin layer of Typer commands over the services."""

from posoutbox.cli.app import app, main

__all__ = ["app", "main"]

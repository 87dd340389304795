"""The root ``posoutbox`` command: global options and the list of command modules.

To add commands, write a module in this package that defines a ``typer.Typer``
named ``app``. Give it ``name=`` for a command group such as ``customer``, and
no name for top-level commands such as ``export``. Then register it below with
one line: ``app.add_typer(module.app)``, or an entry in LAZY_COMMANDS when the
module imports something heavy such as FastAPI.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Annotated

import click
import typer
from typer.core import TyperGroup

from posoutbox.cli import (
    children,
    common,
    customer,
    database,
    demo,
    outbox,
    shops,
    transfer,
)
from posoutbox.db.storage import DEFAULT_URL

#: Commands whose module is imported only when the command runs or when help
#: lists it, as {command name: "module:Typer attribute"}. Importing FastAPI and
#: uvicorn for the API server took about a second when measured, which every
#: other command would pay too.
LAZY_COMMANDS = {
    "serve": "posoutbox.cli.server:app",
    "user": "posoutbox.cli.server:user_app",
    "pos-agent": "posoutbox.cli.agent:app",
}


class LazyGroup(TyperGroup):
    """The root command group, which loads the commands of LAZY_COMMANDS on demand."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = super().list_commands(ctx)
        return [*names, *(name for name in LAZY_COMMANDS if name not in names)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_COMMANDS and cmd_name not in self.commands:
            command = _load_command(ctx, cmd_name)
            if command is not None:
                self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)


def _load_command(ctx: click.Context, name: str) -> click.Command | None:
    module_name, _, attribute = LAZY_COMMANDS[name].partition(":")
    typer_app = getattr(importlib.import_module(module_name), attribute)
    # Built inside a holder group, the way add_typer below builds it, so that a
    # group keeps its name and gets no shell-completion options.
    holder = typer.Typer(add_completion=False)
    holder.add_typer(typer_app)
    group = typer.main.get_command(holder)
    assert isinstance(group, click.Group)
    return group.get_command(ctx, name)


app = typer.Typer(
    cls=LazyGroup,
    name="posoutbox",
    help="Customer download from the ERP customer master to the POS systems of "
    "many shops, with an M3-compatible outbox.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.add_typer(database.app)
app.add_typer(customer.app)
app.add_typer(children.address_app)
app.add_typer(children.card_app)
app.add_typer(children.message_app)
app.add_typer(shops.subscriber_app)
app.add_typer(shops.shop_app)
app.add_typer(shops.segment_app)
app.add_typer(transfer.app)
app.add_typer(outbox.app)
app.add_typer(outbox.cleanup_app)
app.add_typer(demo.app)


@app.callback()
def global_options(
    database_url: Annotated[
        str,
        typer.Option(
            "--database-url",
            envvar=common.DATABASE_URL_VARIABLE,
            help="Database: sqlite:///FILE or postgresql://USER@HOST/DATABASE.",
        ),
    ] = DEFAULT_URL,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="Log at DEBUG level and show tracebacks on error."
        ),
    ] = False,
) -> None:
    """Keep the customer master, the shops and the outbox that POS systems poll."""
    common.configure(database_url, verbose)


def main(args: Sequence[str] | None = None) -> None:
    """Run the command line and exit with its exit code."""
    sys.exit(common.run_command(typer.main.get_command(app), args))

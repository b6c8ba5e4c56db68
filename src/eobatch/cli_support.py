"""What every `eobatch` command shares: consoles, options, settings and store, in one place.

Errors end a command with one line on stderr and an exit code (2: bad settings, 1: anything
else), never a traceback: the message names what is wrong and what to do.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from eobatch.config import Settings, SettingsError, load_settings, unknown_variables

if TYPE_CHECKING:
    from eobatch.store import Database

console = Console()
errors = Console(stderr=True, soft_wrap=True)  # an error stays one line, however long

DataDir: Any = typer.Option(
    None, "--data-dir", help="Data directory (default: $EOBATCH_DATA_DIR or ./eobatch-data)."
)
Json: Any = typer.Option(False, "--json", help="Print JSON instead of a table.")


def print_table(table: Table) -> None:
    """Print `table` as wide as its content needs, even past the terminal's width: its ids
    are copied into other commands and must never be cut or folded."""
    needed = Measurement.get(console, console.options.update(width=100_000), table).maximum
    Console(width=max(console.width, needed)).print(table)


def settings_or_exit(data_dir: Path | None) -> Settings:
    """The settings, or a one-line error per bad EOBATCH_* value and exit code 2."""
    for warning in unknown_variables():
        errors.print(f"[yellow]warning:[/] {warning}")
    try:
        return load_settings(data_dir=data_dir) if data_dir else load_settings()
    except SettingsError as exc:
        for line in str(exc).splitlines():
            errors.print(f"[red]error:[/] {line}", highlight=False)
        raise typer.Exit(2) from None


def database_or_exit(settings: Settings, upgrade: bool = False) -> Database:
    """The store at its newest schema, or a one-line error naming it and exit code 1. Only
    `upgrade` (serve, demo) migrates a PostgreSQL store; an embedded SQLite one always is."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from eobatch.sealing import SealingError
    from eobatch.service import open_database
    from eobatch.store.db import NotUpgraded, UnknownSchema

    try:
        return open_database(settings, upgrade)
    except (SealingError, UnknownSchema, NotUpgraded) as exc:
        errors.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    except SQLAlchemyError as exc:
        url = make_url(settings.resolved_database_url).render_as_string(hide_password=True)
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        errors.print(
            f"[red]error:[/] cannot open the store {url}: {reason}; check "
            "EOBATCH_DATABASE_URL and that the database server runs",
            highlight=False,
        )
        raise typer.Exit(1) from None


def listening_socket_or_exit(host: str, port: int) -> socket.socket:
    """A socket bound to `host:port` for the HTTP server, taken before anything else starts
    (migrations, the Dask cluster: whose own ports could otherwise take this one meanwhile);
    exit with a clear message when it cannot be had."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        sock.bind((host, port))
    except OSError as exc:
        errors.print(
            f"[red]error:[/] cannot listen on {host}:{port}: {exc.strerror or exc}; "
            "is another eobatch serve running? Choose another port with --port.",
            highlight=False,
        )
        raise typer.Exit(1) from None
    return sock


@contextmanager
def one_controller(settings: Settings, purpose: str, needed: bool = True) -> Iterator[None]:
    """Hold the store's controller lock (SQLite: one controller per database), or exit 1."""
    from eobatch.controller_lock import ControllerLockError, controller_lock

    if not needed:
        yield
        return
    try:
        with controller_lock(settings, purpose):
            yield
    except ControllerLockError as exc:
        errors.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None

"""`eobatch` command line: serve, accounts, tasks (cli_tasks.py), grids, demo."""

from __future__ import annotations

import json
import shlex
from importlib.metadata import version
from pathlib import Path

import typer
from rich.table import Table

from eobatch import accounts as account_store
from eobatch.cli_secrets import secrets_app
from eobatch.cli_support import DataDir, Json, console, print_table
from eobatch.cli_support import database_or_exit as _db
from eobatch.cli_support import listening_socket_or_exit as _listen
from eobatch.cli_support import one_controller as _one_controller
from eobatch.cli_support import settings_or_exit as _settings
from eobatch.cli_tasks import tasks_app
from eobatch.config import Settings
from eobatch.errors import EobatchError
from eobatch.lifecycle.billing import to_pu

app = typer.Typer(
    help="eobatch: a self-hostable Sentinel Hub Batch Processing V2 service.",
    no_args_is_help=True,
    add_completion=False,
)
accounts_app = typer.Typer(help="Accounts and their OAuth clients.", no_args_is_help=True)
app.add_typer(accounts_app, name="accounts")
app.add_typer(tasks_app, name="tasks")
app.add_typer(secrets_app, name="secrets")


def _version(show: bool) -> None:
    if show:
        console.print(f"eobatch {version('eobatch')}")
        raise typer.Exit()


@app.callback()
def main(
    _: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """eobatch: a self-hostable Sentinel Hub Batch Processing V2 service."""


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="TCP port."),
    controller: bool = typer.Option(True, help="Run the controller and its Dask cluster too."),
    json_logs: bool = typer.Option(
        False, "--json-logs", help="One JSON object per log line (as EOBATCH_LOG_FORMAT=json)."
    ),
    data_dir: Path | None = DataDir,
) -> None:
    """Run the API, the controller and the local Dask cluster (docs/deployment.md)."""
    from eobatch.service import serve as run

    settings = _settings(data_dir)
    if json_logs:
        settings = settings.model_copy(update={"log_format": "json"})
    sock = _listen(host, port)
    with _one_controller(settings, f"eobatch serve on {host}:{port}", needed=controller):
        _db(settings, upgrade=True).dispose()
        console.print(
            f"[bold]eobatch[/] serving http://{host}:{port} (store: {_shown_url(settings)})",
            highlight=False,
            soft_wrap=True,
        )
        run(settings, sock, controller)


def _shown_url(settings: Settings) -> str:
    """The store's URL without its password."""
    from sqlalchemy.engine import make_url

    return make_url(settings.resolved_database_url).render_as_string(hide_password=True)


@app.command()
def migrate(data_dir: Path | None = DataDir) -> None:
    """Bring the store's schema to this version (safe to run from several places at once)."""
    from eobatch.sealing import SealingError, keyring_for
    from eobatch.service import check_shared_schema
    from eobatch.store import Database
    from eobatch.store.db import UnknownSchema, schema_revision

    settings = _settings(data_dir)
    db = Database(settings.resolved_database_url)
    try:
        check_shared_schema(db, settings, upgrade=True)
        before, head = schema_revision(db.engine)
        with console.status(f"migrating {_shown_url(settings)} from {before or 'empty'}"):
            db.migrate(keyring_for(settings))
        after, _ = schema_revision(db.engine)
    except (UnknownSchema, SealingError) as exc:
        console.print(f"[red]migration refused:[/] {exc}")
        raise typer.Exit(1) from None
    except Exception as exc:
        console.print(f"[red]migration failed:[/] {exc}")
        console.print("check EOBATCH_DATABASE_URL and that the database server is reachable")
        raise typer.Exit(1) from exc
    finally:
        db.dispose()
    if before == after:
        console.print(f"schema already at {head}")
    else:
        console.print(f"schema migrated from {before or 'empty'} to {after}")


@app.command()
def demo(
    data_dir: Path | None = DataDir,
    workers: int = typer.Option(2, help="Local Dask worker processes."),
) -> None:
    """Run the embedded demo: generate a BYOC collection, process NDVI over it, show the results."""
    from eobatch.demo import run_demo

    settings = _settings(data_dir).model_copy(update={"workers": workers})
    with _one_controller(settings, "eobatch demo"):
        _db(settings, upgrade=True).dispose()
        try:
            run_demo(settings, console)
        except EobatchError as exc:
            console.print(f"[red]demo failed:[/] {exc.message}")
            raise typer.Exit(1) from exc


@accounts_app.command("create")
def accounts_create(
    name: str = typer.Argument(..., help="A name for the account."),
    pu: float = typer.Option(10_000.0, "--pu", min=0, help="Initial balance in processing units."),
    data_dir: Path | None = DataDir,
    export: bool = typer.Option(
        False,
        "--export",
        help="Print shell exports of SH_CLIENT_ID and SH_CLIENT_SECRET (what sentinelhub-py "
        'reads), for eval "$(eobatch accounts create ... --export)".',
    ),
) -> None:
    """Create an account and print its OAuth client id and secret (shown only once)."""
    creds = account_store.create_account(_db(_settings(data_dir)), name, pu)
    if export:
        print(f"# eobatch account {creds.account_id} ({name})")
        print(f"export SH_CLIENT_ID={shlex.quote(creds.client_id)}")
        print(f"export SH_CLIENT_SECRET={shlex.quote(creds.client_secret)}")
        return
    console.print(f"account id:    {creds.account_id}")
    console.print(f"client id:     {creds.client_id}")
    console.print(f"client secret: {creds.client_secret}")
    console.print(
        "[yellow]Store the secret now: it is kept only as a hash and cannot be shown again.[/]"
    )


@accounts_app.command("add-client")
def accounts_add_client(account_id: str, data_dir: Path | None = DataDir) -> None:
    """Create another OAuth client for an account and print its secret once."""
    try:
        creds = account_store.add_client(_db(_settings(data_dir)), account_id)
    except EobatchError as exc:
        console.print(f"[red]{exc.message}[/]; list accounts with `eobatch accounts list`")
        raise typer.Exit(1) from exc
    console.print(f"client id:     {creds.client_id}")
    console.print(f"client secret: {creds.client_secret}")


@accounts_app.command("revoke-client")
def accounts_revoke_client(client_id: str, data_dir: Path | None = DataDir) -> None:
    """Remove an OAuth client: its secret and every token issued to it are refused at once."""
    try:
        account_id = account_store.revoke_client(_db(_settings(data_dir)), client_id)
    except EobatchError as exc:
        console.print(f"[red]{exc.message}[/]; list clients with `eobatch accounts list`")
        raise typer.Exit(1) from exc
    console.print(f"client {client_id} of account {account_id} revoked")


@accounts_app.command("disable")
def accounts_disable(account_id: str, data_dir: Path | None = DataDir) -> None:
    """Disable an account: its tokens are refused at once and no new ones are issued."""
    _set_disabled(account_id, data_dir, True)


@accounts_app.command("enable")
def accounts_enable(account_id: str, data_dir: Path | None = DataDir) -> None:
    """Enable a disabled account again (its clients work again)."""
    _set_disabled(account_id, data_dir, False)


def _set_disabled(account_id: str, data_dir: Path | None, disabled: bool) -> None:
    try:
        account_store.set_disabled(_db(_settings(data_dir)), account_id, disabled)
    except EobatchError as exc:
        console.print(f"[red]{exc.message}[/]; list accounts with `eobatch accounts list`")
        raise typer.Exit(1) from exc
    console.print(f"account {account_id} {'disabled' if disabled else 'enabled'}")


@accounts_app.command("list")
def accounts_list(data_dir: Path | None = DataDir, as_json: bool = Json) -> None:
    """List accounts, balances and client ids (in full: other commands take them)."""
    accounts = account_store.list_accounts(_db(_settings(data_dir)))
    if as_json:
        print(
            json.dumps(
                [
                    {
                        "id": a.id,
                        "name": a.name,
                        "balancePU": to_pu(a.balance_micro_pu),
                        "heldPU": to_pu(a.reserved_micro_pu),
                        "clientIds": clients,
                        "disabled": a.disabled,
                    }
                    for a, clients in accounts
                ],
                indent=2,
            )
        )
        return
    table = Table("account id", "name", "balance (PU)", "held for work in flight", "client ids")
    for account, clients in accounts:
        table.add_row(
            account.id,
            f"{account.name} (disabled)" if account.disabled else account.name,
            f"{to_pu(account.balance_micro_pu):,.6f}",
            f"{to_pu(account.reserved_micro_pu):,.6f}",
            "\n".join(clients),
        )
    print_table(table)


@accounts_app.command("topup")
def accounts_topup(
    account_id: str,
    amount: float = typer.Argument(..., help="PUs to add."),
    data_dir: Path | None = DataDir,
) -> None:
    """Add processing units to an account."""
    if amount <= 0:
        console.print("[red]the amount must be a positive number of PU[/], e.g. 5000")
        raise typer.Exit(2)
    try:
        balance = account_store.top_up(_db(_settings(data_dir)), account_id, amount)
    except EobatchError as exc:
        console.print(f"[red]{exc.message}[/]; list accounts with `eobatch accounts list`")
        raise typer.Exit(1) from exc
    console.print(f"new balance: {balance:,.6f} PU")


@accounts_app.command("ledger")
def accounts_ledger(
    account_id: str,
    limit: int = typer.Option(50, min=1, help="Show the newest N entries."),
    data_dir: Path | None = DataDir,
    as_json: bool = Json,
) -> None:
    """Show an account's ledger: credits and charges with the balance after each."""
    from eobatch import ledger

    try:
        rows = ledger.entries(_db(_settings(data_dir)), account_id, limit)
    except EobatchError as exc:
        console.print(f"[red]{exc.message}[/]; list accounts with `eobatch accounts list`")
        raise typer.Exit(1) from exc
    if as_json:
        entries = [
            {
                "id": e.id,
                "created": e.created.isoformat().replace("+00:00", "Z"),
                "kind": e.kind,
                "taskId": e.task_id,
                "amountPU": to_pu(e.amount_micro),
                "balanceAfterPU": to_pu(e.balance_after_micro),
                "note": e.note,
            }
            for e in rows
        ]
        print(json.dumps(entries, indent=2))
        return
    table = Table("#", "time (UTC)", "kind", "task", "amount (PU)", "balance after (PU)", "note")
    for e in rows:
        table.add_row(
            str(e.id),
            e.created.strftime("%Y-%m-%d %H:%M:%S"),
            e.kind,
            e.task_id or "",
            f"{to_pu(e.amount_micro):+,.6f}",
            f"{to_pu(e.balance_after_micro):,.6f}",
            e.note or "",
        )
    console.print(table)


@app.command()
def grids(as_json: bool = Json) -> None:
    """List the tiling grids this server offers."""
    from eobatch.planning import GRIDS

    if as_json:  # as GET /api/v2/batch/tilinggrids lists them
        print(json.dumps([grid.descriptor() for grid in GRIDS.values()], indent=2))
        return
    table = Table("id", "name", "tile size", "resolutions", "unit")
    for grid in GRIDS.values():
        table.add_row(
            str(grid.id),
            grid.name,
            f"{grid.tile_width:g}",
            ", ".join(f"{r:g}" for r in grid.resolutions),
            grid.unit,
        )
    console.print(table)


if __name__ == "__main__":
    app()

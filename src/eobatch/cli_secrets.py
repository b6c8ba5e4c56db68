"""`eobatch secrets`: make a secret key and re-seal the store with a new one (docs/security.md)."""

from __future__ import annotations

from pathlib import Path

import typer

from eobatch.cli_support import DataDir, console
from eobatch.cli_support import database_or_exit as _db
from eobatch.cli_support import settings_or_exit as _settings
from eobatch.sealing import (
    KEY_FILE,
    Keyring,
    SealingError,
    forget_keyrings,
    new_key,
    parse_keys,
    read_or_create_key_file,
    write_key_file,
)
from eobatch.store.resealing import reseal_store

secrets_app = typer.Typer(
    help="The secret key that seals stored credentials (docs/security.md).", no_args_is_help=True
)


@secrets_app.command("new-key")
def secrets_new_key() -> None:
    """Print a new random key for EOBATCH_SECRET_KEY."""
    print(new_key())


@secrets_app.command("rotate")
def secrets_rotate(data_dir: Path | None = DataDir) -> None:
    """Re-seal every stored secret with a new key.

    With EOBATCH_SECRET_KEY=new,old (every replica configured so first): re-seals with `new`;
    then drop `old` from the setting. Without the setting: writes a new key to the key file,
    re-seals, and removes the old key from the file; restart `eobatch serve` afterwards.
    """
    settings = _settings(data_dir)
    db = _db(settings)
    try:
        if settings.secret_key is not None:
            keys = parse_keys(settings.secret_key.get_secret_value())
            changed = reseal_store(db.engine, Keyring(keys))
            console.print(
                f"{changed} stored secrets sealed with the first key of EOBATCH_SECRET_KEY; "
                "remove the other keys from the setting on every replica now"
            )
            return
        path = settings.data_dir / KEY_FILE
        old = parse_keys(read_or_create_key_file(path))
        fresh = new_key()
        # Both keys on disk before any row changes: a crash midway leaves every row openable.
        write_key_file(path, "\n".join([fresh, *(k.decode() for k in old)]) + "\n", replace=True)
        changed = reseal_store(db.engine, Keyring([fresh.encode(), *old]))
        write_key_file(path, fresh + "\n", replace=True)
        forget_keyrings()
        console.print(
            f"{changed} stored secrets sealed with a new key in {path}; restart eobatch serve"
        )
    except SealingError as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None
    finally:
        db.dispose()

"""Schema migrations keep existing data: a store at an old revision upgraded to the newest one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from cryptography.fernet import Fernet
from sqlalchemy import text
from typer.testing import CliRunner

from eobatch.cli import app as cli_app
from eobatch.sealing import Keyring, open_secrets
from eobatch.signing import token_signing_key
from eobatch.store import Database
from eobatch.store.db import _MIGRATIONS, schema_revision


def _upgrade(db: Database, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def _downgrade(db: Database, revision: str, keyring: Keyring) -> None:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    with db.engine.begin() as connection:
        config.attributes["connection"] = connection
        config.attributes["keyring"] = keyring
        command.downgrade(config, revision)


def test_pu_amounts_survive_the_move_to_micro_pu(database_url: str) -> None:
    db = Database(database_url)
    try:
        _upgrade(db, "0001")
        with db.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO accounts (id, name, balance_pu, created) "
                    "VALUES ('a1', 'old', 1234.567891, CURRENT_TIMESTAMP)"
                )
            )
        db.migrate()
        with db.session() as session:
            balance, reserved = session.execute(
                text("SELECT balance_micro_pu, reserved_micro_pu FROM accounts WHERE id = 'a1'")
            ).one()
            ledger = session.execute(
                text("SELECT kind, amount_micro_pu, balance_after_micro_pu FROM ledger")
            ).all()
        assert (balance, reserved) == (1_234_567_891, 0)
        assert [tuple(r) for r in ledger] == [("credit", 1_234_567_891, 1_234_567_891)]
    finally:
        db.dispose()


def test_0010_seals_the_credentials_already_stored(database_url: str) -> None:
    """A store from before 0010 with credentials in clear: the upgrade seals them (and needs the
    key to do so), the service opens them, and nothing is left in clear."""
    db = Database(database_url)
    storage = {"s3": {"url": "s3://data", "accessKey": "AK-OLD", "secretAccessKey": "SK-OLD"}}
    try:
        _upgrade(db, "0009_operations")
        with db.engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO accounts (id, name, balance_micro_pu, reserved_micro_pu, created)"
                    " VALUES ('a1', 'old', 0, 0, CURRENT_TIMESTAMP)"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO byoc_collections (id, account_id, name, s3_bucket, storage, "
                    "bands, created) VALUES ('c1', 'a1', 'c', 'data', :storage, '{}', "
                    "CURRENT_TIMESTAMP)"
                ),
                {"storage": json.dumps(storage)},
            )
            connection.execute(
                text(
                    "INSERT INTO service_secrets (name, value, created) "
                    "VALUES ('token-signing-key', 'signing-key-in-clear', CURRENT_TIMESTAMP)"
                )
            )
        with pytest.raises(RuntimeError, match="needs the secret key"):
            db.migrate()  # no key: nothing changes
        keyring = Keyring([Fernet.generate_key()])
        db.migrate(keyring)
        with db.session() as session:
            stored = session.execute(text("SELECT storage FROM byoc_collections")).scalar_one()
            value = session.execute(text("SELECT value FROM service_secrets")).scalar_one()
            disabled = session.execute(text("SELECT disabled FROM accounts")).scalar_one()
        stored = json.loads(stored) if isinstance(stored, str) else stored
        assert "SK-OLD" not in json.dumps(stored) and "AK-OLD" not in json.dumps(stored)
        assert "signing-key-in-clear" not in value
        assert open_secrets(stored, keyring) == storage
        assert token_signing_key(db, keyring) == "signing-key-in-clear"
        assert not disabled

        _downgrade(db, "0009_operations", keyring)  # back: the secrets in clear again
        with db.session() as session:
            stored = session.execute(text("SELECT storage FROM byoc_collections")).scalar_one()
            value = session.execute(text("SELECT value FROM service_secrets")).scalar_one()
        assert (json.loads(stored) if isinstance(stored, str) else stored) == storage
        assert value == "signing-key-in-clear"
    finally:
        db.dispose()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_a_shared_store_is_not_upgraded_with_a_key_made_on_the_spot(
    database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the deployment's key, `eobatch migrate` (and any command) would seal the stored
    credentials with a new key no replica has: it refuses and changes nothing."""
    db = Database(database_url)
    try:
        _upgrade(db, "0009_operations")
        monkeypatch.delenv("EOBATCH_SECRET_KEY", raising=False)
        env = {"EOBATCH_DATABASE_URL": database_url, "COLUMNS": "300"}
        data = ["--data-dir", str(tmp_path / "operator")]
        refused = CliRunner().invoke(cli_app, ["migrate", *data], env=env)
        assert refused.exit_code == 1, refused.output
        assert "needs the deployment's key: set EOBATCH_SECRET_KEY" in refused.output
        assert not (tmp_path / "operator" / "secret.key").exists()
        assert schema_revision(db.engine)[0] == "0009_operations"
        key = Fernet.generate_key().decode()
        # An operator's command (even with the key) leaves the schema to `eobatch migrate`:
        # replicas of the older version may still be running on it.
        listed = CliRunner().invoke(
            cli_app, ["tasks", "list", *data], env={**env, "EOBATCH_SECRET_KEY": key}
        )
        assert listed.exit_code == 1, listed.output
        assert "schema revision 0009_operations" in listed.output
        assert "run `eobatch migrate` once every replica runs this version" in listed.output
        assert schema_revision(db.engine)[0] == "0009_operations"
        done = CliRunner().invoke(
            cli_app, ["migrate", *data], env={**env, "EOBATCH_SECRET_KEY": key}
        )
        assert done.exit_code == 0, done.output
        assert schema_revision(db.engine)[0] == schema_revision(db.engine)[1]
    finally:
        db.dispose()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_operators_commands_name_a_newer_eobatchs_store_as_such(
    database_url: str, tmp_path: Path
) -> None:
    db = Database(database_url)
    try:
        db.migrate()
        with db.engine.begin() as connection:
            connection.execute(text("UPDATE alembic_version SET version_num = '0099_future'"))
        env = {"EOBATCH_DATABASE_URL": database_url, "COLUMNS": "300"}
        listed = CliRunner().invoke(
            cli_app, ["tasks", "list", "--data-dir", str(tmp_path)], env=env
        )
        assert listed.exit_code == 1, listed.output
        assert "a newer eobatch migrated it" in listed.output  # not "run eobatch migrate"
    finally:
        db.dispose()

"""Secrets at rest and revocation, on SQLite and PostgreSQL: no credential or signing key in the
database files, the WAL or the tables; revoked clients and disabled accounts refused at once;
the secret key rotated by `eobatch secrets rotate`."""

from __future__ import annotations

import stat
import uuid
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from fastapi import FastAPI
from sqlalchemy import inspect, select, text
from typer.testing import CliRunner

from eobatch.accounts import add_client, create_account, revoke_client, set_disabled
from eobatch.cli import app as cli
from eobatch.config import Settings
from eobatch.sealing import (
    KEY_FILE,
    Keyring,
    SealingError,
    forget_keyrings,
    keyring_for,
    open_secrets,
    parse_keys,
)
from eobatch.signing import token_signing_key
from eobatch.storage import open_location
from eobatch.store import Database
from eobatch.store.models import Collection, ServiceSecret, Task
from tests.integration.test_api import assert_error, signed_in, valid_request

runner = CliRunner()


def _unique(kind: str) -> str:
    return f"{kind}-{uuid.uuid4().hex}"


def _store_contents(db: Database, settings: Settings) -> bytes:
    """Everything the store keeps: the SQLite files (database, WAL, shared memory) as bytes, or
    every row of every PostgreSQL table as text."""
    if db.is_sqlite:
        path = Path(db.engine.url.database or "")
        files = sorted(path.parent.glob(path.name + "*"))
        assert any(f.name.endswith("-wal") for f in files), files  # the WAL is looked at too
        return b"".join(f.read_bytes() for f in files)
    with db.engine.connect() as connection:
        rows = [
            row[0]
            for table in inspect(connection).get_table_names()
            for row in connection.execute(text(f'SELECT CAST(t AS text) FROM "{table}" t'))
        ]
    return "\n".join(rows).encode()


@pytest.fixture
def app(settings: Settings, db: Database) -> FastAPI:
    from eobatch.api import create_app

    for bucket in ("data", "results"):  # embedded mode: buckets are folders
        (settings.buckets_dir / bucket).mkdir(parents=True, exist_ok=True)
    return create_app(settings, db)


def test_no_secret_in_the_store(app: FastAPI, db: Database, settings: Settings) -> None:
    http = signed_in(app, create_account(db, "sealed", 5000))
    collection_keys = {"accessKey": _unique("AKCOLL"), "secretAccessKey": _unique("SKCOLL")}
    delivery_keys = {"accessKey": _unique("AKTASK"), "secretAccessKey": _unique("SKTASK")}
    storage = {"s3": {"url": "s3://data/archive", **collection_keys}}
    created = http.post("/api/v1/byoc/collections", json={"name": "own", "storage": storage})
    assert created.status_code == 201, created.text
    collection_id = created.json()["data"]["id"]
    # a client PUTs back what it GETs (`***`): the stored secrets stay, sealed
    url = f"/api/v1/byoc/collections/{collection_id}"
    shown = http.get(url).json()["data"]
    assert http.put(url, json={**shown, "name": "renamed"}).status_code == 204
    body = valid_request(collection_id)
    body["output"]["delivery"]["s3"].update(delivery_keys)
    task = http.post("/api/v2/batch/process", json=body)
    assert task.status_code == 201, task.text
    keyring = keyring_for(settings)
    signing_key = token_signing_key(db, keyring)  # the key replicas share through the store

    secrets = [*collection_keys.values(), *delivery_keys.values(), signing_key]
    contents = _store_contents(db, settings)
    for secret in secrets:
        assert secret.encode() not in contents, f"{secret[:6]}... is in the store in clear"
        assert secret not in task.text and secret not in http.get(url).text
    # ... and yet they are there for whoever needs them: workers, the console, the replicas
    with db.session() as session:
        stored_task = session.get(Task, task.json()["id"])
        stored_collection = session.get(Collection, collection_id)
        assert stored_task is not None and stored_collection is not None
        delivery = open_secrets(stored_task.request["output"]["delivery"], keyring)
        assert open_secrets(stored_collection.storage, keyring) == storage
    assert delivery["s3"]["secretAccessKey"] == delivery_keys["secretAccessKey"]
    assert open_location(stored_task.request["output"]["delivery"], settings, "output").bucket
    assert token_signing_key(db, keyring) == signing_key


def test_revoked_client_and_disabled_account_are_refused_at_once(
    app: FastAPI, db: Database
) -> None:
    creds = create_account(db, "revocable", 5000)
    second = add_client(db, creds.account_id)
    first_http, second_http = signed_in(app, creds), signed_in(app, second)
    tasks = "/api/v2/batch/process"
    assert first_http.get(tasks).status_code == 200
    assert second_http.get(tasks).status_code == 200

    assert revoke_client(db, creds.client_id) == creds.account_id
    error = assert_error(first_http.get(tasks), 401, "COMMON_UNAUTHORIZED")
    assert "revoked" in error["message"]
    assert second_http.get(tasks).status_code == 200  # the account's other client still works
    token = {
        "grant_type": "client_credentials",
        "client_id": creds.client_id,
        "client_secret": creds.client_secret,
    }
    assert first_http.post("/oauth/token", data=token).status_code == 401

    set_disabled(db, creds.account_id, True)
    error = assert_error(second_http.get(tasks), 401, "COMMON_UNAUTHORIZED")
    assert "disabled" in error["message"]
    again = {**token, "client_id": second.client_id, "client_secret": second.client_secret}
    assert second_http.post("/oauth/token", data=again).status_code == 401
    set_disabled(db, creds.account_id, False)
    assert second_http.get(tasks).status_code == 200


def test_revoke_and_disable_from_the_command_line(settings: Settings, db: Database) -> None:
    env = {"EOBATCH_DATABASE_URL": settings.resolved_database_url}
    data = ["--data-dir", str(settings.data_dir)]
    creds = create_account(db, "cli", 100)
    app = _app(settings, db)
    http = signed_in(app, creds)
    assert http.get("/api/v2/batch/process").status_code == 200

    disabled = runner.invoke(cli, ["accounts", "disable", creds.account_id, *data], env=env)
    assert disabled.exit_code == 0, disabled.output
    assert http.get("/api/v2/batch/process").status_code == 401
    listed = runner.invoke(cli, ["accounts", "list", "--json", *data], env=env)
    assert '"disabled": true' in listed.output
    enabled = runner.invoke(cli, ["accounts", "enable", creds.account_id, *data], env=env)
    assert enabled.exit_code == 0 and http.get("/api/v2/batch/process").status_code == 200

    revoked = runner.invoke(cli, ["accounts", "revoke-client", creds.client_id, *data], env=env)
    assert revoked.exit_code == 0, revoked.output
    assert http.get("/api/v2/batch/process").status_code == 401
    again = runner.invoke(cli, ["accounts", "revoke-client", creds.client_id, *data], env=env)
    assert again.exit_code == 1 and "not found" in again.output
    unknown = runner.invoke(cli, ["accounts", "disable", "no-such-account", *data], env=env)
    assert unknown.exit_code == 1 and "eobatch accounts list" in unknown.output


def _app(settings: Settings, db: Database) -> FastAPI:
    from eobatch.api import create_app

    return create_app(settings, db)


def _sealed_values(db: Database) -> tuple[str, str]:
    with db.session() as session:
        collection = session.scalars(select(Collection)).one()
        secret = session.scalars(select(ServiceSecret)).one()
        assert collection.storage is not None
        return collection.storage["s3"]["secretAccessKey"], secret.value


def _collection_with_secrets(db: Database, settings: Settings) -> str:
    (settings.buckets_dir / "data").mkdir(parents=True, exist_ok=True)
    http = signed_in(_app(settings, db), create_account(db, "rotating", 100))
    secret = _unique("SK")
    storage = {"s3": {"url": "s3://data", "accessKey": "AK", "secretAccessKey": secret}}
    created = http.post("/api/v1/byoc/collections", json={"name": "c", "storage": storage})
    assert created.status_code == 201, created.text
    token_signing_key(db, keyring_for(settings))
    return secret


def test_rotating_the_key_file(settings: Settings, db: Database) -> None:
    secret = _collection_with_secrets(db, settings)
    key_file = settings.data_dir / KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    old_keyring = keyring_for(settings)
    before = _sealed_values(db)
    env = {"EOBATCH_DATABASE_URL": settings.resolved_database_url}
    rotated = runner.invoke(
        cli, ["secrets", "rotate", "--data-dir", str(settings.data_dir)], env=env
    )
    assert rotated.exit_code == 0, rotated.output
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(parse_keys(key_file.read_text())) == 1  # the old key is gone
    after = _sealed_values(db)
    assert all(a != b for a, b in zip(after, before, strict=True))
    with pytest.raises(SealingError):
        old_keyring.open(after[0])
    forget_keyrings()
    assert keyring_for(settings).open(after[0]) == secret


def test_rotating_with_the_key_setting(settings: Settings, db: Database) -> None:
    old = Fernet.generate_key().decode()
    new = runner.invoke(cli, ["secrets", "new-key"]).output.strip()
    assert Fernet(new.encode()) and new != old
    from pydantic import SecretStr

    configured = settings.model_copy(update={"secret_key": SecretStr(old)})
    secret = _collection_with_secrets(db, configured)
    env = {
        "EOBATCH_DATABASE_URL": settings.resolved_database_url,
        "EOBATCH_SECRET_KEY": f"{new},{old}",
    }
    rotated = runner.invoke(
        cli, ["secrets", "rotate", "--data-dir", str(settings.data_dir)], env=env
    )
    assert rotated.exit_code == 0, rotated.output
    sealed, _ = _sealed_values(db)
    assert Keyring([new.encode()]).open(sealed) == secret
    with pytest.raises(SealingError, match="cannot be opened"):
        Keyring([old.encode()]).open(sealed)
    assert not (settings.data_dir / KEY_FILE).exists()  # the setting needs no key file

    # a replica with only the old key stops at once, saying why
    stale = runner.invoke(
        cli,
        ["accounts", "list", "--data-dir", str(settings.data_dir)],
        env={**env, "EOBATCH_SECRET_KEY": old},
    )
    assert stale.exit_code == 1 and "cannot be opened" in stale.output
    assert old not in stale.output

    # a key that is no Fernet key: a clear error that does not repeat it
    malformed = runner.invoke(
        cli,
        ["accounts", "list", "--data-dir", str(settings.data_dir)],
        env={**env, "EOBATCH_SECRET_KEY": "not-a-fernet-key"},
    )
    assert malformed.exit_code == 1 and "Fernet" in malformed.output
    assert "not-a-fernet-key" not in malformed.output

"""`eobatch accounts …` and `eobatch grids` through typer's runner, on the embedded store."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from eobatch.accounts import authenticate_client, list_accounts
from eobatch.cli import app
from eobatch.config import Settings
from eobatch.service import open_database

runner = CliRunner()


def test_accounts_create_list_topup(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path)]
    created = runner.invoke(app, ["accounts", "create", "alice", "--pu", "2500", *data])
    assert created.exit_code == 0, created.output
    account_id = re.search(r"account id:\s+(\S+)", created.output).group(1)
    client_id = re.search(r"client id:\s+(\S+)", created.output).group(1)
    secret = re.search(r"client secret:\s+(\S+)", created.output).group(1)

    db = open_database(Settings(data_dir=tmp_path))
    assert authenticate_client(db, client_id, secret) == account_id
    stored = db.engine.connect().exec_driver_sql("SELECT secret_hash FROM oauth_clients").all()
    assert secret not in str(stored)  # only a hash is kept

    listed = runner.invoke(app, ["accounts", "list", *data], env={"COLUMNS": "250"})
    assert account_id in listed.output and "2,500.000" in listed.output

    topped = runner.invoke(app, ["accounts", "topup", account_id, "1000", *data])
    assert topped.exit_code == 0 and "3,500.000" in topped.output

    unknown = runner.invoke(app, ["accounts", "topup", "no-such-account", "5", *data])
    assert unknown.exit_code == 1 and "eobatch accounts list" in unknown.output

    # Bad amounts are refused before anything is written; the ledger shows what happened.
    assert runner.invoke(app, ["accounts", "topup", account_id, "0", *data]).exit_code == 2
    assert runner.invoke(app, ["accounts", "create", "bob", "--pu", "-5", *data]).exit_code == 2
    assert len(account_store_ids(db)) == 1
    ledger = runner.invoke(app, ["accounts", "ledger", account_id, *data], env={"COLUMNS": "250"})
    assert ledger.exit_code == 0
    assert "opening balance" in ledger.output and "top-up" in ledger.output
    assert "+1,000.000000" in ledger.output and "3,500.000000" in ledger.output
    missing = runner.invoke(app, ["accounts", "ledger", "no-such-account", *data])
    assert missing.exit_code == 1 and "eobatch accounts list" in missing.output
    db.dispose()


def account_store_ids(db) -> list[str]:  # type: ignore[no-untyped-def]
    return [a.id for a, _ in list_accounts(db)]


def test_grids_lists_all_six() -> None:
    result = runner.invoke(app, ["grids"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for name in ("20km grid", "WGS84 1 degree grid", "LAEA 100km grid", "LAEA 20km grid"):
        assert name in result.output

"""`eobatch accounts …` and `eobatch grids` through typer's runner, on the embedded store."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path

import pytest
from typer.testing import CliRunner

from eobatch.accounts import authenticate_client, list_accounts
from eobatch.cli import app
from eobatch.config import Settings
from eobatch.service import open_database
from eobatch.store.models import Task
from tests.integration.harness import Service

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
    as_json = runner.invoke(app, ["accounts", "ledger", account_id, "--json", *data])
    assert as_json.exit_code == 0
    entries = json.loads(as_json.stdout)
    assert [(e["kind"], e["amountPU"], e["note"]) for e in entries][-1] == (
        "credit",
        1000.0,
        "top-up",
    )
    assert entries[-1]["balanceAfterPU"] == 3500.0 and entries[-1]["taskId"] is None
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
    listed = json.loads(runner.invoke(app, ["grids", "--json"]).stdout)
    assert [g["id"] for g in listed] == [0, 1, 2, 3, 6, 7]  # as GET /tilinggrids lists them
    assert listed[0]["properties"]["resolutions"]


# -- what every command shares: version, settings errors, store errors ----------------------


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`eobatch` as a user runs it, with `env` over a clean EOBATCH_ environment."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("EOBATCH_")}
    return subprocess.run(
        [sys.executable, "-m", "eobatch.cli", *args],
        capture_output=True,
        text=True,
        env={**base, "COLUMNS": "80", **env},
        timeout=120,
    )


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"eobatch {version('eobatch')}"


def test_bad_settings_give_one_line_each_naming_the_variable(tmp_path: Path) -> None:
    result = _cli(
        "accounts",
        "list",
        "--data-dir",
        str(tmp_path),
        EOBATCH_WORKERS="abc",
        EOBATCH_OUTPUT_COMPRESSION="GZIP",
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and "Traceback" not in result.stderr
    assert lines[0].startswith("error: EOBATCH_WORKERS='abc': ")
    assert lines[0].endswith("allowed: an integer >= 1")
    assert "EOBATCH_OUTPUT_COMPRESSION='GZIP'" in lines[1]
    assert lines[1].endswith("allowed: one of ZSTD, DEFLATE, LZW, NONE")
    assert not (tmp_path / "eobatch.sqlite").exists()  # nothing was started


@pytest.mark.parametrize(
    ("url", "code", "says"),
    [
        (
            "mysql://me@127.0.0.1/db",
            2,
            "EOBATCH_DATABASE_URL='mysql://me@127.0.0.1/db': the mysql "
            "database is not supported; allowed: sqlite:///<file> or postgresql+psycopg://",
        ),
        ("no url at all", 2, "EOBATCH_DATABASE_URL='no url at all': not a database URL"),
        (
            "postgresql+psycopg://me:secret@127.0.0.1:1/db",
            1,
            "cannot open the store postgresql+psycopg://me:***@127.0.0.1:1/db: ",
        ),
    ],
)
def test_bad_database_urls_give_one_line(tmp_path: Path, url: str, code: int, says: str) -> None:
    result = _cli("accounts", "list", "--data-dir", str(tmp_path), EOBATCH_DATABASE_URL=url)
    assert result.returncode == code
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert says in result.stderr and "secret" not in result.stderr


def test_unknown_eobatch_variables_are_warned_about(tmp_path: Path) -> None:
    result = _cli(
        "accounts",
        "list",
        "--data-dir",
        str(tmp_path),
        EOBATCH_WROKERS="4",
        EOBATCH_NOT_A_THING="1",
    )
    assert result.returncode == 0
    assert (
        "warning: EOBATCH_WROKERS is not an eobatch setting and is ignored; did you mean "
        "EOBATCH_WORKERS?"
    ) in result.stderr
    assert "EOBATCH_NOT_A_THING is not an eobatch setting" in result.stderr


def test_accounts_list_shows_whole_ids_on_a_narrow_terminal_and_json(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path)]
    exported = runner.invoke(
        app, ["accounts", "create", "carol", "--pu", "1500", "--export", *data]
    )
    assert exported.exit_code == 0
    variables = dict(re.findall(r"^export (SH_CLIENT_\w+)=(\S+)$", exported.output, re.M))
    db = open_database(Settings(data_dir=tmp_path))
    account_id = authenticate_client(db, variables["SH_CLIENT_ID"], variables["SH_CLIENT_SECRET"])
    db.dispose()

    listed = runner.invoke(app, ["accounts", "list", *data], env={"COLUMNS": "50"})
    assert account_id in listed.output and variables["SH_CLIENT_ID"] in listed.output
    as_json = json.loads(runner.invoke(app, ["accounts", "list", "--json", *data]).output)
    assert as_json == [
        {
            "id": account_id,
            "name": "carol",
            "balancePU": 1500.0,
            "heldPU": 0.0,
            "clientIds": [variables["SH_CLIENT_ID"]],
            "disabled": False,
        }
    ]


# -- eobatch tasks ----------------------------------------------------------------------------

FAILING = """//VERSION=3
function setup() { return { input: ["B04"], output: { bands: 1, sampleType: "UINT16" } }; }
function evaluatePixel(s) { throw new Error("no pixel for you"); }
"""


def _store_env(service: Service) -> dict[str, str]:
    return {"EOBATCH_DATABASE_URL": service.settings.resolved_database_url, "COLUMNS": "250"}


def test_tasks_list_show_features(service: Service) -> None:
    done = service.run(service.basic_request())
    failed = service.run(service.basic_request(FAILING, run="failing"))
    assert done["status"] == "DONE" and failed["status"] == "FAILED", failed  # all 4 failed
    env, data = _store_env(service), ["--data-dir", str(service.settings.data_dir)]

    listed = runner.invoke(app, ["tasks", "list", *data], env=env)
    assert listed.exit_code == 0, listed.output
    assert listed.output.index(failed["id"]) < listed.output.index(done["id"])  # newest first
    as_json = json.loads(runner.invoke(app, ["tasks", "list", "--json", *data], env=env).output)
    assert [t["id"] for t in as_json] == [failed["id"], done["id"]]
    assert as_json[1] == service.task(done["id"])  # what the API says about it

    shown = runner.invoke(app, ["tasks", "show", done["id"], *data], env=env)
    folder = service.buckets / "results" / "run" / done["id"]
    assert re.search(r"status\s+DONE", shown.output) and "4 done" in shown.output
    assert str(folder / "collection.json") in shown.output
    assert str(folder / "mosaic-default-3035.vrt") in shown.output
    shown = runner.invoke(app, ["tasks", "show", failed["id"], *data], env=env)
    assert "4 fatal" in shown.output and "feature error  4 × " in shown.output
    assert "no pixel for you" in shown.output
    assert json.loads(
        runner.invoke(app, ["tasks", "show", done["id"], "--json", *data], env=env).output
    ) == service.task(done["id"])

    fatal = runner.invoke(
        app, ["tasks", "features", failed["id"], "--status", "fatal", *data], env=env
    )
    assert fatal.output.count("no pixel for you") == 4 and fatal.output.count("FATAL") == 4
    api = service.http.get(f"/api/v2/batch/process/{done['id']}/features").json()["data"]
    cli = runner.invoke(app, ["tasks", "features", done["id"], "--json", *data], env=env)
    assert json.loads(cli.output) == api

    assert "controller" not in shown.output  # nobody holds a task that ended
    for offset, says in (
        (-600, r"lease ran out \d+ s ago: that controller stopped"),
        (600, r"lease renewed, \d+ s left"),
    ):
        with service.db.session() as session:  # as a controller holding it would leave it
            task = session.get(Task, done["id"])
            task.controller_id = "replica-a-123"
            task.lease_until = datetime.now(UTC) + timedelta(seconds=offset)
        held = runner.invoke(app, ["tasks", "show", done["id"], *data], env=env).output
        assert re.search(r"controller\s+replica-a-123 \(" + says, held), held

    wrong = runner.invoke(app, ["tasks", "list", "--status", "RUNNING", *data], env=env)
    assert wrong.exit_code == 2 and "allowed: CREATED, ANALYSING" in wrong.output
    missing = runner.invoke(app, ["tasks", "show", "no-such-task", *data], env=env)
    assert missing.exit_code == 1 and "eobatch tasks list" in missing.output


def test_tasks_watch_follows_a_task_to_the_end(service: Service) -> None:
    task_id = service.create()
    service.action(task_id, "start")
    env = {**os.environ, **_store_env(service)}
    watcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "eobatch.cli",
            "tasks",
            "watch",
            "--json",
            "--interval",
            "0.1",
            "--data-dir",
            str(service.settings.data_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert watcher.stdout is not None
        first = watcher.stdout.readline()  # the watcher is looking: only now does work start
        service.wait(task_id)  # steps the controller while the watcher looks on
        out, err = watcher.communicate(timeout=60)
    finally:
        watcher.kill()
    assert watcher.returncode == 0, err
    states = [json.loads(line) for line in [first, *out.splitlines()]]
    assert {s["id"] for s in states} == {task_id}  # no id given: the newest task
    assert states[0]["status"] in ("CREATED", "ANALYSING", "PROCESSING")
    assert states[-1]["status"] == "DONE" and states[-1]["completionPercentage"] == 100
    assert states[-1]["features"] == {"DONE": 4}
    progress = [s["completionPercentage"] for s in states]
    assert progress == sorted(progress)

    data = ["--data-dir", str(service.settings.data_dir)]
    live = runner.invoke(app, ["tasks", "watch", task_id, *data], env=_store_env(service))
    assert live.exit_code == 0 and "100%" in live.output
    assert "mosaic-default-3035.vrt" in live.output

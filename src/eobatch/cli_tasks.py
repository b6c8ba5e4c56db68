"""`eobatch tasks …`: every account's batch tasks from the store, for the operator's terminal.

`--json` prints what the HTTP API returns for the same objects (`BatchV2ProcessTask`, the
features list), so scripts can move between the two.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.console import Group
from rich.live import Live
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import func, select

from eobatch.cli_support import DataDir, Json, console, errors, print_table
from eobatch.cli_support import database_or_exit as _db
from eobatch.cli_support import settings_or_exit as _settings
from eobatch.config import Settings
from eobatch.lifecycle.billing import to_pu
from eobatch.lifecycle.states import Status
from eobatch.lifecycle.tasks import feature_json, task_json
from eobatch.sinks.catalogue import COLLECTION_FILE
from eobatch.sinks.template import DeliveryTemplate
from eobatch.store import Database
from eobatch.store.models import Account, Task
from eobatch.store.models import Feature as FeatureRow

tasks_app = typer.Typer(
    help="Batch tasks of every account: list, inspect, watch.", no_args_is_help=True
)

FINAL = ("DONE", "FAILED", "STOPPED")
FEATURE_STATUSES = ("PENDING", "DONE", "FATAL")


@tasks_app.command("list")
def tasks_list(
    status: str | None = typer.Option(None, help="Only tasks in this status, e.g. PROCESSING."),
    account: str | None = typer.Option(None, help="Only the tasks of this account id."),
    limit: int = typer.Option(50, min=1, help="Show the newest N tasks."),
    data_dir: Path | None = DataDir,
    as_json: bool = Json,
) -> None:
    """List tasks, newest first."""
    db = _db(_settings(data_dir))
    query = select(Task, Account.name).join(Account, Account.id == Task.account_id)
    if status:
        query = query.where(Task.status == _checked(status, [s.value for s in Status]))
    if account:
        query = query.where(Task.account_id == account)
    with db.reading() as session:
        rows = session.execute(query.order_by(Task.created.desc()).limit(limit)).all()
        if as_json:
            _print_json([task_json(task) for task, _ in rows])
            return
        table = Table(
            "task id",
            "account",
            "status",
            "done",
            "features",
            "cost (PU)",
            "created (UTC)",
            "description",
        )
        for task, name in rows:
            created = task.created.strftime("%Y-%m-%d %H:%M")
            table.add_row(
                task.id,
                name,
                _status(task),
                f"{task.completion_percentage:.0f} %",
                str(task.feature_count or ""),
                f"{to_pu(task.cost_micro_pu):,.3f}",
                created,
                task.description or "",
            )
    print_table(table) if rows else console.print("no tasks")


@tasks_app.command("show")
def tasks_show(
    task_id: str = typer.Argument(..., help="The task id (see `eobatch tasks list`)."),
    data_dir: Path | None = DataDir,
    as_json: bool = Json,
) -> None:
    """A task's status, progress, cost, errors and where its results are."""
    settings = _settings(data_dir)
    db = _db(settings)
    task, counts, errors_seen = _task_state(db, task_id)
    if as_json:
        _print_json(task_json(task))
        return
    _print_summary(task, counts, errors_seen, settings)


@tasks_app.command("features")
def tasks_features(
    task_id: str = typer.Argument(..., help="The task id (see `eobatch tasks list`)."),
    status: str | None = typer.Option(None, help="Only features in this status, e.g. FATAL."),
    limit: int = typer.Option(100, min=1, help="Show the first N features."),
    data_dir: Path | None = DataDir,
    as_json: bool = Json,
) -> None:
    """A task's features: status, attempts, error, samples and PUs charged."""
    db = _db(_settings(data_dir))
    _task_state(db, task_id)  # exits when there is no such task
    query = select(FeatureRow).where(FeatureRow.task_id == task_id)
    if status:
        query = query.where(FeatureRow.status == _checked(status, FEATURE_STATUSES))
    with db.reading() as session:
        rows = session.scalars(query.order_by(FeatureRow.id).limit(limit)).all()
        if as_json:
            _print_json([feature_json(f) for f in rows])
            return
        table = Table("id", "name", "status", "attempts", "samples", "cost (PU)", "error")
        for f in rows:
            status_text = "DONE (no data)" if f.status == "DONE" and not f.delivered else f.status
            table.add_row(
                str(f.id),
                f.name,
                status_text,
                str(f.attempts),
                str(f.samples or ""),
                f"{to_pu(f.cost_micro_pu + f.surcharge_micro_pu):,.3f}",
                f.error or "",
            )
    print_table(table) if rows else console.print("no features")


@tasks_app.command("watch")
def tasks_watch(
    task_id: str | None = typer.Argument(None, help="The task id; default: the newest task."),
    interval: float = typer.Option(1.0, min=0.1, help="Seconds between looks at the store."),
    data_dir: Path | None = DataDir,
    as_json: bool = Json,
) -> None:
    """Follow a task until it is DONE, FAILED or STOPPED (exit code 0 only for DONE).

    With --json, one line of JSON per change: status, completionPercentage, feature counts.
    """
    settings = _settings(data_dir)
    db = _db(settings)
    if task_id is None:
        with db.reading() as session:
            task_id = session.scalar(select(Task.id).order_by(Task.created.desc()).limit(1))
        if task_id is None:
            errors.print("[red]error:[/] there are no tasks to watch yet")
            raise typer.Exit(1)
    if as_json:
        task = _watch_json(db, task_id, interval)
    else:
        _watch_live(db, task_id, interval)
        task, counts, errors_seen = _task_state(db, task_id)
        console.line()
        _print_summary(task, counts, errors_seen, settings)
    raise typer.Exit(0 if task.status == "DONE" else 1)


# -- helpers ----------------------------------------------------------------------------------


def _task_state(db: Database, task_id: str) -> tuple[Task, Counter[str], list[tuple[str, int]]]:
    """The task, its features per status (DONE without data as NO_DATA), and its five most
    frequent feature errors; exits with a hint when there is no such task."""
    with db.reading() as session:
        task = session.get(Task, task_id)
        if task is None:
            errors.print(f"[red]error:[/] no task {task_id}; list them with `eobatch tasks list`")
            raise typer.Exit(1)
        counts: Counter[str] = Counter()
        for status, delivered, count in session.execute(
            select(FeatureRow.status, FeatureRow.delivered, func.count())
            .where(FeatureRow.task_id == task_id)
            .group_by(FeatureRow.status, FeatureRow.delivered)
        ):
            counts["NO_DATA" if status == "DONE" and not delivered else status] += count
        errors_seen = session.execute(
            select(FeatureRow.error, func.count())
            .where(FeatureRow.task_id == task_id, FeatureRow.status == "FATAL")
            .group_by(FeatureRow.error)
            .order_by(func.count().desc())
            .limit(5)
        ).all()
        return task, counts, [(str(e), int(n)) for e, n in errors_seen]


def _print_summary(
    task: Task, counts: Counter[str], errors_seen: list[tuple[str, int]], settings: Settings
) -> None:
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    for name, value in _summary(task, counts, settings):
        table.add_row(name, value)
    for error, count in errors_seen:
        table.add_row("feature error", f"{count} × {error}")
    print_table(table)  # paths in full: they are copied into other tools


def _checked(status: str, allowed: Sequence[str]) -> str:
    """`status` in upper case, or exit 2 naming the statuses there are."""
    if status.upper() not in allowed:
        errors.print(f"[red]error:[/] --status {status}: allowed: {', '.join(allowed)}")
        raise typer.Exit(2)
    return status.upper()


def _status(task: Task) -> str:
    if task.status == "STOPPED" and task.stopped_status_reason:
        return f"STOPPED ({task.stopped_status_reason})"
    if task.action_pending and task.status not in FINAL:
        return f"{task.status} → {task.user_action}"
    return task.status


def _features_text(counts: Counter[str]) -> str:
    parts = [
        f"{counts[s]} {s.lower().replace('_', ' ')}"
        for s in ("DONE", "NO_DATA", "FATAL", "PENDING")
        if counts[s]
    ]
    return ", ".join(parts) or "not planned yet"


def _summary(task: Task, counts: Counter[str], settings: Settings) -> list[tuple[str, str]]:
    rows = [
        ("task", task.id),
        ("account", task.account_id),
        ("status", _status(task)),
        ("progress", f"{task.completion_percentage:.1f} %"),
        ("features", _features_text(counts)),
        ("cost", f"{to_pu(task.cost_micro_pu):,.3f} PU"),
        ("created", task.created.strftime("%Y-%m-%d %H:%M:%S UTC")),
    ]
    if task.estimate:
        rows.append(("estimate", json.dumps(task.estimate)))
    if task.controller_id:  # who works on it, and whether that controller is still alive
        rows.append(("controller", _holder(task)))
    if task.description:
        rows.append(("description", task.description))
    if task.error:
        rows.append(("error", task.error))
    rows.extend(_results(task, settings))
    return rows


def _holder(task: Task) -> str:
    if task.lease_until is None:
        return task.controller_id or ""
    left = (task.lease_until - datetime.now(UTC)).total_seconds()
    if left >= 0:
        return f"{task.controller_id} (lease renewed, {left:.0f} s left)"
    return (
        f"{task.controller_id} (lease ran out {-left:.0f} s ago: that controller stopped; "
        "another one takes the task over)"
    )


def _results(task: Task, settings: Settings) -> list[tuple[str, str]]:
    """Where the task delivers, and its catalogue and mosaics once it is DONE."""
    output = task.request.get("output") or {}
    locator = output.get("delivery") or {}
    kind = "gs" if isinstance(locator.get("gs"), dict) else "s3"
    url = str((locator.get(kind) or {}).get("url") or "")
    if not url:
        return []
    if output.get("type") == "zarr":
        root = url.removesuffix("/").removesuffix("/<requestId>")
    else:
        ids = [
            r.get("identifier", "default")
            for r in task.request["processRequest"]["output"]["responses"]
        ]
        root = DeliveryTemplate.parse(url, ids, "output->delivery").root
    folder = f"{root}/{task.id}"
    if kind == "s3" and settings.s3_endpoint is None:  # embedded: the bucket is a folder
        folder = str(settings.buckets_dir / folder.removeprefix("s3://"))
    rows = [("delivery", root)]
    if task.status != "DONE":
        return rows
    rows.append(("catalogue", f"{folder}/{COLLECTION_FILE} (STAC)"))
    local = Path(folder)
    for mosaic in sorted(local.glob("mosaic-*.vrt")) if local.is_dir() else []:
        rows.append(("mosaic", f"{mosaic}  (drag it into QGIS, or gdalinfo it)"))
    return rows


def _watch_json(db: Database, task_id: str, interval: float) -> Task:
    last = None
    while True:
        task, counts, _ = _task_state(db, task_id)
        state = {
            "id": task.id,
            "status": task.status,
            "completionPercentage": round(task.completion_percentage, 2),
            "features": dict(counts),
            "costPU": to_pu(task.cost_micro_pu),
        }
        if state != last:
            print(json.dumps(state), flush=True)
            last = state
        if _settled(task):
            return task
        time.sleep(interval)


def _watch_live(db: Database, task_id: str, interval: float) -> Task:
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=console,
    )
    bar = progress.add_task("", total=100)
    with Live(progress, console=console, refresh_per_second=4) as live:
        while True:
            task, counts, _ = _task_state(db, task_id)
            progress.update(
                bar, completed=task.completion_percentage, description=f"{_status(task):<14}"
            )
            live.update(
                Group(
                    progress,
                    f"features: {_features_text(counts)}   "
                    f"cost: {to_pu(task.cost_micro_pu):,.3f} PU",
                )
            )
            if _settled(task):
                return task
            time.sleep(interval)


def _settled(task: Task) -> bool:
    """Nothing more will happen without a user action."""
    if task.status in FINAL:
        return True
    return task.status in ("CREATED", "ANALYSIS_DONE") and not task.action_pending


def _print_json(body: Any) -> None:
    print(json.dumps(body, indent=2))

"""What the API does with tasks: create, read, list, describe, and record user actions.

Nothing here runs analysis or processing; that is the controller's job.
"""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from obstore.exceptions import PermissionDeniedError, UnauthenticatedError
from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import Session

from eobatch.config import Settings
from eobatch.errors import Conflict, Forbidden, InvalidRequest, NotFound, Unavailable, describe
from eobatch.lifecycle import events
from eobatch.lifecycle.billing import to_pu
from eobatch.lifecycle.states import (
    Status,
    StoppedReason,
    TaskState,
    UserAction,
    accept_user_action,
)
from eobatch.lifecycle.validation import validate_request
from eobatch.limits import check_json_text, check_search
from eobatch.schemas import BatchRequest, DescriptionUpdate, parse_model
from eobatch.sealing import keyring_for, seal_secrets
from eobatch.storage import redact_locator
from eobatch.store import Database
from eobatch.store.models import Account, Collection, Feature, Task

REQUEST_FILE = "request-{request_id}.json"
SORTS = {
    "created": (Task.created.asc(),),
    "created:asc": (Task.created.asc(),),
    "created:desc": (Task.created.desc(),),
    "status": (Task.status.asc(), Task.created.desc()),
    "status:asc": (Task.status.asc(), Task.created.desc()),
    "status:desc": (Task.status.desc(), Task.created.desc()),
}


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


def redacted_request(body: dict[str, Any]) -> dict[str, Any]:
    """The submitted request with every storage credential masked."""
    echo = copy.deepcopy(body)
    output = echo.get("output")
    if isinstance(output, dict) and isinstance(output.get("delivery"), dict):
        output["delivery"] = redact_locator(output["delivery"])
    task_input = echo.get("input")
    if isinstance(task_input, dict) and isinstance(task_input.get("features"), dict):
        task_input["features"] = redact_locator(task_input["features"])
    return echo


def task_json(task: Task) -> dict[str, Any]:
    """`BatchV2ProcessTask` (batch-v2-api.md §5)."""
    body: dict[str, Any] = {
        "id": task.id,
        "request": redacted_request(task.request),
        "domainAccountId": task.account_id,
        "projectId": task.account_id,
        "status": task.status,
        "userAction": task.user_action,
        "userActionUpdated": _iso(task.user_action_updated),
        "created": _iso(task.created),
        "lastUpdated": _iso(task.last_updated),
        "completionPercentage": round(task.completion_percentage, 2),
        "costPU": to_pu(task.cost_micro_pu),
        # Beyond Sentinel Hub (sentinelhub-py keeps unknown keys in `other_data`): what the
        # analysis expects the task to cost, before it is started.
        "estimate": task.estimate,
    }
    if task.error:
        body["error"] = task.error
    if task.status == Status.STOPPED and task.stopped_status_reason:
        body["stoppedStatusReason"] = task.stopped_status_reason
    return {k: v for k, v in body.items() if v is not None}


def create_task(
    db: Database, settings: Settings, account_id: str, body: Any, evalscript: str | None = None
) -> dict[str, Any]:
    """Validate and store a new task (CREATED) and upload the request JSON; returns the task."""
    if evalscript is not None:
        if not isinstance(body, dict) or not isinstance(body.get("processRequest"), dict):
            raise InvalidRequest.at("request->processRequest", "is required")
        body = {**body, "processRequest": {**body["processRequest"], "evalscript": evalscript}}
        check_json_text(body)  # the script part came apart from the JSON
    request = parse_model(BatchRequest, body)
    with db.reading() as session:
        owned = set(
            session.scalars(select(Collection.id).where(Collection.account_id == account_id))
        )
        account = session.get(Account, account_id)
        if account is None:
            raise NotFound("Account not found")
        balance = account.balance_pu
    checked = validate_request(request, settings, owned, read_geopackage=True)
    if balance < settings.min_balance_pu:
        raise Forbidden(
            f"Creating a batch task needs at least {settings.min_balance_pu:g} PU on the account; "
            f"it holds {balance:g} PU. Top the account up and try again."
        )

    task_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    request_key = REQUEST_FILE.format(request_id=task_id)
    bookkeeping = checked.delivery
    try:  # the first write: keys that may list the bucket but not write to it fail here
        bookkeeping.put(request_key, json.dumps(redacted_request(body), indent=2).encode())
    except Exception as exc:
        where = bookkeeping.url_for(request_key)
        if _denied(exc):
            raise InvalidRequest.at(
                "output->delivery",
                f"cannot write to {where} ({type(exc).__name__}): give credentials allowed to "
                "write the bucket",
            ) from exc
        raise Unavailable(
            f"Could not write to {where} ({describe(exc, 300)}); nothing was created, try again"
        ) from exc
    try:
        with db.session() as session:
            task = Task(
                id=task_id,
                account_id=account_id,
                request=seal_secrets(body, keyring_for(settings)),
                description=request.description,
                status=Status.CREATED,
                user_action=UserAction.NONE,
                created=now,
                last_updated=now,
            )
            session.add(task)
    except Exception:
        bookkeeping.delete(request_key)
        raise
    events.created(task_id, account_id)
    return task_json(task)


def _denied(error: BaseException) -> bool:
    """Whether a storage error says the credentials may not do it (the request's fault), as
    obstore, GCS and local folders say it."""
    if isinstance(error, PermissionDeniedError | UnauthenticatedError | PermissionError):
        return True
    text = str(error)
    return any(s in text for s in ("AccessDenied", "403", "Forbidden", "401", "Unauthorized"))


def _owned_task(session: Session, account_id: str, task_id: str, lock: bool = False) -> Task:
    try:
        uuid.UUID(task_id)
    except ValueError:
        raise NotFound(f"Batch task {task_id} not found") from None
    query = select(Task).where(Task.id == task_id, Task.account_id == account_id)
    if lock:
        query = query.with_for_update()
    task = session.scalars(query).first()
    if task is None:
        raise NotFound(f"Batch task {task_id} not found")
    return task


def get_task(db: Database, account_id: str, task_id: str) -> dict[str, Any]:
    with db.reading() as session:
        return task_json(_owned_task(session, account_id, task_id))


def list_features(
    db: Database, account_id: str, task_id: str, offset: int, limit: int
) -> list[dict[str, Any]]:
    """Up to limit + 1 features of a task with their status and charges (beyond Sentinel Hub)."""
    with db.reading() as session:
        _owned_task(session, account_id, task_id)
        rows = session.scalars(
            select(Feature)
            .where(Feature.task_id == task_id)
            .order_by(Feature.id)
            .offset(offset)
            .limit(limit + 1)
        ).all()
        return [feature_json(f) for f in rows]


def feature_json(f: Feature) -> dict[str, Any]:
    """A feature with its status and charges, as `…/process/{id}/features` lists it."""
    return {
        "id": f.id,
        "name": f.name,
        "status": f.status,
        "error": f.error,
        "width": f.width,
        "height": f.height,
        "samples": f.samples,
        "bytesWritten": f.bytes_written,
        "costPU": to_pu(f.cost_micro_pu),
        "transferPU": to_pu(f.surcharge_micro_pu),
    }


def list_tasks(
    db: Database,
    account_id: str,
    offset: int,
    limit: int,
    sort: str | None = None,
    search: str | None = None,
) -> list[dict[str, Any]]:
    """Up to limit + 1 tasks of the account (one extra tells the caller another page exists)."""
    order = SORTS.get(sort or "created:desc")
    if order is None:
        raise InvalidRequest.at("sort", f"must be one of {', '.join(SORTS)}")
    query = select(Task).where(Task.account_id == account_id)
    if search:
        check_search(search)
        clause = _search_clause(search)
        if clause is not None:
            query = query.where(clause)
    query = query.order_by(*order, Task.id).offset(offset).limit(limit + 1)
    with db.reading() as session:
        return [task_json(t) for t in session.scalars(query)]


def _search_clause(search: str) -> ColumnElement[bool] | None:
    """Words joined by `|` (or) and `&` (and), each matched literally (`%` and `_` are text, not
    wildcards) and case-insensitively in the description or the id. Empty words are ignored;
    None when no word is left."""

    def word(w: str) -> ColumnElement[bool]:
        return or_(
            Task.description.icontains(w, autoescape=True), Task.id.icontains(w, autoescape=True)
        )

    alternatives = [[w.strip() for w in alt.split("&") if w.strip()] for alt in search.split("|")]
    alternatives = [words for words in alternatives if words]
    if not alternatives:
        return None
    return or_(*(and_(*(word(w) for w in words)) for words in alternatives))


def update_description(db: Database, account_id: str, task_id: str, body: Any) -> dict[str, Any]:
    """Change the description; refused (409) while the task is being worked on."""
    update = parse_model(DescriptionUpdate, body)
    with db.session() as session:
        task = _owned_task(session, account_id, task_id, lock=True)
        if task.status in (Status.ANALYSING, Status.PROCESSING) or task.action_pending:
            raise Conflict(
                f"The task is {task.status}; its description can be changed when it is not "
                "being analysed, processed or about to be."
            )
        if update.description is not None:
            task.description = update.description
            task.request = {**task.request, "description": update.description}
            task.last_updated = datetime.now(UTC)
        echo = redacted_request(task.request)
    return {k: echo[k] for k in ("processRequest", "input", "output", "description") if k in echo}


def record_user_action(
    db: Database, settings: Settings, account_id: str, task_id: str, action: UserAction
) -> None:
    """Record ANALYSE / START / STOP if the task's status allows it (else `IllegalAction`)."""
    now = datetime.now(UTC)
    with db.session() as session:
        task = _owned_task(session, account_id, task_id, lock=True)
        state = TaskState(
            Status(task.status),
            UserAction(task.user_action),
            task.user_action_updated,
            StoppedReason(task.stopped_status_reason) if task.stopped_status_reason else None,
        )
        if action is UserAction.START and state.status is Status.STOPPED:
            balance = session.get(Account, account_id).balance_pu  # type: ignore[union-attr]
            if balance <= 0:
                raise Forbidden("The account has no PU left; top it up before restarting.")
        new = accept_user_action(state, action, now, timedelta(seconds=settings.restart_lock_s))
        task.user_action = new.user_action
        task.user_action_updated = new.user_action_updated
        task.action_pending = True
        task.last_updated = now

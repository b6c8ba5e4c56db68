"""Fencing: the store refuses a controller's writes to a task once it no longer holds the lease.

Every transaction in which a controller changes a task, its features or the account's PUs
starts with `fence`: one conditional UPDATE of the task row that matches only while that
controller still holds the lease under the epoch it was granted. Another controller taking the
task over raises the epoch, so a paused or partitioned controller that wakes up finds nothing to
match and its whole transaction is rolled back. The UPDATE also locks the row until commit, so
no takeover can slip in between the check and the writes it guards.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlalchemy.orm import Session

from eobatch.store.models import Task


class LeaseLost(Exception):
    """This controller no longer holds the task's lease: another one may be working on it."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"the lease on task {task_id} is lost")
        self.task_id = task_id


def fence(
    session: Session, task_id: str, controller_id: str, epoch: int | None, lease_s: float
) -> None:
    """Refuse the transaction (raise `LeaseLost`) unless `controller_id` holds the task's lease
    under `epoch`; the lease is extended to `lease_s` from now."""
    if epoch is None:
        raise LeaseLost(task_id)
    matched = session.execute(
        update(Task)
        .where(Task.id == task_id, Task.controller_id == controller_id, Task.lease_epoch == epoch)
        .values(lease_until=datetime.now(UTC) + timedelta(seconds=lease_s))
        .returning(Task.id)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    if matched is None:
        raise LeaseLost(task_id)

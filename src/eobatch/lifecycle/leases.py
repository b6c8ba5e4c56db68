"""Leases: the tasks a controller works on, claimed in the store and renewed while it lives.

A lease is a task row naming its controller, an expiry and an epoch. A controller claims the
tasks that need work and are free (or whose lease expired: their controller died), renews its
leases from a keeper thread while its loop is alive (so an analysis or any other long step never
lets one lapse), and releases them when it stops or cannot do their work. Each time a task
changes hands its epoch grows; `fencing.fence` checks that epoch in every write.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, select, update

from eobatch.lifecycle.states import Status
from eobatch.store import Database
from eobatch.store.models import Task

log = logging.getLogger(__name__)


class Leases:
    """The leases one controller holds, with the epoch each was granted under."""

    def __init__(
        self, db: Database, controller_id: str, lease_s: float, alive: Callable[[], bool]
    ) -> None:
        self.db = db
        self.controller_id = controller_id
        self.lease_s = lease_s
        self.alive = alive  # the keeper renews only while this says the controller works
        self._epochs: dict[str, int] = {}
        self._lost: dict[str, int] = {}  # task -> the epoch whose renewal failed
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None

    def held(self) -> list[str]:
        with self._lock:
            return list(self._epochs)

    def epoch(self, task_id: str) -> int | None:
        with self._lock:
            return self._epochs.get(task_id)

    def _until(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.lease_s)

    # -- claiming -------------------------------------------------------------------------------

    def claim(self, processing: bool = True) -> tuple[list[str], list[str]]:
        """Lease every task that needs work and is free, ours, or whose lease expired.

        Returns the tasks held, oldest first, and those among them newly taken (their epoch
        grew: whatever the controller remembers of them is stale). Without `processing` (no
        Dask cluster to run features on) only user actions and analyses are claimed.
        """
        now = datetime.now(UTC)
        working = [Status.ANALYSING, Status.PROCESSING] if processing else [Status.ANALYSING]
        query = (
            select(Task)
            .where(
                or_(Task.action_pending, Task.status.in_(working)),
                or_(
                    Task.controller_id.is_(None),
                    Task.controller_id == self.controller_id,
                    Task.lease_until < now,
                ),
            )
            .order_by(Task.created)
        )
        if not self.db.is_sqlite:  # a task another controller is claiming right now is skipped
            query = query.with_for_update(skip_locked=True)
        taken = []
        with self.db.session() as session:
            tasks = session.scalars(query).all()
            with self._lock:
                for task in tasks:
                    ours = task.controller_id == self.controller_id
                    if not (ours and self._epochs.get(task.id) == task.lease_epoch):
                        if task.controller_id not in (None, self.controller_id):
                            # An operator watching a failover wants to see it happen.
                            log.warning(
                                "task %s: taken over from controller %s, whose lease ran out at %s",
                                task.id,
                                task.controller_id,
                                task.lease_until,
                            )
                        task.lease_epoch += 1
                        task.controller_id = self.controller_id
                        taken.append(task.id)
                    task.lease_until = self._until()
                epochs = {t.id: t.lease_epoch for t in tasks}
        with self._lock:  # only once the claim is committed
            self._epochs.update(epochs)
            for task_id in epochs:
                self._lost.pop(task_id, None)
        return [t.id for t in tasks], taken

    # -- renewing, losing, releasing -------------------------------------------------------------

    def renew(self) -> None:
        """Extend every lease held; a lease another controller took meanwhile is marked lost."""
        for task_id, epoch in list(self._snapshot().items()):
            with self.db.session() as session:  # one row per transaction: no lock ordering
                matched = session.execute(
                    update(Task)
                    .where(
                        Task.id == task_id,
                        Task.controller_id == self.controller_id,
                        Task.lease_epoch == epoch,
                    )
                    .values(lease_until=self._until())
                    .returning(Task.id)
                ).scalar_one_or_none()
            if matched is None:
                with self._lock:
                    if self._epochs.get(task_id) == epoch:
                        self._lost[task_id] = epoch

    def take_lost(self) -> list[str]:
        """Tasks whose lease was found lost since the last call (now dropped from the held)."""
        with self._lock:
            lost = [t for t, e in self._lost.items() if self._epochs.get(t) == e]
            for task_id in lost:
                del self._epochs[task_id]
            self._lost.clear()
        return lost

    def release(self, task_id: str) -> None:
        """Give the task back at once, so that another controller can take it without waiting
        for the lease to expire."""
        epoch = self.epoch(task_id)
        self.drop(task_id)
        if epoch is None:
            return
        with self.db.session() as session:
            session.execute(
                update(Task)
                .where(
                    Task.id == task_id,
                    Task.controller_id == self.controller_id,
                    Task.lease_epoch == epoch,
                )
                .values(controller_id=None, lease_until=None)
            )

    def release_all(self) -> None:
        for task_id in self.held():
            try:
                self.release(task_id)
            except Exception:  # the store may be gone: then the lease simply expires
                log.warning("could not release the lease on task %s", task_id, exc_info=True)

    def drop(self, task_id: str) -> None:
        """Forget a lease the controller gave up in one of its own (fenced) writes."""
        with self._lock:
            self._epochs.pop(task_id, None)
            self._lost.pop(task_id, None)

    def _snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._epochs)

    # -- the keeper thread -----------------------------------------------------------------------

    def start_keeper(self) -> None:
        """Renew the leases every third of their duration while the controller is alive."""
        self._keeper = threading.Thread(target=self._keep, name="eobatch-leases", daemon=True)
        self._keeper.start()

    def stop_keeper(self) -> None:
        self._stop.set()
        if self._keeper is not None:
            self._keeper.join(self.lease_s)

    def _keep(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            if not self.alive():
                continue  # a stuck loop must let its tasks go to another controller
            try:
                self.renew()
            except Exception:  # the store is unreachable: retry; fencing guards the rest
                log.warning("could not renew the task leases", exc_info=True)

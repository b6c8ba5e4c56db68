"""The controller: the only code that moves tasks between statuses.

One loop claims the tasks that need work (a lease per task, so another controller can take over
after a crash), applies pending user actions, runs analyses, keeps a bounded window of feature
jobs in flight on Dask, records their outcomes, bills PUs, and uploads execution databases.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import shapely
from distributed import Client, Future
from sqlalchemy import func, or_, select, true, update

from eobatch.config import Settings
from eobatch.engine import FeatureOutcome, run_feature
from eobatch.errors import AnalysisError
from eobatch.lifecycle.analysis import analyse_task, check_script
from eobatch.lifecycle.billing import feature_pu
from eobatch.lifecycle.context import TaskContext, ingest_outputs
from eobatch.lifecycle.states import (
    Event,
    Status,
    StoppedReason,
    UserAction,
    after_analysis,
    event_for_pending_action,
    next_status,
)
from eobatch.planning import Feature
from eobatch.script import ScriptSetup
from eobatch.sinks import ExecutionRow, execution_db_bytes
from eobatch.sinks.byoc import new_collection_id
from eobatch.store import Database
from eobatch.store.models import Account, Task
from eobatch.store.models import Feature as FeatureRow

log = logging.getLogger(__name__)

EXECUTION_FILE = "execution-{request_id}.sqlite"


def _now() -> datetime:
    return datetime.now(UTC)


def _feature(row: FeatureRow) -> Feature:
    return Feature(
        id=row.id,
        name=row.name,
        epsg=row.epsg,
        bounds=(row.minx, row.miny, row.maxx, row.maxy),
        width=row.width,
        height=row.height,
        geometry=shapely.from_wkb(row.geometry),
    )


class Controller:
    def __init__(self, db: Database, settings: Settings, client: Client) -> None:
        self.db = db
        self.settings = settings
        self.client = client
        self.id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.in_flight: dict[Future, tuple[str, int]] = {}
        self.contexts: dict[str, tuple[TaskContext, ScriptSetup]] = {}
        self.last_snapshot: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- running ----------------------------------------------------------------------------

    def start(self) -> None:
        """Run the loop in a background thread."""
        self._thread = threading.Thread(target=self.run, name="eobatch-controller", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run(self) -> None:
        self.recover()
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:  # the loop must survive anything; the next step retries
                log.exception("controller step failed")
                self._stop.wait(self.settings.controller_poll_s)
        if self.in_flight:
            self.client.cancel(list(self.in_flight))

    def recover(self) -> None:
        """On SQLite there is one controller: leases of a previous (crashed) run are void."""
        if self.db.is_sqlite:
            with self.db.session() as session:
                session.execute(update(Task).values(controller_id=None, lease_until=None))

    def step(self) -> None:
        """One round: results in, tasks advanced, window refilled, snapshots out."""
        deadline = time.monotonic() + self.settings.controller_poll_s
        # Wake as soon as a job finishes; polling `done()` needs no default Dask client.
        while time.monotonic() < deadline and not self._stop.is_set():
            if any(future.done() for future in self.in_flight):
                break
            self._stop.wait(0.02)
        self.collect()
        for task_id in self.claim():
            self.advance(task_id)
        self.schedule()
        self.snapshot_due()

    # -- claiming ---------------------------------------------------------------------------

    def claim(self) -> list[str]:
        """Lease every task that needs work and is free (or ours, or its lease expired)."""
        now = _now()
        query = (
            select(Task)
            .where(
                or_(Task.action_pending, Task.status.in_([Status.ANALYSING, Status.PROCESSING])),
                or_(
                    Task.controller_id.is_(None),
                    Task.controller_id == self.id,
                    Task.lease_until < now,
                ),
            )
            .order_by(Task.created)
        )
        if not self.db.is_sqlite:
            query = query.with_for_update(skip_locked=True)
        with self.db.session() as session:
            tasks = session.scalars(query).all()
            for task in tasks:
                task.controller_id = self.id
                task.lease_until = now + timedelta(seconds=self.settings.lease_s)
            return [t.id for t in tasks]

    # -- status changes ---------------------------------------------------------------------

    def advance(self, task_id: str) -> None:
        """Apply a pending user action, then run whatever the task's status asks for."""
        with self.db.session() as session:
            task = session.get(Task, task_id)
            assert task is not None
            status = Status(task.status)
            if task.action_pending:
                event = event_for_pending_action(status, UserAction(task.user_action))
                if event is not None:
                    self._apply(session, task, event)
                    status = Status(task.status)
        if status is Status.ANALYSING:
            self.analyse(task_id)
        elif status is Status.PROCESSING:
            self.finish_if_complete(task_id)

    def _apply(self, session, task: Task, event: Event) -> None:  # type: ignore[no-untyped-def]
        new = next_status(Status(task.status), event)
        if new is None:
            return
        if event is Event.STOP_PICKED:
            self._halt(session, task, StoppedReason.USER_ACTION)
        else:
            task.status = new
            task.stopped_status_reason = None
        task.action_pending = False
        task.last_updated = _now()

    def _halt(self, session, task: Task, reason: StoppedReason) -> None:  # type: ignore[no-untyped-def]
        """Stop a task now: cancel its jobs, charging those already in flight."""
        mine = [f for f, (tid, _) in self.in_flight.items() if tid == task.id]
        if mine:
            self.client.cancel(mine)
            in_flight_ids = [self.in_flight.pop(f)[1] for f in mine]
            self._charge(session, task, in_flight_ids)
        task.status = Status.STOPPED
        task.stopped_status_reason = reason
        task.last_updated = _now()
        task.controller_id = None
        self.contexts.pop(task.id, None)
        self.upload_execution_db(task.id, session)

    def analyse(self, task_id: str) -> None:
        with self.db.session() as session:
            task = session.get(Task, task_id)
            assert task is not None
        try:
            count = analyse_task(self.db, self.settings, task)
            error = None
        except AnalysisError as exc:
            error = str(exc)
        except Exception as exc:  # an unexpected failure must still end the analysis clearly
            log.exception("analysis of %s failed", task_id)
            error = f"Analysis failed: {type(exc).__name__}: {exc}"
        with self.db.session() as session:
            task = session.get(Task, task_id, with_for_update=not self.db.is_sqlite)
            assert task is not None
            task.last_updated = _now()
            task.action_pending = False
            if error is not None:
                task.status = Status.FAILED
                task.error = error
                task.controller_id = None
                return
            status, reason = after_analysis(UserAction(task.user_action))
            task.status, task.stopped_status_reason = status, reason
            task.analysed = True
            task.feature_count = count
            task.completion_percentage = 0.0

    # -- processing -------------------------------------------------------------------------

    def _context(self, task: Task) -> tuple[TaskContext, ScriptSetup]:
        if task.id not in self.contexts:
            context = TaskContext.build(self.db, self.settings, task)
            self.contexts[task.id] = (context, check_script(context.evalscript, context))
        return self.contexts[task.id]

    def schedule(self) -> None:
        """Fill the in-flight window with PENDING features, taking tasks in turn."""
        room = self.settings.in_flight_window - len(self.in_flight)
        if room <= 0:
            return
        busy = defaultdict(set)
        for task_id, feature_id in self.in_flight.values():
            busy[task_id].add(feature_id)
        with self.db.session() as session:
            tasks = session.scalars(
                select(Task)
                .where(Task.status == Status.PROCESSING, Task.controller_id == self.id)
                .order_by(Task.created)
            ).all()
            per_task = max(1, room // max(1, len(tasks)))
            for task in tasks:
                if room <= 0:
                    break
                try:
                    context, setup = self._context(task)
                except AnalysisError as exc:
                    task.status, task.error = Status.FAILED, str(exc)
                    continue
                rows = session.scalars(
                    select(FeatureRow)
                    .where(FeatureRow.task_id == task.id, FeatureRow.status == "PENDING")
                    .where(FeatureRow.id.not_in(busy[task.id]) if busy[task.id] else true())
                    .order_by(FeatureRow.id)
                    .limit(min(room, per_task))
                ).all()
                for row in rows:
                    job = context.job(_feature(row), setup, self.settings)
                    future = self.client.submit(
                        run_feature, job, key=f"feature-{task.id}-{row.id}-{uuid.uuid4().hex[:6]}",
                        pure=False,
                    )  # fmt: skip
                    self.in_flight[future] = (task.id, row.id)
                    room -= 1

    def collect(self) -> None:
        """Record the outcome of every finished job."""
        done = [f for f in self.in_flight if f.done()]
        if not done:
            return
        outcomes: list[FeatureOutcome] = []
        for future in done:
            task_id, feature_id = self.in_flight.pop(future)
            try:
                outcomes.append(future.result())
            except Exception as exc:  # a worker died or the job was cancelled: try again
                outcomes.append(
                    FeatureOutcome(task_id, feature_id, False, error=f"{type(exc).__name__}: {exc}")
                )
        by_task: dict[str, list[FeatureOutcome]] = defaultdict(list)
        for outcome in outcomes:
            by_task[outcome.task_id].append(outcome)
        for task_id, results in by_task.items():
            self._record(task_id, results)

    def _record(self, task_id: str, outcomes: list[FeatureOutcome]) -> None:
        with self.db.session() as session:
            task = session.get(Task, task_id, with_for_update=not self.db.is_sqlite)
            if task is None or task.status != Status.PROCESSING:
                return  # stopped meanwhile: in-flight work was charged at the stop
            rows = {
                r.id: r
                for r in session.scalars(
                    select(FeatureRow).where(
                        FeatureRow.task_id == task_id,
                        FeatureRow.id.in_([o.feature_id for o in outcomes]),
                    )
                )
            }
            charge = []
            for outcome in outcomes:
                row = rows[outcome.feature_id]
                if outcome.ok:
                    row.status = "DONE"
                    row.delivered = not outcome.no_data
                    row.error = outcome.error
                    charge.append(row.id)
                else:
                    row.attempts += 1
                    row.error = outcome.error
                    if not outcome.retryable or row.attempts >= self.settings.feature_attempts:
                        row.status = "FATAL"
            session.flush()
            self._charge(session, task, charge)
            self._update_progress(session, task)
            account = session.get(Account, task.account_id)
            if account is not None and account.balance_pu <= 0 and self._pending(session, task_id):
                self._halt(session, task, StoppedReason.OUT_OF_PU)

    def _charge(self, session, task: Task, feature_ids: list[int]) -> None:  # type: ignore[no-untyped-def]
        """Bill features once each, to the task's cost and the account's balance."""
        if not feature_ids:
            return
        context = self.contexts.get(task.id)
        setup = context[1] if context else None
        bands = setup.bands if setup else ()
        types = [o.sample_type for o in setup.outputs] if setup else []
        rows = session.scalars(
            select(FeatureRow).where(
                FeatureRow.task_id == task.id, FeatureRow.id.in_(feature_ids), ~FeatureRow.billed
            )
        ).all()
        total = 0.0
        for row in rows:
            row.cost_pu = feature_pu(row.width, row.height, bands, types)
            row.billed = True
            total += row.cost_pu
        task.cost_pu += total
        account = session.get(Account, task.account_id, with_for_update=not self.db.is_sqlite)
        if account is not None:
            account.balance_pu -= total

    def _pending(self, session, task_id: str) -> int:  # type: ignore[no-untyped-def]
        return session.scalar(
            select(func.count()).where(
                FeatureRow.task_id == task_id, FeatureRow.status == "PENDING"
            )
        )

    def _update_progress(self, session, task: Task) -> None:  # type: ignore[no-untyped-def]
        if task.feature_count:
            final = task.feature_count - self._pending(session, task.id)
            task.completion_percentage = 100.0 * final / task.feature_count
        task.last_updated = _now()

    def finish_if_complete(self, task_id: str) -> None:
        """PROCESSING → DONE once no feature is pending or in flight."""
        if any(tid == task_id for tid, _ in self.in_flight.values()):
            return
        with self.db.session() as session:
            task = session.get(Task, task_id)
            if task is None or task.status != Status.PROCESSING or self._pending(session, task_id):
                return
            self._ingest(session, task)
            task.status = next_status(Status.PROCESSING, Event.ALL_FEATURES_FINAL)
            task.completion_percentage = 100.0
            task.last_updated = _now()
            task.controller_id = None
            self.contexts.pop(task_id, None)
            self.upload_execution_db(task_id, session)

    def _ingest(self, session, task: Task) -> None:  # type: ignore[no-untyped-def]
        """BYOC ingestion of the delivered features, when the request asks for it."""
        output = task.request.get("output") or {}
        if not (output.get("createCollection") or output.get("collectionId")):
            return
        context, _ = self._context(task)
        collection_id = (output.get("collectionId") or "").lower() or new_collection_id(task.id)
        rows = session.scalars(
            select(FeatureRow).where(FeatureRow.task_id == task.id, FeatureRow.delivered)
        ).all()
        ingest_outputs(context, collection_id, list(rows))

    # -- bookkeeping ------------------------------------------------------------------------

    def snapshot_due(self) -> None:
        now = time.monotonic()
        for task_id, (context, _) in list(self.contexts.items()):
            last = self.last_snapshot.get(task_id)
            if last is None or now - last >= self.settings.execution_db_interval_s:
                with self.db.session() as session:
                    self.upload_execution_db(task_id, session, context)

    def upload_execution_db(
        self, task_id: str, session, context: TaskContext | None = None
    ) -> None:  # type: ignore[no-untyped-def]
        """Write `execution-<requestId>.sqlite` to the delivery root."""
        self.last_snapshot[task_id] = time.monotonic()
        try:
            if context is None:
                task = session.get(Task, task_id)
                context = TaskContext.build(self.db, self.settings, task)
            rows = session.execute(
                select(FeatureRow.id, FeatureRow.name, FeatureRow.status, FeatureRow.error,
                       FeatureRow.delivered)
                .where(FeatureRow.task_id == task_id)
                .order_by(FeatureRow.id)
            ).all()  # fmt: skip
            data = execution_db_bytes(ExecutionRow(*row) for row in rows)
            context.delivery.put(EXECUTION_FILE.format(request_id=task_id), data)
        except Exception:  # a failed snapshot must not stop processing; the next one retries
            log.exception("could not upload the execution database of %s", task_id)

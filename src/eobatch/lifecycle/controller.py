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

from eobatch import ledger
from eobatch.config import Settings
from eobatch.engine import FeatureOutcome, run_feature
from eobatch.errors import AnalysisError
from eobatch.lifecycle.analysis import analyse_task, check_script
from eobatch.lifecycle.billing import (
    max_output_bytes,
    surcharge_micro,
    task_minimum_micro,
    to_pu,
)
from eobatch.lifecycle.context import TaskContext, ingest_outputs
from eobatch.lifecycle.results import publish_results
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
from eobatch.sinks.execution_db import EXECUTION_FILE
from eobatch.store import Database
from eobatch.store.models import Feature as FeatureRow
from eobatch.store.models import Task

log = logging.getLogger(__name__)


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
        """Stop a task now: cancel its jobs, charging those already in flight (at their most
        samples, no transfer: nothing is known to be delivered), and give back every hold."""
        mine = [f for f, (tid, _) in self.in_flight.items() if tid == task.id]
        if mine:
            self.client.cancel(mine)
            in_flight_ids = [self.in_flight.pop(f)[1] for f in mine]
            rows = self._rows(session, task.id, in_flight_ids)
            self._bill(session, task, [(row, row.max_samples, 0) for row in rows], "in progress")
        held = session.scalars(
            select(FeatureRow).where(
                FeatureRow.task_id == task.id, FeatureRow.reserved_micro_pu > 0
            )
        ).all()
        for row in held:
            self._release(session, task, row)
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
            count, context, setup = analyse_task(self.db, self.settings, task)
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
            if status == Status.PROCESSING:  # carry on with the analysis' scenes: same pixels
                self.contexts[task_id] = (context, setup)
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
                    if not self._hold(session, task, row, context, setup):
                        if not busy[task.id] and self._unaffordable(session, task, row):
                            self._halt(session, task, StoppedReason.OUT_OF_PU)
                        break  # wait for holds of work in flight to be given back
                    busy[task.id].add(row.id)
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
            billable = []
            for outcome in outcomes:
                row = rows[outcome.feature_id]
                self._release(session, task, row)
                if outcome.ok:
                    row.status = "DONE"
                    row.delivered = not outcome.no_data
                    row.error = outcome.error
                    billable.append((row, outcome.samples, outcome.bytes_written))
                else:
                    row.attempts += 1
                    row.error = outcome.error
                    if not outcome.retryable or row.attempts >= self.settings.feature_attempts:
                        row.status = "FATAL"
            session.flush()
            self._bill(session, task, billable, "processed")
            self._update_progress(session, task)

    # -- billing (lifecycle/billing.py prices, eobatch.ledger moves the PUs) ----------------

    def _rows(self, session, task_id: str, ids: list[int]) -> list[FeatureRow]:  # type: ignore[no-untyped-def]
        return list(
            session.scalars(
                select(FeatureRow).where(FeatureRow.task_id == task_id, FeatureRow.id.in_(ids))
            )
        )

    def _hold_micro(self, row: FeatureRow, context: TaskContext, setup: ScriptSetup) -> int:
        """The most a feature can cost: all its samples and the largest output it can write."""
        most = context.pricing(setup).feature_micro(row.width, row.height, row.max_samples)
        largest = max_output_bytes(row.width, row.height, context.output_bands(setup))
        return most + surcharge_micro(largest, context.crossing(self.settings))

    def _hold(self, session, task: Task, row: FeatureRow, context, setup) -> bool:  # type: ignore[no-untyped-def]
        """Hold the feature's most possible cost on the account before it is dispatched, so
        that tasks sharing an account can never together spend more than its balance."""
        if row.reserved_micro_pu:
            return True  # held by an earlier dispatch (e.g. before a controller restart)
        amount = self._hold_micro(row, context, setup)
        if not ledger.reserve(session, task.account_id, amount):
            return False
        row.reserved_micro_pu = amount
        return True

    def _release(self, session, task: Task, row: FeatureRow) -> None:  # type: ignore[no-untyped-def]
        ledger.release(session, task.account_id, row.reserved_micro_pu)
        row.reserved_micro_pu = 0

    def _unaffordable(self, session, task: Task, row: FeatureRow) -> bool:  # type: ignore[no-untyped-def]
        """True when the next feature costs more than the whole balance, holds or not."""
        context, setup = self._context(task)
        return self._hold_micro(row, context, setup) > ledger.balance_micro(
            session, task.account_id
        )

    def _bill(
        self, session, task: Task, charges: list[tuple[FeatureRow, int, int]], what: str
    ) -> None:  # type: ignore[no-untyped-def]
        """Charge features once each (samples seen, bytes delivered) to the task and account.

        Committed in the same transaction as the features' new status: a crash either keeps
        both or neither, so a feature is never charged twice nor processed for free.
        """
        context, setup = self._context(task)
        pricing, where = context.pricing(setup), context.crossing(self.settings)
        processing = transfer = count = 0
        for row, samples, nbytes in charges:
            if row.billed:
                continue
            row.samples, row.bytes_written = samples, nbytes
            row.cost_micro_pu = pricing.feature_micro(row.width, row.height, samples)
            row.surcharge_micro_pu = surcharge_micro(nbytes, where)
            row.billed = True
            processing += row.cost_micro_pu
            transfer += row.surcharge_micro_pu
            count += 1
        note = f"{count} feature(s) {what}"
        if processing:
            ledger.post(session, task.account_id, -processing, ledger.PROCESSING, task.id, note)
        if transfer:
            ledger.post(session, task.account_id, -transfer, ledger.TRANSFER, task.id,
                        f"{note}: {where.value} output transfer")  # fmt: skip
        task.cost_micro_pu += processing + transfer

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
            publish_results(*self._context(task), task)
            # Never more than the account holds: the minimum must not overdraw it either.
            balance = ledger.balance_micro(session, task.account_id)
            top = min(task_minimum_micro(task.cost_micro_pu), max(0, balance))
            if top:
                ledger.post(session, task.account_id, -top, ledger.MINIMUM, task.id,
                            "top-up to the 100 PU minimum of a batch task")  # fmt: skip
                task.cost_micro_pu += top
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
                context = TaskContext.build(self.db, self.settings, task, with_scenes=False)
            rows = session.execute(
                select(FeatureRow.id, FeatureRow.name, FeatureRow.status, FeatureRow.error,
                       FeatureRow.delivered,
                       FeatureRow.cost_micro_pu + FeatureRow.surcharge_micro_pu)
                .where(FeatureRow.task_id == task_id)
                .order_by(FeatureRow.id)
            ).all()  # fmt: skip
            data = execution_db_bytes(ExecutionRow(*row[:5], to_pu(row[5])) for row in rows)
            context.delivery.put(EXECUTION_FILE.format(request_id=task_id), data)
        except Exception:  # a failed snapshot must not stop processing; the next one retries
            log.exception("could not upload the execution database of %s", task_id)

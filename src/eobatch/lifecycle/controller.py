"""The controller: the only code that moves tasks between statuses.

One loop; each round (`step`):
1. waits for a feature job to finish or a user action (at most the poll interval),
2. handles faults: forgets the tasks whose lease another controller took, reconnects a lost Dask
   scheduler, and gives back the tasks it cannot process meanwhile,
3. records the jobs that finished: feature statuses, PU holds released, features billed,
4. claims the tasks that need work and advances each: user actions, analysis, the end of a task
   (once per poll interval, or at once when this process's API records a user action; in
   between only the tasks with nothing in flight, which may be done; a finished task's wrap-up,
   its results catalogue above all, runs in a thread of its own and the task is DONE after),
5. fills the in-flight window with fair shares of the tasks' pending features,
6. starts the uploads of the execution databases that are due (each in a thread: a bucket that
   hangs holds up nothing else).

A Dask job runs several small features (up to MAX_FEATURES_PER_JOB, PIXELS_PER_JOB pixels in all;
up to MAX_PIXELS_PER_JOB while the task's waiting work still makes JOBS_PER_PLACE jobs per place in
the window, so large tasks on large clusters pack even 1000-px features, and the last jobs of a
task are small enough to balance), so what the controller pays per job (a submission, a fenced
transaction to hold PUs, one to record the outcomes, bill them and release the holds) is shared by
its features. A job that fails as a whole (its worker died) counts no attempt: its features are
dispatched again one per job, so one runaway feature cannot take its neighbours' attempts.

Leases are claimed and renewed in `leases.py`; every write to a task, its features or its
account's PUs is fenced (`fencing.py`), so a controller that lost a task changes nothing; the
Dask client comes back by itself (`recovery.py`); the window is shared by `fairness.py`.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future as ConcurrentFuture
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import shapely
from distributed import Client, Future
from sqlalchemy import func, select, true
from sqlalchemy.orm import Session

from eobatch import ledger
from eobatch.config import Settings
from eobatch.engine import FeatureJob, FeatureOutcome, run_features
from eobatch.errors import AnalysisError, describe
from eobatch.lifecycle import events
from eobatch.lifecycle.analysis import analyse_task, check_script
from eobatch.lifecycle.billing import (
    max_output_bytes,
    surcharge_micro,
    task_minimum_micro,
    to_pu,
)
from eobatch.lifecycle.context import TaskContext, ingest_outputs
from eobatch.lifecycle.fairness import Demand, fair_shares
from eobatch.lifecycle.fencing import LeaseLost, fence
from eobatch.lifecycle.leases import Leases
from eobatch.lifecycle.recovery import Cluster, job_was_lost, void_leases
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
from eobatch.metrics import FEATURE_SECONDS, FEATURES, PU_CHARGED
from eobatch.planning import Feature
from eobatch.script import ScriptSetup
from eobatch.sinks import ExecutionRow, write_execution_db
from eobatch.sinks.byoc import new_collection_id
from eobatch.sinks.execution_db import EXECUTION_FILE
from eobatch.store import Database
from eobatch.store.models import Feature as FeatureRow
from eobatch.store.models import Task

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WrapUp:
    """A finished task's wrap-up running in its own thread (`Controller._wrapped_up`)."""

    done: ConcurrentFuture[None]
    cancelled: threading.Event  # the controller let the task go: stop between steps


MAX_FEATURES_PER_JOB = 32
PIXELS_PER_JOB = 1_000_000  # a 1000 x 1000 px feature runs alone: it takes seconds anyway
MAX_PIXELS_PER_JOB = 4_000_000  # ... unless the task has work for many more jobs (_pixel_budget)
JOBS_PER_PLACE = 4


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


def _move(task: Task, event: Event) -> None:
    """The status change the state machine prescribes for `event` (which must apply)."""
    new = next_status(Status(task.status), event)
    assert new is not None, (task.status, event)
    task.status = new


class Controller:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        client: Client | Cluster | None,
        run: Callable[[list[FeatureJob]], list[FeatureOutcome]] = run_features,
    ) -> None:
        self.db = db
        self.run_jobs = run  # what a Dask job runs: benchmarks/controller.py fakes the work
        self.settings = settings
        self.cluster = client if isinstance(client, Cluster) else Cluster(client)
        self.id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.leases = Leases(db, self.id, settings.lease_s, alive=self.alive)
        self.in_flight: dict[Future, tuple[str, tuple[int, ...]]] = {}  # job -> (task, features)
        self.finishing: dict[str, WrapUp] = {}  # task -> its wrap-up, running or done
        self.solo: dict[str, set[int]] = defaultdict(set)  # features whose job failed as a whole
        # task -> feature -> when (monotonic) its next attempt may start (`_backing_off`)
        self.retry_at: dict[str, dict[int, float]] = defaultdict(dict)
        # PENDING features per task, counted once after the lease is taken: only the lease
        # holder moves features out of PENDING (`_record`), so it keeps the count itself.
        self.pending: dict[str, int] = {}
        self.unrecorded: dict[str, list[FeatureOutcome]] = defaultdict(list)
        self.contexts: dict[str, tuple[TaskContext, ScriptSetup]] = {}
        self.last_snapshot: dict[str, float] = {}
        self.final_snapshots: dict[str, TaskContext | None] = {}
        self.snapshotting: dict[str, threading.Thread] = {}  # task -> its upload in progress
        self.last_step = time.monotonic()
        self.last_claim = -math.inf
        self._stop = threading.Event()
        self._woken = threading.Event()  # a user action in this process: claim without waiting
        self._thread: threading.Thread | None = None

    # -- running ----------------------------------------------------------------------------

    def start(self) -> None:
        """Run the loop in a background thread, and the lease keeper in another."""
        if self.db.is_sqlite:
            void_leases(self.db)
        self.last_step = time.monotonic()
        self.leases.start_keeper()
        self._thread = threading.Thread(target=self.run, name="eobatch-controller", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        """End the loop and give every task back, so another controller carries on at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        # The last snapshots of tasks that just ended (nobody writes them later), given the
        # time an upload takes to finish.
        self.snapshot_due(periodic=False)
        deadline = time.monotonic() + timeout
        for upload in list(self.snapshotting.values()):
            upload.join(max(0.0, deadline - time.monotonic()))
        self.leases.stop_keeper()
        for task_id in {task_id for task_id, _ in self.in_flight.values()}:
            self._drop_local(task_id)
        self.leases.release_all()

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:  # the loop must survive anything; the next step retries
                log.exception("controller step failed")
                self._stop.wait(self.settings.controller_poll_s)

    def step(self) -> None:
        """One round of the loop (the module's docstring lists them)."""
        self.wait_for_results()
        self.handle_faults()
        self.collect()
        woken = self._woken.is_set()
        if woken:  # cleared before the claim, so an action recorded meanwhile is claimed too
            self._woken.clear()
        if woken or time.monotonic() - self.last_claim >= self.settings.controller_poll_s:
            self.last_claim = time.monotonic()
            tasks = self.claim()
        else:  # a task with nothing in flight may be complete, or wait for its first jobs
            tasks = [t for t in self.leases.held() if not self._busy(t)]
        for task_id in tasks:
            with self._working_on(task_id):
                self.advance(task_id)
        self.schedule()
        self.snapshot_due()
        self.last_step = time.monotonic()

    def seconds_since_step(self) -> float:
        return time.monotonic() - self.last_step

    def alive(self) -> bool:
        """False once the loop has not finished a round for `controller_stall_s`."""
        return self.seconds_since_step() < self.settings.controller_stall_s

    def wake(self) -> None:
        """A user acted on a task through this process's API: claim it now instead of at the
        next poll (other replicas still see the action within their poll interval)."""
        self._woken.set()

    def wait_for_results(self) -> None:
        """Wait the poll interval, or less as soon as a job finishes or the loop is woken."""
        deadline = time.monotonic() + self.settings.controller_poll_s
        # Polling `done()` needs no default Dask client.
        while time.monotonic() < deadline and not self._stop.is_set():
            if (
                self._woken.is_set()
                or any(future.done() for future in self.in_flight)
                or any(wrap_up.done.done() for wrap_up in self.finishing.values())
            ):
                break
            self._woken.wait(0.02)

    # -- faults and leases ------------------------------------------------------------------

    def handle_faults(self) -> None:
        """Forget the tasks another controller took over; reconnect a lost scheduler and, while
        it stays lost for longer than a lease, give back the tasks that need it."""
        for task_id in self.leases.take_lost():
            log.warning("task %s: lease lost, another controller carries on", task_id)
            self._drop_local(task_id)
        if self.cluster.check() or self.cluster.down_for() < self.settings.lease_s:
            return
        held = self.leases.held()
        if not held:
            return
        with self.db.reading() as session:
            idle = session.scalars(
                select(Task.id).where(
                    Task.id.in_(held), Task.status == Status.PROCESSING, ~Task.action_pending
                )
            ).all()
        for task_id in idle:
            log.warning("task %s given back: no Dask scheduler to process it", task_id)
            self._drop_local(task_id)
            self.leases.release(task_id)

    def claim(self) -> list[str]:
        """Lease the tasks that need work (processing only with a Dask cluster); the tasks held,
        oldest first."""
        held, taken = self.leases.claim(processing=self.cluster.connected)
        for task_id in taken:  # what this controller remembers of them is from an older lease
            self._drop_local(task_id)
        return held

    @contextmanager
    def _holding(self, task_id: str) -> Iterator[Session]:
        """A transaction on a task that commits only while this controller holds its lease."""
        with self.db.session() as session:
            self._fence(task_id, session)
            yield session

    def _fence(self, task_id: str, session: Session) -> None:
        fence(session, task_id, self.id, self.leases.epoch(task_id), self.settings.lease_s)

    @contextmanager
    def _working_on(self, task_id: str) -> Iterator[None]:
        """One task's part of a round. If its lease turns out to be lost, the task is dropped;
        any other error is logged and the round goes on with the other tasks."""
        try:
            yield
        except LeaseLost:
            log.warning("task %s: lease lost, another controller carries on", task_id)
            self._drop_local(task_id)
            self.leases.drop(task_id)
        except Exception:
            log.exception("task %s: this round's work failed; the next round retries", task_id)

    def _drop_local(self, task_id: str) -> None:
        """Forget what this controller holds of a task: its jobs (cancelled: whoever holds the
        task submits its features again), results not yet recorded, its context."""
        mine = [f for f, (tid, _) in self.in_flight.items() if tid == task_id]
        for future in mine:
            del self.in_flight[future]
        if mine and self.cluster.connected:
            try:
                self.cluster.client.cancel(mine)  # type: ignore[union-attr]
            except Exception:  # the scheduler is going away: the jobs go with it
                log.debug("could not cancel the jobs of task %s", task_id, exc_info=True)
        self.unrecorded.pop(task_id, None)
        self.retry_at.pop(task_id, None)
        if (wrap_up := self.finishing.pop(task_id, None)) is not None:
            wrap_up.cancelled.set()  # whoever holds the task next wraps it up
        self.solo.pop(task_id, None)
        self.pending.pop(task_id, None)
        self.contexts.pop(task_id, None)
        self.last_snapshot.pop(task_id, None)

    def _let_go(self, task_id: str, final_snapshot: bool = True) -> None:
        """After a fenced write gave the task up (it rests or is final): forget it here."""
        context = self.contexts.get(task_id, (None,))[0]
        self._drop_local(task_id)
        self.leases.drop(task_id)
        if final_snapshot:
            self.final_snapshots[task_id] = context

    # -- status changes ---------------------------------------------------------------------

    def advance(self, task_id: str) -> None:
        """Apply a pending user action, then run whatever the task's status asks for."""
        charged = 0
        with self._holding(task_id) as session:
            task = session.get(Task, task_id)
            assert task is not None
            event = None
            if task.action_pending:
                event = event_for_pending_action(Status(task.status), UserAction(task.user_action))
                if event is not None:
                    charged = self._apply(session, task, event)
            status, cost = Status(task.status), task.cost_micro_pu
        PU_CHARGED.inc(to_pu(charged))
        if event is Event.START_PICKED:
            events.started(task_id)
        elif event is Event.STOP_PICKED:
            events.stopped(task_id, StoppedReason.USER_ACTION, to_pu(cost))
            self._let_go(task_id)
        if status is Status.ANALYSING:
            self.analyse(task_id)
        elif status is Status.PROCESSING:
            self.finish_if_complete(task_id)

    def _apply(self, session: Session, task: Task, event: Event) -> int:
        """Move the task on `event`; the micro-PU a stop charged."""
        new = next_status(Status(task.status), event)
        if new is None:
            return 0
        charged = 0
        if event is Event.STOP_PICKED:
            charged = self._halt(session, task, StoppedReason.USER_ACTION)
        else:
            task.status = new
            task.stopped_status_reason = None
        task.action_pending = False
        task.last_updated = _now()
        return charged

    def _halt(self, session: Session, task: Task, reason: StoppedReason) -> int:
        """Stop a task now: cancel its jobs, charging those already in flight (at their most
        samples, no transfer: nothing is known to be delivered), and give back every hold and
        the lease. The micro-PU charged."""
        mine = [f for f, (tid, _) in self.in_flight.items() if tid == task.id]
        charged = 0
        if mine:
            in_flight_ids = [fid for f in mine for fid in self.in_flight[f][1]]
            rows = self._rows(session, task.id, in_flight_ids)
            charged = self._bill(
                session, task, [(r, r.max_samples, 0) for r in rows], "in progress"
            )
        held = session.scalars(
            select(FeatureRow).where(
                FeatureRow.task_id == task.id, FeatureRow.reserved_micro_pu > 0
            )
        ).all()
        self._release(session, task, held)
        task.status = Status.STOPPED
        task.stopped_status_reason = reason
        task.last_updated = _now()
        task.controller_id = None
        return charged

    def analyse(self, task_id: str) -> None:
        """Analyse the task (its lease is renewed meanwhile; the features are written only if
        it is still held), then move it on."""
        with self.db.reading() as session:
            task = session.get(Task, task_id)
            assert task is not None
        try:
            count, context, setup = analyse_task(
                self.db, self.settings, task, partial(self._fence, task_id)
            )
            error = None
        except AnalysisError as exc:
            error = str(exc)
        except LeaseLost:
            raise
        except Exception as exc:  # an unexpected failure must still end the analysis clearly
            log.exception("analysis of %s failed", task_id)
            error = f"Analysis failed: {describe(exc)}"
        with self._holding(task_id) as session:
            task = session.get(Task, task_id)
            assert task is not None
            task.last_updated = _now()
            task.action_pending = False
            if error is not None:
                _move(task, Event.ANALYSIS_FAILED)
                task.error = error
            else:
                task.status, task.stopped_status_reason = after_analysis(
                    UserAction(task.user_action)
                )
                task.analysed = True
                task.feature_count = count
                task.completion_percentage = 0.0
            if task.status != Status.PROCESSING:
                task.controller_id = None  # nothing more to do until the user acts
            status, estimate = Status(task.status), task.estimate or {}
        if error is not None:
            events.failed(task_id, error)
            self._let_go(task_id, final_snapshot=False)
            return
        events.analysed(task_id, count, estimate.get("expectedPU"))
        if status is Status.PROCESSING:
            self.contexts[task_id] = (context, setup)  # carry on with its scenes: same pixels
            events.started(task_id)
            return
        if status is Status.STOPPED:
            events.stopped(task_id, StoppedReason.USER_ACTION, 0.0)
        self._let_go(task_id, final_snapshot=False)

    # -- processing -------------------------------------------------------------------------

    def _context_of(self, task_id: str) -> tuple[TaskContext, ScriptSetup]:
        """`_context` without loading the task (and its request) once the context is known."""
        if task_id not in self.contexts:
            with self.db.reading() as session:
                task = session.get(Task, task_id)
                assert task is not None
            return self._context(task)
        return self.contexts[task_id]

    def _context(self, task: Task) -> tuple[TaskContext, ScriptSetup]:
        if task.id not in self.contexts:
            context = TaskContext.build(self.db, self.settings, task)
            self.contexts[task.id] = (context, check_script(context.evalscript, context))
        return self.contexts[task.id]

    def window(self) -> int:
        """Jobs in flight at most: EOBATCH_MAX_IN_FLIGHT, or two per worker thread of the
        cluster (one running, one queued behind it)."""
        if self.settings.max_in_flight:
            return self.settings.max_in_flight
        return max(2, 2 * self.cluster.size()[1])

    def schedule(self) -> None:
        """Fill the in-flight window with PENDING features, in fair shares of the tasks."""
        if not self.cluster.connected:
            return
        room = self.window() - len(self.in_flight)
        if room <= 0:
            return
        demands = self._demands()
        waiting = {d.task_id: d.waiting for d in demands}
        for task_id, count in fair_shares(room, demands).items():
            # Spread a task's last features over the window rather than a few full jobs.
            per_job = min(MAX_FEATURES_PER_JOB, math.ceil(waiting[task_id] / self.window()))
            with self._working_on(task_id):
                self._dispatch(task_id, count, max(1, per_job), waiting[task_id])

    def _backing_off(self, task_id: str) -> set[int]:
        """Features of the task whose last attempt failed too recently to try again (the
        delay doubles with each attempt; a controller taking the task over starts afresh)."""
        waits = self.retry_at.get(task_id)
        if not waits:
            return set()
        now = time.monotonic()
        for feature_id in [f for f, at in waits.items() if at <= now]:
            del waits[feature_id]
        return set(waits)

    def _busy(self, task_id: str) -> set[int]:
        """Features of the task in flight or finished but not yet recorded."""
        busy = {fid for tid, fids in self.in_flight.values() if tid == task_id for fid in fids}
        return busy | {o.feature_id for o in self.unrecorded.get(task_id, ())}

    def _demands(self) -> list[Demand]:
        held = self.leases.held()
        if not held:
            return []
        with self.db.reading() as session:
            tasks = session.execute(
                select(Task.id, Task.account_id)
                .where(Task.id.in_(held), Task.status == Status.PROCESSING)
                .order_by(Task.created)
            ).all()
            uncounted = [t.id for t in tasks if t.id not in self.pending]
            if uncounted:
                self.pending |= {t: 0 for t in uncounted} | dict(
                    session.execute(  # type: ignore[arg-type]
                        select(FeatureRow.task_id, func.count())
                        .where(FeatureRow.task_id.in_(uncounted), FeatureRow.status == "PENDING")
                        .group_by(FeatureRow.task_id)
                    ).all()
                )
            pending = {t.id: self.pending[t.id] for t in tasks}
        running = Counter(tid for tid, _ in self.in_flight.values())  # jobs
        # Features waiting out a retry delay are no work to give places to meanwhile.
        return [
            Demand(
                t.id,
                t.account_id,
                running[t.id],
                pending.get(t.id, 0) - len(self._busy(t.id) | self._backing_off(t.id)),
            )
            for t in tasks
        ]

    def _dispatch(self, task_id: str, count: int, per_job: int, waiting: int) -> None:
        """Hold the cost of up to `count` jobs of at most `per_job` PENDING features of the task
        (`waiting` of them not in flight), then submit them."""
        try:
            context, setup = self._context_of(task_id)  # outside the transaction: it may search
        except AnalysisError as exc:  # e.g. its collection was deleted since the analysis
            with self._holding(task_id) as session:
                failing = session.get(Task, task_id)
                assert failing is not None
                failing.status, failing.error, failing.controller_id = Status.FAILED, str(exc), None
            events.failed(task_id, str(exc))
            self._let_go(task_id)
            return
        busy = self._busy(task_id) | self._backing_off(task_id)
        jobs: list[list[FeatureRow]] = []
        charged = 0
        with self._holding(task_id) as session:
            task = session.get(Task, task_id)
            assert task is not None
            if task.status != Status.PROCESSING:
                return
            rows = session.scalars(
                select(FeatureRow)
                .where(FeatureRow.task_id == task_id, FeatureRow.status == "PENDING")
                .where(FeatureRow.id.not_in(busy) if busy else true())
                .order_by(FeatureRow.id)
                .limit(count * per_job)
            ).all()
            budget = self._pixel_budget(rows, waiting)
            jobs = self._pack(task_id, list(rows), count, per_job, budget)
            if not self._hold_all(session, task, [r for job in jobs for r in job], context, setup):
                held: list[list[FeatureRow]] = []  # as many features as the balance allows
                for job in jobs:
                    affordable = []
                    for row in job:
                        if not self._hold(session, task, row, context, setup):
                            break
                        affordable.append(row)
                    if affordable:
                        held.append(affordable)
                    if len(affordable) < len(job):
                        break  # wait for holds of work in flight to be given back
                if not busy and not held and self._unaffordable(session, task, jobs[0][0]):
                    charged = self._halt(session, task, StoppedReason.OUT_OF_PU)
                jobs = held
            work = [
                (
                    tuple(r.id for r in job),
                    [context.job(_feature(r), setup, self.settings) for r in job],
                )
                for job in jobs
            ]
            status, cost = Status(task.status), task.cost_micro_pu
        if status is Status.STOPPED:
            PU_CHARGED.inc(to_pu(charged))
            events.stopped(task_id, StoppedReason.OUT_OF_PU, to_pu(cost))
            self._let_go(task_id)
            return
        # The holds are committed: a job lost now is submitted again, under the same hold.
        for feature_ids, batch in work:
            try:
                future = self.cluster.client.submit(  # type: ignore[union-attr]
                    self.run_jobs,
                    batch,
                    key=f"features-{task_id}-{feature_ids[0]}-{uuid.uuid4().hex[:6]}",
                    pure=False,
                )
            except Exception:  # the client is closing: handle_faults() reconnects
                log.warning("could not submit features of task %s", task_id, exc_info=True)
                return
            self.in_flight[future] = (task_id, feature_ids)

    def _pixel_budget(self, rows: Sequence[FeatureRow], waiting: int) -> int:
        """Pixels one job may hold: PIXELS_PER_JOB, or up to MAX_PIXELS_PER_JOB while the
        task's `waiting` features (sized like `rows`) still fill JOBS_PER_PLACE jobs per place in
        the window. Fewer, larger jobs cost the controller less per feature; enough jobs per
        place keep the workers evenly loaded to the end of the task."""
        if not rows:
            return PIXELS_PER_JOB
        mean = sum(r.width * r.height for r in rows) / len(rows)
        share = mean * waiting / (JOBS_PER_PLACE * self.window())
        return int(min(MAX_PIXELS_PER_JOB, max(PIXELS_PER_JOB, share)))

    def _pack(
        self, task_id: str, rows: list[FeatureRow], count: int, per_job: int, budget: int
    ) -> list[list[FeatureRow]]:
        """Up to `count` jobs of consecutive features: at most `per_job` of them and `budget`
        pixels in all (a larger feature alone); a feature whose job failed as a whole alone."""
        solo = self.solo.get(task_id, set())
        jobs: list[list[FeatureRow]] = []
        pixels = 0
        for row in rows:
            size = row.width * row.height
            alone = row.id in solo
            if (
                not jobs
                or alone
                or jobs[-1][0].id in solo
                or len(jobs[-1]) >= per_job
                or pixels + size > budget
            ):
                if len(jobs) == count:
                    break
                jobs.append([])
                pixels = 0
            jobs[-1].append(row)
            pixels += size
        return jobs

    def collect(self) -> None:
        """Record the outcome of every finished job; a job the cluster lost is just dropped
        (its feature is still PENDING and is submitted again, no attempt counted)."""
        for future in [f for f in self.in_flight if f.done()]:
            task_id, feature_ids = self.in_flight.pop(future)
            try:
                outcomes = future.result()
            except Exception as exc:
                if job_was_lost(exc):
                    continue
                if len(feature_ids) > 1:  # which feature killed its workers? Each runs alone.
                    self.solo[task_id].update(feature_ids)
                    continue
                # a worker died with the job (Dask retried it on others first): an attempt
                outcomes = [FeatureOutcome(task_id, feature_ids[0], False, error=describe(exc))]
            self.unrecorded[task_id].extend(outcomes)
        for task_id in list(self.unrecorded):
            with self._working_on(task_id):
                self._record(task_id, self.unrecorded[task_id])

    def _record(self, task_id: str, outcomes: list[FeatureOutcome]) -> None:
        failures: list[tuple[str, int, str, bool]] = []
        retries: dict[int, int] = {}  # feature -> attempts so far, for a later attempt
        charged = 0
        pending = None
        with self._holding(task_id) as session:
            task = session.get(Task, task_id)
            assert task is not None
            if task.status != Status.PROCESSING:
                outcomes = []  # stopped meanwhile: in-flight work was charged at the stop
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
            waiting = {  # each feature once: its hold must be given back once
                o.feature_id: rows[o.feature_id]
                for o in outcomes
                if rows[o.feature_id].status == "PENDING"
            }
            self._release(session, task, list(waiting.values()))
            for outcome in outcomes:
                row = rows[outcome.feature_id]
                if row.status != "PENDING":
                    continue  # recorded already
                self.solo.get(task_id, set()).discard(row.id)
                if outcome.ok:
                    row.status = "DONE"
                    row.delivered = not outcome.no_data
                    row.error = outcome.error
                    billable.append((row, outcome.samples, outcome.bytes_written))
                else:
                    row.attempts += 1
                    row.error = outcome.error
                    final = not outcome.retryable or row.attempts >= self.settings.feature_attempts
                    if final:
                        row.status = "FATAL"
                    else:
                        retries[row.id] = row.attempts
                    failures.append((row.name, row.attempts, outcome.error or "", final))
            if outcomes:
                session.flush()
                charged = self._bill(session, task, billable, "processed")
                left = sum(r.status != "PENDING" for r in waiting.values())
                pending = self._update_progress(session, task, left)
        if pending is not None:  # committed
            self.pending[task_id] = pending
        now, delay = time.monotonic(), self.settings.feature_retry_delay_s
        for feature_id, attempts in retries.items():
            self.retry_at[task_id][feature_id] = now + delay * 2 ** (attempts - 1)
        self.unrecorded.pop(task_id, None)
        PU_CHARGED.inc(to_pu(charged))
        for outcome in outcomes:
            FEATURE_SECONDS.observe(outcome.seconds)
        FEATURES.labels("done").inc(sum(o.ok for o in outcomes))
        for name, attempt, error, final in failures:
            FEATURES.labels("failed" if final else "retried").inc()
            events.feature_failed(task_id, name, attempt, error, final)

    # -- billing (lifecycle/billing.py prices, eobatch.ledger moves the PUs) ----------------

    def _rows(self, session: Session, task_id: str, ids: list[int]) -> list[FeatureRow]:
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

    def _hold(
        self,
        session: Session,
        task: Task,
        row: FeatureRow,
        context: TaskContext,
        setup: ScriptSetup,
    ) -> bool:
        """Hold the feature's most possible cost on the account before it is dispatched, so
        that tasks sharing an account can never together spend more than its balance."""
        if row.reserved_micro_pu:
            return True  # held by an earlier dispatch whose job was lost: the hold carries on
        amount = self._hold_micro(row, context, setup)
        if not ledger.reserve(session, task.account_id, amount):
            return False
        row.reserved_micro_pu = amount
        return True

    def _hold_all(
        self,
        session: Session,
        task: Task,
        rows: list[FeatureRow],
        context: TaskContext,
        setup: ScriptSetup,
    ) -> bool:
        """Hold the most possible cost of all `rows` at once (one update of the account), or
        nothing when the balance cannot cover them all."""
        amounts = [
            (r, self._hold_micro(r, context, setup)) for r in rows if not r.reserved_micro_pu
        ]
        total = sum(amount for _, amount in amounts)
        if total and not ledger.reserve(session, task.account_id, total):
            return False
        for row, amount in amounts:
            row.reserved_micro_pu = amount
        return True

    def _release(self, session: Session, task: Task, rows: Sequence[FeatureRow]) -> None:
        """Give back the holds of `rows` (one update of the account)."""
        ledger.release(session, task.account_id, sum(r.reserved_micro_pu for r in rows))
        for row in rows:
            row.reserved_micro_pu = 0

    def _unaffordable(self, session: Session, task: Task, row: FeatureRow) -> bool:
        """True when the next feature costs more than the whole balance, holds or not."""
        context, setup = self._context(task)
        return self._hold_micro(row, context, setup) > ledger.balance_micro(
            session, task.account_id
        )

    def _bill(
        self, session: Session, task: Task, charges: list[tuple[FeatureRow, int, int]], what: str
    ) -> int:
        """Charge features once each (samples seen, bytes delivered) to the task and account;
        the micro-PU charged.

        Committed in the same transaction as the features' new status: a crash either keeps
        both or neither, so a feature is never charged twice nor processed for free.
        """
        charges = [c for c in charges if not c[0].billed]
        if not charges:
            return 0
        context, setup = self._context(task)
        pricing, where = context.pricing(setup), context.crossing(self.settings)
        processing = transfer = 0
        for row, samples, nbytes in charges:
            row.samples, row.bytes_written = samples, nbytes
            row.cost_micro_pu = pricing.feature_micro(row.width, row.height, samples)
            row.surcharge_micro_pu = surcharge_micro(nbytes, where)
            row.billed = True
            processing += row.cost_micro_pu
            transfer += row.surcharge_micro_pu
        note = f"{len(charges)} feature(s) {what}"
        if processing:
            ledger.post(session, task.account_id, -processing, ledger.PROCESSING, task.id, note)
        if transfer:
            ledger.post(
                session,
                task.account_id,
                -transfer,
                ledger.TRANSFER,
                task.id,
                f"{note}: {where.value} output transfer",
            )
        task.cost_micro_pu += processing + transfer
        return processing + transfer

    def _pending(self, session: Session, task_id: str) -> int:
        return (
            session.scalar(
                select(func.count()).where(
                    FeatureRow.task_id == task_id, FeatureRow.status == "PENDING"
                )
            )
            or 0
        )

    def _update_progress(self, session: Session, task: Task, left: int) -> int:
        """Set the task's completion after `left` of its features left PENDING (counted in the
        store the first time); its PENDING features now."""
        known = self.pending.get(task.id)
        pending = self._pending(session, task.id) if known is None else known - left
        if task.feature_count:
            final = task.feature_count - pending
            task.completion_percentage = 100.0 * final / task.feature_count
        task.last_updated = _now()
        return pending

    # -- the end of a task --------------------------------------------------------------------

    def finish_if_complete(self, task_id: str) -> None:
        """PROCESSING → DONE once no feature is pending or in flight; → FAILED when every
        feature failed. Failed features are counted in `error` (docs/architecture.md)."""
        if self._busy(task_id):
            return
        with self.db.reading() as session:  # most rounds there is work left: look first
            task = session.get(Task, task_id)
            if task is None or task.status != Status.PROCESSING or self._pending(session, task_id):
                return
            total = session.scalar(select(func.count()).where(FeatureRow.task_id == task_id)) or 0
            fatal = session.scalars(
                select(FeatureRow)
                .where(FeatureRow.task_id == task_id, FeatureRow.status == "FATAL")
                .order_by(FeatureRow.id)
            ).all()
        all_failed = bool(total) and len(fatal) == total
        if not self._wrapped_up(task, all_failed):
            return
        minimum = 0
        with self._holding(task_id) as session:
            task = session.get(Task, task_id)
            assert task is not None
            if task.status != Status.PROCESSING or self._pending(session, task_id):
                return
            if fatal:
                first = f"first error (feature {fatal[0].name}): {fatal[0].error}"
                task.error = (
                    f"All {total} features failed; {first}"
                    if all_failed
                    else f"{len(fatal)} of {total} features failed; {first}. "
                    f"GET /api/v2/batch/process/{task_id}/features lists them."
                )
            if all_failed:
                _move(task, Event.ALL_FEATURES_FAILED)
            else:
                # Never more than the account holds: the minimum must not overdraw it either.
                balance = ledger.balance_micro(session, task.account_id)
                minimum = min(task_minimum_micro(task.cost_micro_pu), max(0, balance))
                if minimum:
                    ledger.post(
                        session,
                        task.account_id,
                        -minimum,
                        ledger.MINIMUM,
                        task.id,
                        "top-up to the 100 PU minimum of a batch task",
                    )
                    task.cost_micro_pu += minimum
                _move(task, Event.ALL_FEATURES_FINAL)
                task.completion_percentage = 100.0
            task.last_updated = _now()
            task.controller_id = None
            cost, error = task.cost_micro_pu, task.error
        PU_CHARGED.inc(to_pu(minimum))
        self._let_go(task_id, final_snapshot=False)
        if all_failed:
            events.failed(task_id, error or "")
        else:
            events.done(task_id, total, len(fatal), to_pu(cost))

    def _wrapped_up(self, task: Task, all_failed: bool) -> bool:
        """Whether the wrap-up of a task whose features are all final is done: BYOC ingestion,
        results catalogue, final execution database. It runs in a thread of its own, started
        by the first call, so that the catalogue of a huge task (minutes of uploads) holds up
        neither this loop nor the controller's other tasks."""
        wrap_up = self.finishing.get(task.id)
        if wrap_up is None:
            snapshot = self.snapshotting.get(task.id)
            if snapshot is not None and snapshot.is_alive():
                return False  # an older snapshot landing after the final one would replace it
            wrap_up = WrapUp(ConcurrentFuture(), threading.Event())
            self.finishing[task.id] = wrap_up
            threading.Thread(
                target=self._wrap_up,
                args=(
                    wrap_up,
                    task,
                    self.contexts.get(task.id) if all_failed else self._results_context(task),
                    not all_failed,
                ),
                name=f"eobatch-wrap-up-{task.id[:8]}",
                daemon=True,  # a stopping process leaves the task PROCESSING: done again later
            ).start()
            return False
        if not wrap_up.done.done():
            return False
        del self.finishing[task.id]
        if (error := wrap_up.done.exception()) is not None:
            log.error("the wrap-up of task %s failed; it runs again", task.id, exc_info=error)
            return False
        return True

    def _results_context(self, task: Task) -> tuple[TaskContext, ScriptSetup] | None:
        """What the results catalogue and BYOC ingestion need (no scenes: not searched again);
        None if the request no longer reads (its collection was deleted meanwhile, say): the
        task then ends without them, as with any failure to write the catalogue."""
        if task.id in self.contexts:
            return self.contexts[task.id]
        try:
            context = TaskContext.build(self.db, self.settings, task, with_scenes=False)
            return context, check_script(context.evalscript, context)
        except Exception:
            log.exception("task %s: no results catalogue, its request no longer reads", task.id)
            return None

    def _wrap_up(
        self,
        wrap_up: WrapUp,
        task: Task,
        results: tuple[TaskContext, ScriptSetup] | None,
        publish: bool,
    ) -> None:
        # Before DONE, outside any fenced transaction: a crash meanwhile leaves the task
        # PROCESSING and the next controller does all of it again (overwriting the objects;
        # registering a tile twice adds nothing). A controller that let the task go meanwhile
        # (stopped, lease lost) cancels what is left.
        cancelled = wrap_up.cancelled.is_set
        try:
            if publish and results is not None:
                context, setup = results
                if not cancelled():
                    self._ingest(task, context)
                if not cancelled():
                    publish_results(context, setup, task)
            if not cancelled():
                # The execution database is complete before the task is DONE, so whoever sees
                # DONE reads the final one.
                self._write_execution_db(task.id, results[0] if results else None)
            wrap_up.done.set_result(None)
        except BaseException as exc:
            wrap_up.done.set_exception(exc)

    def _ingest(self, task: Task, context: TaskContext) -> None:
        """BYOC ingestion of the delivered features, when the request asks for it."""
        output = task.request.get("output") or {}
        if not (output.get("createCollection") or output.get("collectionId")):
            return
        collection_id = (output.get("collectionId") or "").lower() or new_collection_id(task.id)
        with self.db.reading() as session:
            rows = session.scalars(
                select(FeatureRow).where(FeatureRow.task_id == task.id, FeatureRow.delivered)
            ).all()
        ingest_outputs(context, collection_id, list(rows))

    # -- bookkeeping ------------------------------------------------------------------------

    def snapshot_due(self, periodic: bool = True) -> None:
        """Upload the execution database of each task in progress every interval (unless not
        `periodic`), and once more for each task that just ended."""
        now = time.monotonic()
        due = {
            task_id: context
            for task_id, (context, _) in self.contexts.items()
            if periodic
            and now - self.last_snapshot.get(task_id, -1e9) >= self.settings.execution_db_interval_s
        }
        finals, self.final_snapshots = self.final_snapshots, {}
        for task_id, context in {**due, **finals}.items():
            if task_id in self.finishing:
                continue  # its wrap-up writes the final one
            uploading = self.snapshotting.get(task_id)
            if uploading is not None and uploading.is_alive():
                # The last upload hangs (a bucket that does not answer): no second one beside
                # it, and a task's final snapshot waits its turn.
                if task_id in finals:
                    self.final_snapshots[task_id] = context
                continue
            self.last_snapshot[task_id] = time.monotonic()
            # In a thread: an upload that hangs must not hold up the loop and its other tasks.
            self.snapshotting[task_id] = thread = threading.Thread(
                target=self._write_execution_db,
                args=(task_id, context),
                name=f"eobatch-snapshot-{task_id[:8]}",
                daemon=True,
            )
            thread.start()
        for task_id in [t for t, th in self.snapshotting.items() if not th.is_alive()]:
            del self.snapshotting[task_id]

    def upload_execution_db(self, task_id: str, context: TaskContext | None = None) -> None:
        """Write `execution-<requestId>.sqlite` to the delivery root (a snapshot now)."""
        self.last_snapshot[task_id] = time.monotonic()
        self._write_execution_db(task_id, context)

    def _write_execution_db(self, task_id: str, context: TaskContext | None) -> None:
        try:
            with tempfile.TemporaryDirectory(prefix="eobatch-execution-") as folder:
                path = Path(folder) / "execution.sqlite"
                with self.db.reading() as session:
                    if context is None:
                        task = session.get(Task, task_id)
                        assert task is not None
                        context = TaskContext.build(self.db, self.settings, task, with_scenes=False)
                    rows = session.execute(
                        select(
                            FeatureRow.id,
                            FeatureRow.name,
                            FeatureRow.status,
                            FeatureRow.error,
                            FeatureRow.delivered,
                            FeatureRow.cost_micro_pu + FeatureRow.surcharge_micro_pu,
                        )
                        .where(FeatureRow.task_id == task_id)
                        .order_by(FeatureRow.id)
                        .execution_options(yield_per=10_000)  # any task size in constant memory
                    )
                    write_execution_db(path, (ExecutionRow(*r[:5], to_pu(r[5])) for r in rows))
                context.delivery.put_file(EXECUTION_FILE.format(request_id=task_id), path)
        except Exception:  # a failed snapshot must not stop processing; the next one retries
            log.exception("could not upload the execution database of %s", task_id)

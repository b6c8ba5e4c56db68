"""Transactions of the task store: a writing one is atomic against every other writer (two
controllers never both claim a task), a reading one never waits for a writer. Both stores."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

from sqlalchemy import select

from eobatch.lifecycle.leases import Leases
from eobatch.lifecycle.states import Status
from eobatch.store import Database
from eobatch.store.models import Account, Task

ROUNDS = 30


def _in_threads(count: int, work: Callable[[int], None]) -> None:
    """Run `work(i)` in `count` threads released together; re-raise the first failure."""
    start = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            start.wait()
            work(i)
        except BaseException as exc:  # reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def _account(db: Database) -> str:
    account_id = str(uuid.uuid4())
    with db.session() as session:
        session.add(Account(id=account_id, name="transactions"))
    return account_id


def _task(db: Database, account_id: str) -> str:
    task_id = str(uuid.uuid4())
    with db.session() as session:
        session.add(
            Task(id=task_id, account_id=account_id, request={}, status=Status.ANALYSING.value)
        )
    return task_id


def test_a_read_then_write_loses_no_concurrent_update(db: Database) -> None:
    account_id = _account(db)
    task_id = _task(db, account_id)

    def count_up(_: int) -> None:
        for _ in range(ROUNDS):
            with db.session() as session:
                task = session.get(Task, task_id, with_for_update=True)
                assert task is not None
                task.feature_count += 1

    _in_threads(3, count_up)
    with db.reading() as session:
        assert session.scalar(select(Task.feature_count).where(Task.id == task_id)) == 3 * ROUNDS


def test_two_controllers_claiming_together_never_both_take_a_task(db: Database) -> None:
    account_id = _account(db)
    leases = [Leases(db, f"controller-{i}", 30.0, alive=lambda: True) for i in range(2)]
    for _ in range(ROUNDS):
        task_id = _task(db, account_id)
        taken: list[list[str]] = [[], []]

        def claim(i: int, taken: list[list[str]] = taken) -> None:
            taken[i] = leases[i].claim()[1]

        _in_threads(2, claim)
        takers = [i for i in range(2) if task_id in taken[i]]
        assert len(takers) == 1, f"task claimed by {takers}"
        with db.reading() as session:
            task = session.get(Task, task_id)
            assert task is not None
            assert task.controller_id == f"controller-{takers[0]}"
            assert task.lease_epoch == 1
        with db.session() as session:  # out of the way of the next round
            task = session.get(Task, task_id)
            assert task is not None
            task.status = Status.DONE.value


def test_a_reading_session_does_not_wait_for_a_writer(db: Database) -> None:
    account_id = _account(db)
    task_id = _task(db, account_id)
    read: list[int] = []
    reader_done = threading.Event()

    def reader() -> None:
        with db.reading() as session:
            read.append(session.scalar(select(Task.feature_count).where(Task.id == task_id)))
        reader_done.set()

    with db.session() as session:  # holds the write lock (SQLite) / the row (PostgreSQL)
        task = session.get(Task, task_id, with_for_update=True)
        assert task is not None
        task.feature_count = 7
        session.flush()
        thread = threading.Thread(target=reader)
        thread.start()
        # A reader that waited for this transaction would never be done while it is open.
        finished = reader_done.wait(timeout=120)
    thread.join()
    assert finished
    assert read == [0]  # the last committed value, not the writer's uncommitted one

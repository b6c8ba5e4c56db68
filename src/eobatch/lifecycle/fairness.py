"""Fair shares of the in-flight window: accounts first, then each account's tasks.

Free places in the window go one at a time to the account with the fewest jobs in flight, and
within it to its task with the fewest, so a new task of another account gets its first jobs in
the next round however large the tasks ahead of it are, and two tasks of one account split
that account's share. Ties go to the older task. Pure: the controller brings the numbers.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Demand:
    """One processing task as the scheduler sees it (tasks oldest first)."""

    task_id: str
    account_id: str
    running: int  # its jobs in flight now
    waiting: int  # its PENDING features not in flight


def fair_shares(room: int, demands: Sequence[Demand]) -> dict[str, int]:
    """How many new jobs each task gets out of `room` free places; tasks with none are left
    out. Max-min fair over accounts, then over the tasks of each account."""
    order = {d.task_id: n for n, d in enumerate(demands)}
    waiting = {d.task_id: d.waiting for d in demands}
    shares: dict[str, int] = {}
    tasks: dict[str, list[tuple[int, int, str]]] = {}  # account -> heap of (running, age, task)
    load: dict[str, int] = {}
    first: dict[str, int] = {}  # an account's place: that of its oldest task
    for d in demands:
        load[d.account_id] = load.get(d.account_id, 0) + d.running
        first.setdefault(d.account_id, order[d.task_id])
        if d.waiting > 0:
            heapq.heappush(
                tasks.setdefault(d.account_id, []), (d.running, order[d.task_id], d.task_id)
            )
    accounts = [(load[a], first[a], a) for a in tasks]  # accounts with work waiting
    heapq.heapify(accounts)
    while room > 0 and accounts:
        running, place, account = heapq.heappop(accounts)
        heap = tasks[account]
        task_running, task_age, task_id = heapq.heappop(heap)
        shares[task_id] = shares.get(task_id, 0) + 1
        waiting[task_id] -= 1
        room -= 1
        if waiting[task_id] > 0:
            heapq.heappush(heap, (task_running + 1, task_age, task_id))
        if heap:
            heapq.heappush(accounts, (running + 1, place, account))
    return shares

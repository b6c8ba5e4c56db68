"""Fair shares of the in-flight window (lifecycle/fairness.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from eobatch.lifecycle.fairness import Demand, fair_shares


def test_a_new_task_of_another_account_gets_its_share_at_once() -> None:
    # A large task fills the window; a new task of another account arrives with 4 places free.
    demands = [Demand("big", "a", running=8, waiting=10_000), Demand("new", "b", 0, 50)]
    assert fair_shares(4, demands) == {"new": 4}
    assert fair_shares(12, demands) == {"new": 10, "big": 2}  # level at 10 each, then in turn


def test_accounts_share_first_then_their_tasks() -> None:
    demands = [Demand("a1", "a", 0, 100), Demand("a2", "a", 0, 100), Demand("b1", "b", 0, 100)]
    assert fair_shares(4, demands) == {"a1": 1, "a2": 1, "b1": 2}
    assert fair_shares(3, demands) == {"a1": 1, "b1": 1, "a2": 1}  # every task from the start


def test_ties_go_to_the_older_task_and_nothing_beyond_what_waits() -> None:
    demands = [Demand("old", "a", 1, 1), Demand("young", "a", 1, 5), Demand("c", "c", 0, 0)]
    assert fair_shares(1, demands) == {"old": 1}
    assert fair_shares(10, demands) == {"old": 1, "young": 5}
    assert fair_shares(0, demands) == {}
    assert fair_shares(5, []) == {}


demand_lists = st.lists(
    st.builds(
        Demand,
        task_id=st.uuids().map(str),
        account_id=st.sampled_from("abc"),
        running=st.integers(0, 20),
        waiting=st.integers(0, 20),
    ),
    max_size=8,
    unique_by=lambda d: d.task_id,
)


@given(room=st.integers(0, 60), demands=demand_lists)
def test_shares_fill_the_room_and_are_max_min_fair(room: int, demands: list[Demand]) -> None:
    shares = fair_shares(room, demands)
    waiting = {d.task_id: d.waiting for d in demands}
    assert all(0 < n <= waiting[t] for t, n in shares.items())
    assert sum(shares.values()) == min(room, sum(waiting.values()))
    # No account that still waits ends with fewer jobs than another account got a place for.
    load: dict[str, int] = {}
    for d in demands:
        load[d.account_id] = load.get(d.account_id, 0) + d.running + shares.get(d.task_id, 0)
    for d in demands:
        if shares.get(d.task_id, 0) < d.waiting:  # this account could have taken more
            for other in demands:
                if shares.get(other.task_id, 0):
                    assert load[d.account_id] >= load[other.account_id] - 1

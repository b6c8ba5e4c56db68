"""The task state machine (batch-v2-api.md §3): every legal status change lives in these tables.

Two kinds of input move a task:
- a *user action* (ANALYSE, START, STOP) recorded by the API: `accept_user_action` decides, from the
  task's status, whether it is legal and what is recorded;
- a *system event* observed by the controller (a pending action picked up, analysis finished,
  all features final, out of PUs): `next_status` gives the status that follows.
Everything here is pure so it can be tested exhaustively.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from eobatch.errors import IllegalAction


class Status(StrEnum):
    CREATED = "CREATED"
    ANALYSING = "ANALYSING"
    ANALYSIS_DONE = "ANALYSIS_DONE"
    PROCESSING = "PROCESSING"
    DONE = "DONE"
    FAILED = "FAILED"
    STOPPED = "STOPPED"


class UserAction(StrEnum):
    NONE = "NONE"
    ANALYSE = "ANALYSE"
    START = "START"
    STOP = "STOP"


class StoppedReason(StrEnum):
    OUT_OF_PU = "OUT_OF_PU"
    USER_ACTION = "USER_ACTION"
    UNHEALTHY = "UNHEALTHY"


class Event(StrEnum):
    """What the controller observes about a task."""

    ANALYSIS_PICKED = "ANALYSIS_PICKED"  # a pending ANALYSE/START on a CREATED task
    ANALYSIS_SUCCEEDED = "ANALYSIS_SUCCEEDED"
    ANALYSIS_FAILED = "ANALYSIS_FAILED"
    START_PICKED = "START_PICKED"  # a pending START on an analysed task
    STOP_PICKED = "STOP_PICKED"  # a pending STOP
    ALL_FEATURES_FINAL = "ALL_FEATURES_FINAL"
    ALL_FEATURES_FAILED = "ALL_FEATURES_FAILED"  # final, and not one of them processed
    OUT_OF_PU = "OUT_OF_PU"
    UNHEALTHY = "UNHEALTHY"


TERMINAL = frozenset({Status.DONE, Status.FAILED})
ACTIVE = frozenset({Status.ANALYSING, Status.PROCESSING})

# User actions the API accepts, per status. Anything else is illegal (400).
ALLOWED_ACTIONS: dict[Status, frozenset[UserAction]] = {
    Status.CREATED: frozenset({UserAction.ANALYSE, UserAction.START}),
    Status.ANALYSING: frozenset({UserAction.START, UserAction.STOP}),
    Status.ANALYSIS_DONE: frozenset({UserAction.START, UserAction.STOP}),
    Status.PROCESSING: frozenset({UserAction.STOP}),
    Status.STOPPED: frozenset({UserAction.START}),
    Status.DONE: frozenset(),
    Status.FAILED: frozenset(),
}

_WHY_NOT: dict[Status, str] = {
    Status.CREATED: "a task that was never analysed or started has nothing to stop",
    Status.ANALYSING: "the task is being analysed already",
    Status.ANALYSIS_DONE: "the task has been analysed already; start it or stop it",
    Status.PROCESSING: "the task is processing already; it can only be stopped",
    Status.STOPPED: "a stopped task can only be started again",
    Status.DONE: "the task is DONE, which is final",
    Status.FAILED: "the task FAILED, which is final; create a new task",
}

# (status, event) -> next status. A pair missing here is ignored by the controller.
TRANSITIONS: dict[tuple[Status, Event], Status] = {
    (Status.CREATED, Event.ANALYSIS_PICKED): Status.ANALYSING,
    (Status.ANALYSING, Event.ANALYSIS_FAILED): Status.FAILED,
    (Status.ANALYSIS_DONE, Event.START_PICKED): Status.PROCESSING,
    (Status.ANALYSIS_DONE, Event.STOP_PICKED): Status.STOPPED,
    (Status.STOPPED, Event.START_PICKED): Status.PROCESSING,
    (Status.PROCESSING, Event.STOP_PICKED): Status.STOPPED,
    (Status.PROCESSING, Event.ALL_FEATURES_FINAL): Status.DONE,
    (Status.PROCESSING, Event.ALL_FEATURES_FAILED): Status.FAILED,
    (Status.PROCESSING, Event.OUT_OF_PU): Status.STOPPED,
    (Status.PROCESSING, Event.UNHEALTHY): Status.STOPPED,
    (Status.ANALYSIS_DONE, Event.OUT_OF_PU): Status.STOPPED,
}


@dataclass(frozen=True)
class TaskState:
    """The part of a task the state machine looks at."""

    status: Status
    user_action: UserAction
    user_action_updated: datetime | None
    stopped_status_reason: StoppedReason | None


def accept_user_action(
    state: TaskState, action: UserAction, now: datetime, restart_lock: timedelta
) -> TaskState:
    """The state recorded when a user asks for `action`; raises `IllegalAction` when illegal."""
    if action not in ALLOWED_ACTIONS[state.status]:
        raise IllegalAction(
            f"Illegal to change userAction from {state.user_action} to {action} with task status "
            f"{state.status}: {_WHY_NOT[state.status]}."
        )
    if action is UserAction.ANALYSE and state.user_action is UserAction.START:
        raise IllegalAction(
            "Illegal to change userAction from START to ANALYSE: the task is already starting."
        )
    # The lock starts with the user's STOP, also while that STOP is still pending (a START
    # must not replace it) and until it has stopped the task.
    if state.status is Status.STOPPED:
        stopped_by_user = state.stopped_status_reason is StoppedReason.USER_ACTION
    else:
        stopped_by_user = state.user_action is UserAction.STOP
    if (
        action is UserAction.START
        and stopped_by_user
        and state.user_action_updated is not None
        and now < state.user_action_updated + restart_lock
    ):
        allowed_at = state.user_action_updated + restart_lock
        raise IllegalAction(
            "A task stopped by the user cannot be restarted for "
            f"{int(restart_lock.total_seconds() // 60)} minutes; try again after "
            f"{allowed_at.isoformat().replace('+00:00', 'Z')}."
        )
    return TaskState(state.status, action, now, state.stopped_status_reason)


def after_analysis(user_action: UserAction) -> tuple[Status, StoppedReason | None]:
    """Where a successful analysis leads: a pending START continues, a STOP stops, else waits."""
    if user_action is UserAction.STOP:
        return Status.STOPPED, StoppedReason.USER_ACTION
    if user_action is UserAction.START:
        return Status.PROCESSING, None
    return Status.ANALYSIS_DONE, None


def next_status(status: Status, event: Event) -> Status | None:
    """The status that follows `event` in `status`, or None when the event does not apply."""
    if (status, event) == (Status.ANALYSING, Event.ANALYSIS_SUCCEEDED):
        raise ValueError("use after_analysis(): the next status depends on the pending action")
    return TRANSITIONS.get((status, event))


def event_for_pending_action(status: Status, action: UserAction) -> Event | None:
    """The controller event that a recorded user action produces in `status`, if any."""
    if action in (UserAction.ANALYSE, UserAction.START) and status is Status.CREATED:
        return Event.ANALYSIS_PICKED
    if action is UserAction.START and status in (Status.ANALYSIS_DONE, Status.STOPPED):
        return Event.START_PICKED
    if action is UserAction.STOP and status in (Status.ANALYSIS_DONE, Status.PROCESSING):
        return Event.STOP_PICKED
    return None

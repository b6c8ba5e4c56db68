"""The state machine, exhaustively: every (status, action) and (status, event) pair."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from eobatch.errors import IllegalAction
from eobatch.lifecycle.states import (
    ALLOWED_ACTIONS,
    TRANSITIONS,
    Event,
    Status,
    StoppedReason,
    TaskState,
    UserAction,
    accept_user_action,
    after_analysis,
    event_for_pending_action,
    next_status,
)

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
LOCK = timedelta(minutes=30)
ACTIONS = [UserAction.ANALYSE, UserAction.START, UserAction.STOP]

EXPECTED_LEGAL = {
    (Status.CREATED, UserAction.ANALYSE),
    (Status.CREATED, UserAction.START),
    (Status.ANALYSING, UserAction.START),
    (Status.ANALYSING, UserAction.STOP),
    (Status.ANALYSIS_DONE, UserAction.START),
    (Status.ANALYSIS_DONE, UserAction.STOP),
    (Status.PROCESSING, UserAction.STOP),
    (Status.STOPPED, UserAction.START),
}


def state(status: Status, action: UserAction = UserAction.NONE, **kw) -> TaskState:  # type: ignore[no-untyped-def]
    return TaskState(status, action, kw.get("updated"), kw.get("reason"))


@pytest.mark.parametrize("status", list(Status))
@pytest.mark.parametrize("action", ACTIONS)
def test_every_status_and_action(status: Status, action: UserAction) -> None:
    reason = StoppedReason.OUT_OF_PU if status is Status.STOPPED else None
    current = state(status, reason=reason, updated=NOW - timedelta(hours=1))
    if (status, action) in EXPECTED_LEGAL:
        new = accept_user_action(current, action, NOW, LOCK)
        assert new.status is status  # the API records; only the controller changes status
        assert new.user_action is action
        assert new.user_action_updated == NOW
    else:
        with pytest.raises(IllegalAction) as info:
            accept_user_action(current, action, NOW, LOCK)
        message = info.value.message
        assert str(status) in message and str(action) in message
        assert info.value.status == 400


def test_allowed_table_matches_expectation() -> None:
    legal = {(s, a) for s, actions in ALLOWED_ACTIONS.items() for a in actions}
    assert legal == EXPECTED_LEGAL


def test_terminal_statuses_accept_nothing() -> None:
    for status in (Status.DONE, Status.FAILED):
        for action in ACTIONS:
            with pytest.raises(IllegalAction, match="final"):
                accept_user_action(state(status), action, NOW, LOCK)


def test_analyse_after_start_is_refused() -> None:
    with pytest.raises(IllegalAction, match="START to ANALYSE"):
        accept_user_action(state(Status.CREATED, UserAction.START), UserAction.ANALYSE, NOW, LOCK)


@pytest.mark.parametrize(
    ("stopped_ago", "reason", "legal"),
    [
        (timedelta(minutes=5), StoppedReason.USER_ACTION, False),
        (timedelta(minutes=29, seconds=59), StoppedReason.USER_ACTION, False),
        (timedelta(minutes=30), StoppedReason.USER_ACTION, True),
        (timedelta(minutes=5), StoppedReason.OUT_OF_PU, True),
        (timedelta(minutes=5), StoppedReason.UNHEALTHY, True),
    ],
)
def test_restart_lock_after_user_stop(stopped_ago, reason, legal) -> None:  # type: ignore[no-untyped-def]
    stopped = state(Status.STOPPED, UserAction.STOP, updated=NOW - stopped_ago, reason=reason)
    if legal:
        assert (
            accept_user_action(stopped, UserAction.START, NOW, LOCK).user_action is UserAction.START
        )
    else:
        with pytest.raises(IllegalAction, match="cannot be restarted for 30 minutes"):
            accept_user_action(stopped, UserAction.START, NOW, LOCK)


@pytest.mark.parametrize("status", list(Status))
@pytest.mark.parametrize("event", list(Event))
def test_every_status_and_event(status: Status, event: Event) -> None:
    if (status, event) == (Status.ANALYSING, Event.ANALYSIS_SUCCEEDED):
        with pytest.raises(ValueError, match="after_analysis"):
            next_status(status, event)
        return
    assert next_status(status, event) == TRANSITIONS.get((status, event))


def test_no_transition_leaves_a_terminal_status() -> None:
    assert not [key for key in TRANSITIONS if key[0] in (Status.DONE, Status.FAILED)]


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        (UserAction.ANALYSE, (Status.ANALYSIS_DONE, None)),
        (UserAction.NONE, (Status.ANALYSIS_DONE, None)),
        (UserAction.START, (Status.PROCESSING, None)),
        (UserAction.STOP, (Status.STOPPED, StoppedReason.USER_ACTION)),
    ],
)
def test_after_analysis(action: UserAction, expected) -> None:  # type: ignore[no-untyped-def]
    assert after_analysis(action) == expected


@pytest.mark.parametrize("status", list(Status))
@pytest.mark.parametrize("action", list(UserAction))
def test_pending_action_events(status: Status, action: UserAction) -> None:
    event = event_for_pending_action(status, action)
    expected = {
        (Status.CREATED, UserAction.ANALYSE): Event.ANALYSIS_PICKED,
        (Status.CREATED, UserAction.START): Event.ANALYSIS_PICKED,
        (Status.ANALYSIS_DONE, UserAction.START): Event.START_PICKED,
        (Status.STOPPED, UserAction.START): Event.START_PICKED,
        (Status.ANALYSIS_DONE, UserAction.STOP): Event.STOP_PICKED,
        (Status.PROCESSING, UserAction.STOP): Event.STOP_PICKED,
    }.get((status, action))
    assert event == expected
    if event is not None:  # every event a pending action produces has a transition
        assert next_status(status, event) is not None


@pytest.mark.parametrize("status", [Status.ANALYSING, Status.ANALYSIS_DONE])
def test_start_right_after_a_stop_keeps_the_stop(status: Status) -> None:
    """A STOP not yet carried out starts the restart lock: a START may not replace it."""
    stopping = accept_user_action(state(status, UserAction.NONE), UserAction.STOP, NOW, LOCK)
    assert stopping.user_action is UserAction.STOP
    with pytest.raises(IllegalAction, match="cannot be restarted for 30 minutes"):
        accept_user_action(stopping, UserAction.START, NOW + timedelta(seconds=1), LOCK)
    later = accept_user_action(stopping, UserAction.START, NOW + LOCK, LOCK)
    assert later.user_action is UserAction.START

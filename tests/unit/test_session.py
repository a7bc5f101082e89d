"""The session state machine, driven by an injected clock."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from edge.domain.access import Decision, decide
from edge.domain.session import Beep, CloseRelay, Emit, OpenRelay, SessionMachine, SessionRules
from protocol.allowlist import AllowEntry, AllowList
from protocol.envelope import EventType

T0 = datetime(2026, 11, 22, 14, 0, tzinfo=UTC)
LIST = AllowList(
    site="lab",
    machine="laser-1",
    machine_type="laser",
    version=1,
    issued_at=T0,
    expires_at=T0 + timedelta(days=7),
    entries=[
        AllowEntry(badge="0000000A", member="m-a"),
        AllowEntry(badge="0000000B", member="m-b"),
        AllowEntry(badge="0000000C", member="m-trainer", level="trainer"),
        AllowEntry(badge="0000000D", member="m-trainee", supervised_only=True),
    ],
)


def machine(**rules: object) -> SessionMachine:
    ids = itertools.count(1)
    return SessionMachine(SessionRules(**rules), lambda: f"s{next(ids)}")  # type: ignore[arg-type]


def tap(m: SessionMachine, badge: str, at: datetime, present: bool = True) -> list[object]:
    def deciding(supervisor: bool, running: bool) -> Decision:
        return decide(badge, LIST, at, supervisor_present=supervisor, machine_running=running)

    return m.badge(badge, at, deciding, present=present)


def events(actions: list[object]) -> list[tuple[EventType, dict[str, object]]]:
    return [(a.type, a.data) for a in actions if isinstance(a, Emit)]


def test_badge_in_closes_relay_then_badge_out_opens_it() -> None:
    m = machine()
    actions = tap(m, "0000000A", T0)
    assert actions[0] == CloseRelay()
    assert [t for t, _ in events(actions)] == [EventType.BADGE_GRANTED, EventType.SESSION_STARTED]
    actions = tap(m, "0000000A", T0 + timedelta(minutes=5))
    ((kind, data),) = events(actions)
    assert kind is EventType.SESSION_ENDED and data["reason"] == "badge-out"
    assert data["duration_s"] == 300
    assert OpenRelay() in actions and not m.relay_closed


def test_another_member_is_refused_while_the_machine_is_held() -> None:
    m = machine()
    tap(m, "0000000A", T0)
    ((kind, data),) = events(tap(m, "0000000B", T0 + timedelta(seconds=10)))
    assert kind is EventType.BADGE_DENIED and data["reason"] == "in_use"
    assert m.session is not None and m.session.member == "m-a"


def test_idle_timeout_warns_then_ends_and_rebadge_extends() -> None:
    m = machine(idle_timeout_s=600, warning_s=60)
    tap(m, "0000000A", T0)
    assert m.tick(T0 + timedelta(seconds=539)) == []
    assert m.tick(T0 + timedelta(seconds=540)) == [Beep("warning")]
    # Re-badge during the warning extends instead of ending.
    assert tap(m, "0000000A", T0 + timedelta(seconds=560)) == [Beep("grant")]
    assert m.session is not None
    assert m.tick(T0 + timedelta(seconds=1100)) == [Beep("warning")]
    actions = m.tick(T0 + timedelta(seconds=1160))
    ((kind, data),) = events(actions)
    assert data["reason"] == "idle-timeout" and OpenRelay() in actions


def test_power_is_never_cut_while_busy_and_busy_time_is_counted() -> None:
    m = machine(idle_timeout_s=60, warning_s=10)
    tap(m, "0000000A", T0)
    m.busy_changed(True, T0 + timedelta(seconds=30), "gpio")
    # Working machines are not idle, however long the job.
    assert m.tick(T0 + timedelta(hours=2)) == []
    actions = tap(m, "0000000A", T0 + timedelta(hours=2))
    ((kind, data),) = events(actions)
    assert data["reason"] == "badge-out" and data["busy_s"] == 2 * 3600 - 30
    assert OpenRelay() not in actions and m.relay_closed  # held until the job ends
    actions = m.busy_changed(False, T0 + timedelta(hours=2, minutes=5), "gpio")
    assert OpenRelay() in actions and not m.relay_closed
    idle = [d for t, d in events(actions) if t is EventType.MACHINE_IDLE][0]
    assert idle["busy_s"] == 2 * 3600 + 5 * 60 - 30


def test_cut_while_busy_when_configured() -> None:
    m = machine(cut_while_busy=True)
    tap(m, "0000000A", T0)
    m.busy_changed(True, T0, "gpio")
    assert OpenRelay() in tap(m, "0000000A", T0 + timedelta(minutes=1))


def test_anti_restart_refuses_a_machine_already_running() -> None:
    m = machine()
    m.busy_changed(True, T0, "gpio")
    ((kind, data),) = events(tap(m, "0000000A", T0 + timedelta(seconds=1)))
    assert data["reason"] == "machine_already_running" and not m.relay_closed


def test_card_present_mode_ends_on_removal() -> None:
    m = machine(card_present=True)
    tap(m, "0000000A", T0)
    actions = tap(m, "0000000A", T0 + timedelta(minutes=3), present=False)
    ((kind, data),) = events(actions)
    assert data["reason"] == "card-removed" and OpenRelay() in actions


def test_supervised_mode_trainer_first_then_trainee_takes_over() -> None:
    m = machine()
    ((_, denied),) = events(tap(m, "0000000D", T0))
    assert denied["reason"] == "supervision_required"
    tap(m, "0000000C", T0)
    actions = tap(m, "0000000D", T0 + timedelta(seconds=20))
    kinds = [t for t, _ in events(actions)]
    assert kinds == [EventType.SESSION_ENDED, EventType.BADGE_GRANTED, EventType.SESSION_STARTED]
    started = events(actions)[2][1]
    assert started["mode"] == "supervised" and started["supervisor"] == "m-trainer"
    assert OpenRelay() not in actions and m.relay_closed


def test_lockout_ends_the_session_and_unlock_is_reported() -> None:
    m = machine()
    tap(m, "0000000A", T0)
    actions = m.lock(T0 + timedelta(minutes=1), "lens overdue")
    kinds = [t for t, _ in events(actions)]
    assert kinds == [EventType.MACHINE_LOCKED, EventType.SESSION_ENDED]
    assert m.lock(T0, "again") == []
    assert [t for t, _ in events(m.unlock("signed off"))] == [EventType.MACHINE_UNLOCKED]


def test_busy_time_that_runs_on_stays_with_the_session_that_started_it() -> None:
    # Issue 21 item 5: a's print runs on after a badges out; b badges in meanwhile. The whole
    # busy period is a's (the idle names a's session), none of it is counted in b's session.
    m = machine()
    tap(m, "0000000A", T0)
    m.busy_changed(True, T0 + timedelta(minutes=1), "octoprint")
    ((_, ended_a),) = events(tap(m, "0000000A", T0 + timedelta(minutes=10)))
    assert ended_a["busy_s"] == 9 * 60
    assert m.relay_closed  # held for the print
    granted = events(tap(m, "0000000B", T0 + timedelta(minutes=20)))
    assert [t for t, _ in granted] == [EventType.BADGE_GRANTED, EventType.SESSION_STARTED]
    actions = m.busy_changed(False, T0 + timedelta(hours=6, minutes=1), "octoprint")
    idle = [d for t, d in events(actions) if t is EventType.MACHINE_IDLE][0]
    assert idle["session_id"] == "s1" and idle["busy_s"] == 6 * 3600
    ((_, ended_b),) = events(tap(m, "0000000B", T0 + timedelta(hours=6, minutes=5)))
    assert ended_b["session_id"] == "s2" and ended_b["busy_s"] == 0
    # b's own busy period is b's.
    tap(m, "0000000B", T0 + timedelta(hours=7))
    m.busy_changed(True, T0 + timedelta(hours=7, minutes=1), "gpio")
    m.busy_changed(False, T0 + timedelta(hours=7, minutes=3), "gpio")
    ((_, ended_b2),) = events(tap(m, "0000000B", T0 + timedelta(hours=7, minutes=4)))
    assert ended_b2["busy_s"] == 120

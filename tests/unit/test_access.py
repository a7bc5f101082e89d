"""The access decision: every grant condition and every denial reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from edge.domain.access import decide
from protocol.allowlist import AllowEntry, AllowList
from protocol.envelope import DenyReason

NOW = datetime(2026, 11, 22, 14, 0, tzinfo=UTC)


def make_list(
    *entries: AllowEntry, locked: bool = False, expires: timedelta = timedelta(days=1)
) -> AllowList:
    return AllowList(
        site="lab",
        machine="laser-1",
        machine_type="laser",
        version=1,
        issued_at=NOW - timedelta(hours=1),
        expires_at=NOW + expires,
        locked=locked,
        entries=list(entries),
    )


USER = AllowEntry(badge="04A1B2C3", member="m-1", level="user")
MAINTAINER = AllowEntry(badge="04A1B2C4", member="m-2", level="maintainer")


def test_trained_member_is_granted() -> None:
    decision = decide("04A1B2C3", make_list(USER), NOW)
    assert decision.granted and decision.reason is None and decision.member == "m-1"


def test_each_denial_has_its_reason() -> None:
    cases = {
        DenyReason.NO_ALLOW_LIST: decide("04A1B2C3", None, NOW),
        DenyReason.ALLOW_LIST_EXPIRED: decide(
            "04A1B2C3", make_list(USER, expires=timedelta(0)), NOW
        ),
        DenyReason.UNKNOWN_BADGE: decide("DEADBEEF", make_list(USER), NOW),
        DenyReason.NOT_TRAINED: decide(
            "04A1B2C3", make_list(USER.model_copy(update={"block": DenyReason.NOT_TRAINED})), NOW
        ),
        DenyReason.BALANCE: decide(
            "04A1B2C3", make_list(USER.model_copy(update={"block": DenyReason.BALANCE})), NOW
        ),
        DenyReason.TRAINING_EXPIRED: decide(
            "04A1B2C3", make_list(USER.model_copy(update={"training_expires_at": NOW})), NOW
        ),
        DenyReason.LOCKED_OUT: decide("04A1B2C3", make_list(USER, locked=True), NOW),
        DenyReason.SUPERVISION_REQUIRED: decide(
            "04A1B2C3", make_list(USER.model_copy(update={"supervised_only": True})), NOW
        ),
        DenyReason.MACHINE_ALREADY_RUNNING: decide(
            "04A1B2C3", make_list(USER), NOW, machine_running=True
        ),
        DenyReason.CARD_SECRET_MISMATCH: decide("04A1B2C3", make_list(USER), NOW, secret_ok=False),
    }
    for reason, decision in cases.items():
        assert not decision.granted, reason
        assert decision.reason is reason


def test_training_valid_until_a_later_time_is_granted() -> None:
    entry = USER.model_copy(update={"training_expires_at": NOW + timedelta(seconds=1)})
    assert decide("04A1B2C3", make_list(entry), NOW).granted


def test_maintainer_may_use_a_locked_machine_as_maintenance() -> None:
    decision = decide("04A1B2C4", make_list(USER, MAINTAINER, locked=True), NOW)
    assert decision.granted and decision.maintenance


def test_supervised_member_is_granted_when_a_trainer_is_present() -> None:
    entry = USER.model_copy(update={"supervised_only": True})
    assert decide("04A1B2C3", make_list(entry), NOW, supervisor_present=True).granted


def test_a_machine_locked_by_command_refuses_users_but_not_maintainers() -> None:
    allowlist = make_list(USER, MAINTAINER)
    assert decide("04A1B2C3", allowlist, NOW, machine_locked=True).reason is DenyReason.LOCKED_OUT
    assert decide("04A1B2C4", allowlist, NOW, machine_locked=True).maintenance


def test_a_maintenance_window_lets_a_trainer_open_a_locked_machine() -> None:
    trainer = AllowEntry(badge="04A1B2C5", member="m-3", level="trainer")
    allowlist = make_list(USER, trainer, locked=True)
    assert decide("04A1B2C5", allowlist, NOW).reason is DenyReason.LOCKED_OUT
    opened = decide("04A1B2C5", allowlist, NOW, maintenance_window=True)
    assert opened.granted and opened.maintenance
    assert decide("04A1B2C3", allowlist, NOW, maintenance_window=True).reason is (
        DenyReason.LOCKED_OUT
    )

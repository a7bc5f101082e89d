"""Bookings at the machine, pure: the decision and the session machine over a list carrying
bookings (edge/domain/access.py, edge/domain/session.py), with an injected clock."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import strategies as st

from edge.domain.access import Decision, decide
from edge.domain.session import Beep, Emit, OpenRelay, SessionMachine, SessionRules
from protocol.allowlist import AllowEntry, AllowList, BookedSlot, sign_allowlist, verify_allowlist
from protocol.envelope import DenyReason, EventType

T0 = datetime(2026, 12, 8, 14, 0, tzinfo=UTC)
ALICE = AllowEntry(badge="0000000A", member="m-alice")
BOB = AllowEntry(badge="0000000B", member="m-bob")
TRAINER = AllowEntry(badge="0000000C", member="m-trainer", level="trainer")
TRAINEE = AllowEntry(badge="0000000D", member="m-trainee", supervised_only=True)


def minutes(n: float) -> datetime:
    return T0 + timedelta(minutes=n)


def booked(*slots: tuple[float, float, str | None], locked: bool = False) -> AllowList:
    return AllowList(
        site="lab",
        machine="laser-1",
        machine_type="laser",
        version=1,
        issued_at=T0 - timedelta(hours=1),
        expires_at=T0 + timedelta(days=1),
        locked=locked,
        entries=[ALICE, BOB, TRAINER, TRAINEE],
        # Given out of order: the machine sorts them.
        bookings=[
            BookedSlot(starts_at=minutes(a), ends_at=minutes(b), member=m)
            for a, b, m in reversed(slots)
        ],
    )


def test_during_a_booking_only_the_booker_is_granted_others_told_when_it_is_free() -> None:
    acl = booked((0, 60, "m-alice"), (60, 90, "m-bob"), (120, 150, "m-bob"))
    mine = decide(ALICE.badge, acl, minutes(10))
    assert mine.granted and mine.slot_end == minutes(60) and mine.until == minutes(60)
    theirs = decide(BOB.badge, acl, minutes(10))
    assert (theirs.granted, theirs.reason) == (False, DenyReason.BOOKED)
    # Bob's own slot follows back to back: the machine is free for others at 90.
    assert theirs.free_at == minutes(90)
    assert decide(ALICE.badge, acl, minutes(70)).free_at == minutes(90)


def test_a_block_holds_the_machine_for_trainers_and_maintainers_only() -> None:
    acl = booked((0, 60, None))
    assert decide(ALICE.badge, acl, minutes(5)).reason is DenyReason.BOOKED
    trainer = decide(TRAINER.badge, acl, minutes(5))
    assert trainer.granted and trainer.until is None


def test_a_trainer_supervises_the_booker_during_their_slot() -> None:
    acl = booked((0, 60, "m-trainee"))
    assert decide(TRAINEE.badge, acl, minutes(5)).reason is DenyReason.SUPERVISION_REQUIRED
    assert decide(TRAINEE.badge, acl, minutes(5), supervisor_present=True).granted
    assert decide(TRAINER.badge, acl, minutes(5)).granted


def test_a_walk_in_is_granted_until_the_next_booking() -> None:
    acl = booked((60, 120, "m-bob"))
    walk_in = decide(ALICE.badge, acl, T0)
    assert walk_in.granted and walk_in.until == minutes(60) and walk_in.slot_end is None
    # The booker's own booking later does not limit them.
    assert decide(BOB.badge, acl, T0).until is None
    # Over: no limit at all.
    assert decide(ALICE.badge, acl, minutes(120)).until is None


def test_a_maintainer_on_a_locked_machine_is_not_held() -> None:
    acl = booked((0, 60, "m-bob"), locked=True).model_copy(
        update={"entries": [AllowEntry(badge="0000000E", member="m-fix", level="maintainer")]}
    )
    decision = decide("0000000E", acl, minutes(5))
    assert decision.granted and decision.maintenance


def test_a_list_without_bookings_signs_as_before() -> None:
    key = Ed25519PrivateKey.generate()
    plain = booked()
    assert "bookings" not in plain.model_dump(mode="json")
    with_slots = booked((0, 60, "m-alice"))
    wire = sign_allowlist(with_slots, key)
    body = json.loads(wire)["list"]
    assert body["bookings"] == [
        {
            "starts_at": "2026-12-08T14:00:00Z",
            "ends_at": "2026-12-08T15:00:00Z",
            "member": "m-alice",
        }
    ]
    again = verify_allowlist(wire, key.public_key(), now=T0)
    assert again.slots() == with_slots.slots()


def machine() -> SessionMachine:
    ids = itertools.count(1)
    return SessionMachine(
        SessionRules(idle_timeout_s=7200, booking_warning_s=600), lambda: f"s{next(ids)}"
    )


def tap(m: SessionMachine, acl: AllowList, badge: str, at: datetime) -> list[object]:
    def deciding(supervisor: bool, running: bool) -> Decision:
        return decide(badge, acl, at, supervisor_present=supervisor, machine_running=running)

    return m.badge(badge, at, deciding)


def emitted(actions: list[object]) -> list[tuple[EventType, dict[str, object]]]:
    return [(a.type, a.data) for a in actions if isinstance(a, Emit)]


def test_a_walk_in_is_warned_then_ends_when_the_booking_starts() -> None:
    acl = booked((60, 120, "m-bob"))
    m = machine()
    started = emitted(tap(m, acl, ALICE.badge, T0))
    assert started[1][1]["until"] == "2026-12-08T15:00:00Z"
    assert m.tick(minutes(45)) == []
    warned = m.tick(minutes(50))
    assert Beep("warning") in warned
    assert emitted(warned) == [
        (
            EventType.SESSION_WARNED,
            {
                "session_id": "s1",
                "member": "m-alice",
                "until": "2026-12-08T15:00:00Z",
                "reason": "booking",
            },
        )
    ]
    assert m.tick(minutes(55)) == []  # warned once
    # Alice keeps working past the idle warning's reach: activity does not lift the limit.
    m.busy_changed(True, minutes(56), "gpio")
    m.busy_changed(False, minutes(58), "gpio")
    ended = m.tick(minutes(60))
    ((kind, data),) = emitted(ended)
    assert kind is EventType.SESSION_ENDED and data["reason"] == "booking"
    assert "overrun" not in data and OpenRelay() in ended
    # Bob, the booker, now badges on.
    assert emitted(tap(m, acl, BOB.badge, minutes(61)))[0][0] is EventType.BADGE_GRANTED


def test_a_busy_session_is_never_cut_by_a_booking_and_ends_marked_overrun() -> None:
    acl = booked((0, 60, "m-alice"), (60, 120, "m-bob"))
    m = machine()
    tap(m, acl, ALICE.badge, minutes(1))
    m.busy_changed(True, minutes(30), "gpio")
    assert emitted(m.tick(minutes(50)))[0][0] is EventType.SESSION_WARNED  # Bob is next
    assert m.tick(minutes(61)) == []  # busy: goes on
    assert m.session is not None and m.relay_closed
    m.busy_changed(False, minutes(70), "gpio")
    ((kind, data),) = emitted(m.tick(minutes(70)))
    assert kind is EventType.SESSION_ENDED and data["reason"] == "booking"
    assert data["overrun"] is True


def test_a_booker_badging_out_late_with_nobody_after_is_an_overrun() -> None:
    acl = booked((0, 60, "m-alice"))
    m = machine()
    tap(m, acl, ALICE.badge, minutes(1))
    assert m.tick(minutes(61)) == []  # no one waits: the session goes on
    ((_, data),) = emitted(tap(m, acl, ALICE.badge, minutes(75)))
    assert data["reason"] == "badge-out" and data["overrun"] is True


def test_a_denial_says_when_the_machine_is_free() -> None:
    acl = booked((0, 60, "m-alice"))
    ((kind, data),) = emitted(tap(machine(), acl, BOB.badge, minutes(5)))
    assert kind is EventType.BADGE_DENIED
    assert data["reason"] == "booked" and data["free_at"] == "2026-12-08T15:00:00Z"


SLOTS = st.lists(
    st.tuples(
        st.integers(-200, 400), st.integers(1, 120), st.sampled_from(["m-alice", "m-bob", None])
    ),
    max_size=8,
)


@given(slots=SLOTS, at=st.integers(-200, 500))
def test_someone_elses_slot_never_lets_a_member_in(
    slots: list[tuple[int, int, str | None]], at: int
) -> None:
    acl = booked(*[(s, s + n, m) for s, n, m in slots])
    now = minutes(at)
    decision = decide(ALICE.badge, acl, now)
    others = [(s, s + n) for s, n, m in slots if m != "m-alice" and s <= at < s + n]
    mine = [(s, s + n) for s, n, m in slots if m == "m-alice" and s <= at < s + n]
    if others and not mine:
        assert decision.reason is DenyReason.BOOKED
        assert decision.free_at is not None and decision.free_at > now
    if decision.granted and decision.until is not None:
        # Granted until a slot not hers that starts later, with none of hers covering now...
        assert decision.until > now
        assert any(minutes(s) == decision.until and m != "m-alice" for s, _, m in slots)


HOSTILE_TIMES = st.one_of(
    st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    ),
    st.integers(-10_000, 10_000).map(minutes),
)


@given(
    slots=st.lists(
        st.tuples(
            HOSTILE_TIMES,
            HOSTILE_TIMES,
            st.one_of(st.none(), st.sampled_from(["m-alice", "m-bob", "", "m\x00", "é" * 300])),
        ),
        max_size=20,
    ),
    at=HOSTILE_TIMES,
    badge=st.sampled_from([ALICE.badge, BOB.badge, TRAINER.badge, "DEADBEEF"]),
)
def test_hostile_bookings_in_a_signed_list_never_break_a_decision(
    slots: list[tuple[datetime, datetime, str | None]], at: datetime, badge: str
) -> None:
    """Slots ending before they start, at the first and last instants, repeated, overlapping,
    with odd member references: the list still signs and verifies, and every decision is a
    grant or a denial, never an exception; a session limited by one still ends."""
    key = Ed25519PrivateKey.generate()
    acl = booked().model_copy(
        update={
            "bookings": [BookedSlot(starts_at=s, ends_at=e, member=m) for s, e, m in slots],
            "expires_at": datetime(9999, 12, 31, tzinfo=UTC),
        }
    )
    wire = sign_allowlist(acl, key)
    again = verify_allowlist(wire, key.public_key(), now=T0)
    decision = decide(badge, again, at)
    assert decision.granted or decision.reason is not None
    if decision.until is not None:
        assert decision.until > at
    if decision.reason is DenyReason.BOOKED:
        assert decision.free_at is not None and decision.free_at > at
    m = machine()
    started = m.badge(badge, at, lambda sup, run: decide(badge, again, at))
    assert started is not None
    m.tick(at + timedelta(days=1) if at.year < 9999 else at)


def test_a_list_with_too_many_bookings_is_refused_whole() -> None:
    from protocol.allowlist import MAX_BOOKINGS
    from protocol.envelope import ProtocolError

    key = Ed25519PrivateKey.generate()
    body = booked().model_dump(mode="json")
    body["bookings"] = [
        {"starts_at": "2026-12-08T14:00:00Z", "ends_at": "2026-12-08T15:00:00Z", "member": None}
    ] * (MAX_BOOKINGS + 1)
    from protocol.allowlist import sign_body

    try:
        verify_allowlist(sign_body(body, key), key.public_key(), now=T0)
    except ProtocolError as exc:
        assert exc.reason == "invalid_field" and "bookings" in exc.detail
    else:
        raise AssertionError("a list of more bookings than MAX_BOOKINGS was taken")

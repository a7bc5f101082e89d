"""Issue 21 item 2 at the machine: a spool's tag tapped after the badge attaches the spool to
the session; a spool's tag is never taken for a badge, whatever the order of the taps."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.domain.access import Decision, decide
from edge.domain.session import CloseRelay, Emit, OpenRelay, SessionMachine, SessionRules
from edge.status import tap_answer
from protocol.allowlist import AllowEntry, AllowList
from protocol.envelope import DATA_MODELS

T0 = datetime(2026, 11, 22, 14, 0, tzinfo=UTC)
SPOOL = "5F00AA11"
# A spool whose tag is also, by mistake, on the list as a member's badge: still a spool.
CLASH = "0000000E"
LIST = AllowList(
    site="lab",
    machine="printer-1",
    machine_type="printer",
    version=1,
    issued_at=T0,
    expires_at=T0 + timedelta(days=7),
    entries=[
        AllowEntry(badge="0000000A", member="m-a"),
        AllowEntry(badge="0000000B", member="m-b"),
        AllowEntry(badge=CLASH, member="m-clash"),
    ],
    spools=[SPOOL, CLASH],
)


def machine(spool: Any = "optional") -> SessionMachine:
    ids = itertools.count(1)
    return SessionMachine(SessionRules(spool=spool), lambda: f"s{next(ids)}")


def tap(m: SessionMachine, uid: str, at: datetime) -> list[Any]:
    def deciding(supervisor: bool, running: bool) -> Decision:
        return decide(uid, LIST, at, supervisor_present=supervisor, machine_running=running)

    actions = m.badge(uid, at, deciding, spool=LIST.is_spool(uid))
    for action in actions:
        if isinstance(action, Emit):
            DATA_MODELS[action.type].model_validate(action.data)
    return actions


@pytest.mark.parametrize("mode", ["off", "optional", "required"])
@pytest.mark.parametrize("tag", [SPOOL, CLASH])
def test_a_spool_tag_tapped_first_never_opens_the_machine(mode: str, tag: str) -> None:
    m = machine(mode)
    actions = tap(m, tag, T0)
    assert tap_answer(actions)["decision"] == "denied"
    assert tap_answer(actions)["reason"] == "spool_tag"
    assert CloseRelay() not in actions and not m.relay_closed and m.session is None


def test_a_spool_tapped_after_the_badge_is_attached_to_the_session() -> None:
    m = machine("optional")
    tap(m, "0000000A", T0)
    assert m.relay_closed  # optional: the power is on at the badge
    actions = tap(m, SPOOL, T0 + timedelta(seconds=5))
    answer = tap_answer(actions)
    assert answer["decision"] == "spool" and answer["spool"] == SPOOL
    (attached,) = [a.data for a in actions if isinstance(a, Emit)]
    assert attached == {"session_id": "s1", "member": "m-a", "spool": SPOOL}
    assert m.session is not None and m.session.spool == SPOOL
    # The spool's tag does not end the session, nor hand it over; the badge still does.
    assert OpenRelay() not in tap(m, SPOOL, T0 + timedelta(seconds=9))
    assert m.session is not None
    assert tap_answer(tap(m, "0000000A", T0 + timedelta(minutes=5)))["decision"] == "ended"


def test_required_keeps_the_power_off_until_a_spool_is_tapped() -> None:
    m = machine("required")
    granted = tap(m, "0000000A", T0)
    assert tap_answer(granted)["decision"] == "granted"
    assert CloseRelay() not in granted and not m.relay_closed
    assert m.session is not None and m.session.awaiting_spool
    attached = tap(m, SPOOL, T0 + timedelta(seconds=3))
    assert attached[0] == CloseRelay() and m.relay_closed


def test_off_refuses_a_spool_even_in_a_session() -> None:
    m = machine("off")
    tap(m, "0000000A", T0)
    assert tap_answer(tap(m, SPOOL, T0 + timedelta(seconds=1)))["reason"] == "spool_tag"
    assert m.session is not None and m.session.spool is None


@settings(max_examples=400, deadline=None)
@given(
    mode=st.sampled_from(["off", "optional", "required"]),
    taps=st.lists(st.sampled_from(["0000000A", "0000000B", SPOOL, CLASH]), max_size=12),
)
def test_whatever_the_taps_only_a_members_badge_ever_holds_the_machine(
    mode: str, taps: list[str]
) -> None:
    m = machine(mode)
    at = T0
    for uid in taps:
        at += timedelta(seconds=7)
        tap(m, uid, at)
        if m.session is not None:
            assert not LIST.is_spool(m.session.badge)
        if m.relay_closed:
            assert m.session is not None and m.session.badge in ("0000000A", "0000000B")
            assert mode != "required" or m.session.spool is not None

"""The version rule of allow-lists, the status fields that report them, and the agent's
memory of applied commands (issue 15, items 5 and 6)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.journal import Journal
from hub.services.allowlists import MAX_REPORTED_AHEAD, version_floor
from protocol.allowlist import MAX_LIST_VERSION
from protocol.envelope import ProtocolError
from protocol.messages import Status, decode_message

# Any moment a hub could run at, from the epoch to the far future, as an aware UTC time.
moments = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(9999, 1, 1), timezones=st.just(UTC)
)
# What an agent may claim to hold: nothing, small counters of old hubs, ms versions, the top.
reported = st.none() | st.integers(min_value=0, max_value=MAX_LIST_VERSION)


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


@settings(max_examples=300, deadline=None)
@given(now=moments, held=reported)
def test_a_list_is_numbered_from_its_issue_time_and_above_what_the_agent_holds(
    now: datetime, held: int | None
) -> None:
    floor = version_floor(now, reported=held, machine="laser-1")
    assert ms(now) <= floor <= MAX_LIST_VERSION
    if held is not None and held <= ms(now + MAX_REPORTED_AHEAD):
        assert floor > held  # the agent takes it
    elif held is not None:
        # Beyond anything this hub signed: a rogue account cannot push the versions to the top.
        assert floor == ms(now)


@settings(max_examples=100, deadline=None)
@given(backup=moments, later=st.timedeltas(min_value=timedelta(milliseconds=1)))
def test_a_list_issued_after_a_backup_is_newer_than_any_issued_before_it(
    backup: datetime, later: timedelta
) -> None:
    """Whatever counter the restored database holds, a list issued later outnumbers every
    list issued up to the backup (their versions were at most their own issue times, plus
    the lists issued within the same millisecond)."""
    try:
        restored_at = backup + later
    except OverflowError:
        return
    assert version_floor(restored_at) >= version_floor(backup) + (ms(restored_at) - ms(backup))


bad_ints = st.integers(max_value=-1) | st.integers(min_value=MAX_LIST_VERSION + 1)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    field=st.sampled_from(["acl_version", "acl_offered", "last_seq"]),
    value=bad_ints
    | st.floats(allow_nan=True, allow_infinity=True).filter(lambda f: not f.is_integer())
    | st.text(alphabet="abcxyz\x00 ", max_size=5)
    | st.lists(st.integers(), max_size=2),
)
def test_a_status_with_an_impossible_version_or_seq_names_the_field(
    field: str, value: object
) -> None:
    payload = Status(machine="laser-1", state="online").model_dump(mode="json")
    payload[field] = value
    raw = json.dumps(payload).encode()
    with pytest.raises(ProtocolError) as caught:
        decode_message(Status, raw)
    assert caught.value.reason == "invalid_field" and field in caught.value.detail


@settings(max_examples=40, deadline=None)
@given(reason=st.text(min_size=41, max_size=2000))
def test_a_refusal_reason_is_a_short_code(reason: str) -> None:
    raw = Status(machine="laser-1", state="online").model_dump(mode="json")
    with pytest.raises(ProtocolError) as caught:
        decode_message(Status, json.dumps({**raw, "acl_refused": reason}).encode())
    assert "acl_refused" in caught.value.detail


def test_applied_commands_are_remembered_across_a_restart_and_forgotten_once_too_old(
    tmp_path: Path,
) -> None:
    now = datetime(2026, 12, 7, 12, tzinfo=UTC)
    path = tmp_path / "journal.sqlite3"
    journal = Journal(path, "laser-1")
    assert journal.remember_command("old", now - timedelta(days=3), forget_before=now)
    assert journal.remember_command("a", now, forget_before=now - timedelta(days=4))
    journal.close()
    journal = Journal(path, "laser-1")
    assert journal.command_applied("a") and journal.command_applied("old")
    assert not journal.command_applied("b")
    # The next one forgets those issued before the window: the agent refuses them by age.
    assert journal.remember_command("b", now, forget_before=now - timedelta(days=2))
    assert not journal.command_applied("old")
    assert journal.command_applied("a") and journal.command_applied("b")
    journal.close()

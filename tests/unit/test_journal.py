"""The agent's journal: durable, ordered, sequence kept across restarts, open session found."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge.journal import Journal, JournalFull
from protocol.envelope import EventType, decode_envelope


def test_sequence_is_monotonic_across_restarts_and_pruning(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    journal = Journal(path, "laser-1")
    seqs = [journal.append(EventType.AGENT_STARTED, {"version": "t"}).seq for _ in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    for seq in seqs:
        journal.mark_sent(seq)
    assert journal.prune(keep=0) == 5
    journal.close()
    journal = Journal(path, "laser-1")
    assert journal.append(EventType.AGENT_STARTED, {"version": "t"}).seq == 6
    journal.close()


def test_unsent_rows_come_back_in_order_until_acknowledged(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3", "laser-1")
    for i in range(10):
        journal.append(EventType.INCIDENT_REPORTED, {"source": "test", "note": str(i)})
    journal.mark_sent(3)
    rows = journal.unsent()
    assert [s for s, _ in rows] == [1, 2, 4, 5, 6, 7, 8, 9, 10]
    assert [s for s, _ in journal.unsent(after_seq=5, limit=2)] == [6, 7]
    envelope = decode_envelope(rows[0][1])
    assert envelope.seq == 1 and envelope.data["note"] == "0"
    assert journal.backlog() == 9


def test_open_session_is_found_after_a_crash(tmp_path: Path) -> None:
    journal = Journal(
        tmp_path / "j.sqlite3", "laser-1", clock=lambda: datetime(2026, 11, 22, 14, tzinfo=UTC)
    )
    assert journal.open_session() is None
    journal.append(
        EventType.SESSION_STARTED, {"session_id": "s1", "member": "m-1", "badge": "04A1B2C3"}
    )
    journal.append(
        EventType.SESSION_ENDED,
        {"session_id": "s1", "member": "m-1", "reason": "badge-out", "duration_s": 5},
    )
    assert journal.open_session() is None
    journal.append(
        EventType.SESSION_STARTED, {"session_id": "s2", "member": "m-1", "badge": "04A1B2C3"}
    )
    found = journal.open_session()
    assert found is not None and found.session_id == "s2" and found.member == "m-1"
    assert found.started_at == datetime(2026, 11, 22, 14, tzinfo=UTC)


def _fill(journal: Journal, count: int) -> list[int]:
    return [
        journal.append(EventType.INCIDENT_REPORTED, {"source": "test", "note": "x" * 200}).seq
        for _ in range(count)
    ]


def test_a_full_disk_sheds_telemetry_then_sent_events_before_holding_events(
    tmp_path: Path,
) -> None:
    journal = Journal(tmp_path / "j.sqlite3", "laser-1")
    for seq in _fill(journal, 30):
        journal.mark_sent(seq)
    for i in range(50):
        assert journal.keep_telemetry(b'{"watts": %d}' % i)
    journal.limit_pages(journal.page_count())  # not one page more: the disk is full
    seqs = _fill(journal, 40)
    assert journal.shed_telemetry == 50 and journal.kept_telemetry() == []
    assert journal.shed_sent == 30  # sent events went next, unsent ones never
    assert journal.full and journal.held > 0
    assert not journal.keep_telemetry(b"{}")  # no sample is kept while events wait
    # Nothing lost, nothing reordered: the held events come out after the ones on disk.
    unsent = journal.unsent(limit=1000)
    payloads = [decode_envelope(p) for _, p in unsent]
    reported = [e for e in payloads if e.data.get("kind") == "journal-full"]
    assert len(reported) == 1
    assert [s for s, _ in unsent] == list(range(31, journal.last_seq + 1))
    assert set(seqs) <= {s for s, _ in unsent}
    assert journal.backlog() == len(unsent)


def test_held_events_reach_the_disk_when_room_comes_back_and_the_sequence_survives(
    tmp_path: Path,
) -> None:
    path = tmp_path / "j.sqlite3"
    journal = Journal(path, "laser-1")
    _fill(journal, 5)
    journal.limit_pages(journal.page_count())
    _fill(journal, 30)
    assert journal.full
    held_before = journal.held
    journal.limit_pages(1_000_000)  # room again (files deleted, card swapped)
    last = journal.append(EventType.AGENT_STARTED, {"version": "t"})
    assert not journal.full and journal.held == 0 and held_before > 0
    ok = decode_envelope(journal.unsent(limit=1, after_seq=last.seq)[0][1])
    assert ok.data["kind"] == "journal-ok"
    top = journal.last_seq
    journal.close()
    journal = Journal(path, "laser-1")
    assert [s for s, _ in journal.unsent(limit=1000)] == list(range(1, top + 1))
    assert journal.append(EventType.AGENT_STARTED, {"version": "t"}).seq == top + 1
    journal.close()


def test_held_events_acknowledged_by_the_broker_are_not_kept_and_meta_writes_never_fail(
    tmp_path: Path,
) -> None:
    journal = Journal(tmp_path / "j.sqlite3", "laser-1", memory_keep=40)
    journal.limit_pages(journal.page_count())
    _fill(journal, 20)
    held = [s for s, _ in journal.unsent(limit=1000)][-journal.held :]
    assert journal.full and len(held) >= 5
    backlog = journal.backlog()
    for seq in held[:5]:
        journal.mark_sent(seq)  # the broker has them: they need not reach the disk
    assert journal.held == len(held) - 5 and journal.backlog() == backlog - 5
    assert journal.set_meta("last_alive", "x" * 5000) is False
    with pytest.raises(JournalFull):
        _fill(journal, 40)  # beyond the memory reserve an event is refused, loudly
    assert journal.held == 40
    journal.close()


def test_an_event_can_be_stamped_with_when_it_happened(tmp_path: Path) -> None:
    now = datetime(2026, 11, 22, 15, tzinfo=UTC)
    journal = Journal(tmp_path / "j.sqlite3", "laser-1", clock=lambda: now)
    earlier = datetime(2026, 11, 22, 14, 5, tzinfo=UTC)
    env = journal.append(
        EventType.SESSION_ENDED,
        {"session_id": "s1", "member": "m-1", "reason": "agent-restart", "duration_s": 300},
        at=earlier,
    )
    assert env.ts == earlier and decode_envelope(journal.unsent()[0][1]).ts == earlier
    assert journal.append(EventType.AGENT_STARTED, {"version": "t"}).ts == now
    journal.close()

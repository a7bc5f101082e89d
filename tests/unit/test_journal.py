"""The agent's journal: durable, ordered, sequence kept across restarts, open session found."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from edge.journal import Journal
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

"""No-show and late-cancellation fees reaching the monthly statements, on both databases: a
line of their own beside the sessions, drawn from prepaid, frozen by the close, given back by
a credit note, in the CSV and the PDF (in the payer's language)."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pypdf import PdfReader
from sqlmodel import Session, select

from hub.core.errors import Conflict
from hub.domain.bookings import BookingStatus
from hub.models import Booking, Machine, Member, MemberCategory
from hub.reports.statements import export_month
from hub.services.billing import (
    account_of,
    close_month,
    credit,
    lines_of,
    month_statements,
    top_up,
)
from tests.integration.test_billing_store import LAB, NOW, PARIS, engine, snapshot  # noqa: F401


def _member(session: Session, ref: str) -> Member:
    return session.exec(select(Member).where(Member.ref == ref)).one()


def _book(
    session: Session,
    member: str,
    start: datetime,
    hours: float,
    fee: int | None,
    status: BookingStatus = BookingStatus.NO_SHOW,
) -> int:
    laser = session.exec(select(Machine).where(Machine.code == "laser-1")).one()
    row = Booking(
        machine_id=laser.id,  # type: ignore[arg-type]
        member_id=_member(session, member).id,
        status=status.value,
        starts_at=start.astimezone(UTC),
        ends_at=(start + timedelta(hours=hours)).astimezone(UTC),
        fee_cents=fee,
    )
    session.add(row)
    session.flush()
    assert row.id is not None
    return row.id


def _lines(session: Session, month: str) -> dict[str, tuple[str, str, int, int, str]]:
    return {
        ln.session_id: (s.payer_ref, ln.member_ref, ln.billed_minutes, ln.cents, ln.explanation)
        for s in month_statements(session, month)
        for ln in lines_of(session, s)
    }


def test_fees_are_lines_drawn_from_prepaid_frozen_and_creditable(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    with Session(engine) as session:
        session.add(
            Member(
                ref="dora",
                name="Dora",
                email="dora@example.org",
                category=MemberCategory.INDIVIDUAL,
                language="fr",
            )
        )
        session.flush()
        no_show = _book(session, "alice", datetime(2026, 10, 15, 14, tzinfo=PARIS), 3, 3600)
        late = _book(
            session,
            "bruno",
            datetime(2026, 10, 16, 10, tzinfo=PARIS),
            1,
            1200,
            BookingStatus.CANCELLED,
        )
        only_fee = _book(session, "dora", datetime(2026, 10, 31, 23, 30, tzinfo=PARIS), 0.5, 600)
        # Not this month's (November in Paris, though still October in UTC), not charged,
        # or not a released booking: none is billed.
        _book(session, "alice", datetime(2026, 11, 1, 0, 0, tzinfo=PARIS), 1, 1200)
        _book(session, "alice", datetime(2026, 10, 20, 9, tzinfo=PARIS), 1, None)
        _book(session, "alice", datetime(2026, 10, 21, 9, tzinfo=PARIS), 1, 0)
        _book(session, "alice", datetime(2026, 10, 22, 9, tzinfo=PARIS), 1, 900, BookingStatus.USED)
        top_up(session, _member(session, "alice"), 7000, actor="test", note="cash")
        session.commit()

        closing = close_month(session, "2026-10", tz=PARIS, now=NOW, actor="test")
        session.commit()
        lines = _lines(session, "2026-10")
        fee_lines = {sid: line for sid, line in lines.items() if sid.startswith("booking-")}
        assert fee_lines == {
            f"booking-{no_show}": (
                "alice",
                "alice",
                180,
                3600,
                "no-show fee: booked 2026-10-15 14:00–17:00, nobody came",
            ),
            f"booking-{late}": (
                "ecole-design",
                "bruno",
                60,
                1200,
                "late cancellation fee: booked 2026-10-16 10:00–11:00, cancelled late",
            ),
            f"booking-{only_fee}": (
                "dora",
                "dora",
                30,
                600,
                "no-show fee: booked 2026-10-31 23:30–2026-11-01 00:00, nobody came",
            ),
        }
        heads = {s.payer_ref: s for s in closing.statements}
        # The sessions' statements of the worked example, each grown by its fee; Dora, with
        # only a fee, gets a statement of her own; the numbers follow the payers' order.
        assert [(s.number, s.payer_ref) for s in closing.statements] == [
            ("2026-000001", "alice"),
            ("2026-000002", "bois-sarl"),
            ("2026-000003", "dora"),
            ("2026-000004", "ecole-design"),
        ]
        alice = heads["alice"]
        assert (alice.total_cents, alice.prepaid_cents, alice.due_cents) == (6250, 6250, 0)
        assert account_of(session, _member(session, "alice")).balance_cents == 750
        assert heads["ecole-design"].total_cents == 483 + 1200
        assert (heads["dora"].total_cents, heads["dora"].due_cents) == (600, 600)
        # The fee is the statement's last line, after the sessions.
        assert lines_of(session, alice)[-1].session_id == f"booking-{no_show}"

        # Closing again changes nothing, even with a fee changed since.
        before = snapshot(session, "2026-10")
        changed = session.get(Booking, no_show)
        assert changed is not None
        changed.fee_cents = 1
        session.add(changed)
        session.commit()
        again = close_month(session, "2026-10", tz=PARIS, now=NOW, actor="test")
        session.commit()
        assert again.already_closed and snapshot(session, "2026-10") == before

        # A credit note gives the fee back, to the prepaid balance it was drawn from.
        note = credit(
            session,
            "2026-000001",
            [f"booking-{no_show}"],
            "the laser was broken that day",
            actor="test",
            tz=PARIS,
            now=NOW,
        )
        session.commit()
        assert (note.total_cents, note.prepaid_cents, note.due_cents) == (-3600, -3600, 0)
        assert account_of(session, _member(session, "alice")).balance_cents == 750 + 3600
        files = export_month(session, "2026-10", tmp_path, PARIS, LAB)

    with files["csv"].open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    fee_row = next(r for r in rows if r["session_id"] == f"booking-{no_show}")
    assert fee_row["number"] == "2026-000001" and fee_row["amount_cents"] == "3600"
    assert fee_row["started_at"] == "2026-10-15T14:00+02:00"
    assert fee_row["explanation"].startswith("no-show fee")
    assert sum(int(r["amount_cents"]) for r in rows) == 2650 + 18165 + 483 + 3600 + 1200 + 600
    pages = [page.extract_text() for page in PdfReader(files["pdf"]).pages]
    assert len(pages) == 4
    assert "Statement 2026-000001" in pages[0] and "62,50 €" in pages[0]
    # Dora reads French: her fee is explained in French.
    assert "personne n'est venu" in pages[2] and "6,00 €" in pages[2]
    with files["credit_csv"].open(encoding="utf-8") as f:
        [credit_row] = list(csv.DictReader(f))
    assert credit_row["session_id"] == f"booking-{no_show}"
    assert credit_row["amount_cents"] == "-3600"


# Hostile fees through the close: none, the smallest, the largest a column holds, negative;
# starts around the month's edges in the lab's zone (the day before, its first and last
# minutes, the next month).
FEES = st.one_of(
    st.just(0),
    st.integers(1, 2**31 - 1),
    st.sampled_from([1, 2**31 - 1, -1, -(2**31)]),
    st.integers(-(2**31), -1),
)
STARTS = st.one_of(
    # Minutes from 1 October 00:00 in Paris; the month has 31 days and one more hour (DST).
    st.sampled_from([-1, 0, 1, 31 * 24 * 60 + 59, 31 * 24 * 60 + 60]),
    st.integers(-2 * 24 * 60, 33 * 24 * 60),
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(fee=FEES, minutes=STARTS, member=st.sampled_from(["dora", "alice"]))
@example(fee=2**31 - 1, minutes=0, member="alice")  # too much beside her sessions
@example(fee=2**31 - 1, minutes=31 * 24 * 60 + 59, member="dora")  # 31 Oct 23:59 in Paris
@example(fee=-1, minutes=0, member="dora")
@example(fee=0, minutes=0, member="alice")
@example(fee=1200, minutes=31 * 24 * 60 + 60, member="alice")  # 1 Nov 00:00 in Paris
def test_hostile_fees_through_the_close(engine, fee: int, minutes: int, member: str) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    october = datetime(2026, 10, 1, tzinfo=PARIS)
    start = (october.astimezone(UTC) + timedelta(minutes=minutes)).astimezone(PARIS)
    in_month = start.year == 2026 and start.month == 10
    sessions_of = {"dora": 0, "alice": 2650}  # what each owes for sessions this month
    with Session(engine) as session:
        session.add(Member(ref="dora", name="Dora", email="d@example.org", category="individual"))
        session.flush()
        booking = _book(session, member, start, 1, fee)
        try:
            billed = in_month and fee != 0
            if billed and (fee < 0 or sessions_of[member] + fee > 2**31 - 1):
                with pytest.raises(Conflict) as refused:
                    close_month(session, "2026-10", tz=PARIS, now=NOW, actor="test")
                if fee < 0:
                    assert refused.value.code == "billing.negative_fee"
                    assert str(booking) in str(refused.value)
                else:
                    assert refused.value.code == "billing.fee_too_large"
                    assert member in str(refused.value)
                assert refused.value.field == "fee_cents"
                return
            closing = close_month(session, "2026-10", tz=PARIS, now=NOW, actor="test")
            heads = {s.payer_ref: s for s in closing.statements}
            expected = sessions_of[member] + (fee if billed else 0)
            if expected:
                statement = heads[member]
                assert (statement.total_cents, statement.due_cents) == (expected, expected)
                fee_lines = [
                    (ln.session_id, ln.cents, ln.started_at)
                    for ln in lines_of(session, statement)
                    if ln.session_id.startswith("booking-")
                ]
                assert fee_lines == ([(f"booking-{booking}", fee, start)] if billed else [])
            else:
                assert member not in heads
            # Everyone else's statements are those of the worked example, whatever the fee.
            assert sum(s.total_cents for s in closing.statements if s.payer_ref != member) == (
                2650 + 18165 + 483 - sessions_of[member]
            )
        finally:
            session.rollback()

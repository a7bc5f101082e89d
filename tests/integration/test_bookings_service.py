"""hub/services/bookings/ on SQLite and PostgreSQL: booking, moving, cancelling, the refusals
as HubErrors naming their reason, maintenance due and lockouts, and the release worker (used,
no-show priced by billing, overrun, reminders), with Hypothesis hostile input."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from hub.booking_watch import run_release
from hub.core.errors import MESSAGES, Conflict, Forbidden, HubError, InvalidValue, describe
from hub.models import (
    AuditEntry,
    BillingRate,
    Booking,
    Machine,
    MachineSession,
    Member,
    Notification,
)
from hub.services import bookings
from hub.services.bookings import Actor
from hub.services.maintenance.tasks import add_task
from hub.web.i18n import translator
from tests.support.databases import demo_lab

TZ = ZoneInfo("Europe/Paris")
# The demo lab's trainings are from the real clock, so the tests run near it: NOW is this
# hour, DAY the first Tuesday 08:00 UTC (09:00 in Paris) at least a day later, so a day of
# bookings from DAY stays within one week whatever the day the test runs.
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
_eight = NOW.replace(hour=8)
DAY = _eight + timedelta(days=(1 - _eight.weekday()) % 7)
DAY += timedelta(days=7) if timedelta(days=1) > DAY - NOW else timedelta(0)


def at(hours: float, base: datetime = DAY) -> datetime:
    return base + timedelta(hours=hours)


@pytest.fixture
def lab(database_url: str) -> Iterator[Engine]:
    with demo_lab(database_url) as engine:
        with Session(engine) as session:
            bookings.set_rules(
                session,
                machine_type="laser",
                values={
                    "bookable": True,
                    "slot_minutes": 30,
                    "min_minutes": 30,
                    "max_minutes": 180,
                    "ahead_days": {"*": 14, "company": 30},
                    "week_hours": {"*": 6},
                    "grace_minutes": 15,
                    "no_show_fee": True,
                    "late_cancel_hours": 24,
                },
                actor="test",
            )
            session.add(
                BillingRate(
                    machine_type="laser",
                    category="individual",
                    effective_from=date(2020, 1, 1),
                    cents_per_hour=1200,
                )
            )
            session.commit()
        yield engine


def member(session: Session, email: str) -> Member:
    row = session.exec(select(Member).where(Member.email == email)).one()
    return row


def as_member(session: Session, email: str) -> Actor:
    who = member(session, email)
    return Actor(name=f"user:{email}", member_id=who.id)


STAFF = Actor(name="user:manager", staff=True)


def book(session: Session, actor: Actor, start: datetime, end: datetime, **kw: Any) -> Booking:
    return bookings.book(
        session,
        machine=kw.pop("machine", "laser-1"),
        starts_at=start,
        ends_at=end,
        actor=actor,
        now=kw.pop("now", NOW),
        tz=TZ,
        **kw,
    )


def refused(kind: type[HubError], code: str, field: str | None, call: Any) -> HubError:
    with pytest.raises(kind) as caught:
        call()
    assert (caught.value.code, caught.value.field) == (code, field)
    assert caught.value.code in MESSAGES
    # Worded in French too, with its params filled.
    french = describe(caught.value, translator("fr").gettext)
    assert "{" not in french
    return caught.value


def test_members_book_and_conflicts_are_refused_with_their_reason(lab: Engine) -> None:
    with Session(lab) as session:
        hugo = as_member(session, "hugo@example.org")
        durand = as_member(session, "contact@durand.example")
        nathan = as_member(session, "nathan@example.org")
        row = book(session, hugo, at(0), at(2))
        assert row.status == "booked" and row.member_id == hugo.member_id
        error = refused(
            Conflict, "booking.taken", "starts_at", lambda: book(session, durand, at(1), at(3))
        )
        assert error.params["starts_at"] == at(0).isoformat()
        book(session, durand, at(2), at(3))  # back to back
        refused(
            InvalidValue,
            "booking.not_trained",
            "member",
            lambda: book(session, nathan, at(4), at(5)),
        )
        refused(
            InvalidValue,
            "booking.off_slot",
            "starts_at",
            lambda: book(session, hugo, at(4.25), at(5)),
        )
        refused(
            InvalidValue, "booking.too_long", "ends_at", lambda: book(session, hugo, at(4), at(8))
        )
        refused(
            InvalidValue,
            "booking.too_far_ahead",
            "starts_at",
            lambda: book(session, hugo, at(24 * 21), at(24 * 21 + 1)),
        )
        book(session, durand, at(24 * 21), at(24 * 21 + 1))  # a company books 30 days ahead
        book(session, hugo, at(5), at(7))  # 4 h booked this week, 6 allowed
        refused(
            InvalidValue,
            "booking.week_hours",
            "ends_at",
            lambda: book(session, hugo, at(8), at(11)),
        )
        refused(
            InvalidValue,
            "booking.not_bookable",
            "machine",
            lambda: book(session, hugo, at(0), at(1), machine="cnc-1"),
        )
        # Members book for themselves only; blocks are for staff.
        refused(
            Forbidden,
            "booking.staff_only",
            "member_id",
            lambda: book(session, hugo, at(12), at(13), member_id=durand.member_id),
        )
        refused(
            Forbidden,
            "booking.staff_only",
            "block",
            lambda: book(session, hugo, at(12), at(13), block=True),
        )
        audits = session.exec(select(AuditEntry).where(AuditEntry.entity == "booking")).all()
        assert [a.action for a in audits] == ["booking.create"] * 4


def test_staff_book_for_anyone_and_block_slots(lab: Engine) -> None:
    with Session(lab) as session:
        hugo = as_member(session, "hugo@example.org")
        durand = as_member(session, "contact@durand.example")
        # Beyond how far ahead Hugo may book: staff may.
        row = book(session, STAFF, at(24 * 20), at(24 * 20 + 1), member_id=hugo.member_id)
        assert row.member_id == hugo.member_id and row.created_by == "user:manager"
        block = book(session, STAFF, at(0), at(8), block=True, note="Laser training")
        assert block.kind == "block" and block.member_id is None
        refused(
            Conflict, "booking.blocked", "starts_at", lambda: book(session, durand, at(3), at(4))
        )
        refused(
            InvalidValue,
            "booking.member_missing",
            "member_id",
            lambda: book(session, STAFF, at(10), at(11)),
        )


def test_owners_move_and_cancel_their_own_and_late_cancellation_is_charged(lab: Engine) -> None:
    with Session(lab) as session:
        hugo = as_member(session, "hugo@example.org")
        durand = as_member(session, "contact@durand.example")
        row = book(session, hugo, at(0), at(2))
        other = book(session, durand, at(3), at(4))
        assert row.id is not None and other.id is not None
        moved = bookings.move(
            session, booking_id=row.id, starts_at=at(1), ends_at=at(3), actor=hugo, now=NOW, tz=TZ
        )
        assert (moved.starts_at, moved.ends_at) == (at(1), at(3))
        refused(
            Conflict,
            "booking.taken",
            "starts_at",
            lambda: bookings.move(
                session,
                booking_id=row.id,
                starts_at=at(2),
                ends_at=at(4),
                actor=hugo,
                now=NOW,
                tz=TZ,
            ),
        )
        refused(
            Forbidden,
            "booking.not_yours",
            None,
            lambda: bookings.cancel(session, booking_id=row.id, actor=durand, now=NOW, tz=TZ),
        )
        # More than 24 h before: free; less: charged as a session of 2 h at 12 EUR/h.
        assert (
            bookings.late_cancellation(
                bookings.rules_for(session, session.get(Machine, row.machine_id)),  # type: ignore[arg-type]
                starts_at=row.starts_at,
                now=NOW,
            )
            is False
        )
        done = bookings.cancel(session, booking_id=row.id, actor=hugo, now=at(-2), tz=TZ)
        assert done.status == "cancelled" and done.fee_cents == 2400
        refused(
            Conflict,
            "booking.not_booked",
            None,
            lambda: bookings.cancel(session, booking_id=row.id, actor=hugo, now=at(-2), tz=TZ),
        )
        # Staff cancel anyone's, free of charge.
        staff_done = bookings.cancel(session, booking_id=other.id, actor=STAFF, now=NOW, tz=TZ)
        assert staff_done.fee_cents is None
        refused(
            Conflict,
            "booking.started",
            None,
            lambda: bookings.move(
                session,
                booking_id=book(session, hugo, at(5), at(6)).id or 0,
                starts_at=at(7),
                ends_at=at(8),
                actor=hugo,
                now=at(5.5),
                tz=TZ,
            ),
        )


def test_maintenance_due_blocks_its_day(lab: Engine) -> None:
    with Session(lab) as session:
        hugo = as_member(session, "hugo@example.org")
        add_task(
            session,
            title="Lens cleaning",
            actor="test",
            machine="laser-1",
            every_days=3,
            created_at=NOW,
        )
        session.commit()
        due = NOW.astimezone(TZ).date() + timedelta(days=3)
        noon = datetime(due.year, due.month, due.day, 12, tzinfo=TZ).astimezone(UTC)
        error = refused(
            Conflict,
            "booking.maintenance_due",
            "starts_at",
            lambda: book(session, hugo, noon, noon + timedelta(hours=1)),
        )
        assert error.params["task"] == "Lens cleaning"
        book(session, hugo, noon - timedelta(days=1), noon - timedelta(days=1, hours=-1))


def test_the_release_marks_used_releases_no_shows_priced_and_marks_overruns(lab: Engine) -> None:
    with Session(lab) as session:
        hugo = as_member(session, "hugo@example.org")
        durand = as_member(session, "contact@durand.example")
        used = book(session, hugo, at(0), at(1))
        gone = book(session, durand, at(2), at(3))
        hugo_ref = member(session, "hugo@example.org").ref
        # Hugo badged 5 minutes late and worked 20 minutes past his slot.
        session.add(
            MachineSession(
                id="s-1",
                site="lab",
                machine="laser-1",
                member_ref=hugo_ref,
                started_at=at(0) + timedelta(minutes=5),
                ended_at=at(1) + timedelta(minutes=20),
            )
        )
        session.commit()
        used_id, gone_id = used.id, gone.id
    published: list[list[str]] = []
    # Before the grace is over nothing is released.
    early = run_release(lab, now=at(2.2), tz=TZ, publish=published.append)
    assert early.used == [used_id] and early.no_shows == [] and early.overruns == [used_id]
    late = run_release(lab, now=at(2.25), tz=TZ, publish=published.append)
    assert late.no_shows == [gone_id]
    assert published == [["laser-1"]]
    with Session(lab) as session:
        row = session.get(Booking, gone_id)
        assert row is not None and row.status == "no_show" and row.released_at is not None
        # Durand is a company: no rate for company on the laser, so not priced (logged).
        assert row.fee_cents is None
        first = session.get(Booking, used_id)
        assert first is not None and first.status == "used" and first.session_id == "s-1"
        assert first.overrun
        # Durand's email is told of the no-show and of the reminder before.
        kinds = sorted(
            n.kind
            for n in session.exec(
                select(Notification).where(Notification.recipient == "contact@durand.example")
            )
        )
        assert kinds == ["booking.no_show"]
    # A second pass changes nothing.
    again = run_release(lab, now=at(2.3), tz=TZ)
    assert (again.used, again.no_shows, again.overruns) == ([], [], [])
    # The statistics: two hours booked, 1 h 20 used, one no-show of two.
    with Session(lab) as session:
        session.get(MachineSession, "s-1").duration_s = 4800  # type: ignore[union-attr]
        session.commit()
        found = bookings.figures(session, since=at(-24), until=at(24), tz=TZ)
    assert found.booked_hours == {"laser-1": 2.0} and found.used_hours == {"laser-1": 1.33}
    assert (found.bookings, found.no_shows, found.overruns) == (2, 1, 1)
    assert found.no_show_rate == 0.5


def test_a_no_show_is_priced_by_billing_like_a_session(lab: Engine) -> None:
    with Session(lab) as session:
        hugo = as_member(session, "hugo@example.org")
        row = book(session, hugo, at(0), at(1.5))
        booking_id = row.id
    result = run_release(lab, now=at(0.5), tz=TZ)
    assert result.no_shows == [booking_id]
    with Session(lab) as session:
        row = session.get(Booking, booking_id)
        assert row is not None and row.fee_cents == 1800  # 90 min at 12 EUR/h


def test_a_lockout_cancels_the_bookings_it_covers_and_tells_their_owners(lab: Engine) -> None:
    with Session(lab) as session:
        hugo = as_member(session, "hugo@example.org")
        soon = book(session, hugo, at(-20), at(-19))  # within a day
        later = book(session, hugo, at(24 * 5), at(24 * 5 + 1))
        block = book(session, STAFF, at(-18), at(-17), block=True)
        machine = session.exec(select(Machine).where(Machine.code == "laser-1")).one()
        machine.locked, machine.lock_reason = True, "mirror cracked"
        session.add(machine)
        session.commit()
        ids = soon.id, later.id, block.id
    result = run_release(lab, now=at(-21), tz=TZ)
    assert result.cancelled == [ids[0]]
    with Session(lab) as session:
        rows = [session.get(Booking, i) for i in ids]
        assert [r.status for r in rows if r] == ["cancelled", "booked", "booked"]
        assert rows[0] is not None and rows[0].cancel_reason == "lockout: mirror cracked"
        note = session.exec(
            select(Notification).where(Notification.kind == "booking.cancelled")
        ).one()
        assert note.recipient == "hugo@example.org"
        assert note.params["reason"] == "mirror cracked" and note.params["machine"]


def test_reminders_go_an_hour_before_once(lab: Engine) -> None:
    with Session(lab) as session:
        hugo = as_member(session, "hugo@example.org")
        book(session, hugo, at(0), at(1))
    run_release(lab, now=at(-2), tz=TZ)
    run_release(lab, now=at(-0.5), tz=TZ)
    run_release(lab, now=at(-0.25), tz=TZ)
    with Session(lab) as session:
        notes = session.exec(
            select(Notification).where(Notification.kind == "booking.reminder")
        ).all()
        assert [n.recipient for n in notes] == ["hugo@example.org"]
        assert notes[0].params["grace"] == 15


def test_rules_refuse_bad_values_naming_the_field(lab: Engine) -> None:
    with Session(lab) as session:
        for values, field in [
            ({"slot_minutes": -1}, "slot_minutes"),
            ({"bookable": "yes"}, "bookable"),
            ({"ahead_days": {"*": float("nan")}}, "ahead_days"),
            ({"ahead_days": {"\x00": 3}}, "ahead_days"),
            ({"opening": [[7, "09:00", "10:00"]]}, "opening"),
            ({"opening": [[1, "25:00", "10:00"]]}, "opening"),
            ({"colour": 1}, "colour"),
        ]:
            with pytest.raises(InvalidValue) as caught:
                bookings.set_rules(session, machine_type="laser", values=values, actor="t")
            assert caught.value.field == field, values
            session.rollback()
        with pytest.raises(InvalidValue) as caught:
            bookings.set_rules(session, machine="laser-1", values={"min_minutes": 10}, actor="t")
        assert caught.value.code == "booking.rules_invalid"
        session.rollback()
        # A machine's override starts from its type's rules and replaces them.
        bookings.set_rules(session, machine="laser-1", values={"max_minutes": 60}, actor="t")
        machine = session.exec(select(Machine).where(Machine.code == "laser-1")).one()
        rules = bookings.rules_for(session, machine)
        assert rules.max_minutes == 60 and rules.bookable and rules.grace_minutes == 15


HOSTILE_TIMES = st.one_of(
    st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    ),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),  # naive
    st.integers(-3, 24 * 40).map(lambda h: DAY + timedelta(minutes=30 * h)),
)
HOSTILE_NOTES = st.one_of(st.text(max_size=300), st.just("\x00"), st.just("é" * 201))


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(start=HOSTILE_TIMES, end=HOSTILE_TIMES, note=HOSTILE_NOTES, block=st.booleans())
def test_hostile_requests_are_booked_or_refused_never_crash(
    lab: Engine, start: datetime, end: datetime, note: str, block: bool
) -> None:
    with Session(lab) as session:
        hugo = as_member(session, "hugo@example.org")
        actor = STAFF if block else hugo
        try:
            row = book(session, actor, start, end, note=note, block=block)
        except HubError as error:
            assert error.code in MESSAGES and error.field is not None
            session.rollback()
            return
        # Booked: it is on the grid, in the future, and overlaps nothing live.
        assert row.starts_at.tzinfo is not None and row.ends_at > row.starts_at
        others = session.exec(
            select(Booking).where(
                Booking.machine_id == row.machine_id,
                Booking.id != row.id,
                Booking.status == "booked",
            )
        ).all()
        assert all(not (o.starts_at < row.ends_at and row.starts_at < o.ends_at) for o in others)


def test_the_yearly_review_carries_the_bookings(lab: Engine, tmp_path: Any) -> None:
    from hub.reports.review import review_tables, write_review, yearly_review

    with Session(lab) as session:
        hugo = as_member(session, "hugo@example.org")
        book(session, hugo, at(0), at(1.5))
        book(session, STAFF, at(3), at(5), block=True)  # blocks are no demand
    run_release(lab, now=at(1), tz=TZ)  # a no-show
    review = yearly_review(lab, DAY.astimezone(TZ).year, tz=TZ, now=at(2))
    assert review.bookings is not None
    assert (review.bookings.bookings, review.bookings.no_shows) == (1, 1)
    tables = {name: rows for name, _, rows in review_tables(review)}
    assert tables["bookings"] == [["laser-1", 1.5, 0.0]]
    assert ["bookings ending in a no-show", 1] in tables["summary"]
    for fmt in ("pdf", "xlsx"):
        write_review(review, fmt, tmp_path / f"review.{fmt}")
        assert (tmp_path / f"review.{fmt}").stat().st_size > 0

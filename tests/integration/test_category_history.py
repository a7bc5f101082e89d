"""A member's category history: recorded by the API and the import, refused inside a closed
month, and used by the close and the prepaid drawdown to price each session in the category
of its local start day."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from hub.category_history import change_category, history
from hub.core.db import make_engine, migrate
from hub.core.errors import Conflict, InvalidValue
from hub.imports import import_members
from hub.models import (
    Machine,
    MachineKind,
    MachineSession,
    MachineType,
    Member,
    MemberCategory,
    MemberCategoryChange,
    Role,
)
from hub.services.billing import (
    PROVISIONAL,
    BalanceMovement,
    BillingMonth,
    BillingRate,
    account_of,
    close_month,
    draw_ended_sessions,
    lines_of,
    month_statements,
    top_up,
)
from tests.integration.test_api_crud import lab  # noqa: F401
from tests.support.api import bearer

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
HOUR_PRICES = {"student": 600, "professional": 3000, "company": 9000}  # cents per hour, laser


def paris(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=PARIS)


# Dana's laser sessions (start, minutes); she becomes a professional on 15 October and her
# company's employee (category company) on 2 November, as recorded on 23 November.
SESSIONS = {
    "D1": (paris(2026, 10, 10, 10), 60),  # student: 60 min at 6 €/h = 6,00 €
    "D2": (paris(2026, 10, 14, 23), 90),  # starts a student: 90 min at 6 €/h = 9,00 €
    "D3": (paris(2026, 10, 15, 10), 30),  # the change's own day: 30 min at 30 €/h = 15,00 €
    "D4": (paris(2026, 10, 20, 10), 60),  # professional: 60 min at 30 €/h = 30,00 €
    "D5": (paris(2026, 11, 1, 10), 60),  # still professional: 30,00 €
    "D6": (paris(2026, 11, 3, 10), 20),  # company: 20 min at 90 €/h = 30,00 €
}


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        laser = MachineType(code="laser", name="Laser", kind=MachineKind.LASER)
        session.add(laser)
        session.flush()
        assert laser.id is not None
        session.add(
            Machine(
                code="laser-1",
                name="Laser",
                site="lab",
                machine_type_id=laser.id,
                kind=MachineKind.LASER,
            )
        )
        for category, cents in HOUR_PRICES.items():
            session.add(
                BillingRate(
                    machine_type="laser",
                    category=category,
                    effective_from=date(2026, 1, 1),
                    cents_per_hour=cents,
                )
            )
        session.add(Member(ref="dana", name="Dana", email="dana@example.org", category="student"))
        session.add(Member(ref="eli", name="Eli", email="eli@example.org", category="student"))
        for sid, (start, minutes) in SESSIONS.items():
            session.add(
                MachineSession(
                    id=sid,
                    site="lab",
                    machine="laser-1",
                    member_ref="dana",
                    started_at=start.astimezone(UTC),
                    ended_at=(start + timedelta(minutes=minutes)).astimezone(UTC),
                    duration_s=minutes * 60,
                    end_reason="badge-out",
                )
            )
        # Eli never changed category: billed as a student, with no lookup.
        start = paris(2026, 10, 20, 14)
        session.add(
            MachineSession(
                id="E1",
                site="lab",
                machine="laser-1",
                member_ref="eli",
                started_at=start.astimezone(UTC),
                ended_at=(start + timedelta(minutes=60)).astimezone(UTC),
                duration_s=3600,
                end_reason="badge-out",
            )
        )
        session.commit()
    yield engine
    engine.dispose()


def dana(session: Session) -> Member:
    return session.exec(select(Member).where(Member.ref == "dana")).one()


def dana_becomes(
    session: Session, category: MemberCategory | str, day: date, actor: str = "manager"
) -> MemberCategoryChange | None:
    """Dana's category changes from `day`, recorded on NOW (not committed)."""
    return change_category(
        session, dana(session), category, actor=actor, tz=PARIS, effective_from=day, now=NOW
    )


def record_dana_changes(session: Session) -> None:
    dana_becomes(session, MemberCategory.PROFESSIONAL, date(2026, 10, 15), actor="user:manager")
    dana_becomes(session, "company", date(2026, 11, 2), actor="user:manager")
    session.commit()


def test_a_month_is_billed_in_each_category_for_each_part_of_it(engine: Engine) -> None:
    with Session(engine) as session:
        record_dana_changes(session)
        member = dana(session)
        assert member.category == MemberCategory.COMPANY
        assert member.id is not None
        assert [
            (c.previous_category, c.category, c.effective_from, c.actor)
            for c in history(session, member.id)
        ] == [
            ("student", "professional", date(2026, 10, 15), "user:manager"),
            ("professional", "company", date(2026, 11, 2), "user:manager"),
        ]
        close_month(session, "2026-10", tz=PARIS, now=NOW, actor="test")
        session.commit()
        lines = {
            line.session_id: line.cents
            for statement in month_statements(session, "2026-10")
            for line in lines_of(session, statement)
        }
        # Priced as a student before the 15th (a session starting on the 14th stays a
        # student's past midnight), as a professional from it; never as the company she is now.
        assert lines == {"D1": 600, "D2": 900, "D3": 1500, "D4": 3000, "E1": 600}
        totals = {s.payer_ref: s.total_cents for s in month_statements(session, "2026-10")}
        assert totals == {"dana": 6000, "eli": 600}


def test_the_prepaid_drawdown_uses_the_category_of_the_day(engine: Engine) -> None:
    with Session(engine) as session:
        record_dana_changes(session)
        member = dana(session)
        account_of(session, member)
        top_up(session, member, 20000, actor="test")
        session.commit()
        draw_ended_sessions(session, ["D5", "D6"], tz=PARIS)
        session.commit()
        drawn = {
            m.note.removeprefix("session "): m.cents
            for m in session.exec(
                select(BalanceMovement)
                .where(BalanceMovement.kind == PROVISIONAL)
                .order_by(col(BalanceMovement.id))
            )
        }
        # 1 November: still a professional (30,00 €); 3 November: company (30,00 € for 20 min).
        assert drawn == {"D5": -3000, "D6": -3000}


def test_a_change_inside_or_before_a_closed_month_is_refused(engine: Engine) -> None:
    with Session(engine) as session:
        session.add(BillingMonth(month="2026-10", closed_by="test", timezone="Europe/Paris"))
        session.commit()
        for day in (date(2026, 10, 20), date(2026, 9, 1)):
            with pytest.raises(Conflict, match="closed billing month 2026-10") as refused:
                dana_becomes(session, "professional", day, actor="test")
            assert (refused.value.code, refused.value.field) == (
                "category.closed_month",
                "category_from",
            )
        with pytest.raises(InvalidValue, match="after today") as future:
            dana_becomes(session, "professional", date(2026, 11, 24), actor="test")
        assert (future.value.code, future.value.field) == ("category.after_today", "category_from")
        dana_becomes(session, "professional", date(2026, 11, 10), actor="test")
        session.commit()
        with pytest.raises(InvalidValue, match="before the member's latest"):
            dana_becomes(session, "company", date(2026, 11, 5), actor="test")
        session.rollback()
        assert dana(session).category == MemberCategory.PROFESSIONAL
        assert len(session.exec(select(MemberCategoryChange)).all()) == 1


def test_the_api_records_a_change_and_refuses_a_closed_month(lab) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    client, tokens, url = lab
    manager = bearer(tokens[Role.MANAGER])
    today = datetime.now(PARIS).date()
    created = client.post(
        "/api/v1/members",
        json={"name": "Zoé", "email": "zoe@example.org", "category": "student"},
        headers=manager,
    )
    zid = created.json()["id"]

    alone = client.patch(
        f"/api/v1/members/{zid}", json={"category_from": today.isoformat()}, headers=manager
    )
    assert alone.status_code == 422 and alone.json()["detail"][0]["loc"] == [
        "body",
        "category_from",
    ]
    tomorrow = (today + timedelta(days=1)).isoformat()
    future = client.patch(
        f"/api/v1/members/{zid}",
        json={"category": "professional", "category_from": tomorrow},
        headers=manager,
    )
    assert future.status_code == 422 and "after today" in future.json()["detail"][0]["msg"]

    # The previous month closed: a day inside it is a conflict with the lab's books.
    first_of_month = today.replace(day=1)
    previous = (first_of_month - timedelta(days=1)).strftime("%Y-%m")
    engine = make_engine(url)
    with Session(engine) as session:
        session.add(BillingMonth(month=previous, closed_by="test", timezone="Europe/Paris"))
        session.commit()
    closed = client.patch(
        f"/api/v1/members/{zid}",
        json={"category": "professional", "category_from": f"{previous}-15"},
        headers=manager,
    )
    assert closed.status_code == 409
    body = closed.json()
    assert (body["code"], body["field"]) == ("category.closed_month", "category_from")
    assert previous in body["detail"]

    changed = client.patch(
        f"/api/v1/members/{zid}",
        json={"category": "professional", "category_from": first_of_month.isoformat()},
        headers=manager,
    )
    assert changed.status_code == 200 and changed.json()["category"] == "professional"
    # The same category again records nothing; a new one without a day takes effect today.
    client.patch(f"/api/v1/members/{zid}", json={"category": "professional"}, headers=manager)
    client.patch(f"/api/v1/members/{zid}", json={"category": "company"}, headers=manager)
    with Session(engine) as session:
        rows = history(session, zid)
    engine.dispose()
    assert [(c.previous_category, c.category, c.effective_from) for c in rows] == [
        ("student", "professional", first_of_month),
        ("professional", "company", today),
    ]
    assert all(c.actor.startswith("user:") for c in rows)
    listed = client.get(f"/api/v1/members/{zid}/categories", headers=manager)
    assert listed.status_code == 200
    assert [
        (c["previous_category"], c["category"], c["effective_from"]) for c in listed.json()
    ] == [
        ("student", "professional", first_of_month.isoformat()),
        ("professional", "company", today.isoformat()),
    ]
    assert client.get("/api/v1/members/999999/categories", headers=manager).status_code == 404
    # A change recorded by mistake is taken back, the latest first, down to none.
    undo = f"/api/v1/members/{zid}/categories/latest"
    undone = client.delete(undo, headers=manager)
    assert undone.status_code == 200 and undone.json()["category"] == "company"
    assert client.get(f"/api/v1/members/{zid}", headers=manager).json()["category"] == (
        "professional"
    )
    assert client.delete(undo, headers=manager).json()["previous_category"] == "student"
    assert client.get(f"/api/v1/members/{zid}", headers=manager).json()["category"] == "student"
    assert client.get(f"/api/v1/members/{zid}/categories", headers=manager).json() == []
    none_left = client.delete(undo, headers=manager)
    assert none_left.status_code == 409 and "never changed" in none_left.json()["detail"]
    audit = client.get("/api/v1/audit", headers=bearer(tokens[Role.ADMIN])).json()
    assert [a["action"] for a in audit[:3]] == [
        "member.category_undo",
        "member.category_undo",
        "member.update",
    ]
    assert audit[0]["detail"]["back_to"] == "student"


IMPORTED = """name,email,category,badges
Alice Durand,alice@example.org,student,
Bob Lefèvre,bob@example.org,professional,
"""


def test_the_import_records_a_category_change_of_a_known_member(database_url: str) -> None:
    migrate(database_url)
    engine = make_engine(database_url)
    try:
        assert import_members(engine, IMPORTED, tz=PARIS).created == 2
        again = IMPORTED.replace("alice@example.org,student", "alice@example.org,professional")
        again = again.replace("bob@example.org,professional", "bob@example.org,")
        dry = import_members(engine, again, tz=PARIS, dry_run=True)
        assert dry.ok and dry.category_changes == 1
        with Session(engine) as session:
            assert session.exec(select(MemberCategoryChange)).all() == []
        report = import_members(engine, again, tz=PARIS, actor="cli:test")
        assert report.ok and report.created == 0 and report.skipped == 2
        assert report.category_changes == 1
        with Session(engine) as session:
            found = {m.email: m for m in session.exec(select(Member))}
            alice = found["alice@example.org"]
            assert alice.category == MemberCategory.PROFESSIONAL
            # An empty category cell leaves a known member's category alone.
            assert found["bob@example.org"].category == MemberCategory.PROFESSIONAL
            assert alice.id is not None
            assert [
                (c.previous_category, c.category, c.effective_from, c.actor)
                for c in history(session, alice.id)
            ] == [("student", "professional", datetime.now(PARIS).date(), "cli:test")]
        bad = import_members(engine, again.replace(",professional,", ",teacher,"), tz=PARIS)
        assert not bad.ok and "teacher" in bad.errors[0]
    finally:
        engine.dispose()


def _in_thread(work):  # type: ignore[no-untyped-def]
    """Run `work` in a thread; the result (or the exception) is in the returned dict."""
    import threading

    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = work()
        except Exception as exc:  # noqa: BLE001 - handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_a_change_waits_for_a_close_in_progress_then_is_refused(engine: Engine) -> None:
    """The close holds the books from before it reads the members until it commits: a change
    into the month being closed waits, then sees the month closed."""
    from hub.services.billing import lock_books

    closing = Session(engine)
    lock_books(closing)  # where close_month starts; the rest of the close follows below

    def change() -> object:
        with Session(engine) as session:
            change = dana_becomes(session, "professional", date(2026, 10, 15))
            session.commit()
            return change

    thread, outcome = _in_thread(change)
    thread.join(0.5)
    assert thread.is_alive(), f"the change did not wait for the close: {outcome}"
    closing.add(BillingMonth(month="2026-10", closed_by="manager", timezone="Europe/Paris"))
    closing.commit()
    closing.close()
    thread.join(30)
    assert not thread.is_alive()
    error = outcome.get("error")
    assert isinstance(error, Conflict) and error.code == "category.closed_month", outcome
    with Session(engine) as session:
        assert dana(session).category == MemberCategory.STUDENT
        assert history(session, dana(session).id or 0) == []


def test_a_close_waits_for_a_change_in_progress_and_bills_with_it(engine: Engine) -> None:
    """A change that took the books first is committed before the close reads the members:
    the close prices October's sessions from the 15th in the new category."""
    changing = Session(engine)
    dana_becomes(changing, "professional", date(2026, 10, 15))

    def close() -> object:
        with Session(engine) as session:
            closing = close_month(session, "2026-10", tz=PARIS, now=NOW, actor="manager")
            session.commit()
            return closing

    thread, outcome = _in_thread(close)
    thread.join(0.5)
    assert thread.is_alive(), f"the close did not wait for the change: {outcome}"
    changing.commit()
    changing.close()
    thread.join(60)
    assert not thread.is_alive() and "error" not in outcome, outcome
    with Session(engine) as session:
        (statement,) = [s for s in month_statements(session, "2026-10") if s.payer_ref == "dana"]
        # D1 6,00 + D2 9,00 as a student; D3 15,00 + D4 30,00 as a professional.
        assert statement.total_cents == 600 + 900 + 1500 + 3000


def test_a_change_a_closed_month_was_billed_with_cannot_be_taken_back(engine: Engine) -> None:
    from hub.category_history import undo_latest_change

    with Session(engine) as session:
        dana_becomes(session, "professional", date(2026, 10, 15))
        session.commit()
        close_month(session, "2026-10", tz=PARIS, now=NOW, actor="manager")
        session.commit()
        with pytest.raises(Conflict, match="closed billing month 2026-10") as refused:
            undo_latest_change(session, dana(session))
        assert refused.value.code == "category.undo_closed_month"
        session.rollback()
        assert dana(session).category == MemberCategory.PROFESSIONAL
        assert len(history(session, dana(session).id or 0)) == 1

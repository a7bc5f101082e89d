"""hub/services/members.py and the CSV imports refuse with HubErrors: a stable code, the field
at fault (the CSV's line in params), worded in English and in French."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from hub.category_history import lab_today
from hub.core.db import make_engine, migrate
from hub.core.errors import Conflict, InvalidValue, describe
from hub.demo.seed import seed_demo
from hub.imports import TRAINING_COLUMNS, ImportFileError, import_trainings
from hub.models import Badge, Member, MemberCategory, MemberCreate, MemberUpdate, Training
from hub.services import members as members_service
from hub.web.i18n import translator
from protocol.limits import INT32_MAX

PARIS = ZoneInfo("Europe/Paris")
FEW = settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
french = translator("fr").gettext


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
    yield engine
    engine.dispose()


def _in_both_languages(error: InvalidValue | Conflict) -> None:
    english, translated = describe(error), describe(error, french)
    assert english and translated and english != translated, (english, translated)


@FEW
@given(ahead=st.integers(min_value=1, max_value=(date(9999, 12, 31) - date(2027, 1, 1)).days))
def test_a_category_from_a_day_after_today_is_refused_on_that_field(
    engine: Engine, ahead: int
) -> None:
    today = lab_today(PARIS)
    day = today + timedelta(days=min(ahead, (date.max - today).days))
    with Session(engine) as session:
        member = session.exec(select(Member).where(Member.category != "company")).first()
        assert member is not None and member.id is not None
        before = member.category
        with pytest.raises(InvalidValue) as refused:
            members_service.update_member(
                session,
                member_id=member.id,
                data=MemberUpdate(category=MemberCategory.COMPANY, category_from=day),
                actor="test",
                tz=PARIS,
            )
        session.rollback()
        assert (refused.value.code, refused.value.field) == (
            "category.after_today",
            "category_from",
        )
        assert day.isoformat() in describe(refused.value, french)
        _in_both_languages(refused.value)
        again = session.get(Member, member.id)
        assert again is not None and again.category == before


@FEW
@given(payer=st.integers(min_value=10_000, max_value=INT32_MAX))
def test_an_unknown_payer_is_refused_on_payer_id(engine: Engine, payer: int) -> None:
    with Session(engine) as session:
        with pytest.raises(InvalidValue) as refused:
            members_service.create_member(
                session,
                data=MemberCreate(name="Nadia", payer_id=payer),
                actor="test",
            )
        session.rollback()
    assert (refused.value.code, refused.value.field) == ("member.unknown_id", "payer_id")
    assert refused.value.params == {"member": payer}


def test_a_member_with_history_is_not_deleted_and_one_entered_by_mistake_is(
    engine: Engine,
) -> None:
    with Session(engine) as session:
        badge = session.exec(select(Badge)).first()
        assert badge is not None
        with pytest.raises(Conflict) as refused:
            members_service.delete_member(session, member_id=badge.member_id, actor="test")
        assert refused.value.code == "member.has_history"
        _in_both_languages(refused.value)
        session.rollback()
        with pytest.raises(InvalidValue) as own:
            members_service.update_member(
                session,
                member_id=badge.member_id,
                data=MemberUpdate(payer_id=badge.member_id),
                actor="test",
                tz=PARIS,
            )
        assert (own.value.code, own.value.field) == ("member.own_payer", "payer_id")
        session.rollback()
        mistake = members_service.create_member(
            session, data=MemberCreate(name="Typo"), actor="test"
        )
        session.commit()
        assert mistake.id is not None
        members_service.delete_member(session, member_id=mistake.id, actor="test")
        session.commit()
        assert session.get(Member, mistake.id) is None


LEVELS = {"", "user", "trainer", "maintainer"}
cells = st.text(st.characters(codec="utf-8"), max_size=30)


@FEW
@given(level=cells.filter(lambda t: t.strip().lower() not in LEVELS), supervised=cells)
def test_a_bad_training_row_names_its_column_and_line(
    engine: Engine, level: str, supervised: str
) -> None:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(TRAINING_COLUMNS)
    writer.writerow(["alice@example.org", "laser", level, "", supervised, "camille@example.org"])
    with Session(engine) as session:
        trainings_before = len(session.exec(select(Training)).all())
    try:
        report = import_trainings(engine, out.getvalue())
    except ImportFileError as unreadable:  # a cell the CSV reader cannot take (a NUL...)
        assert unreadable.field == "file"
        _in_both_languages(unreadable)
        return
    assert not report.ok
    for problem in report.problems:
        assert isinstance(problem, InvalidValue)
        assert problem.field in TRAINING_COLUMNS and problem.params["line"] == 2, problem
        _in_both_languages(problem)
    assert "level" in {p.field for p in report.problems}
    assert all(e.startswith("line 2: ") for e in report.errors)
    with Session(engine) as session:
        assert len(session.exec(select(Training)).all()) == trainings_before

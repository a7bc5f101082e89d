"""The trainer rule where SQL filters it (`current_trainers`, hub/services/trainings.py) equals
the pure rule (hub/domain/trainings.py) on generated trainings: levels, expiries around now
(equal to it, a microsecond either side, far dates, none). SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from hub.core.db import make_engine, migrate
from hub.domain.trainings import TrainingFacts, is_trainer
from hub.imports import _is_trainer
from hub.models import MachineType, Member, Training, TrainingLevel
from hub.services.trainings import current_trainers

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
MEMBERS = 4
OFFSETS = st.sampled_from(
    [
        None,
        timedelta(0),
        timedelta(microseconds=1),
        -timedelta(microseconds=1),
        timedelta(days=1),
        -timedelta(days=365 * 100),
        timedelta(days=365 * 900),
    ]
)


@pytest.fixture
def lab(database_url: str) -> Iterator[Engine]:
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        session.add(MachineType(code="laser", name="Laser"))
        for n in range(MEMBERS):
            session.add(Member(name=f"member {n}", email=f"m{n}@example.org"))
        session.commit()
    yield engine
    engine.dispose()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    held=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=MEMBERS - 1),
            st.sampled_from(list(TrainingLevel)),
            OFFSETS,
        ),
        max_size=8,
    )
)
def test_current_trainers_in_sql_equal_the_domain_rule(
    lab: Engine, held: list[tuple[int, TrainingLevel, timedelta | None]]
) -> None:
    with Session(lab) as session:
        session.exec(delete(Training))  # type: ignore[call-overload]
        mtype = session.exec(select(MachineType)).one()
        members = list(session.exec(select(Member).order_by(Member.id)))
        for index, level, offset in held:
            session.add(
                Training(
                    member_id=members[index].id or 0,
                    machine_type_id=mtype.id or 0,
                    level=level,
                    expires_at=None if offset is None else NOW + offset,
                )
            )
        session.commit()
        expected = {
            m.id
            for n, m in enumerate(members)
            if is_trainer(
                (
                    TrainingFacts(level.value, None if offset is None else NOW + offset)
                    for index, level, offset in held
                    if index == n
                ),
                NOW,
            )
        }
        assert {m.id for m in current_trainers(session, mtype, NOW)} == expected
        for m in members:
            assert _is_trainer(session, m.id or 0, mtype.id or 0, NOW) is (m.id in expected)

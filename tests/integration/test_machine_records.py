"""The machine and machine-type records the API, the admin's pages and the CLI share: refusals
are HubErrors naming the field (a bad code or site, an empty name, an unknown type or kind, a
plug topic an ACL line cannot hold), in English and French; a change leaves its audit row and a
machine with recorded use is kept. SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from hub.core.errors import MESSAGES, Conflict, HubError, InvalidValue, NotFound, describe
from hub.models import AuditEntry, Machine, MachineKind, MachineSession, MachineType
from hub.services import machine_records as records
from hub.services.broker_accounts import PLUG_TOPIC_MAX
from hub.web.i18n import translator
from protocol.topics import is_slug
from tests.support.databases import demo_lab

FR = translator("fr").gettext


@pytest.fixture
def lab(database_url: str) -> Iterator[Engine]:
    with demo_lab(database_url) as engine:
        yield engine


@pytest.fixture(scope="module")
def sqlite_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path_factory.mktemp('records') / 'hub.db'}"
    with demo_lab(url) as engine:
        yield engine


def _actions(session: Session, entity_id: str) -> list[str]:
    rows = session.exec(
        select(AuditEntry).where(AuditEntry.entity_id == entity_id).order_by(col(AuditEntry.id))
    )
    return [row.action for row in rows]


def _worded(error: HubError) -> None:
    """Every refusal has its template, and its French differs from the English."""
    assert error.code in MESSAGES
    assert describe(error) != describe(error, FR)


def test_a_machine_is_created_updated_and_deleted_with_its_audit_trail(lab: Engine) -> None:
    with Session(lab) as session:
        made = records.create_machine(
            session,
            code="sewing-1",
            name=" Brother ",
            site="lab",
            machine_type="laser",
            plug_topic="tele/plug-sewing/SENSOR",
            actor="user:t",
        )
        assert made.name == "Brother" and made.kind == MachineKind.LASER  # its type's kind
        with pytest.raises(Conflict) as taken:
            records.create_machine(
                session, code="sewing-1", name="x", site="lab", machine_type="laser", actor="u"
            )
        assert taken.value.code == "machine.exists" and taken.value.field == "code"
        _worded(taken.value)
        session.rollback()
        moved = records.update_machine(
            session,
            code="sewing-1",
            changes={"location": "Textile", "machine_type": "cnc", "plug_topic": None},
            actor="user:t",
        )
        cnc = session.exec(select(MachineType).where(MachineType.code == "cnc")).one()
        assert moved.location == "Textile" and moved.machine_type_id == cnc.id
        assert moved.plug_topic is None and moved.name == "Brother"  # left out: stays
        with pytest.raises(InvalidValue) as nulled:
            records.update_machine(session, code="sewing-1", changes={"name": None}, actor="user:t")
        assert nulled.value.code == "machine.not_null" and nulled.value.field == "name"
        records.delete_machine(session, code="sewing-1", actor="user:t")
        assert session.exec(select(Machine).where(Machine.code == "sewing-1")).first() is None
        actions = _actions(session, "sewing-1")
        assert actions == ["machine.create", "machine.update", "machine.delete"]
        with pytest.raises(NotFound) as gone:
            records.delete_machine(session, code="sewing-1", actor="user:t")
        assert gone.value.code == "machine.unknown" and gone.value.field == "machine"
        assert "laser-1" in describe(gone.value)  # names the codes there are


def test_a_machine_with_recorded_use_is_kept(lab: Engine) -> None:
    with Session(lab) as session:
        session.add(MachineSession(id="s-1", site="lab", machine="laser-1", member_ref="m-1"))
        session.commit()
        with pytest.raises(Conflict) as used:
            records.delete_machine(session, code="laser-1", actor="user:t")
        assert used.value.code == "machine.has_history"
        _worded(used.value)
        session.rollback()
        assert session.exec(select(Machine).where(Machine.code == "laser-1")).one()
        assert "machine.delete" not in _actions(session, "laser-1")


def test_machine_types_are_created_renamed_and_refused_by_field(lab: Engine) -> None:
    with Session(lab) as session:
        lathe = records.create_type(session, code="lathe", name="Lathe", kind="cnc", actor="user:t")
        assert lathe.id is not None and lathe.kind == MachineKind.CNC
        with pytest.raises(Conflict) as twice:
            records.create_type(session, code="lathe", name="Lathe", actor="user:t")
        assert twice.value.code == "machine_type.exists" and twice.value.field == "code"
        session.rollback()
        renamed = records.update_type(
            session, type_id=lathe.id, name="Tour", kind="other", actor="user:t"
        )
        assert (renamed.code, renamed.name, renamed.kind) == ("lathe", "Tour", MachineKind.OTHER)
        with pytest.raises(InvalidValue) as kindless:
            records.update_type(session, type_id=lathe.id, name="Tour", kind="boat", actor="u")
        assert kindless.value.field == "kind" and "laser" in describe(kindless.value)
        _worded(kindless.value)
        assert _actions(session, "lathe") == ["machine_type.create", "machine_type.update"]
        with pytest.raises(InvalidValue) as unknown:
            records.create_machine(
                session, code="lathe-1", name="L", site="lab", machine_type="plasma", actor="u"
            )
        assert unknown.value.field == "machine_type" and "lathe" in describe(unknown.value)


NOT_SLUG = st.text(max_size=80).filter(lambda s: not is_slug(s))
BAD_TOPIC = st.one_of(
    st.just(""),
    st.text(alphabet="ab/", min_size=PLUG_TOPIC_MAX + 1, max_size=PLUG_TOPIC_MAX + 40),
    st.text(min_size=1, max_size=30).map(lambda s: f"tele/{s}\x00/x"),
    st.text(alphabet="abc/", max_size=20).map(lambda s: f"tele/{s}+"),
    st.text(alphabet="abc/", max_size=20).map(lambda s: f"{s}#"),
    st.text(alphabet="abc/", max_size=20).map(lambda s: f"$SYS/{s}"),
    st.text(alphabet="abc/", max_size=20).map(lambda s: f"atelier/{s}"),
)
BLANK = st.text(alphabet=" \t\n\u00a0", max_size=10)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    case=st.one_of(
        st.tuples(st.just("code"), NOT_SLUG),
        st.tuples(st.just("site"), NOT_SLUG),
        st.tuples(st.just("name"), BLANK),
        st.tuples(st.just("plug_topic"), BAD_TOPIC),
        st.tuples(
            st.just("kind"),
            st.text(max_size=20).filter(lambda s: s not in {k.value for k in MachineKind}),
        ),
    )
)
def test_a_bad_value_is_refused_by_its_field_and_nothing_is_saved(
    sqlite_lab: Engine, case: tuple[str, str]
) -> None:
    field, value = case
    given_values = {"code": "new-1", "name": "New", "site": "lab", "machine_type": "laser"}
    with Session(sqlite_lab) as session:
        with pytest.raises(InvalidValue) as refused:
            records.create_machine(session, **(given_values | {field: value}), actor="user:t")
        assert refused.value.field == field
        _worded(refused.value)
        session.rollback()
        assert session.exec(select(Machine).where(Machine.code == "new-1")).first() is None
        if field in {"name", "plug_topic", "kind"}:
            with pytest.raises(InvalidValue) as again:
                records.update_machine(
                    session, code="laser-1", changes={field: value}, actor="user:t"
                )
            assert again.value.field == field
            session.rollback()


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ident=st.one_of(st.integers(max_value=0), st.integers(min_value=10**6, max_value=2**80)))
def test_an_unknown_machine_type_id_is_not_found_even_past_32_bits(
    sqlite_lab: Engine, ident: int
) -> None:
    with Session(sqlite_lab) as session:
        with pytest.raises(NotFound) as missing:
            records.update_type(session, type_id=ident, name="x", kind="other", actor="user:t")
        assert missing.value.code == "machine_type.unknown_id"

"""The badge service the API, the web and the CLI share: its refusals are HubErrors naming the
field (a bad card UID, a card already held, an unknown badge or member, an offline reader);
enrolling and revoking keep the history and the audit trail. SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from hub.core.errors import Conflict, InvalidValue, NotFound, describe
from hub.models import AuditEntry, Badge, Machine, Member, MemberStatus
from hub.services.badges import (
    ask_for_a_card,
    card_read,
    enrol_badge,
    list_badges,
    revoke_badge,
    revoke_card,
)
from hub.services.members import member_by_id, set_member_status
from hub.web.i18n import translator
from tests.support.databases import demo_lab

CARD = "0A0B0C0D"
UID_SHAPE = re.compile(r"^[0-9A-Fa-f]{8,20}$")


@pytest.fixture
def lab(database_url: str) -> Iterator[Engine]:
    with demo_lab(database_url) as engine:
        yield engine


def _a_member(session: Session) -> Member:
    member = session.exec(select(Member).order_by(col(Member.id))).first()
    assert member is not None and member.id is not None
    return member


def test_a_card_is_held_by_one_badge_at_a_time_and_history_stays(lab: Engine) -> None:
    with Session(lab) as session:
        member = _a_member(session)
        assert member.id is not None
        badge = enrol_badge(session, uid="0a:0b:0c:0d", member_id=member.id, actor="user:t")
        session.commit()
        assert badge.uid == CARD
        with pytest.raises(Conflict) as held:
            enrol_badge(session, uid=CARD, member_id=member.id, actor="user:t")
        assert held.value.code == "badge.enrolled" and held.value.field == "uid"
        assert held.value.params == {"uid": CARD, "badge": badge.id}
        assert "revoke it first" in describe(held.value)
        assert "révoquez" in describe(held.value, translator("fr").gettext)
        session.rollback()

        assert badge.id is not None
        revoked, changed = revoke_badge(session, badge_id=badge.id, actor="user:t")
        session.commit()
        assert changed and revoked.revoked_at is not None
        again, changed = revoke_badge(session, badge_id=badge.id, actor="user:t")
        assert not changed and again.revoked_at == revoked.revoked_at

        enrol_badge(session, uid=CARD, member_id=member.id, actor="user:t")
        session.commit()
        both = list_badges(session, uid=CARD)
        assert [b.revoked_at is None for b in both] == [False, True]
        assert [b.uid for b in list_badges(session, uid=CARD, active=True)] == [CARD]
        actions = session.exec(
            select(AuditEntry.action).where(AuditEntry.entity_id == CARD).order_by(AuditEntry.id)
        ).all()
        assert actions == ["badge.enrol", "badge.revoke", "badge.enrol"]


def test_a_read_request_needs_a_known_machine_whose_reader_is_online(lab: Engine) -> None:
    with Session(lab) as session:
        with pytest.raises(InvalidValue) as unknown:
            ask_for_a_card(session, machine="no-such", publisher=None, actor="user:t")
        assert unknown.value.code == "machine.unknown" and unknown.value.field == "machine"
        assert "laser-1" in unknown.value.params["known"]
        machine = session.exec(select(Machine).where(Machine.code == "laser-1")).one()
        machine.online = False
        session.add(machine)
        session.commit()
        with pytest.raises(Conflict) as offline:
            ask_for_a_card(session, machine="laser-1", publisher=None, actor="user:t")
        assert offline.value.code == "badge.reader_offline"
        assert "laser-1 is offline" in describe(offline.value)
        # Nothing was read for a request never made.
        read = card_read(session, request_id="0" * 32, machine="laser-1")
        assert read.badge is None and read.card is None


NOT_HEX = st.text(min_size=0, max_size=60).filter(
    lambda s: not UID_SHAPE.match(s.strip().replace(":", "").replace("-", "").replace(" ", ""))
)
ODD_HEX = st.from_regex(r"[0-9A-F]{9}|[0-9A-F]{11}|[0-9A-F]{19}", fullmatch=True)
TOO_LONG_HEX = st.from_regex(r"[0-9A-F]{22,200}", fullmatch=True)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(uid=st.one_of(NOT_HEX, ODD_HEX, TOO_LONG_HEX, st.just("04A1\x00B2C3")))
def test_a_uid_that_is_no_card_is_refused_by_its_field(sqlite_lab: Engine, uid: str) -> None:
    with Session(sqlite_lab) as session:
        member = _a_member(session)
        assert member.id is not None
        with pytest.raises(InvalidValue) as refused:
            enrol_badge(session, uid=uid, member_id=member.id, actor="user:t")
        assert refused.value.code == "badge.uid_invalid" and refused.value.field == "uid"
        assert "04A1B2C3" in describe(refused.value, translator("fr").gettext)
        with pytest.raises(InvalidValue):
            list_badges(session, uid=uid or "x")
        session.rollback()
        assert session.exec(select(Badge).where(Badge.uid == uid)).first() is None


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ident=st.one_of(st.integers(max_value=0), st.integers(min_value=10**6, max_value=2**80)))
def test_an_unknown_badge_or_member_id_is_not_found_even_past_32_bits(
    sqlite_lab: Engine, ident: int
) -> None:
    with Session(sqlite_lab) as session:
        with pytest.raises(NotFound) as missing:
            revoke_badge(session, badge_id=ident, actor="user:t")
        assert missing.value.code == "badge.unknown" and missing.value.field == "badge_id"
        with pytest.raises(NotFound) as nobody:
            member_by_id(session, member_id=ident)
        assert nobody.value.code == "member.unknown_id" and nobody.value.field == "member_id"
        with pytest.raises(InvalidValue) as refused:
            enrol_badge(session, uid=CARD, member_id=ident, actor="user:t")
        assert refused.value.field == "member_id"
        session.rollback()


@pytest.fixture(scope="module")
def sqlite_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path_factory.mktemp('badges') / 'hub.db'}"
    with demo_lab(url) as engine:
        yield engine


def test_a_lost_card_is_revoked_by_its_uid_and_a_member_suspended_by_email(lab: Engine) -> None:
    with Session(lab) as session:
        member = _a_member(session)
        assert member.id is not None and member.email
        enrol_badge(session, uid=CARD, member_id=member.id, actor="user:t")
        session.commit()
        revoked = revoke_card(session, uid="0a:0b:0c:0d", actor="cli:t")
        session.commit()
        assert revoked.revoked_at is not None
        with pytest.raises(NotFound) as gone:
            revoke_card(session, uid=CARD, actor="cli:t")
        assert gone.value.code == "badge.not_active" and gone.value.field == "uid"
        assert isinstance(gone.value, LookupError)  # the CLI's _change reports it, exit 2
        suspended = set_member_status(
            session, email=member.email.upper(), status=MemberStatus.SUSPENDED, actor="cli:t"
        )
        session.commit()
        assert suspended.status is MemberStatus.SUSPENDED
        with pytest.raises(NotFound) as nobody:
            set_member_status(
                session, email="nobody@example.org", status=MemberStatus.ACTIVE, actor="cli:t"
            )
        assert nobody.value.field == "email"

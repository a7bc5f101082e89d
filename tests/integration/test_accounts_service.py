"""The accounts service the API, the web and `atelier hub user` share: refusals are HubErrors
naming the field (username, password, member, token lifetime, ids), and what a change to a
login ends (its tokens) is the same whoever calls it. SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from hub.core.errors import Conflict, Forbidden, InvalidValue, NotFound, describe
from hub.models import ApiToken, AuditEntry, Member, Role
from hub.services.accounts import (
    MIN_PASSWORD_LENGTH,
    TOKEN_MAX_DAYS,
    USERNAME_MAX_CHARS,
    add_user,
    create_api_token,
    revoke_token_by_id,
    revoke_token_by_prefix,
    token_lifetime,
    tokens_of,
    update_user,
    user_by_id,
    user_for_token,
)
from hub.web.i18n import translator
from tests.support.databases import demo_lab

PASSWORD = "a-long-enough-password"
SETTINGS = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture
def lab(database_url: str) -> Iterator[Engine]:
    with demo_lab(database_url) as engine:
        yield engine


@pytest.fixture(scope="module")
def sqlite_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path_factory.mktemp('accounts') / 'hub.db'}"
    with demo_lab(url) as engine:
        yield engine


def test_a_login_its_tokens_and_what_ends_them(lab: Engine) -> None:
    with Session(lab) as session:
        member = session.exec(select(Member).order_by(col(Member.id))).first()
        assert member is not None
        lea = add_user(
            session,
            username=" Lea ",
            password=PASSWORD,
            role=Role.MEMBER,
            actor="user:admin",
            member=member,
        )
        session.commit()
        assert lea.username == "lea" and lea.id is not None
        with pytest.raises(Conflict) as taken:
            add_user(session, username="LEA", password=PASSWORD, role=Role.ADMIN, actor="t")
        assert taken.value.code == "user.exists" and taken.value.field == "username"
        assert "existe déjà" in describe(taken.value, translator("fr").gettext)
        session.rollback()
        with pytest.raises(InvalidValue) as unlinked:
            add_user(session, username="solo", password=PASSWORD, role=Role.MEMBER, actor="t")
        assert unlinked.value.field == "member_id"
        session.rollback()

        raw, token = create_api_token(
            session, user=lea, name=" script ", expires_in_days=30, actor="user:lea"
        )
        session.commit()
        assert token.name == "script" and user_for_token(session, raw) is not None
        admin = add_user(session, username="boss", password=PASSWORD, role=Role.ADMIN, actor="t")
        other = add_user(session, username="eve", password=PASSWORD, role=Role.MANAGER, actor="t")
        session.commit()
        # Only an admin sees or revokes another's tokens.
        assert token.id is not None
        with pytest.raises(Forbidden):
            tokens_of(session, viewer=other, user_id=lea.id)
        with pytest.raises(Forbidden):
            revoke_token_by_id(session, token_id=token.id, by=other, actor="user:eve")
        assert [t.id for t in tokens_of(session, viewer=admin, user_id=lea.id)] == [token.id]

        # Disabling a login ends its tokens at once; a member login keeps its member.
        with pytest.raises(InvalidValue) as memberless:
            update_user(session, user_id=lea.id, actor="user:boss", member_id=None)
        assert memberless.value.code == "user.member_required"
        session.rollback()
        update_user(session, user_id=lea.id, actor="user:boss", active=False)
        session.commit()
        assert user_for_token(session, raw) is None
        live = session.exec(
            select(ApiToken).where(ApiToken.user_id == lea.id, col(ApiToken.revoked_at).is_(None))
        ).all()
        assert live == []
        with pytest.raises(NotFound) as gone:
            revoke_token_by_prefix(session, prefix="atl_nothing0", actor="t")
        assert gone.value.field == "prefix"
        actions = set(session.exec(select(AuditEntry.action)).all())
        assert {"user.create", "user.update", "token.create"} <= actions


NOT_A_USERNAME = st.one_of(
    st.just(""),
    st.text(" \t\n", min_size=1, max_size=5),
    st.text(min_size=USERNAME_MAX_CHARS + 1, max_size=USERNAME_MAX_CHARS + 200).filter(
        lambda s: len(s.strip()) > USERNAME_MAX_CHARS
    ),
    st.tuples(st.text(max_size=10), st.text(max_size=10)).map(lambda p: f"{p[0]}a\x00{p[1]}"),
    st.tuples(st.text(max_size=10), st.text(max_size=10)).map(lambda p: f"{p[0]}a b{p[1]}"),
)


@SETTINGS
@given(username=NOT_A_USERNAME)
def test_a_username_that_cannot_be_one_is_refused_by_its_field(
    sqlite_lab: Engine, username: str
) -> None:
    with Session(sqlite_lab) as session:
        with pytest.raises(InvalidValue) as refused:
            add_user(session, username=username, password=PASSWORD, role=Role.ADMIN, actor="t")
        assert refused.value.code == "user.username_invalid"
        assert refused.value.field == "username"
        session.rollback()


@SETTINGS
@given(password=st.text(max_size=MIN_PASSWORD_LENGTH - 1))
def test_a_short_password_is_refused_by_its_field(sqlite_lab: Engine, password: str) -> None:
    with Session(sqlite_lab) as session:
        with pytest.raises(InvalidValue) as refused:
            add_user(session, username="shorty", password=password, role=Role.ADMIN, actor="t")
        assert refused.value.field == "password"
        assert str(MIN_PASSWORD_LENGTH) in describe(refused.value, translator("fr").gettext)
        session.rollback()


@SETTINGS
@given(
    days=st.one_of(
        st.integers(max_value=0).filter(lambda d: d != 0) | st.just(0),
        st.integers(min_value=TOKEN_MAX_DAYS + 1, max_value=10**30),
    )
)
def test_a_token_lifetime_out_of_range_is_refused(days: int) -> None:
    with pytest.raises(InvalidValue) as refused:
        token_lifetime(days)
    assert refused.value.field == "expires_in_days"
    assert refused.value.params == {"max": TOKEN_MAX_DAYS}


@SETTINGS
@given(ident=st.one_of(st.integers(max_value=0), st.integers(min_value=10**6, max_value=2**80)))
def test_an_unknown_user_or_token_id_is_not_found_even_past_32_bits(
    sqlite_lab: Engine, ident: int
) -> None:
    with Session(sqlite_lab) as session:
        with pytest.raises(NotFound) as nobody:
            user_by_id(session, user_id=ident)
        assert nobody.value.field == "user_id"
        admin = add_user(session, username="probe", password=PASSWORD, role=Role.ADMIN, actor="t")
        with pytest.raises(NotFound) as missing:
            revoke_token_by_id(session, token_id=ident, by=admin, actor="t")
        assert missing.value.field == "token_id"
        with pytest.raises(InvalidValue) as unlinked:
            update_user(session, user_id=admin.id or 0, actor="t", member_id=ident)
        assert unlinked.value.field == "member_id"
        session.rollback()

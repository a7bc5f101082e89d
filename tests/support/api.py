"""Signed-in API clients for tests: one login per role, on the demo lab."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from hub.auth import create_user, issue_token
from hub.models import Member, Role

PASSWORD = "correct horse battery"
# Who each role's login is, in the demo lab (hub/demo/seed.py): Camille trains on the laser and
# the printers and maintains the CNC; Hugo is a plain member.
LINKED = {
    Role.MEMBER: "hugo@example.org",
    Role.TRAINER: "camille@example.org",
    Role.MAINTAINER: "camille@example.org",
}


def role_tokens(engine: Engine) -> dict[Role, str]:
    """A user and an API token for every role; returns the tokens."""
    tokens = {}
    with Session(engine) as session:
        for role in Role:
            email = LINKED.get(role)
            member = (
                session.exec(select(Member).where(Member.email == email)).first() if email else None
            )
            user = create_user(
                session, username=f"test-{role.value}", password=PASSWORD, role=role, member=member
            )
            tokens[role], _ = issue_token(session, user, name="tests")
        session.commit()
    return tokens


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sqlite_url(tmp: Path, name: str = "hub.db") -> str:
    return f"sqlite:///{tmp / name}"


def admin_headers(database_url: str, role: Role = Role.ADMIN) -> dict[str, str]:
    """A fresh login of this role on that database, as request headers with its token."""
    import secrets

    from hub.core.db import make_engine

    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            user = create_user(
                session,
                username=f"{role.value}-{secrets.token_hex(3)}",
                password=PASSWORD,
                role=role,
            )
            token, _ = issue_token(session, user, name="tests")
            session.commit()
    finally:
        engine.dispose()
    return bearer(token)

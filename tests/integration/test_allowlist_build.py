"""The list the hub publishes is exactly the validated model, and verifies at the agent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlmodel import Session, select

from hub.core.db import make_engine, migrate
from hub.demo.seed import seed_demo
from hub.models import Machine, Member, MemberStatus, Training
from hub.services.allowlists import allowlist_body, build_allowlist
from protocol.allowlist import sign_body, verify_allowlist

NOW = datetime(2026, 11, 22, 14, 0, tzinfo=UTC)


def test_fast_body_equals_the_model_and_verifies(database_url: str) -> None:
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
        nathan = session.exec(select(Member).where(Member.email == "nathan@example.org")).one()
        nathan.status = MemberStatus.SUSPENDED
        session.add(nathan)
        hugo = session.exec(select(Member).where(Member.email == "hugo@example.org")).one()
        training = session.exec(select(Training).where(Training.member_id == hugo.id)).first()
        assert training is not None
        training.expires_at = NOW - timedelta(days=1)
        training.supervised_only = True
        session.add(training)
        session.commit()
        laser = session.exec(select(Machine).where(Machine.code == "laser-1")).one()
        body = allowlist_body(session, laser, now=NOW, ttl=timedelta(days=7), bump_version=False)
        model = build_allowlist(session, laser, now=NOW, ttl=timedelta(days=7), bump_version=False)
    engine.dispose()
    assert body == model.model_dump(mode="json")
    blocks = {e["badge"]: e["block"] for e in body["entries"]}
    assert blocks["04F60718"] == "member_inactive"  # Nathan, suspended
    assert blocks["04B2C3D4"] == "not_trained"  # Léa is not trained on the laser
    key = Ed25519PrivateKey.generate()
    verified = verify_allowlist(sign_body(body, key), key.public_key(), now=NOW)
    assert verified == model

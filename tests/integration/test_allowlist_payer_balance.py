"""A company or school that pays for its people on a prepaid-only plan: when its balance is
empty, the machines refuse its people with `balance`, as they refuse a member's own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import Session, select

from edge.domain.access import decide
from hub.core.db import make_engine, migrate
from hub.demo.seed import seed_demo
from hub.models import Machine, Member, MemberCategory
from hub.services.allowlists import allowlist_body
from hub.services.billing import set_plan, top_up
from protocol.allowlist import AllowList
from protocol.envelope import DenyReason

NOW = datetime(2026, 11, 23, 10, tzinfo=UTC)
HUGO = "04C3D4E5"  # trained on the laser in the demo data


def test_an_empty_payer_balance_refuses_the_people_it_pays_for(database_url: str) -> None:
    migrate(database_url)
    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            seed_demo(session, site="lab")
            hugo = session.exec(select(Member).where(Member.email == "hugo@example.org")).one()
            laser = session.exec(select(Machine).where(Machine.code == "laser-1")).one()
            company = Member(
                name="Bois SARL", email="compta@bois.example", category=MemberCategory.COMPANY
            )
            session.add(company)
            session.flush()
            hugo.payer_id = company.id
            session.add(hugo)
            session.commit()

            def blocked() -> dict[str, str]:
                body = allowlist_body(
                    session, laser, now=NOW, ttl=timedelta(days=7), bump_version=False
                )
                return {e["badge"]: e["block"] for e in body["entries"] if e["block"] == "balance"}

            def decision() -> tuple[bool, DenyReason | None]:
                body = allowlist_body(
                    session, laser, now=NOW, ttl=timedelta(days=7), bump_version=False
                )
                result = decide(HUGO, AllowList.model_validate(body), NOW)
                return result.granted, result.reason

            assert decision() == (True, None)
            # The company pays later: never refused.
            set_plan(session, company, prepaid_only=False, actor="test")
            session.commit()
            assert decision() == (True, None)
            # Prepaid-only and empty: its people are refused, and only them.
            set_plan(session, company, prepaid_only=True, actor="test")
            session.commit()
            assert decision() == (False, DenyReason.BALANCE)
            assert blocked() == {HUGO: "balance"}
            # Hugo's own prepaid account, even empty, is not what pays his sessions.
            set_plan(session, hugo, prepaid_only=True, actor="test")
            top_up(session, company, 2000, actor="test")
            session.commit()
            assert decision() == (True, None)
            # Paying for himself again: his own empty prepaid-only account counts.
            hugo.payer_id = None
            session.add(hugo)
            session.commit()
            assert decision() == (False, DenyReason.BALANCE)
    finally:
        engine.dispose()

"""Prepaid balances drawn at each session's end: provisional movements from the real ingest,
the machine refusing an emptied prepaid-only balance, and the month's close reconciling."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session, col, select

from hub.allowlist import AllowListPublisher
from hub.core.db import make_engine, migrate
from hub.core.security import load_or_create_signing_key
from hub.core.settings import get_settings
from hub.demo.seed import seed_demo
from hub.ingest.consumer import IngestConsumer
from hub.models import MachineSession, Member
from hub.services.billing import (
    PROVISIONAL,
    BalanceMovement,
    BillingAccount,
    BillingRate,
    PrepaidDrawdown,
    account_of,
    balances,
    close_month,
    draw_ended_sessions,
    month_statements,
    set_plan,
    top_up,
)
from tests.integration.test_agent_offline import Hub, started_agent
from tests.integration.test_billing_store import (  # noqa: F401
    NOW,
    PARIS,
    engine,
    snapshot,
)
from tests.support.mosquitto import MosquittoBroker
from tests.support.processes import wait_until

HUGO = "04C3D4E5"  # an individual trained on the laser in the demo data
ALICE_SESSIONS = ["S01", "S02", "S03", "S04", "S05"]  # docs/billing.md, total 26,50 €
CHLOE_SESSIONS = ["S08", "S09", "S10", "S11"]  # paid by bois-sarl; S11 is November's


def member(session: Session, ref: str) -> Member:
    return session.exec(select(Member).where(Member.ref == ref)).one()


def moves(session: Session, member_id: int | None) -> list[tuple[str, int, int | None]]:
    return [
        (m.kind, m.cents, m.statement_id)
        for m in session.exec(
            select(BalanceMovement)
            .where(BalanceMovement.member_id == member_id)
            .order_by(col(BalanceMovement.id))
        )
    ]


def test_session_ends_draw_the_payer_balance_as_the_close_would_price_them(engine) -> None:  # noqa: F811  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        bois = member(session, "bois-sarl")
        top_up(session, bois, 100_000, actor="test")
        session.commit()
        for sid in CHLOE_SESSIONS:  # one session.ended at a time, as the ingest sees them
            assert draw_ended_sessions(session, [sid], tz=PARIS) == set()
            session.commit()
        # Chloe's October sessions priced with her daily caps, drawn from her company's money;
        # November's on its own (its month is open too).
        drawn = [cents for kind, cents, _ in moves(session, bois.id) if kind == PROVISIONAL]
        assert sum(drawn[:3]) == -18165
        assert drawn[3] == -3000  # S11: 60 min at 30,00 €/h
        assert account_of(session, bois).balance_cents == 100_000 - 18165 - 3000
        # The same end seen again draws nothing more.
        assert draw_ended_sessions(session, ["S08", "S11"], tz=PARIS) == set()
        session.commit()
        assert len(moves(session, bois.id)) == 5

        closing = close_month(session, "2026-10", tz=PARIS, now=NOW, actor="test")
        session.commit()
        # The balance already paid it at the sessions' ends: the close moves no money.
        assert not closing.balances_changed
        statement = next(s for s in closing.statements if s.payer_ref == "bois-sarl")
        assert (statement.total_cents, statement.prepaid_cents, statement.due_cents) == (
            18165,
            18165,
            0,
        )
        # October's provisional charges replaced by the statement's; November's untouched.
        assert account_of(session, bois).balance_cents == 100_000 - 18165 - 3000
        assert balances(session)[bois.id] == 100_000 - 18165 - 3000  # type: ignore[index]
        october = [m for m in moves(session, bois.id)[1:4]]
        assert all(sid == statement.id for _, _, sid in october)
        assert moves(session, bois.id)[4] == (PROVISIONAL, -3000, None)
        assert moves(session, bois.id)[5:] == [
            ("reversal", 18165, statement.id),
            ("charge", -18165, statement.id),
        ]


def test_the_close_gives_the_same_statements_with_or_without_provisional_charges(
    engine,  # noqa: F811  # type: ignore[no-untyped-def]
) -> None:
    with Session(engine) as session:
        alice = member(session, "alice")
        top_up(session, alice, 2000, actor="test")
        set_plan(session, alice, prepaid_only=True, actor="test")
        session.commit()
        emptied = set()
        for sid in ALICE_SESSIONS:
            emptied |= draw_ended_sessions(session, [sid], tz=PARIS)
            session.commit()
        assert emptied == {alice.id}  # 26,50 € of sessions against 20,00 €
        assert account_of(session, alice).balance_cents == 0
        drawn = [c for kind, c, _ in moves(session, alice.id) if kind == PROVISIONAL]
        assert sum(drawn) == -2000

        close_month(session, "2026-10", tz=PARIS, now=NOW, actor="test")
        session.commit()
        first = snapshot(session, "2026-10")
        alice_statement = month_statements(session, "2026-10")[0]
        # What test_billing_store checks without any provisional charge: 20,00 € drawn once.
        assert (alice_statement.total_cents, alice_statement.prepaid_cents) == (2650, 2000)
        assert alice_statement.due_cents == 650
        assert account_of(session, alice).balance_cents == 0
        assert balances(session)[alice.id] == 0  # type: ignore[index]
        assert moves(session, alice.id)[-2:] == [
            ("reversal", 2000, alice_statement.id),
            ("charge", -2000, alice_statement.id),
        ]

        again = close_month(session, "2026-10", tz=PARIS, now=NOW, actor="test")
        session.commit()
        assert again.already_closed and not again.balances_changed
        assert snapshot(session, "2026-10") == first
        assert account_of(session, alice).balance_cents == 0

        # A session reported late for the closed month is off the statement and the balance.
        top_up(session, alice, 500, actor="test")
        session.add(
            MachineSession(
                id="LATE",
                site="lab",
                machine="laser-1",
                member_ref="alice",
                started_at=datetime(2026, 10, 30, 10, tzinfo=UTC),
                ended_at=datetime(2026, 10, 30, 12, tzinfo=UTC),
            )
        )
        session.commit()
        assert draw_ended_sessions(session, ["LATE"], tz=PARIS) == set()
        session.commit()
        assert account_of(session, alice).balance_cents == 500


# --- end to end: a real agent, Mosquitto and the hub's ingest ------------------------------
@pytest.fixture
def live_hub(
    database_url: str, tmp_path: Path, mosquitto: MosquittoBroker
) -> Iterator[tuple[Hub, PrepaidDrawdown]]:
    """The hub as hub/app.py wires it: the ingest draws balances and asks the publisher."""
    migrate(database_url)
    db = make_engine(database_url)
    with Session(db) as session:
        seed_demo(session, site="lab")
        # 6,00 €/h per started minute and a 1,00 € start fee: a short session costs 1,10 €.
        session.add(
            BillingRate(
                machine_type="laser",
                category="individual",
                effective_from=date(2020, 1, 1),
                cents_per_hour=600,
                start_fee_cents=100,
            )
        )
        hugo = session.exec(select(Member).where(Member.email == "hugo@example.org")).one()
        set_plan(session, hugo, prepaid_only=True, actor="test")
        top_up(session, hugo, 150, actor="test")
        session.commit()
    settings = get_settings(
        None,
        data_dir=tmp_path / "hub",
        database_url=database_url,
        site="lab",
        mqtt_host=mosquitto.host,
        mqtt_port=mosquitto.port,
        mqtt_username=mosquitto.hub_user,
        mqtt_password=mosquitto.hub_password,
    )
    key = load_or_create_signing_key(settings.data_dir)
    publisher = AllowListPublisher(settings, db, key)
    drawdown = PrepaidDrawdown(ZoneInfo(settings.timezone), republish=publisher.publish)
    consumer = IngestConsumer(settings, db, on_sessions_ended=drawdown)
    consumer.start()
    wait_until(lambda: consumer.connected, timeout=10, what="the hub ingest to connect")
    publisher.start()
    wait_until(lambda: publisher.connected, timeout=10, what="the publisher to connect")
    publisher.publish()
    try:
        yield Hub(db, consumer, publisher, key, mosquitto, tmp_path), drawdown
    finally:
        publisher.stop()
        consumer.stop()
        db.dispose()


def hugo_balance(hub: Hub) -> int:
    with Session(hub.engine) as session:
        hugo = session.exec(select(Member).where(Member.email == "hugo@example.org")).one()
        account = session.get(BillingAccount, hugo.id)
        assert account is not None
        return account.balance_cents


def use_the_laser(agent: object) -> None:
    assert agent.tap(HUGO)["decision"] == "granted"  # type: ignore[attr-defined]
    time.sleep(1.2)  # a session of no time at all costs nothing, not even the start fee
    assert agent.tap(HUGO)["decision"] == "ended"  # type: ignore[attr-defined]


def test_a_prepaid_balance_runs_out_at_the_machine_and_the_close_reconciles(
    live_hub: tuple[Hub, PrepaidDrawdown],
) -> None:
    hub, drawdown = live_hub
    agent = started_agent(hub, "laser-1")
    try:
        use_the_laser(agent)
        wait_until(lambda: hugo_balance(hub) == 40, timeout=10, what="1,10 € drawn at the end")
        assert drawdown.emptied == 0
        version = agent.state()["acl_version"]
        use_the_laser(agent)  # still allowed: 0,40 € left
        wait_until(lambda: hugo_balance(hub) == 0, timeout=10, what="the last 0,40 € drawn")
        wait_until(lambda: agent.state()["acl_version"] > version, timeout=10, what="the new list")
        refused = agent.tap(HUGO)
        assert (refused["decision"], refused["reason"]) == ("denied", "balance")
    finally:
        agent.stop()
    assert drawdown.emptied == 1

    with Session(hub.engine) as session:
        hugo = session.exec(select(Member).where(Member.email == "hugo@example.org")).one()
        sessions = session.exec(
            select(MachineSession)
            .where(MachineSession.member_ref == hugo.ref)
            .order_by(col(MachineSession.started_at))
        ).all()
        assert len(sessions) == 2
        assert [(k, c) for k, c, _ in moves(session, hugo.id)] == [
            ("topup", 150),
            (PROVISIONAL, -110),
            (PROVISIONAL, -40),
        ]
        started = sessions[0].started_at
        assert started is not None
        local = started.astimezone(ZoneInfo("Europe/Paris"))
        month = f"{local:%Y-%m}"
        after = datetime(local.year + local.month // 12, local.month % 12 + 1, 1, tzinfo=UTC)
        closing = close_month(session, month, tz=PARIS, now=after + timedelta(days=1), actor="test")
        session.commit()
        [statement] = [s for s in closing.statements if s.payer_ref == hugo.ref]
        # Charged once: the provisional 1,50 € replaced by the statement's 1,50 €.
        assert (statement.total_cents, statement.prepaid_cents, statement.due_cents) == (
            220,
            150,
            70,
        )
        assert account_of(session, hugo).balance_cents == 0
        assert balances(session)[hugo.id] == 0  # type: ignore[index]
        again = close_month(session, month, tz=PARIS, now=after + timedelta(days=1), actor="t")
        assert again.already_closed
        assert [(s.number, s.total_cents, s.prepaid_cents) for s in again.statements] == [
            (s.number, s.total_cents, s.prepaid_cents) for s in closing.statements
        ]

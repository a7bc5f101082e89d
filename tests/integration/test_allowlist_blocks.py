"""The allow-list's blocks are the domain's access rules: for generated members (status,
trainings, own or payer's account on any plan and balance), every entry the builder writes
equals `hub.domain.access` applied to the plain values, although the builder only reads the
prepaid-only accounts from SQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlmodel import Session

from hub.billing_store import BillingAccount
from hub.core.db import make_engine, migrate
from hub.domain.access import Account, Holding, best_holding, entry_block
from hub.domain.billing import PrepaidPlan
from hub.models import Badge, Machine, MachineType, Member, MemberStatus, Training, TrainingLevel
from hub.services.allowlists import allowlist_body
from protocol.envelope import utc_iso

NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)


@dataclass(frozen=True)
class Person:
    status: MemberStatus
    holdings: tuple[Holding, ...]
    account: tuple[bool, int] | None  # (prepaid_only, balance_cents)
    payer: int | None  # who pays: the generated person at this index (modulo their number)
    revoked: bool


expiries = st.one_of(
    st.none(),
    st.datetimes(
        min_value=datetime(1971, 1, 1), max_value=datetime(9998, 12, 31), timezones=st.just(UTC)
    ).map(lambda d: d.replace(microsecond=0)),
)
holdings = st.builds(
    Holding,
    level=st.sampled_from([level.value for level in TrainingLevel]),
    expires_at=expiries,
    supervised_only=st.booleans(),
)
people = st.lists(
    st.builds(
        Person,
        status=st.sampled_from([MemberStatus.ACTIVE, *MemberStatus]),
        holdings=st.lists(holdings, max_size=3).map(tuple),
        account=st.none()
        | st.tuples(st.booleans(), st.integers(-2, 2) | st.integers(-(2**31), 2**31 - 1)),
        payer=st.none() | st.integers(0, 5),
        revoked=st.booleans(),
    ),
    min_size=1,
    max_size=6,
)


def _expected(persons: list[Person]) -> dict[str, dict[str, object]]:
    """Each listed badge's entry, from the generated values through the domain rules alone."""
    out: dict[str, dict[str, object]] = {}
    for i, person in enumerate(persons):
        if person.revoked or person.status is MemberStatus.LEFT:
            continue
        payer = i if person.payer is None else person.payer % len(persons)
        raw = persons[payer].account
        account = None if raw is None else Account(raw[1], PrepaidPlan(prepaid_only=raw[0]))
        holding = best_holding(list(person.holdings))
        block = entry_block(
            member_active=person.status is MemberStatus.ACTIVE, holding=holding, account=account
        )
        out[f"B{i:02d}"] = {
            "level": holding.level if holding else "user",
            "supervised_only": holding.supervised_only if holding else False,
            "training_expires_at": utc_iso(holding.expires_at)
            if holding and holding.expires_at
            else None,
            "block": block.value if block else None,
        }
    return out


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(persons=people)
def test_every_entry_is_the_domain_rule(database_url: str, persons: list[Person]) -> None:
    migrate(database_url)
    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            for table in ("billing_account", "training", "badge", "machine", "machine_type"):
                session.execute(text(f"DELETE FROM {table}"))  # noqa: S608 - fixed names
            session.execute(text("UPDATE member SET payer_id = NULL"))
            session.execute(text("DELETE FROM member"))
            laser_type = MachineType(code="laser", name="Laser")
            session.add(laser_type)
            session.flush()
            assert laser_type.id is not None
            laser = Machine(code="laser-1", name="Laser", site="lab", machine_type_id=laser_type.id)
            session.add(laser)
            members = [Member(name=f"P{i}", status=p.status) for i, p in enumerate(persons)]
            session.add_all(members)
            session.flush()
            for i, (person, member) in enumerate(zip(persons, members, strict=True)):
                assert member.id is not None
                if person.payer is not None:
                    member.payer_id = members[person.payer % len(persons)].id
                session.add(
                    Badge(
                        uid=f"B{i:02d}",
                        member_id=member.id,
                        revoked_at=NOW - timedelta(days=1) if person.revoked else None,
                    )
                )
                for holding in person.holdings:
                    session.add(
                        Training(
                            member_id=member.id,
                            machine_type_id=laser_type.id,
                            level=TrainingLevel(holding.level),
                            expires_at=holding.expires_at,
                            supervised_only=holding.supervised_only,
                        )
                    )
                if person.account is not None:
                    prepaid_only, balance = person.account
                    session.add(
                        BillingAccount(
                            member_id=member.id, prepaid_only=prepaid_only, balance_cents=balance
                        )
                    )
            session.commit()
            body = allowlist_body(
                session, laser, now=NOW, ttl=timedelta(days=7), bump_version=False
            )
    finally:
        engine.dispose()
    listed = {
        e["badge"]: {k: e[k] for k in ("level", "supervised_only", "training_expires_at", "block")}
        for e in body["entries"]
    }
    assert listed == _expected(persons)


def test_two_equal_trainings_list_the_unsupervised_one() -> None:
    """A tie must not depend on the order PostgreSQL happens to return the rows in."""
    supervised, free = Holding("user", None, True), Holding("user", None, False)
    assert best_holding([supervised, free]) == free
    assert best_holding([free, supervised]) == free

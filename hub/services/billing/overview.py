"""What billing shows people: the lab's months, statements, balances and rates; a member's own."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, col, select

from hub.models import (
    BalanceMovement,
    BillingAccount,
    BillingMonth,
    BillingRate,
    Member,
    Statement,
)

# A member's page shows their latest movements and statements, not their whole history.
MY_MOVEMENTS = 50
MY_STATEMENTS = 24


@dataclass(frozen=True)
class Overview:
    """The billing page: closed months (latest first), the chosen month's statements and
    credit notes, every prepaid account with its holder, every rate."""

    months: list[str]
    month: str | None
    statements: list[Statement]
    accounts: list[tuple[Member | None, BillingAccount]]
    rates: list[BillingRate]


def overview(session: Session, *, month: str | None) -> Overview:
    """`month` None: the latest closed month. A month not closed shows no statement."""
    months = sorted(session.exec(select(BillingMonth.month)).all(), reverse=True)
    month = month or (months[0] if months else None)
    statements = (
        list(
            session.exec(
                select(Statement).where(Statement.month == month).order_by(col(Statement.number))
            ).all()
        )
        if month
        else []
    )
    held = session.exec(select(BillingAccount).order_by(col(BillingAccount.balance_cents))).all()
    ids = sorted({a.member_id for a in held})
    # One query for the holders: a page never loads the whole member table.
    holders = (
        {m.id: m for m in session.exec(select(Member).where(col(Member.id).in_(ids)))}
        if ids
        else {}
    )
    rates = session.exec(
        select(BillingRate).order_by(
            col(BillingRate.machine_type),
            col(BillingRate.category),
            col(BillingRate.effective_from),
        )
    ).all()
    return Overview(
        months=months,
        month=month,
        statements=statements,
        accounts=[(holders.get(a.member_id), a) for a in held],
        rates=list(rates),
    )


@dataclass(frozen=True)
class MemberBilling:
    """A member's own billing: their account (None: they have none), latest movements first,
    and the statements they pay."""

    account: BillingAccount | None
    movements: list[BalanceMovement]
    statements: list[Statement]


def member_billing(session: Session, *, member: Member) -> MemberBilling:
    """Read only: no account is created for a member who has none."""
    moves = session.exec(
        select(BalanceMovement)
        .where(BalanceMovement.member_id == member.id)
        .order_by(col(BalanceMovement.at).desc())
        .limit(MY_MOVEMENTS)
    ).all()
    statements = session.exec(
        select(Statement)
        .where(Statement.payer_ref == member.ref)
        .order_by(col(Statement.month).desc(), col(Statement.number))
        .limit(MY_STATEMENTS)
    ).all()
    return MemberBilling(
        account=session.get(BillingAccount, member.id),
        movements=list(moves),
        statements=list(statements),
    )

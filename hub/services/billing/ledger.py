"""Prepaid balances: accounts, top-ups, plans and the movements that change a balance."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, insert, update
from sqlmodel import Session, col, select

from hub.audit import record
from hub.core.errors import InvalidValue, NotFound
from hub.models import BalanceMovement, BillingAccount, Member


# --- prepaid balances ---------------------------------------------------------------------
def member_by_email(session: Session, email: str, field: str = "member_email") -> Member:
    """The member with this email (any case); NotFound names `field`."""
    member = session.exec(select(Member).where(Member.email == email.strip().lower())).first()
    if member is None:
        raise NotFound("member.unknown_email", field=field, params={"email": email})
    return member


# Ids are PostgreSQL integers: a longer number is no member, not an overflow.
_MAX_ID = 2**31 - 1


def find_member(session: Session, *, text: str, field: str = "member_id") -> Member:
    """A member as a person types them into a form: their number, their email (any case),
    their pseudonymous ref or their full name (any case, when only one member bears it).
    InvalidValue when empty or a name several members share, NotFound when none matches."""
    value = text.strip()
    if not value:
        raise InvalidValue("billing.member_missing", field=field)
    member: Member | None = None
    if re.fullmatch(r"[0-9]{1,12}", value):
        member = session.get(Member, int(value)) if 1 <= int(value) <= _MAX_ID else None
    else:
        member = session.exec(select(Member).where(Member.email == value.lower())).first()
        if member is None:
            member = session.exec(select(Member).where(Member.ref == value)).first()
        if member is None:
            member = member_by_name(session, name=value, field=field)
    if member is None:
        raise NotFound("billing.member_unknown", field=field, params={"member": value})
    return member


def member_by_name(session: Session, *, name: str, field: str) -> Member | None:
    """The one member whose name is `name` (any case, spaces trimmed); None when nobody
    bears it; InvalidValue naming their emails when several do."""
    found = list(
        session.exec(
            select(Member).where(func.lower(Member.name) == name.strip().lower()).limit(6)
        ).all()
    )
    if len(found) > 1:
        emails = ", ".join(m.email or str(m.id) for m in found[:5])
        raise InvalidValue(
            "member.name_shared", field=field, params={"name": name.strip(), "emails": emails}
        )
    return found[0] if found else None


def account_of(session: Session, member: Member) -> BillingAccount:
    assert member.id is not None
    account = session.get(BillingAccount, member.id)
    if account is None:
        account = BillingAccount(member_id=member.id)
        session.add(account)
    return account


def _move(
    session: Session,
    account: BillingAccount,
    kind: str,
    cents: int,
    *,
    statement_id: int | None = None,
    note: str = "",
    actor: str = "",
) -> None:
    # One UPDATE, so a top-up and a close running at the same time both count.
    session.add(account)
    session.flush()
    session.execute(
        update(BillingAccount)
        .where(col(BillingAccount.member_id) == account.member_id)
        .values(balance_cents=col(BillingAccount.balance_cents) + cents)
    )
    session.refresh(account)
    session.add(
        BalanceMovement(
            member_id=account.member_id,
            kind=kind,
            cents=cents,
            statement_id=statement_id,
            note=note[:500],
            actor=actor[:100],
        )
    )


def _locked_account(session: Session, member_id: int | None) -> BillingAccount | None:
    """The account, its row held until commit (PostgreSQL) so its balance is drawn once."""
    return session.exec(
        select(BillingAccount)
        .where(BillingAccount.member_id == member_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).first()


def top_up(
    session: Session, member: Member, cents: int, *, actor: str, note: str = ""
) -> BillingAccount:
    """Money on the member's prepaid balance, audited as `actor`. The caller commits."""
    if cents <= 0:
        raise InvalidValue("billing.amount_not_positive", field="amount")
    account = account_of(session, member)
    _move(session, account, "topup", cents, note=note, actor=actor)
    record(
        session,
        actor=actor,
        action="billing.topup",
        entity="member",
        entity_id=member.ref,
        cents=cents,
    )
    return account


def set_plan(session: Session, member: Member, *, prepaid_only: bool, actor: str) -> BillingAccount:
    """Whether an empty balance refuses the member at the machines, audited as `actor`."""
    account = account_of(session, member)
    account.prepaid_only = prepaid_only
    session.add(account)
    record(
        session,
        actor=actor,
        action="billing.plan",
        entity="member",
        entity_id=member.ref,
        prepaid_only=prepaid_only,
    )
    return account


def account_state(session: Session, member: Member) -> BillingAccount | None:
    """The member's account as kept, read only (None: no account; none is created)."""
    return session.get(BillingAccount, member.id)


def movements(session: Session, member: Member) -> Sequence[BalanceMovement]:
    return session.exec(
        select(BalanceMovement)
        .where(BalanceMovement.member_id == member.id)
        .order_by(col(BalanceMovement.at), col(BalanceMovement.id))
    ).all()


PROVISIONAL = "provisional"
# A provisional movement names its session in its note, so the close finds what to replace.
_PROVISIONAL_NOTE = "session "


def _locked_balances(session: Session, member_ids: Collection[int]) -> dict[int, int]:
    """Balances of these accounts, their rows held until commit (PostgreSQL), always locked
    in the same order so a close and the ingest drawing at once cannot deadlock."""
    if not member_ids:
        return {}
    return dict(
        session.execute(
            select(BillingAccount.member_id, BillingAccount.balance_cents)
            .where(col(BillingAccount.member_id).in_(sorted(member_ids)))
            .order_by(col(BillingAccount.member_id))
            .with_for_update()
        )
        .tuples()
        .all()
    )


def _write_movements(session: Session, deltas: dict[int, int], rows: list[dict[str, Any]]) -> None:
    # Increments, not new values, so a top-up committed meanwhile still counts.
    changes = [{"account": k, "delta": v} for k, v in sorted(deltas.items()) if v]
    if changes:
        table = BillingAccount.__table__  # type: ignore[attr-defined]
        session.execute(
            update(table)
            .where(table.c.member_id == bindparam("account"))
            .values(balance_cents=table.c.balance_cents + bindparam("delta")),
            changes,
        )
    if rows:
        session.execute(insert(BalanceMovement.__table__), rows)  # type: ignore[attr-defined]


def _movement(
    account_id: int,
    kind: str,
    cents: int,
    statement_id: int | None,
    note: str,
    actor: str,
    at: datetime,
) -> dict[str, Any]:
    return {
        "member_id": account_id,
        "at": at,
        "kind": kind,
        "cents": cents,
        "statement_id": statement_id,
        "note": note[:500],
        "actor": actor[:100],
    }


def balances(session: Session) -> dict[int, int]:
    """Every account's balance as the sum of its movements (checks the kept balance)."""
    totals: dict[int, int] = defaultdict(int)
    for member_id, cents in session.exec(
        select(BalanceMovement.member_id, BalanceMovement.cents)
    ).all():
        totals[member_id] += cents
    return dict(totals)

"""What no single event says, found by looking now and then: a training about to expire, a
machine silent for too long, the ingest refusing many messages. Each is told once per cause."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func
from sqlmodel import Session, col, select

from hub.billing_store import BalanceMovement, BillingAccount
from hub.models import DeadLetter, Downtime, Machine, MachineType, Member, MemberStatus, Training
from hub.services.maintenance.tasks import task_states
from hub.services.notification_triggers import to_member, to_staff

TRAINING_NOTICE = timedelta(days=30)


def look(
    session: Session,
    *,
    now: datetime,
    offline_after_s: float,
    dead_letters_per_hour: int,
    low_balance_cents: int = 500,
) -> int:
    """Enqueue what is due now (in the caller's transaction); how many messages it made."""
    made = _balances(session, now=now, low_balance_cents=low_balance_cents)
    rows = session.exec(
        select(Training, Member, MachineType)
        .join(Member, col(Member.id) == Training.member_id)
        .join(MachineType, col(MachineType.id) == Training.machine_type_id)
        .where(
            col(Training.expires_at) > now,
            col(Training.expires_at) <= now + TRAINING_NOTICE,
            Member.status == MemberStatus.ACTIVE,
        )
    ).all()
    for training, member, machine_type in rows:
        assert training.expires_at is not None
        expires = training.expires_at.date().isoformat()
        made += to_member(
            session,
            member_ref=member.ref,
            member=member,
            kind="training.expiring",
            # Once per training and expiry: a renewed training that nears its end is told again.
            cause=f"training-expiring:{training.id}:{expires}",
            params={"machine_type": machine_type.name, "expires": expires, "member": member.ref},
            now=now,
        )
    silent_since = now - timedelta(seconds=offline_after_s)
    for machine in session.exec(
        select(Machine).where(
            col(Machine.online).is_(False),
            col(Machine.last_seen).is_not(None),
            col(Machine.last_seen) < silent_since,
        )
    ):
        assert machine.last_seen is not None
        since = machine.last_seen.strftime("%Y-%m-%d %H:%M")
        made += to_staff(
            session,
            kind="machine.offline",
            cause=f"offline:{machine.code}:{machine.last_seen.isoformat()}",
            params={"machine": machine.name, "machine_code": machine.code, "since": since},
            now=now,
        )
    for due in task_states(session, now=now):
        status = due.state.status.value
        if status not in ("due", "overdue"):
            continue
        signed = due.last_sign_off.id if due.last_sign_off is not None else 0
        made += to_staff(
            session,
            kind=f"maintenance.{status}",
            # Once per task, machine and state until the next sign-off.
            cause=f"maintenance:{due.task.id}:{due.machine.code}:{status}:{signed}",
            params={
                "machine": due.machine.name,
                "machine_code": due.machine.code,
                "task": due.task.title,
            },
            now=now,
        )
    for downtime, machine in session.exec(
        select(Downtime, Machine)
        .join(Machine, col(Machine.id) == Downtime.machine_id)
        .where(col(Downtime.ended_at).is_(None), col(Downtime.started_at) < silent_since)
    ).all():
        made += to_staff(
            session,
            kind="machine.locked",
            cause=f"locked:{downtime.id}",
            params={
                "machine": machine.name,
                "machine_code": machine.code,
                "since": downtime.started_at.strftime("%Y-%m-%d %H:%M"),
                "reason": downtime.reason or downtime.cause.value,
            },
            now=now,
        )
    refused = session.exec(
        select(func.count())
        .select_from(DeadLetter)
        .where(col(DeadLetter.received_at) > now - timedelta(hours=1))
    ).one()
    if refused >= dead_letters_per_hour:
        made += to_staff(
            session,
            kind="dead_letters.rising",
            cause=f"dead-letters:{now:%Y-%m-%dT%H}",  # at most once an hour
            params={"count": int(refused)},
            now=now,
        )
    return made


def stale_lists(session: Session, *, machine_codes: list[str], now: datetime) -> int:
    """Staff hear of machines the allow-list watch found holding an older list (once per list
    version: hub/allowlist_watch.py alerts once per episode and publishes it again)."""
    made = 0
    for machine in session.exec(select(Machine).where(col(Machine.code).in_(machine_codes))):
        made += to_staff(
            session,
            kind="allowlist.stale",
            cause=f"acl-stale:{machine.code}:{machine.acl_version}",
            params={"machine": machine.name, "machine_code": machine.code},
            now=now,
        )
    return made


def _balances(session: Session, *, now: datetime, low_balance_cents: int) -> int:
    """A prepaid balance (one that was ever topped up) running low or empty: told once per
    state until the next top-up."""
    last_topup = (
        select(BalanceMovement.member_id, func.max(BalanceMovement.id).label("topup"))
        .where(BalanceMovement.kind == "topup")
        .group_by(col(BalanceMovement.member_id))
        .subquery()
    )
    made = 0
    rows = session.exec(
        select(BillingAccount, Member, last_topup.c.topup)
        .join(Member, col(Member.id) == BillingAccount.member_id)
        .join(last_topup, last_topup.c.member_id == BillingAccount.member_id)
        .where(col(BillingAccount.balance_cents) <= low_balance_cents)
    ).all()
    for account, member, topup in rows:
        state = "empty" if account.balance_cents <= 0 else "low"
        made += to_member(
            session,
            member_ref=member.ref,
            member=member,
            kind=f"balance.{state}",
            cause=f"balance-{state}:{member.id}:{topup}",
            params={"balance": f"{account.balance_cents / 100:.2f}", "member": member.ref},
            now=now,
        )
    return made

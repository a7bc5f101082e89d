"""Signing maintenance work off: only a maintainer of the machine's type, the counter read."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from hub.audit import record
from hub.core.errors import Conflict, Forbidden, InvalidValue, NotFound
from hub.domain.maintenance import (
    Baseline,
    sign_off,
)
from hub.models import (
    Machine,
    MachineType,
    MaintenanceSignOff,
    MaintenanceTaskRow,
    Member,
    MemberStatus,
    Training,
    TrainingLevel,
    User,
)
from hub.services.maintenance.lockout import CheckResult, check_lockouts
from hub.services.maintenance.records import member_by_email
from hub.services.maintenance.tasks import metered_hours


def is_maintainer(session: Session, member_id: int, machine_type_id: int, now: datetime) -> bool:
    for training in session.exec(
        select(Training).where(
            Training.member_id == member_id,
            Training.machine_type_id == machine_type_id,
            Training.level == TrainingLevel.MAINTAINER,
        )
    ):
        if training.expires_at is None or training.expires_at > now:
            return True
    return False


def types_signed_by(session: Session, *, user: User, now: datetime) -> set[int]:
    """The machine types whose tasks this login may sign off: those its linked, active member
    holds a valid maintainer training for (`sign_off_as`'s own rule)."""
    member = session.get(Member, user.member_id) if user.member_id else None
    if member is None or member.id is None or not member.email:
        return set()
    if member.status is not MemberStatus.ACTIVE:
        return set()
    return {
        t.machine_type_id
        for t in session.exec(
            select(Training).where(
                Training.member_id == member.id, Training.level == TrainingLevel.MAINTAINER
            )
        )
        if t.expires_at is None or t.expires_at > now
    }


@dataclass
class SignOffResult:
    sign_off: MaintenanceSignOff
    machine: str
    check: CheckResult

    @property
    def unlocked(self) -> bool:
        return self.machine in self.check.released


def sign_off_task(
    session: Session,
    *,
    task_id: int,
    by_email: str,
    note: str,
    now: datetime,
    actor: str,
    machine: str | None = None,
) -> SignOffResult:
    """Record the work (resetting the task's counter on the machine), then release the
    machine if this was its last overdue critical task. The caller commits and publishes."""
    task = session.get(MaintenanceTaskRow, task_id)
    if task is None or not task.active:
        raise NotFound("maintenance.task_unknown", field="task_id", params={"task": task_id})
    target = _sign_off_machine(session, task, machine)
    assert target.id is not None
    member = member_by_email(session, by_email)
    if member is None or member.id is None:
        raise NotFound("member.unknown_email", field="by", params={"email": by_email})
    if member.status is not MemberStatus.ACTIVE:
        raise Forbidden(
            "member.not_active",
            field="by",
            params={"email": by_email, "status": member.status.value},
        )
    mtype = session.get(MachineType, target.machine_type_id)
    if not is_maintainer(session, member.id, target.machine_type_id, now):
        raise Forbidden(
            "maintenance.not_maintainer",
            field="by",
            params={"email": by_email, "machine_type": mtype.code if mtype else "?"},
        )
    if not note.strip():
        raise InvalidValue("maintenance.note_empty", field="note")
    current = metered_hours(session).get(target.code, {}).get(task.counter, 0.0)
    last = session.exec(
        select(MaintenanceSignOff)
        .where(MaintenanceSignOff.task_id == task_id, MaintenanceSignOff.machine_id == target.id)
        .order_by(col(MaintenanceSignOff.id).desc())
    ).first()
    baseline = Baseline(
        task_id=str(task_id),
        machine=target.code,
        busy_hours_at_sign_off=last.counter_hours if last else 0.0,
        signed_off_on=(last.signed_at if last else task.created_at).date(),
    )
    if current < baseline.busy_hours_at_sign_off:  # the domain rule refuses it too
        raise Conflict(
            "maintenance.counter_went_back",
            params={
                "current": round(current, 2),
                "last": round(baseline.busy_hours_at_sign_off, 2),
            },
        )
    new = sign_off(
        baseline,
        current_busy_hours=current,
        today=now.date(),
        maintainer=member.ref,
        note=note,
    )
    row = MaintenanceSignOff(
        task_id=task_id,
        machine_id=target.id,
        member_id=member.id,
        signed_at=now,
        counter_hours=new.busy_hours_at_sign_off,
        note=note.strip()[:2000],
    )
    session.add(row)
    session.flush()
    record(
        session,
        actor=actor,
        action="maintenance.sign_off",
        entity="maintenance_task",
        entity_id=str(task_id),
        machine=target.code,
        maintainer=member.ref,
        counter=task.counter.value,
        counter_hours=round(row.counter_hours, 4),
        note=row.note,
    )
    check = check_lockouts(session, now=now, actor=actor, machine_codes=[target.code])
    return SignOffResult(row, target.code, check)


def sign_off_as(
    session: Session,
    *,
    user: User,
    task_id: int,
    note: str,
    now: datetime,
    actor: str,
    machine: str | None = None,
) -> SignOffResult:
    """`sign_off_task` signed by the member this login belongs to (the API and the web)."""
    member = session.get(Member, user.member_id) if user.member_id else None
    if member is None or not member.email:
        raise Forbidden("maintenance.login_without_member")
    return sign_off_task(
        session,
        task_id=task_id,
        by_email=member.email,
        note=note,
        now=now,
        actor=actor,
        machine=machine,
    )


def _sign_off_machine(session: Session, task: MaintenanceTaskRow, code: str | None) -> Machine:
    if task.machine_id is not None:
        machine = session.get(Machine, task.machine_id)
        assert machine is not None
        if code is not None and code != machine.code:
            raise InvalidValue(
                "maintenance.task_other_machine",
                field="machine",
                params={"task": task.id, "expected": machine.code, "machine": code},
            )
        return machine
    candidates = list(
        session.exec(
            select(Machine)
            .where(Machine.machine_type_id == task.machine_type_id)
            .order_by(Machine.code)
        )
    )
    if code is not None:
        for machine in candidates:
            if machine.code == code:
                return machine
        raise InvalidValue(
            "maintenance.task_not_for_machine",
            field="machine",
            params={"task": task.id, "machine": code},
        )
    if len(candidates) == 1:
        return candidates[0]
    names = ", ".join(m.code for m in candidates) or "none yet"
    raise InvalidValue(
        "maintenance.machine_ambiguous",
        field="machine",
        params={"task": task.id, "machines": names},
    )

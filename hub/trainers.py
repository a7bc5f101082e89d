"""The first trainer of a machine type: appointed by an admin, since no trainer exists yet to
grant it (every other training is granted by a trainer for its type, hub/api/trainings.py)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from hub.audit import record
from hub.models import MachineType, Member, Training, TrainingLevel


class FirstTrainerError(ValueError):
    """Why the appointment is refused: `field` names what to change; `conflict` when the
    type already has trainers (who grant from now on)."""

    def __init__(self, field: str, message: str, *, conflict: bool = False) -> None:
        super().__init__(message)
        self.field = field
        self.conflict = conflict


def current_trainers(session: Session, machine_type: MachineType, now: datetime) -> list[Member]:
    """Members with a valid trainer (or maintainer) training for this type."""
    query = (
        select(Member)
        .join(Training, col(Training.member_id) == col(Member.id))
        .where(
            Training.machine_type_id == machine_type.id,
            col(Training.level).in_([TrainingLevel.TRAINER, TrainingLevel.MAINTAINER]),
            (col(Training.expires_at).is_(None)) | (col(Training.expires_at) > now),
        )
        .order_by(col(Member.name))
    )
    return list(session.exec(query).unique().all())


def appoint_first_trainer(
    session: Session,
    *,
    member: Member,
    machine_type: MachineType,
    actor: str,
    now: datetime,
    expires_at: datetime | None = None,
) -> Training:
    """Make `member` a trainer for `machine_type`, which has none; audited as
    `training.first_trainer` with the actor. The caller checks the actor is an admin (the
    API) or holds the server (the CLI), and commits."""
    if expires_at is not None and expires_at <= now:
        raise FirstTrainerError("expires_at", "the training would be expired already")
    trainers = current_trainers(session, machine_type, now)
    if trainers:
        names = ", ".join(m.name for m in trainers[:5])
        raise FirstTrainerError(
            "machine_type",
            f"{machine_type.code} has trainers already ({names}): one of them grants it",
            conflict=True,
        )
    training = session.exec(
        select(Training).where(
            Training.member_id == member.id,
            Training.machine_type_id == machine_type.id,
            Training.level == TrainingLevel.TRAINER,
        )
    ).first() or Training(
        member_id=member.id or 0,
        machine_type_id=machine_type.id or 0,
        level=TrainingLevel.TRAINER,
    )
    # No trainer granted it: granted_by is empty and the audit log says who appointed them.
    training.granted_by_id = None
    training.granted_at = now
    training.expires_at = expires_at
    training.supervised_only = False
    session.add(training)
    session.flush()
    record(
        session,
        actor=actor,
        action="training.first_trainer",
        entity="training",
        entity_id=str(training.id),
        member=member.ref,
        machine_type=machine_type.code,
        level=TrainingLevel.TRAINER.value,
        expires_at=expires_at.isoformat() if expires_at else None,
    )
    return training

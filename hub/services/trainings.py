"""Trainings, as the API, the web and the CLI grant, change and withdraw them.

Only a member holding a valid trainer (or maintainer) training for a machine type may grant,
renew or change a training for it (the rule is hub/domain/trainings.py), and the grant records
them; a manager may also withdraw one. The first trainer of a new type is appointed by an
admin (the API) or whoever holds the server (the CLI), since no trainer exists yet to grant it.
Refusals are HubErrors; the caller commits and re-publishes the type's machines' lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, col, select

from hub.audit import record
from hub.core.errors import Conflict, Forbidden, HubError, InvalidValue, NotFound
from hub.domain.trainings import TrainingFacts, is_trainer
from hub.models import Machine, MachineType, Member, Role, Training, TrainingLevel, User
from protocol.limits import INT32_MAX

STAFF = frozenset({Role.TRAINER, Role.MAINTAINER, Role.MANAGER, Role.ADMIN})
MANAGE = frozenset({Role.MANAGER, Role.ADMIN})


def current_trainers(session: Session, machine_type: MachineType, now: datetime) -> list[Member]:
    """Members with a valid trainer (or maintainer) training for this type.

    The trainer rule of hub/domain/trainings.py as one SQL query (a page lists them):
    tests/integration/test_training_rules.py proves the two agree."""
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


def trains(session: Session, *, member_id: int, machine_type_id: int, now: datetime) -> bool:
    """The trainer rule (hub/domain/trainings.py) over this member's trainings for the type."""
    held = session.exec(
        select(Training).where(
            Training.member_id == member_id, Training.machine_type_id == machine_type_id
        )
    )
    return is_trainer((TrainingFacts(str(t.level), t.expires_at) for t in held), now)


def types_trained_by(session: Session, *, user: User, now: datetime) -> list[MachineType]:
    """The machine types this login may certify on."""
    if user.member_id is None:
        return []
    return [
        t
        for t in session.exec(select(MachineType).order_by(col(MachineType.code)))
        if trains(session, member_id=user.member_id, machine_type_id=t.id or 0, now=now)
    ]


def machine_type_by_code(
    session: Session, code: str, *, status: type[HubError] = InvalidValue
) -> MachineType:
    """The type with this code; unknown: `status` (InvalidValue in a body, NotFound in a path)."""
    mtype = session.exec(select(MachineType).where(MachineType.code == code)).first()
    if mtype is None:
        known = ", ".join(session.exec(select(MachineType.code)).all()) or "none yet"
        raise status(
            "machine_type.unknown",
            field="machine_type",
            params={"machine_type": code, "known": known},
        )
    return mtype


def machines_of_type(session: Session, machine_type_id: int) -> list[str]:
    """The codes of this type's machines: the allow-lists a training change re-publishes."""
    return list(
        session.exec(select(Machine.code).where(Machine.machine_type_id == machine_type_id)).all()
    )


def require_trainer(session: Session, *, user: User, machine_type: MachineType) -> int:
    """The granting member's id; Forbidden unless `user` trains this type."""
    if user.member_id is None or not trains(
        session,
        member_id=user.member_id,
        machine_type_id=machine_type.id or 0,
        now=datetime.now(UTC),
    ):
        raise Forbidden(
            "training.not_trainer",
            field="machine_type",
            params={"machine_type": machine_type.code},
        )
    return user.member_id


def aware(value: datetime | None, field: str) -> datetime | None:
    """A time a person gave must say its zone: a naive one is refused, naming the field."""
    if value is not None and value.tzinfo is None:
        raise InvalidValue("training.time_zone_missing", field=field)
    return value


def linked_member(session: Session, *, member_id: int) -> Member:
    """The member a training is for: a wrong id is a mistake in the request (422)."""
    return _member(session, member_id)


def _member(session: Session, member_id: int) -> Member:
    member = session.get(Member, member_id) if 1 <= member_id <= INT32_MAX else None
    if member is None:
        raise InvalidValue("member.unknown_id", field="member_id", params={"member": member_id})
    return member


def _training(session: Session, training_id: int) -> Training:
    training = session.get(Training, training_id) if 1 <= training_id <= INT32_MAX else None
    if training is None:
        raise NotFound("training.unknown", field="training_id", params={"training": training_id})
    return training


def _type_of(session: Session, training: Training) -> MachineType:
    mtype = session.get(MachineType, training.machine_type_id)
    assert mtype is not None  # a foreign key
    return mtype


def list_trainings(
    session: Session,
    *,
    viewer: User,
    member_id: int | None = None,
    machine_type: str | None = None,
    valid_only: bool = False,
    limit: int = 100,
    offset: int = 0,
) -> list[Training]:
    """Trainings in grant order; a member (not staff) sees their own only."""
    if viewer.role not in STAFF:
        if viewer.member_id is None or member_id not in (None, viewer.member_id):
            raise Forbidden("member.own_data_only", field="member_id")
        member_id = viewer.member_id
    query = select(Training)
    if member_id is not None:
        query = query.where(Training.member_id == member_id)
    if machine_type:
        query = query.where(
            Training.machine_type_id == machine_type_by_code(session, machine_type).id
        )
    if valid_only:
        now = datetime.now(UTC)
        query = query.where((col(Training.expires_at).is_(None)) | (col(Training.expires_at) > now))
    return list(session.exec(query.order_by(col(Training.id)).offset(offset).limit(limit)).all())


def training_for(session: Session, *, viewer: User, training_id: int) -> Training:
    training = _training(session, training_id)
    if viewer.role not in STAFF and training.member_id != viewer.member_id:
        raise Forbidden("member.own_data_only", field="training_id")
    return training


@dataclass(frozen=True)
class Grant:
    """A training granted or renewed, and the machines whose lists now change."""

    training: Training
    machines: list[str]


def grant_training(
    session: Session,
    *,
    user: User,
    actor: str,
    member_id: int,
    machine_type: str,
    level: TrainingLevel = TrainingLevel.USER,
    expires_at: datetime | None = None,
    supervised_only: bool = False,
) -> Grant:
    """Grant a training, or renew the member's existing one at the same level."""
    member = _member(session, member_id)
    mtype = machine_type_by_code(session, machine_type)
    granter = require_trainer(session, user=user, machine_type=mtype)
    aware(expires_at, "expires_at")
    training = session.exec(
        select(Training).where(
            Training.member_id == member.id,
            Training.machine_type_id == mtype.id,
            Training.level == level,
        )
    ).first()
    action = "training.renew" if training else "training.grant"
    if training is None:
        training = Training(member_id=member.id or 0, machine_type_id=mtype.id or 0, level=level)
    training.granted_by_id = granter
    training.granted_at = datetime.now(UTC)
    training.expires_at = expires_at
    training.supervised_only = supervised_only
    session.add(training)
    session.flush()
    record(
        session,
        actor=actor,
        action=action,
        entity="training",
        entity_id=str(training.id),
        member=member.ref,
        machine_type=mtype.code,
        level=level.value,
    )
    return Grant(training, machines_of_type(session, mtype.id or 0))


def change_training(
    session: Session, *, user: User, actor: str, training_id: int, changes: dict[str, Any]
) -> Grant:
    """Change the level, the expiry (re-certification) or the supervised-only flag; the
    changer becomes the grantor."""
    training = _training(session, training_id)
    mtype = _type_of(session, training)
    training.granted_by_id = require_trainer(session, user=user, machine_type=mtype)
    aware(changes.get("expires_at"), "expires_at")
    for field in ("level", "supervised_only"):
        if field in changes and changes[field] is None:
            raise InvalidValue("training.not_null", field=field, params={"field": field})
    training.sqlmodel_update(changes)
    training.granted_at = datetime.now(UTC)
    session.add(training)
    record(
        session,
        actor=actor,
        action="training.change",
        entity="training",
        entity_id=str(training.id),
        fields=sorted(changes),
    )
    return Grant(training, machines_of_type(session, mtype.id or 0))


def withdraw_training(session: Session, *, user: User, actor: str, training_id: int) -> list[str]:
    """Withdraw a training (a trainer for its type, or a manager); the machines to re-publish."""
    training = _training(session, training_id)
    mtype = _type_of(session, training)
    if user.role not in MANAGE:
        require_trainer(session, user=user, machine_type=mtype)
    record(
        session,
        actor=actor,
        action="training.withdraw",
        entity="training",
        entity_id=str(training.id),
        member_id=training.member_id,
        machine_type=mtype.code,
        level=training.level.value,
    )
    session.delete(training)
    return machines_of_type(session, mtype.id or 0)


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
        raise InvalidValue("training.expired_already", field="expires_at")
    trainers = current_trainers(session, machine_type, now)
    if trainers:
        names = ", ".join(m.name for m in trainers[:5])
        raise Conflict(
            "training.type_has_trainers",
            field="machine_type",
            params={"machine_type": machine_type.code, "names": names},
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


@dataclass(frozen=True)
class HeldTraining:
    """A training as the pages list it: its machine type by code."""

    id: int
    member_id: int
    machine_type: str
    level: TrainingLevel
    granted_by_id: int | None
    granted_at: datetime
    expires_at: datetime | None
    supervised_only: bool


def trainings_held(
    session: Session, *, viewer: User, member_id: int, limit: int = 100
) -> list[HeldTraining]:
    """A member's trainings with their type's code (`list_trainings`' rule on who sees them)."""
    rows = list_trainings(session, viewer=viewer, member_id=member_id, limit=limit)
    codes = {t.id or 0: t.code for t in session.exec(select(MachineType))}
    return [
        HeldTraining(
            id=t.id or 0,
            member_id=t.member_id,
            machine_type=codes.get(t.machine_type_id, "?"),
            level=t.level,
            granted_by_id=t.granted_by_id,
            granted_at=t.granted_at,
            expires_at=t.expires_at,
            supervised_only=t.supervised_only,
        )
        for t in rows
    ]

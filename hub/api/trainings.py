"""Trainings: who may use which machine type, at which level, granted by which trainer.

Only a member holding a valid trainer (or maintainer) training for a machine type may grant,
renew or change a training for it, and the grant records them. Managers may withdraw one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, HTTPException, Query, Request
from sqlmodel import Session, SQLModel, col, select

from hub.api.changes import (
    actor,
    audit,
    get_machine_type,
    invalid,
    machines_of_type,
    member_field,
    republish,
)
from hub.api.deps import (
    ADMIN,
    MANAGE,
    STAFF,
    TRAINERS,
    Allow,
    CurrentUser,
    Id,
    PathId,
    QueryId,
    SessionDep,
)
from hub.imports import _is_trainer
from hub.models import MachineType, Training, TrainingLevel, User
from hub.trainers import FirstTrainerError, appoint_first_trainer

router = APIRouter(prefix="/api/v1/trainings", tags=["trainings"])
first_trainer_router = APIRouter(prefix="/api/v1/machine-types", tags=["trainings"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No training with this id"}}


class TrainingCreate(SQLModel):
    member_id: Id
    machine_type: str
    level: TrainingLevel = TrainingLevel.USER
    expires_at: datetime | None = None
    supervised_only: bool = False


class TrainingUpdate(SQLModel):
    level: TrainingLevel | None = None
    expires_at: datetime | None = None
    supervised_only: bool | None = None


class TrainingPublic(SQLModel):
    id: int
    member_id: int
    machine_type: str
    level: TrainingLevel
    granted_by_id: int | None
    granted_at: datetime
    expires_at: datetime | None
    supervised_only: bool


def _public(training: Training, codes: dict[int, str]) -> TrainingPublic:
    return TrainingPublic(
        id=training.id or 0,
        member_id=training.member_id,
        machine_type=codes.get(training.machine_type_id, "?"),
        level=training.level,
        granted_by_id=training.granted_by_id,
        granted_at=training.granted_at,
        expires_at=training.expires_at,
        supervised_only=training.supervised_only,
    )


def _codes(session: Session) -> dict[int, str]:
    return {t.id or 0: t.code for t in session.exec(select(MachineType))}


def _require_trainer(session: Session, user: User, machine_type: MachineType) -> int:
    """The granting member's id, or 403 saying why."""
    now = datetime.now(UTC)
    if user.member_id is None or not _is_trainer(
        session, user.member_id, machine_type.id or 0, now
    ):
        raise HTTPException(
            status_code=403,
            detail=f"only a trainer for {machine_type.code} may grant or change its trainings",
        )
    return user.member_id


def _aware(value: datetime | None, field: str) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise invalid(f"{field}", "give a time zone, e.g. 2027-06-30T00:00:00Z")
    return value


@router.get("", response_model=list[TrainingPublic])
def list_trainings(
    session: SessionDep,
    user: CurrentUser,
    member_id: QueryId = None,
    machine_type: str | None = None,
    valid_only: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> list[TrainingPublic]:
    """Members see their own trainings only."""
    if user.role not in STAFF:
        if user.member_id is None or member_id not in (None, user.member_id):
            raise HTTPException(status_code=403, detail="members may only see their own data")
        member_id = user.member_id
    query = select(Training)
    if member_id is not None:
        query = query.where(Training.member_id == member_id)
    if machine_type:
        query = query.where(Training.machine_type_id == get_machine_type(session, machine_type).id)
    if valid_only:
        now = datetime.now(UTC)
        query = query.where((col(Training.expires_at).is_(None)) | (col(Training.expires_at) > now))
    rows = session.exec(query.order_by(col(Training.id)).offset(offset).limit(limit)).all()
    codes = _codes(session)
    return [_public(t, codes) for t in rows]


@router.post(
    "",
    response_model=TrainingPublic,
    status_code=201,
    dependencies=[Allow(TRAINERS)],
    responses={403: {"description": "Not a trainer for this machine type"}},
)
def grant(
    body: TrainingCreate,
    session: SessionDep,
    user: CurrentUser,
    request: Request,
    background: BackgroundTasks,
) -> TrainingPublic:
    """Grant a training, or renew the member's existing one at the same level."""
    member = member_field(session, body.member_id)
    mtype = get_machine_type(session, body.machine_type)
    granter = _require_trainer(session, user, mtype)
    _aware(body.expires_at, "expires_at")
    training = session.exec(
        select(Training).where(
            Training.member_id == member.id,
            Training.machine_type_id == mtype.id,
            Training.level == body.level,
        )
    ).first()
    action = "training.renew" if training else "training.grant"
    if training is None:
        training = Training(
            member_id=member.id or 0, machine_type_id=mtype.id or 0, level=body.level
        )
    training.granted_by_id = granter
    training.granted_at = datetime.now(UTC)
    training.expires_at = body.expires_at
    training.supervised_only = body.supervised_only
    session.add(training)
    session.flush()
    audit(
        session,
        user,
        action,
        "training",
        training.id,
        member=member.ref,
        machine_type=mtype.code,
        level=body.level.value,
    )
    session.commit()
    session.refresh(training)
    republish(request, background, machines_of_type(session, mtype.id or 0))
    return _public(training, _codes(session))


@router.get("/{training_id}", response_model=TrainingPublic, responses=NOT_FOUND)
def read_training(training_id: PathId, session: SessionDep, user: CurrentUser) -> TrainingPublic:
    training = session.get(Training, training_id)
    if training is None:
        raise HTTPException(status_code=404, detail=f"no training with id {training_id}")
    if user.role not in STAFF and training.member_id != user.member_id:
        raise HTTPException(status_code=403, detail="members may only see their own data")
    return _public(training, _codes(session))


@router.patch(
    "/{training_id}",
    response_model=TrainingPublic,
    dependencies=[Allow(TRAINERS)],
    responses=NOT_FOUND,
)
def change(
    training_id: PathId,
    body: TrainingUpdate,
    session: SessionDep,
    user: CurrentUser,
    request: Request,
    background: BackgroundTasks,
) -> TrainingPublic:
    """Change the level, the expiry (re-certification) or the supervised-only flag."""
    training = session.get(Training, training_id)
    if training is None:
        raise HTTPException(status_code=404, detail=f"no training with id {training_id}")
    mtype = session.get(MachineType, training.machine_type_id)
    assert mtype is not None
    training.granted_by_id = _require_trainer(session, user, mtype)
    changes = body.model_dump(exclude_unset=True)
    _aware(changes.get("expires_at"), "expires_at")
    for field in ("level", "supervised_only"):
        if field in changes and changes[field] is None:
            raise invalid(f"{field}", "may not be null")
    training.sqlmodel_update(changes)
    training.granted_at = datetime.now(UTC)
    session.add(training)
    audit(session, user, "training.change", "training", training.id, fields=sorted(changes))
    session.commit()
    session.refresh(training)
    republish(request, background, machines_of_type(session, mtype.id or 0))
    return _public(training, _codes(session))


@router.delete(
    "/{training_id}", status_code=204, responses=NOT_FOUND, dependencies=[Allow(TRAINERS)]
)
def withdraw(
    training_id: PathId,
    session: SessionDep,
    user: CurrentUser,
    request: Request,
    background: BackgroundTasks,
) -> None:
    """Withdraw a training: a trainer for its type, or a manager."""
    training = session.get(Training, training_id)
    if training is None:
        raise HTTPException(status_code=404, detail=f"no training with id {training_id}")
    mtype = session.get(MachineType, training.machine_type_id)
    assert mtype is not None
    if user.role not in MANAGE:
        _require_trainer(session, user, mtype)
    audit(
        session,
        user,
        "training.withdraw",
        "training",
        training.id,
        member_id=training.member_id,
        machine_type=mtype.code,
        level=training.level.value,
    )
    session.delete(training)
    session.commit()
    republish(request, background, machines_of_type(session, mtype.id or 0))


class FirstTrainer(SQLModel):
    member_id: Id
    expires_at: datetime | None = None


@first_trainer_router.post(
    "/{code}/first-trainer",
    response_model=TrainingPublic,
    status_code=201,
    dependencies=[Allow(ADMIN)],
    responses={
        404: {"description": "No machine type with this code"},
        409: {"description": "The machine type has trainers already: they grant it"},
    },
)
def first_trainer(
    code: str,
    body: FirstTrainer,
    session: SessionDep,
    user: CurrentUser,
    request: Request,
    background: BackgroundTasks,
) -> TrainingPublic:
    """Appoint the first trainer of a machine type that has none (a new type): only an admin,
    since no trainer exists to grant it. Audited (`training.first_trainer`)."""
    mtype = session.exec(select(MachineType).where(MachineType.code == code)).first()
    if mtype is None:
        raise HTTPException(status_code=404, detail=f"no machine type {code!r}")
    member = member_field(session, body.member_id)
    expires_at = _aware(body.expires_at, "expires_at")
    try:
        training = appoint_first_trainer(
            session,
            member=member,
            machine_type=mtype,
            actor=actor(user),
            now=datetime.now(UTC),
            expires_at=expires_at,
        )
    except FirstTrainerError as exc:
        if exc.conflict:
            raise HTTPException(status_code=409, detail=str(exc)) from None
        raise invalid(exc.field, str(exc)) from None
    session.commit()
    session.refresh(training)
    republish(request, background, machines_of_type(session, mtype.id or 0))
    return _public(training, _codes(session))

"""Trainings over HTTP: the routes of hub/services/trainings.py.

Only a member holding a valid trainer (or maintainer) training for a machine type may grant,
renew or change a training for it, and the grant records them. Managers may withdraw one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Query, Request
from sqlmodel import Session, SQLModel, select

from hub.api.deps import (
    ADMIN,
    TRAINERS,
    Allow,
    CurrentUser,
    Id,
    PathId,
    QueryId,
    SessionDep,
    actor,
    republish,
)
from hub.core.errors import NotFound
from hub.models import (
    MachineType,
    Training,
    TrainingCreate,
    TrainingPublic,
    TrainingUpdate,
)
from hub.services import trainings as service

router = APIRouter(prefix="/api/v1/trainings", tags=["trainings"])
first_trainer_router = APIRouter(prefix="/api/v1/machine-types", tags=["trainings"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No training with this id"}}


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
    rows = service.list_trainings(
        session,
        viewer=user,
        member_id=member_id,
        machine_type=machine_type,
        valid_only=valid_only,
        limit=limit,
        offset=offset,
    )
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
    granted = service.grant_training(
        session,
        user=user,
        actor=actor(user),
        member_id=body.member_id,
        machine_type=body.machine_type,
        level=body.level,
        expires_at=body.expires_at,
        supervised_only=body.supervised_only,
    )
    session.commit()
    session.refresh(granted.training)
    republish(request, background, granted.machines)
    return _public(granted.training, _codes(session))


@router.get("/{training_id}", response_model=TrainingPublic, responses=NOT_FOUND)
def read_training(training_id: PathId, session: SessionDep, user: CurrentUser) -> TrainingPublic:
    training = service.training_for(session, viewer=user, training_id=training_id)
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
    changed = service.change_training(
        session,
        user=user,
        actor=actor(user),
        training_id=training_id,
        changes=body.model_dump(exclude_unset=True),
    )
    session.commit()
    session.refresh(changed.training)
    republish(request, background, changed.machines)
    return _public(changed.training, _codes(session))


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
    machines = service.withdraw_training(
        session, user=user, actor=actor(user), training_id=training_id
    )
    session.commit()
    republish(request, background, machines)


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
    mtype = service.machine_type_by_code(session, code, status=NotFound)
    member = service.linked_member(session, member_id=body.member_id)
    training = service.appoint_first_trainer(
        session,
        member=member,
        machine_type=mtype,
        actor=actor(user),
        now=datetime.now(UTC),
        expires_at=service.aware(body.expires_at, "expires_at"),
    )
    session.commit()
    session.refresh(training)
    republish(request, background, service.machines_of_type(session, mtype.id or 0))
    return _public(training, _codes(session))

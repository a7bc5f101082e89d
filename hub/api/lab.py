"""The lab's legal identity: what every statement prints (name, address, SIRET, RNA, VAT
mention) and the language it speaks by default."""

from __future__ import annotations

from fastapi import APIRouter, Request

from hub.api.changes import actor
from hub.api.deps import ADMIN, MANAGE, Allow, CurrentUser, SessionDep
from hub.models import LabIdentityPublic, LabIdentityUpdate
from hub.services import lab

router = APIRouter(prefix="/api/v1/lab", tags=["lab"])


@router.get("/identity", response_model=LabIdentityPublic, dependencies=[Allow(MANAGE)])
def read_identity(request: Request, session: SessionDep) -> LabIdentityPublic:
    settings = request.app.state.settings
    return lab.identity(
        session, default_name=settings.site, default_locale=settings.notify_language
    )


@router.patch("/identity", response_model=LabIdentityPublic, dependencies=[Allow(ADMIN)])
def change_identity(
    body: LabIdentityUpdate, request: Request, session: SessionDep, user: CurrentUser
) -> LabIdentityPublic:
    """Only the fields given change; the next statements print them (closed ones keep theirs
    only as printed: regenerate a month's PDF to see the new identity)."""
    settings = request.app.state.settings
    changed = lab.set_identity(
        session,
        body.model_dump(exclude_unset=True),
        actor=actor(user),
        default_name=settings.site,
        default_locale=settings.notify_language,
    )
    session.commit()
    return changed

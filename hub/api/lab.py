"""The lab's legal identity: what every statement prints (name, address, SIRET, RNA, VAT
mention) and the language it speaks by default."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlmodel import Field, SQLModel

from hub.api.changes import actor
from hub.api.deps import ADMIN, MANAGE, Allow, CurrentUser, SessionDep
from hub.models import LabIdentityPublic, LabIdentityUpdate
from hub.services import accounting, lab

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


class BooksAccounts(SQLModel):
    """The accounts and journals the books are written on (French chart by default)."""

    sales: str | None = Field(default=None, max_length=20)
    members: str | None = Field(default=None, max_length=20)
    prepaid: str | None = Field(default=None, max_length=20)
    bank: str | None = Field(default=None, max_length=20)
    sales_journal: str | None = Field(default=None, max_length=10)
    bank_journal: str | None = Field(default=None, max_length=10)


@router.get("/accounts", response_model=BooksAccounts, dependencies=[Allow(MANAGE)])
def read_accounts(session: SessionDep) -> dict[str, str]:
    return accounting.accounts_as_dict(session)


@router.patch("/accounts", response_model=BooksAccounts, dependencies=[Allow(MANAGE)])
def change_accounts(body: BooksAccounts, session: SessionDep, user: CurrentUser) -> dict[str, str]:
    """Only the accounts given change; the next export of the books uses them."""
    accounting.set_accounts(session, body.model_dump(exclude_unset=True), actor=actor(user))
    session.commit()
    return accounting.accounts_as_dict(session)

"""HelloAsso exports over HTTP: the mapping of membership tiers to categories, and the import
of a memberships or payments export (with a dry run), for a manager's script or page."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, BackgroundTasks, Query, Request, UploadFile
from sqlmodel import Field, SQLModel

from hub.api.changes import actor, republish
from hub.api.deps import MANAGE, Allow, CurrentUser, SessionDep
from hub.core.errors import describe
from hub.services import helloasso

router = APIRouter(prefix="/api/v1/helloasso", tags=["helloasso"])


class TierMapping(SQLModel):
    """A membership tier as named on HelloAsso, and the member category it gives (null:
    forget the tier)."""

    tier: str = Field(max_length=200)
    category: str | None = Field(default=None, max_length=40)


@router.get("/tiers", dependencies=[Allow(MANAGE)])
def read_tiers(session: SessionDep) -> dict[str, str]:
    return helloasso.tier_mapping(session)


@router.put("/tiers", dependencies=[Allow(MANAGE)])
def map_tier(body: TierMapping, session: SessionDep, user: CurrentUser) -> dict[str, str]:
    mapping = helloasso.set_tier(session, body.tier, body.category, actor=actor(user))
    session.commit()
    return mapping


@router.post(
    "/import",
    dependencies=[Allow(MANAGE)],
    responses={422: {"description": "Not a HelloAsso export of that kind (field `file`)"}},
)
def import_export(
    file: UploadFile,
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    background: BackgroundTasks,
    kind: Literal["memberships", "payments"] = "memberships",
    dry_run: Annotated[bool, Query(description="say what would change, change nothing")] = False,
) -> dict[str, Any]:
    """Apply the export's lines; refused lines are listed with their line, column and reason
    (the import itself answers 200). Importing the same file again changes nothing."""
    data = file.file.read(helloasso.MAX_BYTES + 1)
    report = helloasso.import_export(
        session,
        data,
        kind=kind,
        actor=actor(user),
        tz=ZoneInfo(request.app.state.settings.timezone),
        dry_run=dry_run,
    )
    if not dry_run:
        session.commit()
    if report.balances_changed:
        republish(request, background)
    return {
        "kind": report.kind,
        "dry_run": report.dry_run,
        "rows": report.rows,
        "changes": [
            {
                "line": c.line,
                "change": c.what,
                "email": c.email,
                "detail": c.detail,
                "cents": c.cents,
            }
            for c in report.changes
        ],
        "rejected": [
            {
                "line": p.params.get("line"),
                "column": p.field,
                "code": p.code,
                "message": describe(p),
            }
            for p in report.rejected
        ],
    }

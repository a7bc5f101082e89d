"""Health and ingest counters."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import text
from sqlmodel import col, select

from hub.api.deps import MANAGE, Allow, SessionDep
from hub.models import AuditEntry, AuditPublic

if TYPE_CHECKING:  # imported by the app's start, not by every page
    from hub.ingest.consumer import IngestConsumer

router = APIRouter(tags=["health"])


@router.get("/health")
def health(request: Request, session: SessionDep, response: Response) -> dict[str, Any]:
    """200 when the database answers, the broker is connected and the ingest keeps up, else
    503 saying which."""
    checks: dict[str, Any] = {}
    try:
        session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any failure is a health answer, not a crash
        checks["database"] = f"error: {type(exc).__name__}"
    consumer = getattr(request.app.state, "consumer", None)
    if consumer is None:
        checks["broker"] = checks["ingest"] = "not started"
    else:
        checks["broker"] = "ok" if consumer.connected else "disconnected"
        checks["ingest"] = ingest_health(consumer, request.app.state.settings.ingest_max_lag_s)
        checks["ingest_lag_s"] = round(consumer.lag_s(), 3)
        checks["ingest_waiting"] = consumer.waiting()
    ok = (
        checks["database"] == "ok"
        and checks["broker"] in ("ok", "not started")
        and checks["ingest"] in ("ok", "not started")
    )
    if not ok:
        response.status_code = 503
    return {"status": "ok" if ok else "degraded", **checks}


def ingest_health(consumer: IngestConsumer, max_lag_s: float) -> str:
    """ "ok", or what is wrong with the ingest: its writer thread gone, no commit while
    messages wait, or the oldest waiting message older than `ingest_max_lag_s`."""
    if not consumer.writer_running():
        return "writer stopped"
    lag = consumer.lag_s()
    if lag <= max_lag_s:
        return "ok"
    since_commit = consumer.since_commit_s()
    if since_commit is None or since_commit > max_lag_s:
        return f"stalled: {consumer.waiting()} message(s) waiting, no commit for {lag:.0f} s"
    return f"lagging: the oldest waiting message is {lag:.0f} s old (bound {max_lag_s:g} s)"


@router.get("/api/v1/ingest/stats", tags=["ingest"], dependencies=[Allow(MANAGE)])
def ingest_stats(request: Request) -> dict[str, Any]:
    consumer = getattr(request.app.state, "consumer", None)
    return consumer.stats.as_dict() if consumer else {}


@router.get(
    "/api/v1/audit",
    tags=["audit"],
    response_model=list[AuditPublic],
    dependencies=[Allow(MANAGE)],
)
def audit_log(
    session: SessionDep,
    entity: str | None = None,
    entity_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> list[AuditEntry]:
    """Changes, newest first."""
    query = select(AuditEntry)
    if entity:
        query = query.where(AuditEntry.entity == entity)
    if entity_id:
        query = query.where(AuditEntry.entity_id == entity_id)
    query = query.order_by(col(AuditEntry.at).desc(), col(AuditEntry.id).desc())
    return list(session.exec(query.offset(offset).limit(limit)).all())

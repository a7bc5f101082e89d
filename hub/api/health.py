"""Health and ingest counters."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from sqlalchemy import text

from hub.api.deps import SessionDep

router = APIRouter(tags=["health"])


@router.get("/health")
def health(request: Request, session: SessionDep, response: Response) -> dict[str, Any]:
    """200 when the database answers and the broker is connected, else 503 saying which."""
    checks: dict[str, Any] = {}
    try:
        session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any failure is a health answer, not a crash
        checks["database"] = f"error: {type(exc).__name__}"
    consumer = getattr(request.app.state, "consumer", None)
    if consumer is None:
        checks["broker"] = "not started"
    else:
        checks["broker"] = "ok" if consumer.connected else "disconnected"
    ok = checks["database"] == "ok" and checks["broker"] in ("ok", "not started")
    if not ok:
        response.status_code = 503
    return {"status": "ok" if ok else "degraded", **checks}


@router.get("/api/v1/ingest/stats", tags=["ingest"])
def ingest_stats(request: Request) -> dict[str, Any]:
    consumer = getattr(request.app.state, "consumer", None)
    return consumer.stats.as_dict() if consumer else {}

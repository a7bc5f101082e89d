"""Usage statistics and the yearly review over HTTP: JSON, CSV (streamed), XLSX, PDF."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from sqlmodel import Session
from starlette.background import BackgroundTask

from hub.api.deps import QueryDay
from hub.reports.inputs import OPENING_HOURS_DEFAULT, UNDER_USED_DEFAULT
from hub.services import lab, statistics

router = APIRouter(prefix="/api/v1/stats", tags=["stats"])

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _tz(request: Request) -> ZoneInfo:
    return ZoneInfo(request.app.state.settings.timezone)


def _spooled(suffix: str) -> Path:
    with tempfile.NamedTemporaryFile(
        prefix="atelier-stats-", suffix=suffix, delete=False
    ) as handle:
        return Path(handle.name)


@router.get(
    "/usage",
    responses={
        200: {
            "content": {"text/csv": {}, XLSX: {}},
            "description": "The figures (JSON or XLSX), or CSV streamed as it is read",
        },
        422: {"description": "Bad dates, format or opening hours"},
    },
)
def usage(
    request: Request,
    since: Annotated[QueryDay, Query(alias="from", description="first day (lab time)")],
    until: Annotated[QueryDay, Query(alias="to", description="the day after the last")],
    format: Literal["json", "csv", "xlsx"] = "json",
    period: Literal["day", "week", "month"] = "month",
    opening_hours: Annotated[
        str, Query(max_length=500, description="e.g. 'tue-fri 14:00-19:00; sat 10:00-18:00'")
    ] = OPENING_HOURS_DEFAULT,
    under_used: Annotated[float, Query(ge=0, le=1)] = UNDER_USED_DEFAULT,
    detail: Annotated[bool, Query(description="one row per session too")] = False,
    csv_dialect: Annotated[
        Literal["standard", "excel-fr"] | None,
        Query(description="CSV only: excel-fr (';', BOM, decimal comma); default: the lab's"),
    ] = None,
) -> Any:
    """Usage by machine, machine type, public, period and hour of week; utilisation."""
    engine = request.app.state.engine
    tz = _tz(request)
    # A refusal (HubError) is answered by hub/api/errors.py: 422 with its code and field.
    query = statistics.usage_query(
        start=since,
        end=until,
        period=period,
        opening_spec=opening_hours,
        under_used_threshold=under_used,
        fmt=format,
    )
    name = f"usage-{since}-{until}"
    if format == "csv":
        with Session(engine) as session:
            dialect = lab.csv_dialect(
                session,
                csv_dialect,
                default_locale=request.app.state.settings.notify_language,
            )
        return StreamingResponse(
            statistics.usage_text(
                engine, query=query, tz=tz, fmt="csv", detail=detail, dialect=dialect
            ),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    if format == "json" and detail:
        return StreamingResponse(
            statistics.usage_text(engine, query=query, tz=tz, fmt="json", detail=True),
            media_type="application/json",
        )
    if format == "json":
        return JSONResponse(statistics.usage(engine, query=query, tz=tz).as_dict())
    path = _spooled(".xlsx")
    statistics.write_usage_xlsx(engine, path, query=query, tz=tz, detail=detail)
    return FileResponse(
        path,
        media_type=XLSX,
        filename=f"{name}.xlsx",
        background=BackgroundTask(path.unlink, missing_ok=True),
    )


@router.get(
    "/review",
    responses={
        200: {"content": {"application/pdf": {}, XLSX: {}}, "description": "The review"},
        422: {"description": "Bad year, format or opening hours"},
    },
    response_class=Response,
)
def review(
    request: Request,
    year: Annotated[int, Query(ge=2000, le=2999)],
    format: Literal["pdf", "xlsx"] = "pdf",
    opening_hours: Annotated[str, Query(max_length=500)] = OPENING_HOURS_DEFAULT,
) -> Response:
    """The yearly review for funders; members appear by pseudonymous reference only."""
    settings = request.app.state.settings
    result = statistics.yearly_review(
        request.app.state.engine,
        year=year,
        tz=_tz(request),
        site=settings.site,
        opening_spec=opening_hours,
        fmt=format,
        co2e_kg_per_kwh=settings.energy_co2e_kg_per_kwh,
    )
    path = _spooled(f".{format}")
    statistics.write_review(result, fmt=format, target=path)
    return FileResponse(
        path,
        media_type="application/pdf" if format == "pdf" else XLSX,
        filename=f"review-{year}.{format}",
        background=BackgroundTask(path.unlink, missing_ok=True),
    )


@router.get("/bookings", responses={422: {"description": "Bad dates"}})
def bookings(
    request: Request,
    since: Annotated[QueryDay, Query(alias="from", description="first day (lab time)")],
    until: Annotated[QueryDay, Query(alias="to", description="the day after the last")],
) -> dict[str, Any]:
    """Bookings of the period: hours booked against hours used per machine, bookings,
    no-shows (and their rate), cancellations, overruns, and the five hours of the week most
    booked (peak demand; hour 0 is Monday 00:00 lab time)."""
    from datetime import datetime, time

    from sqlmodel import Session

    from hub.services.bookings import figures

    tz = _tz(request)
    with Session(request.app.state.engine) as session:
        found = figures(
            session,
            since=datetime.combine(since, time(0), tz),
            until=datetime.combine(until, time(0), tz),
            tz=tz,
        )
    return {
        "booked_hours": found.booked_hours,
        "used_hours": found.used_hours,
        "bookings": found.bookings,
        "no_shows": found.no_shows,
        "no_show_rate": found.no_show_rate,
        "cancelled": found.cancelled,
        "overruns": found.overruns,
        "peak": [{"hour_of_week": h, "booked_hours": v} for h, v in found.peak],
    }

"""The statistics page: a window's usage by hour of the week, month and public, and its exports.

It draws what hub/services/statistics.py computes; a refused window (not a date, a day out of
range, the end before the start) gives the form back as typed with the refusal under the box
at fault, in the reader's language (422).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from hub.core.deps import MANAGE
from hub.core.errors import HubError, InvalidValue, describe
from hub.models import User
from hub.reports.inputs import EARLIEST_DAY, LATEST_DAY
from hub.services import statistics
from hub.web.i18n import N_, language_of, translator
from hub.web.render import Page, render

router = APIRouter(prefix="/web", include_in_schema=False)
DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
# The service's fields as the page's boxes are labelled.
LABELS = {"from": N_("From"), "to": N_("To (the day after)")}


def _message(request: Request, error: HubError) -> str:
    """The refusal in the reader's language, naming the box it is about."""
    words = translator(language_of(request)).gettext
    message = describe(error, words)
    if error.field in LABELS:
        message = words(N_("{field}: {message}")).format(
            field=words(LABELS[error.field]), message=message
        )
    return message


def _day(text: str, field: str) -> date | None:
    """A box's day as typed (YYYY-MM-DD; empty: the default), or InvalidValue naming it."""
    text = text.strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InvalidValue("stats.not_a_day", field=field, params={"text": text[:40]}) from None


@router.get("/stats", response_class=HTMLResponse)
def stats_page(
    request: Request,
    user: Annotated[User, Page(MANAGE)],
    since: Annotated[str, Query(alias="from", max_length=40)] = "",
    until: Annotated[str, Query(alias="to", max_length=40)] = "",
) -> Response:
    tz = ZoneInfo(request.app.state.settings.timezone)
    try:
        seen = statistics.overview(
            request.app.state.engine,
            start=_day(since, "from"),
            end=_day(until, "to"),
            today=datetime.now(tz).date(),
            tz=tz,
        )
    except HubError as error:
        # The form again, as typed, the refusal under the box at fault; no figures.
        box = error.field if error.field in LABELS else ""
        return render(
            request,
            "stats.html",
            {
                "v": {"from": since, "to": until},
                "errors": {box: _message(request, error)},
                "report": None,
                "earliest": EARLIEST_DAY.isoformat(),
                "latest": LATEST_DAY.isoformat(),
            },
            user=user,
            status_code=error.status,
        )
    report, by_month = seen.report, seen.by_month
    categories = sorted({c for _, cats in by_month for c in cats})
    peak = max((v for row in report.hour_of_week for v in row), default=0.0) or 1.0
    query = f"from={seen.start.isoformat()}&to={seen.end.isoformat()}"
    return render(
        request,
        "stats.html",
        {
            "v": {"from": seen.start.isoformat(), "to": seen.end.isoformat()},
            "errors": {},
            "earliest": EARLIEST_DAY.isoformat(),
            "latest": LATEST_DAY.isoformat(),
            "report": report,
            "days": DAYS,
            "peak": peak,
            "by_month": by_month,
            "categories": categories,
            "max_month": max(
                (sum(c["session_hours"] for c in cats.values()) for _, cats in by_month),
                default=0.0,
            )
            or 1.0,
            "max_util": max((r["utilisation"] for r in report.by_machine.values()), default=0.0)
            or 1.0,
            "csv": f"/api/v1/stats/usage?{query}&format=csv",
            "csv_fr": f"/api/v1/stats/usage?{query}&format=csv&csv_dialect=excel-fr",
            "csv_standard": f"/api/v1/stats/usage?{query}&format=csv&csv_dialect=standard",
            "xlsx": f"/api/v1/stats/usage?{query}&format=xlsx",
        },
        user=user,
    )

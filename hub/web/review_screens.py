"""The yearly review a funder can read, as a page (Statistics → Yearly review): the lab's
name and address, rounded figures with thousands separators, totals per machine type with
every machine in an annex, each public, the month-by-month trend, three charts drawn on the
server, short definitions; utilisation against the opening hours set in Settings, capped at
them. The PDF and XLSX are the API's, with the same opening hours."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date
from babel.numbers import format_decimal, format_percent
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from markupsafe import Markup
from sqlmodel import select

from hub.core.deps import MANAGE, SessionDep
from hub.core.errors import HubError, describe
from hub.models import Machine, MachineType, User
from hub.reports.funders import FunderReview, bar_chart, funder_review
from hub.services import lab_settings, statistics
from hub.web.i18n import N_, language_of, translator
from hub.web.render import Page, PageError, render

router = APIRouter(prefix="/web", include_in_schema=False)
CHART_TITLES = {
    "type": N_("Session hours by machine type"),
    "public": N_("Session hours by public"),
    "month": N_("Session hours by month"),
}


def _percent_pattern(lang: str) -> str:
    """The language's own percent pattern (12 % in French, 12% in English), to a tenth."""
    pattern = str(Locale.parse(lang).percent_formats[None].pattern)
    return pattern.replace("#,##0", "#,##0.0", 1)


def _hours(value: float, lang: str) -> str:
    return format_decimal(round(value), format="#,##0", locale=lang) + " h"


def _charts(review: FunderReview, lang: str) -> dict[str, Markup]:
    gettext = translator(lang).gettext
    month_names = {
        r.key: format_date(datetime.strptime(r.key + "-01", "%Y-%m-%d"), "MMM", locale=lang)
        for r in review.by_month
    }
    charts = {
        "type": [(r.name, r.session_hours) for r in review.by_type],
        "public": [(gettext(r.name), r.session_hours) for r in review.by_public],
        "month": [(month_names[r.key], r.session_hours) for r in review.by_month],
    }
    return {
        name: Markup(  # noqa: S704 - bar_chart escapes every text it writes
            bar_chart(
                [(label, value, _hours(value, lang)) for label, value in bars],
                title=gettext(CHART_TITLES[name]),
            )
        )
        for name, bars in charts.items()
    }


@router.get("/stats/review", response_class=HTMLResponse)
def review_page(
    request: Request,
    session: SessionDep,
    user: Annotated[User, Page(MANAGE)],
    year: Annotated[int | None, Query(ge=2000, le=2999)] = None,
) -> Response:
    settings = request.app.state.settings
    tz = ZoneInfo(settings.timezone)
    lang = language_of(request)
    chosen = year or datetime.now(tz).year - 1
    lab = lab_settings.current(session, site=settings.site)
    try:
        raw = statistics.yearly_review(
            request.app.state.engine,
            year=chosen,
            tz=tz,
            site=settings.site,
            opening_spec=lab.opening_hours,
            fmt="xlsx",
        )
    except HubError as error:
        raise PageError(error.status, describe(error, translator(lang).gettext)) from None
    review = funder_review(
        raw,
        lab_name=lab.name,
        lab_address=lab.address,
        machine_names={m.code: m.name for m in session.exec(select(Machine))},
        type_names={t.code: t.name for t in session.exec(select(MachineType))},
    )
    downloads: dict[str, Any] = {
        fmt: f"/api/v1/stats/review?year={chosen}&format={fmt}"
        f"&opening_hours={quote(lab.opening_hours)}"
        for fmt in ("pdf", "xlsx")
    }
    return render(
        request,
        "review.html",
        {
            "review": review,
            "charts": _charts(review, lang),
            "year": chosen,
            "downloads": downloads,
            "pct": lambda v: format_percent(v, format=_percent_pattern(lang), locale=lang),
            "whole": lambda v: format_decimal(round(v), format="#,##0", locale=lang),
            "month_name": lambda key: format_date(
                datetime.strptime(key + "-01", "%Y-%m-%d"), "MMMM y", locale=lang
            ),
        },
        user=user,
    )

"""Usage statistics and the yearly review, as the API, the web and the CLI ask for them.

Every input is checked before a row is read (an InvalidValue naming the field), so a streamed
export never fails half-written over a bad option. These functions take the engine, not a
Session: the streamed pass opens its own connection with a server-side cursor
(hub/reports/usage.py), which a session's transaction would hold open for the whole download.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine

from hub.domain.statistics import Period
from hub.reports import review as review_documents
from hub.reports import usage_files
from hub.reports.csv_files import STANDARD, CsvDialect
from hub.reports.inputs import (
    FORMATS,
    OPENING_HOURS_DEFAULT,
    PERIODS,
    REVIEW_FORMATS,
    UNDER_USED_DEFAULT,
    check_choice,
    check_day,
    check_share,
    check_window,
    check_year,
    parse_opening_hours,
)
from hub.reports.review import Review
from hub.reports.usage import UsageReport, usage_report

# The statistics page: a year back from today by default, and at most this many months drawn.
OVERVIEW_DAYS = 365
OVERVIEW_MONTHS = 24


@dataclass(frozen=True)
class UsageQuery:
    """A usage export's checked options: the window, the grouping, the opening hours."""

    start: date
    end: date
    period: Period = "month"
    opening_spec: str = OPENING_HOURS_DEFAULT
    under_used_threshold: float = UNDER_USED_DEFAULT

    def options(self) -> dict[str, Any]:
        return {
            "period": self.period,
            "opening_spec": self.opening_spec,
            "under_used_threshold": self.under_used_threshold,
        }


def usage_query(
    *,
    start: date,
    end: date,
    period: str = "month",
    opening_spec: str = OPENING_HOURS_DEFAULT,
    under_used_threshold: float = UNDER_USED_DEFAULT,
    fmt: str = "json",
) -> UsageQuery:
    """The options of a usage export, checked; InvalidValue names the first one at fault."""
    check_window(start, end)
    check_choice(fmt, FORMATS, "format")
    check_choice(period, PERIODS, "period")
    parse_opening_hours(opening_spec)
    check_share(under_used_threshold, "under_used")
    chosen: Period = "day" if period == "day" else "week" if period == "week" else "month"
    return UsageQuery(start, end, chosen, opening_spec, under_used_threshold)


def usage(engine: Engine, *, query: UsageQuery, tz: ZoneInfo) -> UsageReport:
    """The figures of the window (the JSON document's content)."""
    return usage_report(engine, start=query.start, end=query.end, tz=tz, **query.options())


def usage_text(
    engine: Engine,
    *,
    query: UsageQuery,
    tz: ZoneInfo,
    fmt: str,
    detail: bool = False,
    dialect: CsvDialect = STANDARD,
) -> Iterator[str]:
    """The export as CSV (in `dialect`) or JSON text chunks, written or sent as they come."""
    kind = check_choice(fmt, ("csv", "json"), "format")
    return usage_files.usage_chunks(
        engine,
        "csv" if kind == "csv" else "json",
        start=query.start,
        end=query.end,
        tz=tz,
        detail=detail,
        dialect=dialect,
        **query.options(),
    )


def write_usage_xlsx(
    engine: Engine,
    target: Path | IO[bytes],
    *,
    query: UsageQuery,
    tz: ZoneInfo,
    detail: bool = False,
) -> UsageReport:
    """The export as an XLSX workbook, one sheet per table (and `sessions` with `detail`)."""
    return usage_files.write_usage_xlsx(
        engine, target, start=query.start, end=query.end, tz=tz, detail=detail, **query.options()
    )


def yearly_review(
    engine: Engine,
    *,
    year: int,
    tz: ZoneInfo,
    site: str,
    opening_spec: str = OPENING_HOURS_DEFAULT,
    fmt: str = "pdf",
    now: datetime | None = None,
    co2e_kg_per_kwh: float | None = None,
) -> Review:
    """The review of a local calendar year, its options checked first. `co2e_kg_per_kwh`:
    the hub setting (None: the French grid's default)."""
    check_choice(fmt, REVIEW_FORMATS, "format")
    check_year(year)
    parse_opening_hours(opening_spec)
    return review_documents.yearly_review(
        engine,
        year,
        tz=tz,
        site=site,
        opening_spec=opening_spec,
        now=now,
        **({} if co2e_kg_per_kwh is None else {"co2e_kg_per_kwh": co2e_kg_per_kwh}),
    )


def write_review(review: Review, *, fmt: str, target: Path | IO[bytes]) -> None:
    """The review as a PDF (a few pages) or an XLSX workbook (with the member list)."""
    review_documents.write_review(review, check_choice(fmt, REVIEW_FORMATS, "format"), target)


@dataclass(frozen=True)
class Overview:
    """What the statistics page draws: the window's figures, and each month's per public."""

    start: date
    end: date
    report: UsageReport
    by_month: list[tuple[date, dict[str, dict[str, Any]]]]


def months(start: date, end: date) -> list[tuple[date, date]]:
    """[start, end) cut at the first of each month; the last OVERVIEW_MONTHS of them."""
    out = []
    first = start.replace(day=1)
    while first < end:
        nxt = (first + timedelta(days=32)).replace(day=1)
        out.append((max(first, start), min(nxt, end)))
        first = nxt
    return out[-OVERVIEW_MONTHS:]


def overview(
    engine: Engine, *, start: date | None, end: date | None, today: date, tz: ZoneInfo
) -> Overview:
    """The window asked for (by default the year to today, from the first of its month), its
    figures by month, and each month's use per public."""
    # Each day given is checked before the defaults do arithmetic on it.
    if end is not None:
        check_day(end, "to")
    if start is not None:
        check_day(start, "from")
    until = end or today + timedelta(days=1)
    since = start or (until - timedelta(days=OVERVIEW_DAYS)).replace(day=1)
    check_window(since, until)
    # One pass over the window: the month-by-public table is a margin of the same tally.
    # (It used to take one more full report per month drawn, thirteen for the default year:
    # most of the page's 1.5-2 s on a year of data.)
    report = usage_report(engine, start=since, end=until, tz=tz, period="month")
    by_month = [
        (first, report.by_period_category.get(f"{first.year}-{first.month:02d}", {}))
        for first, _ in months(since, until)
    ]
    return Overview(since, until, report, by_month)

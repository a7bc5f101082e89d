"""The usage export as files: CSV and JSON streamed as text chunks, XLSX written row by row,
each with the figures of hub/reports/usage.py and, with `detail`, one row per session."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import IO, Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine

from hub.reports.csv_files import STANDARD, CsvDialect, csv_chunks
from hub.reports.inputs import check_window
from hub.reports.usage import (
    UNKNOWN,
    UsageReport,
    lookups,
    partitions,
    session_query,
    usage_report,
    utc_day,
)

DETAIL_HEADER = [
    "session",
    "machine",
    "machine_type",
    "member",
    "category",
    "started_at",
    "ended_at",
    "session_hours",
    "busy_hours",
    "mode",
    "supervisor",
]


class _LocalStamps:
    """Local times to the second, the hour's part built once per hour: ISO 8601 with the
    offset, or day-first without it for a French Excel (which reads no offset)."""

    def __init__(self, tz: ZoneInfo, day_first: bool = False) -> None:
        self.tz = tz
        self.day_first = day_first
        self.cache: dict[int, tuple[str, str]] = {}

    def __call__(self, epoch: float) -> str:
        hour = int(epoch // 3600)
        found = self.cache.get(hour)
        if found is None:
            local = datetime.fromtimestamp(hour * 3600, self.tz)
            if self.day_first:
                found = self.cache[hour] = (local.strftime("%d/%m/%Y %H:"), "")
            else:
                text = local.isoformat(timespec="minutes")
                found = self.cache[hour] = (text[:14], text[16:])  # "2026-10-06T14:", "+02:00"
            if local.minute:  # a zone half an hour off UTC: no shortcut
                found = self.cache[hour] = ("", "")
        if not found[0]:
            moment = datetime.fromtimestamp(epoch, self.tz)
            if self.day_first:
                return moment.strftime("%d/%m/%Y %H:%M:%S")
            return moment.isoformat(timespec="seconds")
        second = int(epoch - hour * 3600)
        return f"{found[0]}{second // 60:02d}:{second % 60:02d}{found[1]}"


def _detail_rows(
    engine: Engine, start: date, end: date, tz: ZoneInfo, day_first: bool = False
) -> Iterator[list[Any]]:
    """One row per session, oldest first; members by their pseudonymous reference only."""
    look = lookups(engine)
    category_of, type_of = look.category, look.machine_type
    stamp = _LocalStamps(tz, day_first)
    query = session_query(engine.dialect.name, utc_day(start, tz), utc_day(end, tz), ordered=True)
    for batch in partitions(engine, query):
        for sid, machine, ref, mode, supervisor, begun, ended, busy in batch:
            yield [
                sid,
                machine,
                type_of.get(machine, UNKNOWN),
                ref,
                category_of.get(ref, UNKNOWN),
                stamp(begun),
                stamp(ended),
                round(max(0.0, ended - begun) / 3600, 4),
                round((busy or 0.0) / 3600, 4),
                mode,
                supervisor or "",
            ]


def usage_chunks(
    engine: Engine,
    fmt: Literal["csv", "json"],
    *,
    start: date,
    end: date,
    tz: ZoneInfo,
    detail: bool = False,
    dialect: CsvDialect = STANDARD,
    **options: Any,
) -> Iterator[str]:
    """The export as text chunks, written or sent as they come: CSV in `dialect` (the figures
    one per line, or with `detail` one line per session) or JSON (the figures, plus
    `sessions`)."""
    if fmt == "csv" and detail:
        check_window(start, end)
        rows = _detail_rows(engine, start, end, tz, dialect.day_first)
        yield from csv_chunks(DETAIL_HEADER, rows, dialect=dialect, tz=tz, plain=True)
        return
    report = usage_report(engine, start=start, end=end, tz=tz, **options)
    if fmt == "csv":
        header = ["table", "key", "measure", "value"]
        yield from csv_chunks(header, report.long_rows(), dialect=dialect, tz=tz, plain=True)
        return
    document = json.dumps(report.as_dict(), indent=1)
    if not detail:
        yield document + "\n"
        return
    yield document[:-2] + ',\n "sessions": ['
    for count, row in enumerate(_detail_rows(engine, start, end, tz)):
        yield (
            ("," if count else "") + "\n  " + json.dumps(dict(zip(DETAIL_HEADER, row, strict=True)))
        )
    yield "\n ]\n}\n"


def write_usage_xlsx(
    engine: Engine,
    target: Path | IO[bytes],
    *,
    start: date,
    end: date,
    tz: ZoneInfo,
    detail: bool = False,
    **options: Any,
) -> UsageReport:
    """One sheet per table (and `sessions` with `detail`), written row by row."""
    from openpyxl import Workbook

    report = usage_report(engine, start=start, end=end, tz=tz, **options)
    book = Workbook(write_only=True)
    for name, header, rows in report.tables():
        sheet = book.create_sheet(name)
        sheet.append(header)
        for row in rows:
            sheet.append(row)
    if detail:
        sheet = book.create_sheet("sessions")
        sheet.append(DETAIL_HEADER)
        for row in _detail_rows(engine, start, end, tz):
            sheet.append(row)
    book.save(target)
    return report

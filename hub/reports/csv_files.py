"""The one CSV writer of every export and download, in two dialects: `standard` (comma, UTF-8,
decimal point, ISO 8601 times: for scripts and accounting tools) and `excel-fr` (semicolon,
UTF-8 with a byte-order mark, decimal comma, day-first dates: what a French Excel opens as
columns without an import wizard). A lab whose locale is French gets `excel-fr` by default.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hub.core.errors import InvalidValue
from hub.core.files import private_file

BOM = "\ufeff"


@dataclass(frozen=True, slots=True)
class CsvDialect:
    name: str
    delimiter: str
    bom: bool
    decimal_comma: bool
    day_first: bool
    # CRLF in both (RFC 4180): with a bare LF the csv module leaves a lone CR in a cell
    # unquoted, and a reader then splits the row there.
    line_end: str


STANDARD = CsvDialect("standard", ",", False, False, False, "\r\n")
EXCEL_FR = CsvDialect("excel-fr", ";", True, True, True, "\r\n")
DIALECTS = {d.name: d for d in (STANDARD, EXCEL_FR)}
# A cell Excel would run as a formula (CSV injection): a name typed as "=HYPERLINK(...)".
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_FORMULA_FIRST = frozenset("".join(_FORMULA_STARTS))


def dialect_for(name: str | None, *, locale: str, field: str = "csv_dialect") -> CsvDialect:
    """The dialect named, or the lab's default for its locale (French: excel-fr)."""
    if name is None or name == "":
        return EXCEL_FR if locale == "fr" else STANDARD
    found = DIALECTS.get(name)
    if found is None:
        raise InvalidValue(
            "csv.dialect",
            field=field,
            params={"dialect": name[:40], "dialects": ", ".join(DIALECTS)},
        )
    return found


class CsvCells:
    """Values to the text of their cells in one dialect: numbers with its decimal mark, times
    in the lab's zone (ISO 8601 with the offset, or day-first without it for Excel)."""

    def __init__(self, dialect: CsvDialect, tz: ZoneInfo) -> None:
        self.dialect = dialect
        self.tz = tz

    def __call__(self, value: Any) -> Any:
        dialect = self.dialect
        if value is None:
            return ""
        if isinstance(value, bool):
            return str(value).lower()
        if isinstance(value, float | Decimal):
            text = str(value)
            return text.replace(".", ",") if dialect.decimal_comma else text
        if isinstance(value, datetime):
            local = value.astimezone(self.tz) if value.tzinfo else value
            if dialect.day_first:
                return local.strftime("%d/%m/%Y %H:%M")
            return local.isoformat(timespec="minutes")
        if isinstance(value, date):
            return value.strftime("%d/%m/%Y") if dialect.day_first else value.isoformat()
        if isinstance(value, str) and dialect is EXCEL_FR and value.startswith(_FORMULA_STARTS):
            return "'" + value
        return value

    def row(self, values: Iterable[Any]) -> list[Any]:
        # The common cells (text that is no formula, whole numbers) pass through without a
        # call: a third of the French export's time was the call per cell.
        return [
            v
            if (type(v) is str and not (v and v[0] in _FORMULA_FIRST)) or type(v) is int
            else self(v)
            for v in values
        ]


def csv_chunks(
    header: Iterable[str],
    rows: Iterable[Iterable[Any]],
    *,
    dialect: CsvDialect,
    tz: ZoneInfo,
    every: int = 2_000,
    plain: bool = False,
) -> Iterator[str]:
    """The file as text chunks of `every` rows, to be written or sent as they come. `plain`
    rows (text and numbers only, no times) go to the standard dialect unconverted: the csv
    module writes them the same, without a call per cell."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=dialect.delimiter, lineterminator=dialect.line_end)
    cells = CsvCells(dialect, tz)
    if dialect.bom:
        buffer.write(BOM)
    writer.writerow(list(header))
    convert = not (plain and dialect is STANDARD)
    for count, row in enumerate(rows, start=1):
        writer.writerow(cells.row(row) if convert else row)
        if count % every == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def write_csv_file(
    path: Path,
    header: Iterable[str],
    rows: Iterable[Iterable[Any]],
    *,
    dialect: CsvDialect,
    tz: ZoneInfo,
) -> Path:
    """The file at `path`, readable by its owner only (it holds names and amounts)."""
    with private_file(path).open("w", newline="", encoding="utf-8") as out:
        for chunk in csv_chunks(header, rows, dialect=dialect, tz=tz):
            out.write(chunk)
    return path


def read_rows(text: str) -> list[dict[str, str]]:
    """A CSV of either dialect back as rows by header (the BOM and the delimiter sniffed from
    the header line): what the tests and an import read."""
    text = text.removeprefix(BOM)
    first = text.split("\n", 1)[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    return list(csv.DictReader(io.StringIO(text), delimiter=delimiter))

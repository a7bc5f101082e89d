"""`atelier hub export usage|review`: usage statistics and the yearly review for funders."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from hub.cli.support import fail, load_settings, refusals
from hub.core.files import private_file

export_app = typer.Typer(
    no_args_is_help=True, help="Usage statistics (CSV, XLSX, JSON) and the yearly review."
)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="hub TOML file (or ATELIER_CONFIG)")
]
OpeningOpt = Annotated[
    str,
    typer.Option(
        "--opening-hours",
        help="the lab's weekly opening hours, for utilisation: "
        "'tue-fri 14:00-19:00; sat 10:00-18:00'",
    ),
]

CsvDialectOpt = Annotated[
    str | None,
    typer.Option(
        "--csv-dialect",
        help="CSV: standard, or excel-fr (';', UTF-8 with BOM, decimal comma, day-first "
        "dates); default: excel-fr when the lab's locale is French",
    ),
]


def _database(config: Path | None) -> tuple[Any, Any, str]:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from hub.core.db import make_engine, migrate

    settings = load_settings(config)
    try:
        tz = ZoneInfo(settings.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise fail(
            f"timezone: {settings.timezone!r} is not a time zone; use a name like Europe/Paris"
        ) from None
    migrate(settings.database_url)
    return make_engine(settings.database_url), tz, settings.site


@export_app.command("usage")
def usage(
    start: Annotated[str, typer.Option("--from", help="first day, YYYY-MM-DD (lab time)")],
    end: Annotated[str, typer.Option("--to", help="the day after the last, YYYY-MM-DD")],
    fmt: Annotated[str, typer.Option("--format", help="csv, xlsx or json")] = "json",
    out: Annotated[
        Path | None, typer.Option("--out", help="file to write (csv and json: stdout if none)")
    ] = None,
    period: Annotated[str, typer.Option(help="by_period groups: day, week or month")] = "month",
    opening_hours: OpeningOpt = "tue-sat 14:00-19:00",
    under_used: Annotated[
        float, typer.Option(help="a machine busy less than this share of opening hours")
    ] = 0.05,
    detail: Annotated[
        bool, typer.Option(help="one row per session (CSV), or a sessions list/sheet too")
    ] = False,
    csv_dialect: CsvDialectOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Usage by machine, machine type, public, period and hour of week; utilisation."""
    from hub.reports.inputs import parse_day
    from hub.services import statistics

    with refusals():
        query = statistics.usage_query(
            start=parse_day(start, "from"),
            end=parse_day(end, "to"),
            period=period,
            opening_spec=opening_hours,
            under_used_threshold=under_used,
            fmt=fmt,
        )
    if fmt == "xlsx" and out is None:
        raise fail("--out: an XLSX file needs a name, e.g. --out usage.xlsx")
    engine, tz, _site = _database(config)
    try:
        if fmt == "xlsx":
            assert out is not None
            statistics.write_usage_xlsx(
                engine, private_file(out), query=query, tz=tz, detail=detail
            )
        else:
            from sqlmodel import Session

            from hub.services import lab

            with refusals(), Session(engine) as session:
                dialect = lab.csv_dialect(
                    session, csv_dialect, default_locale=load_settings(config).notify_language
                )
            chunks = statistics.usage_text(
                engine, query=query, tz=tz, fmt=fmt, detail=detail, dialect=dialect
            )
            if out is None:
                for chunk in chunks:
                    sys.stdout.write(chunk)
                sys.stdout.flush()
            else:
                with private_file(out).open("w", encoding="utf-8", newline="") as handle:
                    for chunk in chunks:
                        handle.write(chunk)
    finally:
        engine.dispose()
    if out is not None:
        typer.echo(f"usage from {query.start} to {query.end} (excluded) written to {out}", err=True)


@export_app.command("review")
def review(
    year: Annotated[int, typer.Option(help="the calendar year, e.g. 2026")],
    out: Annotated[Path, typer.Option("--out", help="file to write")],
    fmt: Annotated[str, typer.Option("--format", help="pdf or xlsx")] = "pdf",
    opening_hours: OpeningOpt = "tue-sat 14:00-19:00",
    config: ConfigOpt = None,
) -> None:
    """The yearly review for funders: members by pseudonymous reference only."""
    from hub.reports.inputs import REVIEW_FORMATS, check_choice, check_year, parse_opening_hours
    from hub.services import statistics

    # Checked before the database is opened: a mistake costs no migration and no file.
    with refusals():
        check_choice(fmt, REVIEW_FORMATS, "format")
        check_year(year)
        parse_opening_hours(opening_hours)
    engine, tz, site = _database(config)
    try:
        with refusals():
            result = statistics.yearly_review(
                engine,
                year=year,
                tz=tz,
                site=site,
                opening_spec=opening_hours,
                fmt=fmt,
                co2e_kg_per_kwh=load_settings(config).energy_co2e_kg_per_kwh,
            )
    finally:
        engine.dispose()
    statistics.write_review(result, fmt=fmt, target=private_file(out))  # owner-only (0600)
    if not result.maintenance.available:
        typer.echo(f"note: no maintenance section ({result.maintenance.note})", err=True)
    typer.echo(f"yearly review {year} written to {out}", err=True)

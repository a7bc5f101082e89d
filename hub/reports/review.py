"""The yearly review for funders, over the local calendar year: the usage figures, trainings
delivered, maintenance and downtime, written as PDF (a few pages) or XLSX (with the members
by pseudonymous reference); members never appear by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import IO, Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from hub.domain.energy import FRENCH_GRID_CO2E_KG_PER_KWH, FRENCH_GRID_CO2E_SOURCE, co2e_kg
from hub.models import Machine
from hub.reports.inputs import OPENING_HOURS_DEFAULT, check_year
from hub.reports.usage import UsageReport, trainings, usage_report, utc_day
from hub.services.energy import monthly_energy


@dataclass
class MaintenanceSection:
    available: bool
    note: str
    by_machine: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class MaterialEnergySection:
    """Material used by type and public (issue 21), and energy per machine type with an
    estimated CO2e: the factor and its source are printed beside it."""

    material: list[tuple[str, str, str, float]]  # type, member category, unit, quantity
    energy: list[tuple[str, float, float]]  # machine type, kWh, kg CO2e
    co2e_kg_per_kwh: float
    co2e_source: str


@dataclass
class Review:
    year: int
    site: str
    usage: UsageReport
    trainings_by_type: dict[str, int]
    maintenance: MaintenanceSection
    material_energy: MaterialEnergySection | None = None
    # hub.domain.bookings.BookingFigures of the year's members' bookings (None: none kept).
    bookings: Any = None

    @property
    def members(self) -> dict[str, dict[str, Any]]:
        """Per member reference (pseudonymous), their public and use."""
        return self.usage.by_member


def yearly_review(
    engine: Engine,
    year: int,
    *,
    tz: ZoneInfo,
    site: str = "lab",
    opening_spec: str = OPENING_HOURS_DEFAULT,
    now: datetime | None = None,
    co2e_kg_per_kwh: float = FRENCH_GRID_CO2E_KG_PER_KWH,
) -> Review:
    """What funders ask for, over the local calendar year; members appear by reference only."""
    check_year(year)
    start, end = date(year, 1, 1), date(year + 1, 1, 1)
    usage = usage_report(engine, start=start, end=end, tz=tz, opening_spec=opening_spec)
    by_type: dict[str, int] = {}
    for training in trainings(engine, tz):
        if start <= training.granted_on < end:
            by_type[training.machine_type] = by_type.get(training.machine_type, 0) + 1
    return Review(
        year=year,
        site=site,
        usage=usage,
        trainings_by_type=dict(sorted(by_type.items())),
        maintenance=_maintenance(
            engine, utc_day(start, tz), utc_day(end, tz), now or datetime.now(UTC)
        ),
        material_energy=_material_energy(engine, start, end, tz, co2e_kg_per_kwh),
        bookings=_bookings(engine, utc_day(start, tz), utc_day(end, tz), tz),
    )


def _material_energy(
    engine: Engine, start: date, end: date, tz: ZoneInfo, factor: float
) -> MaterialEnergySection:
    from sqlmodel import Session

    from hub.services.materials import material_by_type_and_public

    with Session(engine) as session:
        material = material_by_type_and_public(session, first=start, nxt=end, tz=tz)
        kwh: dict[str, float] = {}
        for total in monthly_energy(session, first=start, nxt=end, tz=tz):
            kwh[total.machine_type] = kwh.get(total.machine_type, 0.0) + total.kwh
    source = (
        FRENCH_GRID_CO2E_SOURCE
        if factor == FRENCH_GRID_CO2E_KG_PER_KWH
        else "the lab's own factor (energy_co2e_kg_per_kwh)"
    )
    return MaterialEnergySection(
        material=material,
        energy=[
            (mtype, round(k, 3), round(co2e_kg(k, factor), 2)) for mtype, k in sorted(kwh.items())
        ],
        co2e_kg_per_kwh=factor,
        co2e_source=source,
    )


def _bookings(engine: Engine, t0: datetime, t1: datetime, tz: ZoneInfo) -> Any:
    """Booked against used hours, no-shows and peak demand (hub/domain/bookings.py)."""
    from sqlmodel import Session

    from hub.services.bookings import figures

    if not sa.inspect(engine).has_table("booking"):
        return None
    with Session(engine) as session:
        return figures(session, since=t0, until=t1, tz=tz)


def _maintenance(engine: Engine, t0: datetime, t1: datetime, now: datetime) -> MaintenanceSection:
    """Sign-offs, incidents and downtime per machine, from the maintenance tables if present."""
    try:
        from hub.models import Downtime, Incident, MaintenanceSignOff
    except ImportError:
        return MaintenanceSection(False, "maintenance records are not kept by this hub version")
    tables = [Downtime.__table__, Incident.__table__, MaintenanceSignOff.__table__]  # type: ignore[attr-defined]
    inspector = sa.inspect(engine)
    if not all(inspector.has_table(t.name) for t in tables):
        return MaintenanceSection(
            False, "the maintenance tables are missing: run atelier hub migrate"
        )
    down, incident, sign_off = tables
    d, i, s = down.c, incident.c, sign_off.c
    m = Machine.__table__.c  # type: ignore[attr-defined]
    out: dict[str, dict[str, Any]] = {}

    def row(code: str) -> dict[str, Any]:
        return out.setdefault(code, {"sign_offs": 0, "incidents": 0, "downtime_hours": 0.0})

    with engine.connect() as conn:
        for code, count in conn.execute(
            sa.select(m.code, sa.func.count())
            .join(sign_off, s.machine_id == m.id)
            .where(s.signed_at >= t0, s.signed_at < t1)
            .group_by(m.code)
        ):
            row(code)["sign_offs"] = int(count)
        for code, count in conn.execute(
            sa.select(m.code, sa.func.count())
            .join(incident, i.machine_id == m.id)
            .where(i.opened_at >= t0, i.opened_at < t1)
            .group_by(m.code)
        ):
            row(code)["incidents"] = int(count)
        # Downtime is cut to the year, and one still open counts up to now.
        for code, began, ended in conn.execute(
            sa.select(m.code, d.started_at, d.ended_at)
            .join(down, d.machine_id == m.id)
            .where(d.started_at < t1, sa.or_(d.ended_at.is_(None), d.ended_at > t0))
        ):
            stop = min(ended or now, t1)
            seconds = (stop - max(began, t0)).total_seconds()
            if seconds > 0:
                row(code)["downtime_hours"] += seconds / 3600
    for figures in out.values():
        figures["downtime_hours"] = round(figures["downtime_hours"], 4)
    return MaintenanceSection(True, "", dict(sorted(out.items())))


def review_tables(review: Review) -> list[tuple[str, list[str], list[list[Any]]]]:
    usage = review.usage
    summary: list[list[Any]] = [
        ["year", review.year],
        ["site", review.site],
        ["sessions", usage.totals["sessions"]],
        ["session hours", usage.totals["session_hours"]],
        ["machine busy hours", usage.totals["machine_busy_hours"]],
        ["members who used a machine", usage.totals["unique_members"]],
        ["trainings delivered", usage.totals["trainings_delivered"]],
        ["members trained for the first time", usage.totals["new_members_trained"]],
        ["supervised sessions", usage.totals["supervised_sessions"]],
        ["supervised hours", usage.totals["supervised_hours"]],
        ["print and cut jobs", usage.totals["jobs"]],
        ["opening hours", usage.totals["opening_hours"]],
        ["utilisation (busy / opening hours, all machines)", usage.totals["utilisation"]],
    ]
    machine_cols = [
        "machine_type",
        "sessions",
        "session_hours",
        "machine_busy_hours",
        "members",
        "jobs",
        "utilisation",
    ]
    public_cols = ["sessions", "session_hours", "busy_hours", "members"]
    maintenance_rows = (
        [
            [k, v["sign_offs"], v["incidents"], v["downtime_hours"]]
            for k, v in review.maintenance.by_machine.items()
        ]
        if review.maintenance.available
        else [[f"not available: {review.maintenance.note}", "", "", ""]]
    )
    found = review.bookings
    booking_rows: list[list[Any]] = (
        [
            [code, hours, found.used_hours.get(code, 0.0)]
            for code, hours in found.booked_hours.items()
        ]
        if found is not None
        else []
    )
    if found is not None:
        summary += [
            ["bookings", found.bookings],
            ["bookings ending in a no-show", found.no_shows],
            ["no-show rate (of bookings not cancelled)", found.no_show_rate],
            ["bookings cancelled", found.cancelled],
            [
                "busiest booked hours (hour of week from Monday 00:00: hours)",
                ", ".join(f"{h}: {v}" for h, v in found.peak),
            ],
        ]
    return [
        ("summary", ["figure", "value"], summary),
        (
            "by machine",
            ["machine", *(_label(c) for c in machine_cols)],
            [[k, *(v[c] for c in machine_cols)] for k, v in usage.by_machine.items()],
        ),
        (
            "by public",
            ["member category", *(_label(c) for c in public_cols)],
            [[k, *(v[c] for c in public_cols)] for k, v in usage.by_category.items()],
        ),
        (
            "trainings",
            ["machine type", "trainings delivered"],
            [[k, v] for k, v in review.trainings_by_type.items()],
        ),
        (
            "supervised",
            ["figure", "value"],
            [[_label(k), v] for k, v in usage.supervised.items() if k != "members"],
        ),
        (
            "maintenance",
            ["machine", "tasks signed off", "incidents", "downtime hours"],
            maintenance_rows,
        ),
        *_material_energy_tables(review.material_energy),
        ("bookings", ["machine", "booked hours", "used hours"], booking_rows),
        (
            "members",
            ["member (pseudonymous reference)", "category", *(_label(c) for c in public_cols[:3])],
            [
                [ref, v["category"], *(v[c] for c in public_cols[:3])]
                for ref, v in review.members.items()
            ],
        ),
    ]


def _material_energy_tables(
    section: MaterialEnergySection | None,
) -> list[tuple[str, list[str], list[list[Any]]]]:
    if section is None:
        return []
    energy_rows: list[list[Any]] = [[t, k, c] for t, k, c in section.energy]
    energy_rows.append(
        [f"CO2e at {section.co2e_kg_per_kwh:g} kg/kWh: {section.co2e_source}", "", ""]
    )
    return [
        (
            "material",
            ["material type", "member category", "unit", "quantity"],
            [list(row) for row in section.material] or [["none recorded", "", "", ""]],
        ),
        ("energy", ["machine type", "kWh", "kg CO2e (estimate)"], energy_rows),
    ]


def _label(key: str) -> str:
    return {"machine_type": "type"}.get(key, key.replace("_", " "))


# How each sheet's columns read in a spreadsheet: a header people understand, a number format
# (thousands separators, hours to a tenth, percentages) and a width that fits them.
_HEADERS = {
    "figure": "Figure",
    "value": "Value",
    "machine": "Machine",
    "type": "Machine type",
    "machine type": "Machine type",
    "sessions": "Sessions",
    "session hours": "Session hours",
    "machine busy hours": "Busy hours",
    "busy hours": "Busy hours",
    "members": "Members",
    "jobs": "Print and cut jobs",
    "utilisation": "Utilisation",
    "member category": "Public (member category)",
    "trainings delivered": "Trainings delivered",
    "tasks signed off": "Tasks signed off",
    "incidents": "Incidents",
    "downtime hours": "Downtime hours",
    "member (pseudonymous reference)": "Member (pseudonymous reference)",
    "category": "Public (member category)",
}
_PERCENT, _HOURS, _WHOLE = "0.0%", "#,##0.0", "#,##0"
# Sheets of (figure, value) rows: a value's format follows its row's figure, not the column.
_BY_ROW = ("summary", "supervised")


def _format_of(label: str, value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or label == "year":
        return None  # a year is written 2026, not 2,026
    if "utilisation" in label.lower():
        return _PERCENT
    if "hours" in label.lower():
        return _HOURS
    return _WHOLE if isinstance(value, int) else _HOURS


def write_review_xlsx(review: Review, target: Path | IO[bytes]) -> None:
    """One sheet per table: plain-language headers in bold and frozen, numbers formatted
    (thousands, hours to a tenth, percentages), columns wide enough for what they hold."""
    from openpyxl import Workbook
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    book = Workbook()
    book.remove(book.active)
    for name, header, rows in review_tables(review):
        sheet = book.create_sheet(name[:31])
        shown = [_HEADERS.get(h, h[:1].upper() + h[1:]) for h in header]
        sheet.append(shown)
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        sheet.freeze_panes = "A2"
        widths = [len(h) for h in shown]
        for row in rows:
            sheet.append(row)
            line = sheet.max_row
            for i, value in enumerate(row):
                widths[i] = max(widths[i], min(60, len(str(value))))
                label = str(row[0]) if name in _BY_ROW else header[i]
                fmt = _format_of(label, value)
                if fmt:
                    sheet.cell(row=line, column=i + 1).number_format = fmt
        for i, width in enumerate(widths, start=1):
            sheet.column_dimensions[get_column_letter(i)].width = width + 4
    book.save(target)


def _pdf_text(text: Any) -> str:
    # The PDF's built-in fonts know Windows-1252 only; anything else becomes '?'.
    return str(text).encode("cp1252", "replace").decode("cp1252")


def write_review_pdf(review: Review, target: Path | IO[bytes]) -> None:
    """The review on a few A4 pages; the member list stays in the XLSX (it is long)."""
    from fpdf import FPDF

    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.core_fonts_encoding = "windows-1252"
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.set_creator("Atelier")
    pdf.set_title(f"Yearly review {review.year}")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, _pdf_text(f"Yearly review {review.year}"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", "", 9)
    usage = review.usage
    pdf.multi_cell(
        0,
        5,
        _pdf_text(
            f"Site {review.site}. Sessions started from {usage.start} to {usage.end} "
            f"(excluded), {usage.timezone} time. Opening hours: {usage.opening_spec}. "
            "Members appear only as counts and pseudonymous references, never by name."
        ),
        new_x="LMARGIN",
        new_y="NEXT",
    )
    titles = {
        "summary": "Summary",
        "by machine": "Activity per machine",
        "by public": "Activity per public (member category)",
        "trainings": "Trainings delivered per machine type",
        "supervised": "Supervised sessions",
        "maintenance": "Maintenance and downtime",
    }
    for name, header, rows in review_tables(review):
        if name not in titles:
            continue
        pdf.ln(4)
        pdf.set_font("Helvetica", "B", 12)
        pdf.cell(0, 8, _pdf_text(titles[name]), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 8)
        if not rows:
            pdf.cell(0, 6, "none", new_x="LMARGIN", new_y="NEXT")
            continue
        with pdf.table(text_align="LEFT", line_height=5) as table:
            table.row([_pdf_text(h) for h in header])
            for values in rows:
                table.row([_pdf_text(v) for v in values])
    pdf.ln(4)
    pdf.set_font("Helvetica", "", 9)
    pdf.multi_cell(
        0,
        5,
        _pdf_text(
            f"{usage.totals['unique_members']} members used a machine this year; the list, "
            "by pseudonymous reference, is in the XLSX version of this review."
        ),
    )
    data = pdf.output()
    if isinstance(target, Path):
        target.write_bytes(data)
    else:
        target.write(data)


def write_review(review: Review, fmt: str, target: Path | IO[bytes]) -> None:
    writer: Callable[[Review, Path | IO[bytes]], None] = (
        write_review_pdf if fmt == "pdf" else write_review_xlsx
    )
    writer(review, target)

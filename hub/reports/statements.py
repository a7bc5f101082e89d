"""Statement and credit-note documents: a month's CSV and PDF files."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlmodel import Session

from hub.core.files import private_file
from hub.models import CREDIT_NOTE, Statement
from hub.services.billing.books import euros
from hub.services.billing.close import lines_of, month_statements

# --- exports ------------------------------------------------------------------------------
CSV_HEADER = [
    "number",
    "kind",
    "month",
    "payer_ref",
    "payer_name",
    "position",
    "session_id",
    "member_ref",
    "machine",
    "started_at",
    "billed_minutes",
    "amount_cents",
    "amount_eur",
    "explanation",
]


def write_csv(session: Session, statements: Sequence[Statement], path: Path, tz: ZoneInfo) -> Path:
    """One row per line, written as read (a month of many sessions stays small in memory)."""
    with private_file(path).open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(CSV_HEADER)
        for statement in statements:
            for line in lines_of(session, statement):
                writer.writerow(
                    [
                        statement.number,
                        statement.kind,
                        statement.month,
                        statement.payer_ref,
                        statement.payer_name,
                        line.position,
                        line.session_id,
                        line.member_ref,
                        line.machine,
                        line.started_at.astimezone(tz).isoformat(timespec="minutes"),
                        line.billed_minutes,
                        line.cents,
                        euros(line.cents),
                        line.explanation,
                    ]
                )
    return path


def _pdf_text(text: str) -> str:
    # The PDF's built-in fonts know Windows-1252 only (which has the euro sign); other
    # characters of a name become '?' rather than failing the whole month.
    return text.encode("cp1252", "replace").decode("cp1252")


def write_pdf(
    session: Session, statements: Sequence[Statement], path: Path, tz: ZoneInfo, lab: str
) -> Path:
    """Every statement (or credit note) on pages of its own, in one file."""
    from fpdf import FPDF

    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.core_fonts_encoding = "windows-1252"
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.set_creator("Atelier")
    widths = (22, 24, 22, 14, 22, 86)
    for statement in statements:
        pdf.add_page()
        pdf.set_font("Helvetica", "B", 14)
        title = "Credit note" if statement.kind == CREDIT_NOTE else "Statement"
        pdf.cell(0, 8, _pdf_text(f"{title} {statement.number}"), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 10)
        for text in (
            f"{lab}, month {statement.month}",
            f"Payer: {statement.payer_name} ({statement.payer_ref})",
            *([f"Reason: {statement.reason}"] if statement.reason else []),
        ):
            pdf.cell(0, 6, _pdf_text(text), new_x="LMARGIN", new_y="NEXT")
        pdf.ln(3)
        pdf.set_font("Helvetica", "B", 9)
        for width, head in zip(
            widths, ("Session", "Started", "Member", "Min", "Amount (€)", "Details"), strict=True
        ):
            pdf.cell(width, 6, _pdf_text(head), border="B")
        pdf.ln()
        pdf.set_font("Helvetica", "", 8)
        for line in lines_of(session, statement):
            cells = (
                line.session_id[-10:],
                line.started_at.astimezone(tz).strftime("%d/%m %H:%M"),
                line.member_ref,
                str(line.billed_minutes),
                euros(line.cents),
            )
            top = pdf.get_y()
            for width, text in zip(widths[:-1], cells, strict=True):
                pdf.cell(width, 5, _pdf_text(text))
            pdf.multi_cell(widths[-1], 5, _pdf_text(line.explanation), new_x="LMARGIN")
            pdf.set_y(max(pdf.get_y(), top + 5))
        pdf.ln(3)
        pdf.set_font("Helvetica", "B", 10)
        for label, cents in (
            ("Total", statement.total_cents),
            ("From prepaid balance", statement.prepaid_cents),
            ("To pay", statement.due_cents),
        ):
            pdf.cell(60, 6, _pdf_text(label))
            pdf.cell(
                30, 6, _pdf_text(f"{euros(cents)} €"), align="R", new_x="LMARGIN", new_y="NEXT"
            )
    if not statements:
        pdf.add_page()
        pdf.set_font("Helvetica", "", 11)
        pdf.cell(0, 8, "Nothing to bill this month.")
    pdf.output(str(private_file(path)))
    return path


def export_month(
    session: Session, month: str, out: Path, tz: ZoneInfo, lab: str
) -> dict[str, Path]:
    """The month's statements, and its credit notes if any, as CSV and PDF files in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    statements = month_statements(session, month)
    files["csv"] = write_csv(session, statements, out / f"statements-{month}.csv", tz)
    files["pdf"] = write_pdf(session, statements, out / f"statements-{month}.pdf", tz, lab)
    notes = month_statements(session, month, CREDIT_NOTE)
    if notes:
        files["credit_csv"] = write_csv(session, notes, out / f"credit-notes-{month}.csv", tz)
        files["credit_pdf"] = write_pdf(session, notes, out / f"credit-notes-{month}.pdf", tz, lab)
    return files

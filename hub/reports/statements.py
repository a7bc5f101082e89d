"""Statement and credit-note documents: a month's CSV and PDF files."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import Session, col

from hub.core.errors import N_
from hub.core.files import private_file
from hub.core.translations import translator
from hub.models import CREDIT_NOTE, LabIdentityPublic, Member, Statement
from hub.reports.csv_files import STANDARD, CsvDialect, write_csv_file
from hub.services.billing.books import euros
from hub.services.billing.close import lines_of, month_statements
from hub.services.billing.fees import fee_explanation_in

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


def write_csv(
    session: Session,
    statements: Sequence[Statement],
    path: Path,
    tz: ZoneInfo,
    dialect: CsvDialect = STANDARD,
) -> Path:
    """One row per line, written as read (a month of many sessions stays small in memory)."""
    rows = (
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
            line.started_at,
            line.billed_minutes,
            line.cents,
            Decimal(line.cents).scaleb(-2),
            line.explanation,
        ]
        for statement in statements
        for line in lines_of(session, statement)
    )
    return write_csv_file(path, CSV_HEADER, rows, dialect=dialect, tz=tz)


FONT_DIR = Path(__file__).resolve().parent / "fonts"
FONT = "DejaVuSans"  # shipped with its licence in hub/reports/fonts: every name prints as written

# What the documents say, marked for the catalogue (French in hub/web/locale).
WORDS = {
    "statement": N_("Statement"),
    "credit_note": N_("Credit note"),
    "issued": N_("Issued on %(day)s"),
    "month": N_("Usage of %(month)s"),
    "payer": N_("Billed to: %(name)s (%(ref)s)"),
    "credits": N_("Credits statement %(number)s"),
    "reason": N_("Reason: %(reason)s"),
    "session": N_("Session"),
    "started": N_("Started"),
    "member": N_("Member"),
    "minutes": N_("Min"),
    "amount": N_("Amount (€)"),
    "details": N_("Details"),
    "total": N_("Total"),
    "prepaid": N_("From prepaid balance"),
    "due": N_("To pay"),
    "nothing": N_("Nothing to bill this month."),
    "siret": N_("SIRET %(siret)s"),
    "rna": N_("RNA %(rna)s"),
}


def _unicode_pdf() -> Any:
    from fpdf import FPDF

    pdf = FPDF(orientation="P", unit="mm", format="A4")
    pdf.add_font(FONT, "", str(FONT_DIR / "DejaVuSans.ttf"))
    pdf.add_font(FONT, "B", str(FONT_DIR / "DejaVuSans-Bold.ttf"))
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.set_creator("Atelier")
    return pdf


def _languages(session: Session, statements: Sequence[Statement], default: str) -> dict[str, str]:
    """Each payer's language: their own choice, else the lab's."""
    refs = {s.payer_ref for s in statements}
    chosen = (
        dict(
            session.execute(
                sa.select(col(Member.ref), col(Member.language)).where(col(Member.ref).in_(refs))
            )
            .tuples()
            .all()
        )
        if refs
        else {}
    )
    return {ref: str(chosen.get(ref) or default) for ref in refs}


def _head(pdf: Any, lab: LabIdentityPublic, say: Callable[[str], str]) -> None:
    """The lab's legal identity, on top of every page of a statement."""
    pdf.set_font(FONT, "B", 11)
    pdf.cell(0, 6, lab.name, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(FONT, "", 9)
    for text in [
        *[line for line in lab.address.splitlines() if line.strip()],
        *([say("siret") % {"siret": lab.siret}] if lab.siret else []),
        *([say("rna") % {"rna": lab.rna}] if lab.rna else []),
    ]:
        pdf.cell(0, 5, text, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)


def write_pdf(
    session: Session,
    statements: Sequence[Statement],
    path: Path,
    tz: ZoneInfo,
    lab: LabIdentityPublic,
) -> Path:
    """Every statement (or credit note) on pages of its own, in one file, each in its payer's
    language, with the lab's legal identity and VAT mention."""
    pdf = _unicode_pdf()
    widths = (22, 24, 22, 14, 22, 86)
    language = _languages(session, statements, lab.locale)
    credited = _credited_numbers(session, statements)
    for statement in statements:
        words = translator(language[statement.payer_ref])

        def say(key: str, words: Any = words) -> str:
            return str(words.gettext(WORDS[key]))

        pdf.add_page()
        _head(pdf, lab, say)
        pdf.set_font(FONT, "B", 14)
        title = say("credit_note") if statement.kind == CREDIT_NOTE else say("statement")
        pdf.cell(0, 8, f"{title} {statement.number}", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font(FONT, "", 10)
        issued = statement.created_at.astimezone(tz).strftime("%d/%m/%Y")
        for text in (
            say("issued") % {"day": issued},
            say("month") % {"month": statement.month},
            say("payer") % {"name": statement.payer_name, "ref": statement.payer_ref},
            *(
                [say("credits") % {"number": credited[statement.credits_id]}]
                if statement.credits_id in credited
                else []
            ),
            *([say("reason") % {"reason": statement.reason}] if statement.reason else []),
        ):
            pdf.multi_cell(0, 6, text, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(3)
        pdf.set_font(FONT, "B", 8)
        for width, head in zip(
            widths,
            (
                say("session"),
                say("started"),
                say("member"),
                say("minutes"),
                say("amount"),
                say("details"),
            ),
            strict=True,
        ):
            pdf.cell(width, 6, head, border="B")
        pdf.ln()
        pdf.set_font(FONT, "", 7)
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
                pdf.cell(width, 5, text)
            pdf.multi_cell(
                widths[-1],
                5,
                fee_explanation_in(line.session_id, line.explanation, words.gettext),
                new_x="LMARGIN",
            )
            pdf.set_y(max(pdf.get_y(), top + 5))
        pdf.ln(3)
        pdf.set_font(FONT, "B", 10)
        for label, cents in (
            (say("total"), statement.total_cents),
            (say("prepaid"), statement.prepaid_cents),
            (say("due"), statement.due_cents),
        ):
            pdf.cell(60, 6, label)
            pdf.cell(30, 6, f"{euros(cents)} €", align="R", new_x="LMARGIN", new_y="NEXT")
        if lab.vat_mention:
            pdf.ln(4)
            pdf.set_font(FONT, "", 9)
            pdf.multi_cell(0, 5, lab.vat_mention, new_x="LMARGIN", new_y="NEXT")
    if not statements:
        pdf.add_page()
        _head(pdf, lab, lambda key: str(translator(lab.locale).gettext(WORDS[key])))
        pdf.set_font(FONT, "", 11)
        pdf.cell(0, 8, str(translator(lab.locale).gettext(WORDS["nothing"])))
    pdf.output(str(private_file(path)))
    return path


def _credited_numbers(session: Session, statements: Sequence[Statement]) -> dict[int, str]:
    """The number of each statement a credit note among `statements` gives back from."""
    ids = {s.credits_id for s in statements if s.credits_id is not None}
    if not ids:
        return {}
    return dict(
        session.execute(
            sa.select(col(Statement.id), col(Statement.number)).where(col(Statement.id).in_(ids))
        )
        .tuples()
        .all()
    )


def export_month(
    session: Session,
    month: str,
    out: Path,
    tz: ZoneInfo,
    lab: LabIdentityPublic,
    dialect: CsvDialect = STANDARD,
) -> dict[str, Path]:
    """The month's statements, and its credit notes if any, as CSV and PDF files in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    statements = month_statements(session, month)
    files["csv"] = write_csv(session, statements, out / f"statements-{month}.csv", tz, dialect)
    files["pdf"] = write_pdf(session, statements, out / f"statements-{month}.pdf", tz, lab)
    notes = month_statements(session, month, CREDIT_NOTE)
    if notes:
        files["credit_csv"] = write_csv(
            session, notes, out / f"credit-notes-{month}.csv", tz, dialect
        )
        files["credit_pdf"] = write_pdf(session, notes, out / f"credit-notes-{month}.pdf", tz, lab)
    return files

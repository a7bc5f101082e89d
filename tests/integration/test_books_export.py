"""The month's books for Paheko and Dolibarr, on SQLite and PostgreSQL: re-read with their
documented columns, every entry balanced, and the totals those of the month's statements,
credit notes and top-ups."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session, select
from typer.testing import CliRunner

from atelier_cli import app
from hub.core.errors import MESSAGES, HubError
from hub.models import CREDIT_NOTE, BalanceMovement, Member
from hub.reports.books import DOLIBARR_HEADER, PAHEKO_HEADER
from hub.services.accounting import ACCOUNT_FIELDS, accounts, export_books, set_accounts
from hub.services.billing import close_month, credit, month_statements, top_up
from tests.integration.test_billing_store import NOW, PARIS, cli_env  # noqa: F401
from tests.integration.test_statement_documents import books  # noqa: F401


def october(session: Session) -> None:
    """A top-up received in October, the month closed, one of its sessions credited."""
    alice = session.exec(select(Member).where(Member.ref == "alice")).one()
    top_up(session, alice, 2000, actor="t", note="HelloAsso 201")
    movement = session.exec(select(BalanceMovement)).one()
    movement.at = datetime(2026, 10, 2, 9, tzinfo=UTC)
    session.add(movement)
    session.commit()
    close_month(session, "2026-10", tz=PARIS, now=NOW, actor="t")
    credit(session, "2026-000001", ["S01"], "dirty lens", actor="t", tz=PARIS, now=NOW)
    session.commit()


def cents(text: str) -> int:
    return int(Decimal(text.replace(",", ".")) * 100)


def test_paheko_and_dolibarr_files_add_up_to_the_month(books, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    with Session(books) as session:
        october(session)
        set_accounts(session, {"sales": "7061", "bank": "5121"}, actor="t")
        session.commit()
        statements = month_statements(session, "2026-10")
        notes = month_statements(session, "2026-10", CREDIT_NOTE)
        sales = sum(s.total_cents for s in statements) + sum(n.total_cents for n in notes)
        drawn = sum(s.prepaid_cents for s in statements) + sum(n.prepaid_cents for n in notes)
        paheko, _ = export_books(session, "2026-10", tmp_path / "p.csv", fmt="paheko", tz=PARIS)
        dolibarr, _ = export_books(session, "2026-10", tmp_path / "d.csv", fmt="dolibarr", tz=PARIS)
    assert sales == 2650 + 18165 + 483 - 1100

    text = paheko.read_bytes().decode("utf-8")
    assert not text.startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(text), delimiter=";"))
    assert list(rows[0]) == PAHEKO_HEADER
    assert all(r["Numéro d'écriture"] == "" for r in rows)  # new entries, never an update
    for r in rows:
        datetime.strptime(r["Date"], "%d/%m/%Y")
        assert r["Compte de débit"] != r["Compte de crédit"] and cents(r["Montant"]) > 0
        assert "," in r["Montant"]

    def balance(account: str) -> int:
        return sum(cents(r["Montant"]) for r in rows if r["Compte de crédit"] == account) - sum(
            cents(r["Montant"]) for r in rows if r["Compte de débit"] == account
        )

    assert balance("7061") == sales
    assert balance("419") == 2000 - drawn
    assert balance("5121") == -2000
    assert {r["Numéro pièce comptable"] for r in rows} >= {"2026-000001", "2026-000004"}
    topped = next(r for r in rows if r["Compte de débit"] == "5121")
    assert topped["Date"] == "02/10/2026" and topped["Montant"] == "20,00"

    lines = list(csv.DictReader(io.StringIO(dolibarr.read_bytes().decode("utf-8"))))
    assert list(lines[0]) == DOLIBARR_HEADER
    by_entry: dict[str, list[dict[str, str]]] = {}
    for line in lines:
        by_entry.setdefault(line["Num. écriture"], []).append(line)
        date.fromisoformat(line["Date"])
        assert line["Direction"] == ("D" if Decimal(line["Débit"]) else "C")
    assert len(by_entry) == len(rows)
    for pair in by_entry.values():  # every entry balances
        assert sum(Decimal(x["Débit"]) for x in pair) == sum(Decimal(x["Crédit"]) for x in pair)
    credited = sum(
        Decimal(x["Crédit"]) - Decimal(x["Débit"]) for x in lines if x["Compte comptable"] == "7061"
    )
    assert credited * 100 == sales
    assert {x["Journal"] for x in lines} == {"VT", "BQ"}


def test_an_empty_month_writes_only_the_header(books, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    with Session(books) as session:
        path, entries = export_books(session, "2026-07", tmp_path / "e.csv", fmt="paheko", tz=PARIS)
    assert entries == [] and path.read_text(encoding="utf-8").strip() == ";".join(PAHEKO_HEADER)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    changes=st.dictionaries(
        st.sampled_from(ACCOUNT_FIELDS) | st.text(max_size=12),
        st.none() | st.text(max_size=30) | st.from_regex(r"[0-9A-Z]{1,12}", fullmatch=True),
        max_size=4,
    )
)
def test_any_account_is_kept_or_refused_on_its_field(books, changes) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    with Session(books) as session:
        before = accounts(session)
        try:
            kept = set_accounts(session, changes, actor="t")
        except HubError as error:
            assert error.code in MESSAGES and error.field in changes
            session.rollback()
            assert accounts(session) == before
            return
        session.rollback()
    for name, value in changes.items():
        if value is not None:
            assert getattr(kept, name) == value.strip() and value.strip().isalnum()


def test_the_cli_writes_the_books_and_names_a_wrong_format(cli_env: str, tmp_path: Path) -> None:  # noqa: F811
    runner = CliRunner()
    assert runner.invoke(app, ["hub", "billing", "close", "--month", "2026-10"]).exit_code == 0
    out = tmp_path / "books.csv"
    result = runner.invoke(
        app,
        [
            "hub",
            "billing",
            "books",
            "--month",
            "2026-10",
            "--format",
            "dolibarr",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "written to" in result.output and out.exists()
    wrong = runner.invoke(
        app, ["hub", "billing", "books", "--month", "2026-10", "--format", "xls", "--out", str(out)]
    )
    assert wrong.exit_code == 2
    assert "--format: 'xls' is not a books format: use paheko, dolibarr" in wrong.output
    month = runner.invoke(app, ["hub", "billing", "books", "--month", "oct", "--out", str(out)])
    assert month.exit_code == 2 and "--month: 'oct' is not a month" in month.output

"""CSV that opens in a French Excel: every export in the `excel-fr` dialect (';', UTF-8 with
BOM, decimal comma, day-first dates), the default when the lab's locale is French, through
the one writer (hub/reports/csv_files.py); hostile cells round-trip on both databases."""

from __future__ import annotations

import csv
import io
import math
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session
from typer.testing import CliRunner

from atelier_cli import app
from hub.core.errors import InvalidValue
from hub.models import STATEMENT, Statement, StatementLine
from hub.reports.csv_files import (
    BOM,
    EXCEL_FR,
    STANDARD,
    CsvCells,
    csv_chunks,
    dialect_for,
    read_rows,
)
from hub.reports.statements import CSV_HEADER, write_csv
from hub.services.billing import close_month
from hub.services.lab import set_identity
from tests.integration.test_billing_store import NOW, PARIS, cli_env  # noqa: F401
from tests.integration.test_statement_documents import books  # noqa: F401
from tests.integration.test_usage_export import Lab, _n, _triples_from_json, lab  # noqa: F401

runner = CliRunner()


def test_each_value_as_its_dialect_writes_it() -> None:
    fr, std = CsvCells(EXCEL_FR, PARIS), CsvCells(STANDARD, PARIS)
    moment = datetime(2026, 10, 14, 21, 40, tzinfo=UTC)
    assert (fr(moment), std(moment)) == ("14/10/2026 23:40", "2026-10-14T23:40+02:00")
    assert (fr(moment.date()), std(moment.date())) == ("14/10/2026", "2026-10-14")
    assert (fr(Decimal(-4500).scaleb(-2)), std(Decimal(1050).scaleb(-2))) == ("-45,00", "10.50")
    assert (fr(0.25), std(0.25), fr(12), fr(None), fr(True)) == ("0,25", "0.25", 12, "", "true")
    # What Excel would run as a formula is shown as text, only in Excel's dialect.
    assert (fr("=HYPERLINK(1)"), std("=HYPERLINK(1)")) == ("'=HYPERLINK(1)", "=HYPERLINK(1)")
    assert dialect_for(None, locale="fr") is EXCEL_FR
    assert dialect_for(None, locale="en") is STANDARD
    assert dialect_for("standard", locale="fr") is STANDARD
    with pytest.raises(InvalidValue) as refused:
        dialect_for("tsv", locale="fr")
    assert refused.value.field == "csv_dialect"
    assert "'tsv' is not a CSV dialect: use standard, excel-fr" in str(refused.value)


def test_a_month_s_statements_in_excel_fr_add_up_to_the_statements(books, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    with Session(books) as session:
        closing = close_month(session, "2026-10", tz=PARIS, now=NOW, actor="t")
        session.commit()
        path = write_csv(
            session,
            [session.get(Statement, s.id) for s in closing.statements],  # type: ignore[misc]
            tmp_path / "fr.csv",
            PARIS,
            EXCEL_FR,
        )
    raw = path.read_bytes()
    assert raw.startswith(BOM.encode()) and b"\r\n" in raw
    header = raw.decode("utf-8").removeprefix(BOM).split("\r\n", 1)[0]
    assert header == ";".join(CSV_HEADER)
    rows = read_rows(raw.decode("utf-8"))
    s03 = next(r for r in rows if r["session_id"] == "S03")
    assert s03["amount_eur"] == "10,00" and s03["started_at"] == "14/10/2026 23:40"
    assert s03["payer_name"] == "Alice"
    total = sum(Decimal(r["amount_eur"].replace(",", ".")) for r in rows)
    assert total * 100 == sum(s.total_cents for s in closing.statements) == 2650 + 18165 + 483


def test_the_api_follows_the_lab_s_locale_unless_told(lab: Lab, tmp_path: Path) -> None:  # noqa: F811
    from fastapi.testclient import TestClient

    from hub.app import create_app
    from hub.core.settings import get_settings
    from tests.support.api import admin_headers

    settings = get_settings(None, database_url=lab.url, data_dir=tmp_path, timezone="Europe/Paris")
    window = {"from": "2026-01-01", "to": "2027-01-01", "format": "csv"}
    with TestClient(create_app(settings, start_ingest=False)) as client:
        admin = admin_headers(lab.url)
        doc = client.get("/api/v1/stats/usage", params=window | {"format": "json"}, headers=admin)
        english = client.get("/api/v1/stats/usage", params=window, headers=admin)
        assert not english.content.startswith(BOM.encode())
        with Session(lab.engine) as session:
            set_identity(session, {"locale": "fr"}, actor="t")
            session.commit()
        french = client.get("/api/v1/stats/usage", params=window, headers=admin)
        told = client.get(
            "/api/v1/stats/usage", params=window | {"csv_dialect": "standard"}, headers=admin
        )
        detail = client.get(
            "/api/v1/stats/usage", params=window | {"detail": "true"}, headers=admin
        )
        wrong = client.get(
            "/api/v1/stats/usage", params=window | {"csv_dialect": "tsv"}, headers=admin
        )
    assert french.content.startswith(BOM.encode()) and told.content == english.content
    assert wrong.status_code == 422
    rows = read_rows(french.content.decode("utf-8"))
    # The same figures, with a decimal comma.
    triples = {(r["table"], r["key"], r["measure"], _n(r["value"].replace(",", "."))) for r in rows}
    assert triples == _triples_from_json(doc.json())
    assert any("," in r["value"] for r in rows)
    sessions = read_rows(detail.content.decode("utf-8"))
    assert sessions[0]["started_at"] == "06/10/2026 14:30:00"
    assert sessions[0]["session_hours"].count(",") == 1


def test_the_cli_writes_either_dialect_and_names_a_wrong_one(cli_env: str, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["hub", "billing", "close", "--month", "2026-10", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert (out / "statements-2026-10.csv").read_text(encoding="utf-8").startswith("number,kind")
    refused = runner.invoke(
        app, ["hub", "billing", "close", "--month", "2026-10", "--csv-dialect", "tsv"]
    )
    assert refused.exit_code == 2
    assert "--csv-dialect: 'tsv' is not a CSV dialect: use standard, excel-fr" in refused.output
    assert "Traceback" not in refused.output
    result = runner.invoke(
        app,
        ["hub", "billing", "close", "--month", "2026-10", "--out", str(out)]
        + ["--csv-dialect", "excel-fr"],
    )
    assert result.exit_code == 0, result.output
    text = (out / "statements-2026-10.csv").read_text(encoding="utf-8")
    assert text.startswith(BOM + "number;kind")


# --- hostile cells -------------------------------------------------------------------------
cell_text = st.text(max_size=60) | st.sampled_from(
    ["", ";", '"', "a;b\r\nc", "=cmd|'/c calc'!A1", "+1", "-2", "@SUM(A1)", "\t", "\x00"]
)


def _expected(dialect_cells: CsvCells, value: object) -> str:
    return str(dialect_cells(value))


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    names=st.lists(cell_text, min_size=1, max_size=4),
    cents=st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=4),
    started=st.datetimes(
        min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    ),
)
def test_hostile_names_and_amounts_come_back_as_written(  # type: ignore[no-untyped-def]
    books,  # noqa: F811
    tmp_path: Path,
    names: list[str],
    cents: list[int],
    started: datetime,
) -> None:
    """Payer names and explanations with separators, quotes, newlines, NUL or formulas,
    amounts at the 32-bit edges, far dates: stored in the database, written in each dialect,
    read back cell for cell."""
    with Session(books) as session:
        rows: list[Statement] = []
        for i, (name, amount) in enumerate(zip(names, cents * 4, strict=False)):
            statement = Statement(
                number=f"T-{started.timestamp():.0f}-{i}-{abs(hash(name))}",
                month="2026-10",
                kind=STATEMENT,
                payer_ref="alice",
                payer_name=name.replace("\x00", ""),  # PostgreSQL text holds no NUL
                total_cents=amount,
            )
            session.add(statement)
            session.flush()
            session.add(
                StatementLine(
                    statement_id=statement.id,  # type: ignore[arg-type]
                    position=1,
                    session_id="S",
                    member_ref="alice",
                    machine="laser-1",
                    started_at=started,
                    billed_minutes=1,
                    cents=amount,
                    explanation=name.replace("\x00", ""),
                )
            )
            rows.append(statement)
        session.flush()
        for dialect in (STANDARD, EXCEL_FR):
            path = write_csv(session, rows, tmp_path / f"{dialect.name}.csv", PARIS, dialect)
            text = path.read_bytes().decode("utf-8")  # no newline translation
            read = (
                read_rows(text) if dialect is EXCEL_FR else list(csv.DictReader(io.StringIO(text)))
            )
            cells = CsvCells(dialect, PARIS)
            assert len(read) == len(rows)
            for row, statement in zip(read, rows, strict=True):
                assert row["payer_name"] == _expected(cells, statement.payer_name)
                assert row["explanation"] == _expected(cells, statement.payer_name)
                assert int(row["amount_cents"]) == statement.total_cents
                euros = Decimal(row["amount_eur"].replace(",", "."))
                assert euros * 100 == statement.total_cents
                assert row["started_at"] == _expected(cells, started)
        session.rollback()


@given(values=st.lists(st.floats() | st.integers() | cell_text, max_size=8))
def test_any_row_of_figures_survives_the_excel_dialect(values: list[object]) -> None:
    text = "".join(csv_chunks(["v"] * len(values) or ["v"], [values], dialect=EXCEL_FR, tz=PARIS))
    assert text.startswith(BOM)
    read = list(csv.reader(io.StringIO(text.removeprefix(BOM)), delimiter=";"))
    cells = CsvCells(EXCEL_FR, PARIS)
    assert read[1:] == ([[str(cells(v)) for v in values]] if values else [[]])
    for value, shown in zip(values, read[1] if values else [], strict=True):
        if isinstance(value, float) and math.isfinite(value):
            assert float(shown.replace(",", ".")) == value

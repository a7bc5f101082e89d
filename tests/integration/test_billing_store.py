"""Billing through the database: the worked example closed from real session rows, frozen
months, credit notes, exports, prepaid balances reaching the machine, and the CLI."""

from __future__ import annotations

import csv
import io
import re
import threading
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from pypdf import PdfReader
from sqlmodel import Session, func, select
from typer.testing import CliRunner

from atelier_cli import app
from edge.domain.access import decide
from hub.core.db import make_engine, migrate
from hub.core.errors import Conflict, HubError, InvalidValue, NotFound
from hub.demo.seed import seed_demo
from hub.models import (
    BusyPeriod,
    LabIdentityPublic,
    Machine,
    MachineKind,
    MachineSession,
    MachineType,
    Member,
    MemberCategory,
)
from hub.reports.statements import export_month
from hub.services.allowlists import allowlist_body
from hub.services.billing import (
    RATE_FIELDS,
    BillingRate,
    Statement,
    StatementLine,
    account_of,
    balances,
    check_rate,
    close_month,
    credit,
    import_rates,
    lines_of,
    month_statements,
    set_plan,
    top_up,
)
from protocol.allowlist import AllowList
from protocol.envelope import DenyReason
from tests.integration.test_admin_commands import hub_env  # noqa: F401
from tests.integration.test_agent_offline import Hub, hub, started_agent  # noqa: F401
from tests.support.processes import wait_until
from tests.unit.test_billing import EXAMPLE_RATES, EXAMPLE_SESSIONS, example_table

PARIS = ZoneInfo("Europe/Paris")
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
HUGO = "04C3D4E5"  # trained on the laser in the demo data
LAB = LabIdentityPublic(
    name="lab", address="", siret="", rna="", vat_mention="", locale="en", privacy_contact=""
)

runner = CliRunner()


def rates_csv() -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(RATE_FIELDS)
    for r in EXAMPLE_RATES:
        writer.writerow(
            [
                r.machine_type,
                r.category,
                r.effective_from.isoformat(),
                r.cents_per_hour,
                r.basis,
                r.start_fee_cents,
                r.minimum_cents,
                r.rounding_minutes,
                "" if r.daily_cap_cents is None else r.daily_cap_cents,
                r.included_minutes_per_month,
            ]
        )
    return out.getvalue()


def example_lab(session: Session) -> None:
    """The lab of docs/billing.md's worked example, its sessions as the ingest stores them."""
    types = {}
    for code, kind in (("laser", MachineKind.LASER), ("printer", MachineKind.PRINTER)):
        mtype = MachineType(code=code, name=code, kind=kind)
        session.add(mtype)
        session.flush()
        types[code] = mtype.id
        session.add(
            Machine(code=f"{code}-1", name=code, site="lab", machine_type_id=mtype.id, kind=kind)
        )
    payers = {}
    for ref, name in (("ecole-design", "École de design"), ("bois-sarl", "Bois SARL")):
        payer = Member(ref=ref, name=name, email=f"{ref}@example.org", category="company")
        session.add(payer)
        session.flush()
        payers[ref] = payer.id
    for ref, category, payer_ref in (
        ("alice", MemberCategory.INDIVIDUAL, None),
        ("bruno", MemberCategory.STUDENT, "ecole-design"),
        ("chloe", MemberCategory.PROFESSIONAL, "bois-sarl"),
    ):
        session.add(
            Member(
                ref=ref,
                name=ref.title(),
                email=f"{ref}@example.org",
                category=category,
                payer_id=payers.get(payer_ref or ""),
            )
        )
    session.flush()
    assert import_rates(session, rates_csv()) == (len(EXAMPLE_RATES), 0)
    for record in EXAMPLE_SESSIONS:
        row = MachineSession(
            id=record.session_id,
            site="lab",
            machine=record.machine,
            member_ref=record.member_ref,
            started_at=record.started_at.astimezone(UTC),
            ended_at=record.ended_at.astimezone(UTC),
            duration_s=(record.ended_at - record.started_at).total_seconds(),
            busy_s=record.busy_seconds,
            end_reason="handover" if record.duty.value == "trainer" else "badge-out",
        )
        if record.session_id == "S10":
            # This one's busy time is known only from the machine's busy periods.
            row.busy_s = 0
            half = record.busy_seconds / 2
            for i in range(2):
                start = row.started_at + timedelta(hours=i * 6)  # type: ignore[operator]
                session.add(
                    BusyPeriod(
                        site="lab",
                        machine=record.machine,
                        source="laser",
                        session_id="S10",
                        member_ref="chloe",
                        started_at=start,
                        ended_at=start + timedelta(seconds=half),
                        busy_s=half,
                    )
                )
        session.add(row)
    session.commit()


def snapshot(session: Session, month: str) -> list[tuple[object, ...]]:
    return [
        (s.number, s.payer_ref, s.total_cents, s.prepaid_cents, s.due_cents)
        + tuple((ln.session_id, ln.billed_minutes, ln.cents) for ln in lines_of(session, s))
        for s in month_statements(session, month)
    ]


def table_of(session: Session, month: str) -> list[tuple[str, str, str, int, int]]:
    return [
        (s.payer_ref, ln.session_id, ln.member_ref, ln.billed_minutes, ln.cents)
        for s in month_statements(session, month)
        for ln in lines_of(session, s)
    ]


@pytest.fixture
def engine(database_url: str):  # type: ignore[no-untyped-def]
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        example_lab(session)
    yield engine
    engine.dispose()


def test_closing_the_worked_example_from_database_rows(engine) -> None:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        closing = close_month(session, "2026-10", tz=PARIS, now=NOW, actor="test")
        session.commit()
        assert not closing.already_closed
        # The same figures as docs/billing.md, this time from stored sessions and rates.
        assert table_of(session, "2026-10") == example_table()
        totals = {s.payer_ref: s.total_cents for s in month_statements(session, "2026-10")}
        assert totals == {"alice": 2650, "bois-sarl": 18165, "ecole-design": 483}
        assert [s.number for s in closing.statements] == [
            "2026-000001",
            "2026-000002",
            "2026-000003",
        ]
        assert [s.payer_name for s in closing.statements] == [
            "Alice",
            "Bois SARL",
            "École de design",
        ]
        first = snapshot(session, "2026-10")

    with Session(engine) as session:
        again = close_month(session, "2026-10", tz=PARIS, now=NOW, actor="test")
        session.commit()
        assert again.already_closed
        assert snapshot(session, "2026-10") == first
        # A session reported late for a closed month does not change it.
        session.add(
            MachineSession(
                id="LATE",
                site="lab",
                machine="laser-1",
                member_ref="alice",
                started_at=datetime(2026, 10, 30, 10, tzinfo=UTC),
                ended_at=datetime(2026, 10, 30, 12, tzinfo=UTC),
            )
        )
        session.commit()
        close_month(session, "2026-10", tz=PARIS, now=NOW, actor="test")
        session.commit()
        assert snapshot(session, "2026-10") == first
        assert session.exec(select(func.count()).select_from(Statement)).one() == 3
        assert session.exec(select(func.count()).select_from(StatementLine)).one() == 10


def test_duty_is_free_and_each_line_stores_its_session_start(engine) -> None:  # type: ignore[no-untyped-def]
    """Maintenance (the session's mode) and a trainer's hand-over (its end) are free; every
    line stores its session's start, on SQLite in SQLAlchemy's own text form even when the
    session's text was written in another ISO form."""
    starts = {
        "MAINT": datetime(2026, 11, 3, 9, 0, 0, 250000, tzinfo=UTC),
        "HAND": datetime(2026, 11, 4, 9, 0, tzinfo=UTC),
        "PAID-T": datetime(2026, 11, 5, 9, 0, tzinfo=UTC),
        "PAID-S": datetime(2026, 11, 6, 9, 0, 0, 5, tzinfo=UTC),
    }
    with Session(engine) as session:
        for sid, start in starts.items():
            session.add(
                MachineSession(
                    id=sid,
                    site="lab",
                    machine="laser-1",
                    member_ref="alice",
                    mode="maintenance" if sid == "MAINT" else "normal",
                    started_at=start,
                    ended_at=start + timedelta(hours=1),
                    end_reason="handover" if sid == "HAND" else "badge_out",
                )
            )
        session.commit()
        sqlite = engine.dialect.name == "sqlite"
        if sqlite:  # the same instants, written as other programs might
            for sid, text in (
                ("PAID-T", "2026-11-05T09:00:00"),
                ("PAID-S", "2026-11-06T09:00:00.000005"),
            ):
                session.execute(
                    sa.text("UPDATE session SET started_at = :t WHERE id = :id"),
                    {"t": text, "id": sid},
                )
            session.commit()
        close_month(session, "2026-11", tz=PARIS, now=datetime(2026, 12, 2, tzinfo=UTC), actor="t")
        session.commit()
        [statement] = [s for s in month_statements(session, "2026-11") if s.payer_ref == "alice"]
        lines = {
            line.session_id: line
            for line in lines_of(session, statement)
            if line.session_id in starts
        }
        assert (lines["MAINT"].cents, lines["MAINT"].explanation) == (
            0,
            "Free: maintainer on duty",
        )
        assert (lines["HAND"].cents, lines["HAND"].explanation) == (0, "Free: trainer on duty")
        for sid in ("PAID-T", "PAID-S"):
            assert (lines[sid].billed_minutes, lines[sid].cents) == (60, 1600)
        assert {sid: line.started_at for sid, line in lines.items()} == starts
        if sqlite:
            rows = session.execute(sa.text("SELECT session_id, started_at FROM statement_line"))
            assert {sid: text for sid, text in rows if sid in starts} == {
                "MAINT": "2026-11-03 09:00:00.250000",
                "HAND": "2026-11-04 09:00:00.000000",
                "PAID-T": "2026-11-05 09:00:00.000000",
                "PAID-S": "2026-11-06 09:00:00.000005",
            }


def test_two_closes_at_once_make_one_set_of_statements(engine) -> None:  # type: ignore[no-untyped-def]
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite runs one writer at a time; the race needs PostgreSQL")
    with Session(engine) as first:
        mine = close_month(first, "2026-10", tz=PARIS, now=NOW, actor="first")
        numbers = [s.number for s in mine.statements]
        other: list[object] = []

        def close_too() -> None:
            with Session(engine) as second:
                closing = close_month(second, "2026-10", tz=PARIS, now=NOW, actor="second")
                second.commit()
                other.append((closing.already_closed, [s.number for s in closing.statements]))

        racer = threading.Thread(target=close_too)
        racer.start()
        racer.join(timeout=1)
        assert racer.is_alive()  # waiting on the first close's month row
        first.commit()
        racer.join(timeout=30)
    assert other == [(True, numbers)]
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(Statement)).one() == 3


def test_a_closed_month_refuses_changes_and_open_months_wait(engine) -> None:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        with pytest.raises(Conflict, match="2026-11 is not over yet") as early:
            close_month(session, "2026-11", tz=PARIS, now=NOW, actor="test")
        assert (early.value.code, early.value.field) == ("billing.month_not_over", "month")
        close_month(session, "2026-10", tz=PARIS, now=NOW, actor="test")
        session.commit()
        values = {
            "machine_type": "laser",
            "category": "individual",
            "effective_from": "2026-10-20",
            "cents_per_hour": "100",
        }
        with pytest.raises(
            Conflict, match="2026-10-20 is not after 2026-10, which is closed"
        ) as late:
            check_rate(session, values)
        assert (late.value.code, late.value.field) == ("rate.month_closed", "effective_from")
        assert check_rate(session, {**values, "effective_from": "2026-11-01"}).cents_per_hour == 100
        # A session still running blocks the close of its month, named.
        session.add(
            MachineSession(
                id="RUNNING",
                site="lab",
                machine="laser-1",
                member_ref="alice",
                started_at=datetime(2026, 9, 30, 10, tzinfo=UTC),
            )
        )
        session.commit()
        with pytest.raises(Conflict, match="RUNNING") as running:
            close_month(session, "2026-09", tz=PARIS, now=NOW, actor="test")
        assert (running.value.code, running.value.field) == ("billing.sessions_open", "month")


def test_a_missing_rate_names_the_type_and_category(engine) -> None:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        session.add(
            MachineSession(
                id="X1",
                site="lab",
                machine="laser-1",
                member_ref="ecole-design",  # a company: no rate for its category
                started_at=datetime(2026, 8, 3, 10, tzinfo=UTC),
                ended_at=datetime(2026, 8, 3, 11, tzinfo=UTC),
            )
        )
        session.commit()
        with pytest.raises(Conflict, match="'laser' and category 'company'") as no_rate:
            close_month(session, "2026-08", tz=PARIS, now=NOW, actor="test")
        assert no_rate.value.code == "billing.no_rate"
        assert no_rate.value.params == {
            "machine_type": "laser",
            "category": "company",
            "day": "2026-08-03",
        }
        session.rollback()
        assert month_statements(session, "2026-08") == []


def test_prepaid_balance_is_drawn_and_a_credit_note_gives_it_back(engine) -> None:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        alice = session.exec(select(Member).where(Member.ref == "alice")).one()
        top_up(session, alice, 2000, actor="test", note="cash")
        session.commit()
        close_month(session, "2026-10", tz=PARIS, now=NOW, actor="test")
        session.commit()
        statement = month_statements(session, "2026-10")[0]
        assert (statement.total_cents, statement.prepaid_cents, statement.due_cents) == (
            2650,
            2000,
            650,
        )
        assert account_of(session, alice).balance_cents == 0

        note = credit(
            session, "2026-000001", ["S01"], "laser lens was dirty", actor="test", tz=PARIS, now=NOW
        )
        session.commit()
        assert note.number == "2026-000004"
        assert note.total_cents == -1100
        assert note.prepaid_cents == -1100 and note.due_cents == 0
        assert [(ln.session_id, ln.cents) for ln in lines_of(session, note)] == [("S01", -1100)]
        assert lines_of(session, note)[0].explanation == "Credit: laser lens was dirty"
        assert account_of(session, alice).balance_cents == 1100
        assert balances(session)[alice.id] == 1100  # type: ignore[index]
        # The statement itself is untouched.
        assert month_statements(session, "2026-10")[0].total_cents == 2650

        refusals: list[tuple[HubError, str, str | None]] = []
        for number, sessions, reason in [
            ("2026-000001", ["S01"], "again"),
            ("2026-000001", ["S99"], "typo"),
            ("2026-000001", ["S03"], "  "),
            ("2026-000001", [], "nothing named"),
            ("2026-999999", ["S03"], "x"),
        ]:
            with pytest.raises(HubError) as refused:
                credit(session, number, sessions, reason, actor="test", tz=PARIS, now=NOW)
            refusals.append((refused.value, refused.value.code, refused.value.field))
        assert [(code, field) for _, code, field in refusals] == [
            ("credit.already_credited", "session"),
            ("credit.not_on_statement", "session"),
            ("credit.reason_empty", "reason"),
            ("credit.no_session", "session"),
            ("statement.unknown", "statement"),
        ]
        assert "S01 already credited on 2026-000001" in str(refusals[0][0])
        assert "S99" in str(refusals[1][0])
        assert "no statement numbered '2026-999999'" in str(refusals[4][0])
        assert isinstance(refusals[4][0], NotFound) and isinstance(refusals[2][0], InvalidValue)
        # Only the prepaid part comes back: 20,00 drawn, 11,00 already returned.
        second = credit(
            session, "2026-000001", ["S03", "S04"], "machine fault", actor="test", tz=PARIS, now=NOW
        )
        session.commit()
        assert second.total_cents == -1350
        assert (second.prepaid_cents, second.due_cents) == (-900, -450)
        assert account_of(session, alice).balance_cents == 2000


def test_csv_and_pdf_exports(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        close_month(session, "2026-10", tz=PARIS, now=NOW, actor="test")
        credit(session, "2026-000002", ["S09"], "cap misapplied", actor="test", tz=PARIS, now=NOW)
        session.commit()
        files = export_month(session, "2026-10", tmp_path, PARIS, LAB)

    with files["csv"].open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 10
    s03 = next(r for r in rows if r["session_id"] == "S03")
    assert s03["number"] == "2026-000001"
    assert s03["amount_cents"] == "1000" and s03["amount_eur"] == "10.00"
    assert s03["started_at"] == "2026-10-14T23:40+02:00"
    assert "at 15,00 €/h" in s03["explanation"]
    assert sum(int(r["amount_cents"]) for r in rows) == 2650 + 18165 + 483
    with files["credit_csv"].open(encoding="utf-8") as f:
        [credit_row] = list(csv.DictReader(f))
    assert credit_row["number"] == "2026-000004" and credit_row["amount_cents"] == "-4500"

    raw = files["pdf"].read_bytes()
    assert raw.startswith(b"%PDF")
    reader = PdfReader(files["pdf"])
    assert len(reader.pages) == 3  # one statement per page
    first_page = reader.pages[0].extract_text()
    assert "Statement 2026-000001" in first_page
    assert "26,50 €" in first_page
    assert "Statement 2026-000003" in reader.pages[2].extract_text()
    assert "École de design" in reader.pages[2].extract_text()
    notes = PdfReader(files["credit_pdf"])
    assert len(notes.pages) == 1
    assert "Credit note 2026-000004" in notes.pages[0].extract_text()


def test_an_empty_prepaid_balance_is_denied_at_the_machine(database_url: str) -> None:
    migrate(database_url)
    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            seed_demo(session, site="lab")
            hugo = session.exec(select(Member).where(Member.email == "hugo@example.org")).one()
            laser = session.exec(select(Machine).where(Machine.code == "laser-1")).one()

            def decision_for_hugo() -> tuple[bool, DenyReason | None]:
                body = allowlist_body(
                    session, laser, now=NOW, ttl=timedelta(days=7), bump_version=False
                )
                result = decide(HUGO, AllowList.model_validate(body), NOW)
                return result.granted, result.reason

            assert decision_for_hugo() == (True, None)
            # An account that pays later is never refused, whatever its balance.
            set_plan(session, hugo, prepaid_only=False, actor="test")
            session.commit()
            assert decision_for_hugo() == (True, None)
            set_plan(session, hugo, prepaid_only=True, actor="test")
            session.commit()
            assert decision_for_hugo() == (False, DenyReason.BALANCE)
            top_up(session, hugo, 500, actor="test")
            session.commit()
            assert decision_for_hugo() == (True, None)
            # A month drawn from the balance empties it again.
            session.add(
                BillingRate(
                    machine_type="laser",
                    category="individual",
                    effective_from=date(2026, 1, 1),
                    cents_per_hour=1200,
                )
            )
            session.add(
                MachineSession(
                    id="H1",
                    site="lab",
                    machine="laser-1",
                    member_ref=hugo.ref,
                    started_at=datetime(2026, 10, 5, 8, tzinfo=UTC),
                    ended_at=datetime(2026, 10, 5, 9, tzinfo=UTC),
                )
            )
            session.commit()
            [statement] = close_month(session, "2026-10", tz=PARIS, now=NOW, actor="t").statements
            session.commit()
            assert (statement.total_cents, statement.prepaid_cents, statement.due_cents) == (
                1200,
                500,
                700,
            )
            assert decision_for_hugo() == (False, DenyReason.BALANCE)
            # Other members are not affected.
            body = allowlist_body(
                session, laser, now=NOW, ttl=timedelta(days=7), bump_version=False
            )
            blocked = {e["badge"] for e in body["entries"] if e["block"] == "balance"}
            assert blocked == {HUGO}
    finally:
        engine.dispose()


# --- the command line ----------------------------------------------------------------------
@pytest.fixture
def cli_env(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        example_lab(session)
    engine.dispose()
    monkeypatch.setenv("ATELIER_DATABASE_URL", database_url)
    monkeypatch.setenv("ATELIER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ATELIER_MQTT_PORT", "1")  # no broker: publishing is reported, not fatal
    return database_url


def billing(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["hub", "billing", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_cli_closes_exports_and_credits(cli_env: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, output = billing("topup", "alice@example.org", "20,00")
    assert code == 0, output
    assert "balance 20,00 €" in output
    code, output = billing("close", "--month", "2026-10", "--out", str(out))
    assert code == 0, output
    assert "2026-10 is closed: 3 statement(s)" in output
    assert (out / "statements-2026-10.csv").exists()
    assert (out / "statements-2026-10.pdf").read_bytes().startswith(b"%PDF")
    first_csv = (out / "statements-2026-10.csv").read_bytes()
    code, output = billing("close", "--month", "2026-10", "--out", str(out))
    assert code == 0 and "was already closed: 3 statement(s)" in output
    assert (out / "statements-2026-10.csv").read_bytes() == first_csv
    code, output = billing(
        "credit", "2026-000001", "--session", "S01", "--reason", "dirty lens", "--out", str(out)
    )
    assert code == 0, output
    # Numbered in the year of issue, after the month's three statements.
    issued = re.search(r"credit note (\d{4}-000004): -11,00 €", output)
    assert issued, output
    assert (out / f"{issued.group(1)}.pdf").exists()
    code, output = billing("balance", "alice@example.org")
    assert code == 0 and "balance 11,00 €" in output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["close", "--month", "October"], "--month: 'October' is not a month: write it like"),
        (["close", "--month", "2099-01"], "--month: 2099-01 is not over yet"),
        (
            ["topup", "nobody@example.org", "10"],
            "MEMBER_EMAIL: no member with email nobody@example.org",
        ),
        (["topup", "alice@example.org", "ten"], "AMOUNT: 'ten' is not an amount in euros"),
        (["topup", "alice@example.org", "0"], "AMOUNT: the amount must be more than zero"),
        (
            ["rates", "set", "--machine-type", "laser", "--category", "individual"]
            + ["--from", "2026-13-01", "--cents-per-hour", "100"],
            "--from: '2026-13-01' is not a day: write it like 2026-10-01",
        ),
        (
            ["rates", "set", "--machine-type", "plasma", "--category", "individual"]
            + ["--from", "2026-12-01", "--cents-per-hour", "100"],
            "--machine-type: no machine type 'plasma' (known: ",
        ),
        (
            ["rates", "set", "--machine-type", "laser", "--category", "individual"]
            + ["--from", "2026-12-01", "--cents-per-hour", "12.5"],
            "--cents-per-hour: '12.5' must be a whole number",
        ),
        (
            ["credit", "2026-000001", "--session", "S01", "--reason", "x"],
            "STATEMENT: no statement numbered '2026-000001'",
        ),
        (["rates", "import", "/nonexistent.csv"], "FILE: /nonexistent.csv: no such file"),
    ],
)
def test_cli_bad_input_exits_2_naming_the_field(
    cli_env: str, args: list[str], expected: str
) -> None:
    code, output = billing(*args)
    assert code == 2, output
    assert expected in output
    assert "Traceback" not in output


def test_cli_rates_import_is_all_or_nothing(cli_env: str, tmp_path: Path) -> None:
    bad = tmp_path / "rates.csv"
    bad.write_text(
        ",".join(RATE_FIELDS[:5])
        + "\nlaser,individual,2027-01-01,1300,session\nlaser,retired,2027-01-01,900,busy\n",
        encoding="utf-8",
    )
    code, output = billing("rates", "import", str(bad))
    assert code == 2
    assert "line 3, category: 'retired' is not a member category" in output
    assert "nothing was imported" in output
    bad.write_text(",".join(RATE_FIELDS[:4]) + ",colour\nlaser,individual,2027-01-01,1,red\n")
    code, output = billing("rates", "import", str(bad))
    assert code == 2 and "unknown column(s) colour" in output
    good = tmp_path / "good.csv"
    good.write_text(
        ",".join(RATE_FIELDS[:5])
        + "\nlaser,individual,2027-01-01,1300,session\nprinter,student,2027-01-01,90,busy\n",
        encoding="utf-8",
    )
    code, output = billing("rates", "import", str(good))
    assert code == 0 and "2 rate(s) added, 0 replaced" in output, output
    code, output = billing("rates", "list")
    assert code == 0 and output.count("from 2027-01-01") == 2


def test_the_machine_refuses_an_empty_prepaid_balance_until_a_top_up(
    hub_env: Hub,  # noqa: F811
) -> None:
    """The acceptance test end to end: the CLI, the signed list over Mosquitto, a real agent."""
    agent = started_agent(hub_env, "laser-1")
    try:
        assert agent.tap(HUGO)["decision"] == "granted"
        assert agent.tap(HUGO)["decision"] == "ended"  # badge-out
        version = agent.state()["acl_version"]
        code, output = billing("plan", "hugo@example.org", "--prepaid-only")
        assert code == 0 and "published" in output, output
        wait_until(lambda: agent.state()["acl_version"] > version, timeout=5, what="new list")
        refused = agent.tap(HUGO)
        assert (refused["decision"], refused["reason"]) == ("denied", "balance")
        version = agent.state()["acl_version"]
        code, output = billing("topup", "hugo@example.org", "15")
        assert code == 0 and "balance 15,00 €" in output, output
        wait_until(lambda: agent.state()["acl_version"] > version, timeout=5, what="new list")
        assert agent.tap(HUGO)["decision"] == "granted"
    finally:
        agent.stop()

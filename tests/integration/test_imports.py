"""CSV imports: all rows or none, every bad row named by its line, the trainer rule."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import Session, select
from typer.testing import CliRunner

from atelier_cli import app
from hub.core.db import make_engine, migrate
from hub.demo.seed import seed_demo
from hub.imports import ImportFileError, ImportReport, import_members, import_trainings
from hub.models import Badge, Member, Training

runner = CliRunner()

MEMBERS = """name,email,category,badges
Alice Durand,alice@example.org,student,04AA0001
Bob Lefèvre,bob@example.org,professional,04AA0002;04AA0003
Chloé Garnier,chloe@example.org,,
"""


@pytest.fixture
def engine(database_url: str):
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
    yield engine
    engine.dispose()


def members(engine) -> dict[str, Member]:
    with Session(engine) as session:
        return {m.email: m for m in session.exec(select(Member))}


def test_members_and_badges_are_imported_and_a_rerun_changes_nothing(engine) -> None:
    report = import_members(engine, MEMBERS)
    assert report.ok and report.created == 3
    found = members(engine)
    assert found["chloe@example.org"].category == "individual"
    with Session(engine) as session:
        bob_badges = {
            b.uid
            for b in session.exec(
                select(Badge).where(Badge.member_id == found["bob@example.org"].id)
            )
        }
    assert bob_badges == {"04AA0002", "04AA0003"}
    again = import_members(engine, MEMBERS)
    assert again.ok and again.created == 0 and again.skipped == 3


def test_every_bad_row_is_reported_and_nothing_is_imported(engine) -> None:
    text = """name,email,category,badges
Good Row,good@example.org,student,04BB0001
,nameless@example.org,student,
Bad Mail,not-an-email,student,
Bad Category,cat@example.org,astronaut,
Bad Badge,badge@example.org,student,XYZ
Taken Badge,taken@example.org,student,04A1B2C3
Twice,good@example.org,student,04BB0001
"""
    report = import_members(engine, text)
    assert not report.ok and report.created == 0
    text_errors = "\n".join(report.errors)
    for expected in [
        "line 3: name: empty",
        "line 4: email: 'not-an-email'",
        "line 5: category: 'astronaut'",
        "line 6: badges:",
        "line 7: badges: 04A1B2C3 already belongs",
        "line 8: email: good@example.org is already on line 2",
        "line 8: badges: 04BB0001 is already on line 2",
    ]:
        assert expected in text_errors, (expected, text_errors)
    assert "good@example.org" not in members(engine)  # nothing half-imported


def test_dry_run_reports_and_changes_nothing(engine) -> None:
    report = import_members(engine, MEMBERS, dry_run=True)
    assert report.ok and report.created == 3
    assert "alice@example.org" not in members(engine)


def test_a_file_with_the_wrong_columns_is_refused(engine) -> None:
    with pytest.raises(ImportFileError, match="missing: email"):
        import_members(engine, "name,mail\nA,a@example.org\n")
    with pytest.raises(ImportFileError, match="unknown column"):
        import_members(engine, "name,email,category,badges,shoe_size\n")


def test_trainings_need_a_trainer_for_that_machine_type(engine) -> None:
    import_members(engine, MEMBERS)
    # Camille (demo data) trains on lasers and printers; Hugo is only a laser user.
    text = """member_email,machine_type,level,expires,supervised_only,granted_by_email
alice@example.org,laser,user,2027-06-30,no,camille@example.org
bob@example.org,printer,user,,yes,camille@example.org
chloe@example.org,laser,user,,no,hugo@example.org
"""
    report = import_trainings(engine, text)
    assert not report.ok
    assert report.errors == [
        "line 4: granted_by_email: hugo@example.org is not a trainer for laser "
        "(only a trainer for a machine type may grant it)"
    ]
    report = import_trainings(engine, "\n".join(text.splitlines()[:3]) + "\n")
    assert report.ok and report.created == 2
    found = members(engine)
    with Session(engine) as session:
        alice = session.exec(
            select(Training).where(Training.member_id == found["alice@example.org"].id)
        ).one()
        bob = session.exec(
            select(Training).where(Training.member_id == found["bob@example.org"].id)
        ).one()
    assert alice.granted_by_id == found["camille@example.org"].id
    assert alice.expires_at is not None and alice.expires_at.date().isoformat() == "2027-06-30"
    assert bob.supervised_only and bob.expires_at is None


def test_training_rows_with_bad_values(engine) -> None:
    text = """member_email,machine_type,level,expires,supervised_only,granted_by_email
nobody@example.org,loom,guru,30/06/2027,maybe,camille@example.org
"""
    errors = "\n".join(import_trainings(engine, text).errors)
    for field_name in ("member_email", "machine_type", "level", "expires", "supervised_only"):
        assert f"line 2: {field_name}:" in errors


def test_cli_exit_codes_and_encodings(tmp_path: Path, monkeypatch) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    monkeypatch.setenv("ATELIER_DATABASE_URL", url)
    good = tmp_path / "members.csv"
    # As a French spreadsheet saves it: semicolons, Windows-1252, the badge list quoted.
    good.write_bytes(
        (
            "name;email;category;badges\r\n"
            "Alice Durand;alice@example.org;student;04AA0001\r\n"
            'Bob Lefèvre;bob@example.org;professional;"04AA0002;04AA0003"\r\n'
            "Chloé Garnier;chloe@example.org;;\r\n"
        ).encode("cp1252")
    )
    result = runner.invoke(app, ["hub", "import", "members", str(good), "--dry-run"])
    assert result.exit_code == 0 and "would import 3 members" in result.output, result.output
    result = runner.invoke(app, ["hub", "import", "members", str(good)])
    assert result.exit_code == 0 and "imported 3 members" in result.output
    bad = tmp_path / "bad.csv"
    bad.write_text("name,email,category,badges\n,x@example.org,student,\n")
    result = runner.invoke(app, ["hub", "import", "members", str(bad)])
    assert result.exit_code == 2 and "line 2: name: empty" in result.output
    assert "nothing was imported" in result.output and "Traceback" not in result.output
    missing = runner.invoke(app, ["hub", "import", "members", str(tmp_path / "nope.csv")])
    assert missing.exit_code == 2 and "no such file" in missing.output
    engine = make_engine(url)
    assert "Bob Lefèvre" in {m.name for m in members(engine).values()}
    engine.dispose()


def test_regression_a_stray_carriage_return_is_an_error_not_a_crash(engine) -> None:
    # Found by tests/unit/test_fuzz_inputs.py: csv.Error escaped as a traceback.
    report_or_error = None
    try:
        report_or_error = import_members(engine, "name,email,category,badges\n\r0\n")
    except ImportFileError as exc:
        report_or_error = exc
    assert isinstance(report_or_error, ImportReport | ImportFileError)

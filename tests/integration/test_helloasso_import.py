"""HelloAsso's exports into the hub, on SQLite and PostgreSQL: memberships become members in
the category the lab maps each tier to, top-ups become prepaid credit; accents, repeated and
malformed lines; a dry run that says exactly what the import does; a second import that
changes nothing; hostile files refused by their line or as a whole, never a traceback."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select
from typer.testing import CliRunner

from atelier_cli import app
from hub.core.db import make_engine, migrate
from hub.core.errors import MESSAGES, HubError, describe
from hub.models import BalanceMovement, ImportRecord, Member
from hub.services.billing import account_of
from hub.services.helloasso import COLUMNS, import_export, set_tier, tier_mapping

PARIS = ZoneInfo("Europe/Paris")
MEMBERSHIP_HEADER = [
    "Référence commande",
    "Date de la commande",
    "Statut de la commande",
    "Nom adhérent",
    "Prénom adhérent",
    "Nom payeur",
    "Prénom payeur",
    "Email payeur",
    "Tarif",
    "Montant tarif",
    "Code Promo",
    "Montant du code promo",
    "Commentaire",  # a custom field of the form: ignored
]
PAYMENT_HEADER = [
    "Référence commande",
    "Date de la commande",
    "Statut de la commande",
    "Nom payeur",
    "Prénom payeur",
    "Email payeur",
    "Moyen de paiement",
    "Tarif",
    "Montant tarif",
]


def export(header: list[str], rows: list[list[str]]) -> bytes:
    """As HelloAsso writes it: semicolons, UTF-8 with a byte-order mark, CRLF."""
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return ("\ufeff" + out.getvalue()).encode("utf-8")


def membership(
    ref: str,
    first: str,
    last: str,
    email: str,
    tier: str,
    amount: str = "20,00",
    day: str = "14/09/2026 18:42",
    status: str = "Validé",
    comment: str = "",
) -> list[str]:
    return [ref, day, status, last, first, last, first, email, tier, amount, "", "", comment]


MEMBERSHIPS = [
    membership("101", "Éloïse", "Müller-Ñúñez", "eloise@example.org", "Adhésion étudiant·e"),
    membership("102", "Ánh Łukasz", "Nguyễn Øster", "anh@example.org", "Adhésion individuelle"),
    membership("101", "Éloïse", "Müller-Ñúñez", "eloise@example.org", "Adhésion étudiant·e"),
    membership(
        "103", "Paul", "Refus", "paul@example.org", "Adhésion individuelle", status="Refusé"
    ),
    membership("104", "Zoé", "Date", "zoe@example.org", "Adhésion individuelle", day="31/02/2026"),
    membership("105", "Fantôme", "Tarif", "ghost@example.org", "Adhésion fantôme"),
    membership("106", "Sans", "Courriel", "pas-un-email", "Adhésion individuelle"),
    membership("107", "Alice", "Existante", "ALICE@example.org", "Adhésion pro"),
    membership(
        "108",
        "Jean-Noël",
        "L'Hôpital",
        "jn@example.org",
        "adhésion  INDIVIDUELLE",
        comment='a;b\n"c"',
    ),
    membership("109", "Montant", "Faux", "m@example.org", "Adhésion individuelle", amount="dix"),
]


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        session.add(Member(name="Alice", email="alice@example.org", ref="alice"))
        for tier, category in (
            ("Adhésion individuelle", "individual"),
            ("Adhésion étudiant·e", "student"),
            ("Adhésion pro", "professional"),
        ):
            set_tier(session, tier, category, actor="test")
        session.commit()
    yield engine
    engine.dispose()


def run(engine: Engine, data: bytes, kind: str = "memberships", dry_run: bool = False) -> Any:
    with Session(engine) as session:
        report = import_export(session, data, kind=kind, actor="test", tz=PARIS, dry_run=dry_run)
        if not dry_run:
            session.commit()
    return report


def state(engine: Engine) -> tuple[Any, ...]:
    with Session(engine) as session:
        members = sorted(
            (m.email, m.name, m.category.value) for m in session.exec(select(Member)).all()
        )
        records = session.exec(select(func.count()).select_from(ImportRecord)).one()
        money = session.exec(select(func.count()).select_from(BalanceMovement)).one()
    return members, records, money


def summary(report: Any) -> tuple[Any, ...]:
    return (
        [(c.line, c.what, c.email, c.detail) for c in report.changes],
        [(p.params["line"], p.code, p.field) for p in report.rejected],
    )


def test_memberships_become_members_once_and_a_dry_run_says_so(engine: Engine) -> None:
    data = export(MEMBERSHIP_HEADER, MEMBERSHIPS)
    before = state(engine)
    dry = run(engine, data, dry_run=True)
    assert state(engine) == before  # nothing changed
    real = run(engine, data)
    assert summary(dry) == summary(real)
    changes, rejected = summary(real)
    assert changes == [
        (2, "created", "eloise@example.org", "student"),
        (3, "created", "anh@example.org", "individual"),
        (9, "category", "alice@example.org", "professional"),
        # The tier's case and spacing as typed differ from the mapping's: the same tier.
        (10, "created", "jn@example.org", "individual"),
    ]
    assert rejected == [
        (4, "helloasso.line_repeated", "Référence commande"),
        (5, "helloasso.not_paid", "Statut de la commande"),
        (6, "helloasso.date", "Date de la commande"),
        (7, "helloasso.tier_unmapped", "Tarif"),
        (8, "import.email_invalid", "Email payeur"),
        # Line 10 spans two physical lines (a comment with a line break): 11 is its end.
        (12, "helloasso.amount", "Montant tarif"),
    ]
    worded = {p.code: describe(p) for p in real.rejected}
    assert worded["helloasso.line_repeated"] == "the same order line is already on line 2"
    assert "'Adhésion fantôme' gives no category" in worded["helloasso.tier_unmapped"]
    members, records, _ = state(engine)
    assert ("anh@example.org", "Ánh Łukasz Nguyễn Øster", "individual") in members
    assert ("eloise@example.org", "Éloïse Müller-Ñúñez", "student") in members
    assert ("alice@example.org", "Alice", "professional") in members
    assert records == 4
    # The same file again: nothing changes, the refused lines are refused again.
    after = state(engine)
    again = run(engine, data)
    assert state(engine) == after
    assert [c.what for c in again.changes] == ["unchanged"] * 4
    assert summary(again)[1] == rejected


def test_top_up_payments_become_prepaid_credit_once(engine: Engine) -> None:
    run(engine, export(MEMBERSHIP_HEADER, MEMBERSHIPS))
    payments = export(
        PAYMENT_HEADER,
        [
            ["201", "02/10/2026 10:00", "Validé", "Müller-Ñúñez", "Éloïse", "eloise@example.org"]
            + ["Carte bancaire", "Recharge machines", "20,00"],
            ["202", "03/10/2026", "Validé", "Existante", "Alice", "alice@example.org"]
            + ["Carte bancaire", "Recharge machines", "1 234,50 €"],
            ["203", "03/10/2026", "Validé", "Inconnu", "Personne", "nobody@example.org"]
            + ["Carte bancaire", "Recharge machines", "10,00"],
            ["204", "03/10/2026", "Validé", "Zéro", "Alice", "alice@example.org"]
            + ["Carte bancaire", "Recharge machines", "0,00"],
            ["205", "04/10/2026", "Remboursé", "Existante", "Alice", "alice@example.org"]
            + ["Carte bancaire", "Recharge machines", "50,00"],
        ],
    )
    dry = run(engine, payments, kind="payments", dry_run=True)
    assert dry.count("topup") == 2 and not dry.balances_changed
    report = run(engine, payments, kind="payments")
    assert [(c.line, c.email, c.cents) for c in report.changes] == [
        (2, "eloise@example.org", 2000),
        (3, "alice@example.org", 123450),
    ]
    assert [(p.params["line"], p.code) for p in report.rejected] == [
        (4, "import.member_unknown"),
        (5, "helloasso.topup_amount"),
        (6, "helloasso.not_paid"),
    ]
    assert report.balances_changed

    def balance(email: str) -> int:
        with Session(engine) as session:
            member = session.exec(select(Member).where(Member.email == email)).one()
            return account_of(session, member).balance_cents

    assert (balance("eloise@example.org"), balance("alice@example.org")) == (2000, 123450)
    again = run(engine, payments, kind="payments")
    assert again.count("topup") == 0 and not again.balances_changed
    assert (balance("eloise@example.org"), balance("alice@example.org")) == (2000, 123450)


def test_the_mapping_is_checked_and_kept(engine: Engine) -> None:
    with Session(engine) as session:
        with pytest.raises(HubError) as refused:
            set_tier(session, "Adhésion bienfaiteur", "mécène", actor="t")
        assert refused.value.field == "category"
        with pytest.raises(HubError) as blank:
            set_tier(session, " \x00 ", "individual", actor="t")
        assert blank.value.code == "helloasso.tier_name"
        set_tier(session, "ADHÉSION PRO", "company", actor="t")  # the same tier, renamed
        set_tier(session, "Adhésion étudiant·e", None, actor="t")  # forgotten
        session.commit()
        assert tier_mapping(session) == {
            "ADHÉSION PRO": "company",
            "Adhésion individuelle": "individual",
        }


# --- the command line -----------------------------------------------------------------------
runner = CliRunner()


@pytest.fixture
def cli_env(
    engine: Engine, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> str:
    monkeypatch.setenv("ATELIER_DATABASE_URL", database_url)
    monkeypatch.setenv("ATELIER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ATELIER_MQTT_PORT", "1")  # no broker: publishing is reported, not fatal
    return database_url


def helloasso(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["hub", "helloasso", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


def test_the_cli_imports_dry_runs_and_refuses_a_bad_file(
    cli_env: str, engine: Engine, tmp_path: Path
) -> None:
    good = tmp_path / "adhesions.csv"
    good.write_bytes(export(MEMBERSHIP_HEADER, MEMBERSHIPS))
    code, output = helloasso("import", str(good), "--dry-run")
    assert code == 0, output
    assert output.startswith("dry run, nothing changed: 10 line(s): 3 member(s) would be created")
    assert "line 7: Tarif: the tier 'Adhésion fantôme' gives no category" in output
    before = state(engine)
    assert ("eloise@example.org", "Éloïse Müller-Ñúñez", "student") not in before[0]
    code, output = helloasso("import", str(good))
    assert code == 0 and "3 member(s) created, 1 category change(s)" in output
    code, output = helloasso("import", str(good))
    assert (
        code == 0 and "0 member(s) created, 0 category change(s), 0 top-up(s), 4 already" in output
    )

    for content, message in [
        (b"name,email\nA,a@example.org\n", "FILE: this is not HelloAsso's memberships export"),
        (b"\xff\xfe\x00\x01garbage", "FILE: "),
        (export(MEMBERSHIP_HEADER, []), "FILE: the memberships export has a header but no line"),
    ]:
        bad = tmp_path / "bad.csv"
        bad.write_bytes(content)
        code, output = helloasso("import", str(bad))
        assert code == 2, output
        assert message in output and "Traceback" not in output
    code, output = helloasso("import", str(good), "--kind", "dons")
    assert code == 2 and "--kind: 'dons' is not a HelloAsso export" in output
    code, output = helloasso("import", str(tmp_path / "missing.csv"))
    assert code == 2 and "FILE: " in output
    code, output = helloasso("tier", "Adhésion famille", "family")
    assert code == 2 and "CATEGORY: 'family' is not one of" in output
    code, output = helloasso("tier", "Adhésion famille", "individual")
    assert code == 0 and "Adhésion famille -> individual" in output


def test_the_api_maps_tiers_and_imports_with_a_dry_run(
    engine: Engine, database_url: str, tmp_path: Path
) -> None:
    from fastapi.testclient import TestClient

    from hub.app import create_app
    from hub.core.settings import get_settings
    from tests.support.api import admin_headers

    settings = get_settings(None, database_url=database_url, data_dir=tmp_path)
    data = export(MEMBERSHIP_HEADER, MEMBERSHIPS)
    with TestClient(create_app(settings, start_ingest=False)) as client:
        admin = admin_headers(database_url)
        mapped = client.put(
            "/api/v1/helloasso/tiers",
            json={"tier": "Adhésion fantôme", "category": "student"},
            headers=admin,
        )
        assert mapped.status_code == 200 and mapped.json()["Adhésion fantôme"] == "student"
        wrong = client.put(
            "/api/v1/helloasso/tiers", json={"tier": "X", "category": "vip"}, headers=admin
        )
        assert wrong.status_code == 422 and wrong.json()["field"] == "category"
        files = {"file": ("adhesions.csv", data, "text/csv")}
        dry = client.post(
            "/api/v1/helloasso/import", params={"dry_run": "true"}, files=files, headers=admin
        )
        assert dry.status_code == 200, dry.text
        assert state(engine)[1] == 0  # nothing recorded
        real = client.post("/api/v1/helloasso/import", files=files, headers=admin).json()
        assert real["rows"] == 10 and dry.json()["changes"] == real["changes"]
        assert {c["change"] for c in real["changes"]} == {"created", "category"}
        assert len(real["changes"]) == 5  # the tier mapped above now gives a category
        refused = {r["line"]: r for r in real["rejected"]}
        assert refused[8]["column"] == "Email payeur"
        assert refused[8]["message"] == "'pas-un-email' is not an email address"
        bad = client.post(
            "/api/v1/helloasso/import",
            files={"file": ("x.csv", b"a,b\n1,2\n", "text/csv")},
            headers=admin,
        )
        assert bad.status_code == 422 and bad.json()["field"] == "file"


# --- hostile files ----------------------------------------------------------------------------
hostile_cell = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        ["", "Validé", "validé", "Refusé", "31/12/9999", "01/01/0001", "29/02/2027", "1e9"]
        + ["9999999999,99", "-5,00", "NaN", "\x00", "a@b.c", "=cmd|' /C calc'!A0", "é" * 300]
    ),
    st.from_regex(r"[0-9]{1,12},[0-9]{2}", fullmatch=True),
    st.from_regex(r"[a-z]{1,8}@[a-z]{1,8}\.org", fullmatch=True),
    st.sampled_from(["Adhésion individuelle", "Adhésion pro", "Recharge machines"]),
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    kind=st.sampled_from(["memberships", "payments"]),
    rows=st.lists(st.lists(hostile_cell, min_size=0, max_size=12), max_size=8),
    raw=st.none() | st.binary(max_size=200),
)
def test_any_file_is_refused_whole_or_line_by_line(
    engine: Engine, kind: str, rows: list[list[str]], raw: bytes | None
) -> None:
    """Generated exports (NUL, far dates, huge amounts, formulas, ragged rows) and random
    bytes, on both databases: refused as a whole with a worded code on `file`, or every line
    either applied or refused with a worded code and its line; never another error, and a
    second run applies nothing new."""
    header = MEMBERSHIP_HEADER if kind == "memberships" else PAYMENT_HEADER
    data = raw if raw is not None else export(header, rows)
    try:
        report = run(engine, data, kind=kind)
    except HubError as error:
        assert error.code in MESSAGES and describe(error) != error.code
        assert error.field == "file"
        return
    assert len(report.changes) + len(report.rejected) == report.rows
    for problem in report.rejected:
        assert problem.code in MESSAGES and problem.field in (*COLUMNS[kind], "Email")
        assert isinstance(problem.params["line"], int)
    again = run(engine, data, kind=kind)
    assert again.count("created") == again.count("topup") == again.count("category") == 0

"""The first trainer of a new machine type: only an admin may appoint one (API) or whoever
runs the hub's CLI on the server, only while the type has no trainer, and it is audited.
After that the new trainer grants the type as any trainer does."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session, col, select
from typer.testing import CliRunner

from atelier_cli import app as cli
from hub.app import create_app
from hub.core.db import make_engine, migrate
from hub.core.settings import get_settings
from hub.demo.seed import seed_demo
from hub.models import AuditEntry, MachineKind, MachineType, Member, Role, Training
from tests.support.api import bearer, role_tokens

runner = CliRunner()
CAMILLE = "camille@example.org"  # the trainer login's member (tests/support/api.py)


def _member_id(engine: object, email: str) -> int:
    with Session(engine) as session:  # type: ignore[arg-type]
        member = session.exec(select(Member).where(Member.email == email)).one()
        assert member.id is not None
        return member.id


def _sewing_trainings(engine: object) -> list[Training]:
    with Session(engine) as session:  # type: ignore[arg-type]
        sewing = session.exec(select(MachineType).where(MachineType.code == "sewing")).one()
        return list(session.exec(select(Training).where(Training.machine_type_id == sewing.id)))


def _audit(engine: object) -> list[AuditEntry]:
    with Session(engine) as session:  # type: ignore[arg-type]
        return list(
            session.exec(select(AuditEntry).where(AuditEntry.action == "training.first_trainer"))
        )


@pytest.fixture
def lab(database_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, dict[Role, str], object]]:
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
    tokens = role_tokens(engine)
    settings = get_settings(None, database_url=database_url, data_dir=tmp_path)
    try:
        with TestClient(create_app(settings, start_ingest=False)) as client:
            created = client.post(
                "/api/v1/machine-types",
                json={"code": "sewing", "name": "Sewing machine"},
                headers=bearer(tokens[Role.ADMIN]),
            )
            assert created.status_code == 201, created.text
            yield client, tokens, engine
    finally:
        engine.dispose()


def test_an_admin_appoints_the_first_trainer_who_then_grants(
    lab: tuple[TestClient, dict[Role, str], object],
) -> None:
    client, tokens, engine = lab
    camille, hugo = _member_id(engine, CAMILLE), _member_id(engine, "hugo@example.org")
    url = "/api/v1/machine-types/sewing/first-trainer"
    # Before: no trainer for the new type, so nobody can grant it, not even a trainer.
    refused = client.post(
        "/api/v1/trainings",
        json={"member_id": hugo, "machine_type": "sewing"},
        headers=bearer(tokens[Role.TRAINER]),
    )
    assert refused.status_code == 403
    for role in (Role.MEMBER, Role.TRAINER, Role.MAINTAINER, Role.MANAGER):
        answer = client.post(url, json={"member_id": camille}, headers=bearer(tokens[role]))
        assert answer.status_code == 403, (role, answer.text)
    assert _sewing_trainings(engine) == [] and _audit(engine) == []

    appointed = client.post(url, json={"member_id": camille}, headers=bearer(tokens[Role.ADMIN]))
    assert appointed.status_code == 201, appointed.text
    body = appointed.json()
    assert body["level"] == "trainer" and body["machine_type"] == "sewing"
    assert body["member_id"] == camille and body["granted_by_id"] is None
    [entry] = _audit(engine)
    assert entry.actor == "user:test-admin" and entry.entity_id == str(body["id"])
    assert entry.detail["machine_type"] == "sewing" and entry.detail["level"] == "trainer"

    # Camille now grants the type as its trainer.
    granted = client.post(
        "/api/v1/trainings",
        json={"member_id": hugo, "machine_type": "sewing"},
        headers=bearer(tokens[Role.TRAINER]),
    )
    assert granted.status_code == 201, granted.text
    # A second "first" trainer is refused: the trainers grant from now on.
    again = client.post(url, json={"member_id": hugo}, headers=bearer(tokens[Role.ADMIN]))
    assert again.status_code == 409 and "Camille" in again.json()["detail"]
    assert len(_audit(engine)) == 1


# Bad appointments: no such member (ids at and past the edges), an end already past (or
# without a time zone), a far date.
NOW = datetime.now(UTC)
bad_bodies = st.one_of(
    st.builds(
        lambda member_id: ({"member_id": member_id}, "member_id"),
        st.one_of(st.integers(max_value=0), st.integers(min_value=10_000, max_value=2**40)),
    ),
    st.builds(
        lambda moment: ({"expires_at": moment.isoformat()}, "expires_at"),
        st.one_of(
            st.datetimes(max_value=NOW.replace(tzinfo=None), timezones=st.just(UTC)),
            st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)),
        ),
    ),
)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(bad=bad_bodies)
def test_mistakes_name_the_field(
    lab: tuple[TestClient, dict[Role, str], object], bad: tuple[dict[str, Any], str]
) -> None:
    client, tokens, engine = lab
    admin = bearer(tokens[Role.ADMIN])
    body, field = bad
    body = {"member_id": _member_id(engine, CAMILLE), **body}
    answer = client.post("/api/v1/machine-types/sewing/first-trainer", json=body, headers=admin)
    assert answer.status_code == 422, (body, answer.text)
    assert field in str(answer.json()["detail"][0]["loc"]), answer.text
    unknown_type = client.post(
        "/api/v1/machine-types/loom/first-trainer", json={"member_id": 1}, headers=admin
    )
    assert unknown_type.status_code == 404 and "loom" in unknown_type.text
    assert _sewing_trainings(engine) == []


def test_the_cli_appoints_once_and_says_why_it_refuses(
    database_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    migrate(database_url)
    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            seed_demo(session, site="lab")
            session.add(MachineType(code="sewing", name="Sewing machine", kind=MachineKind.OTHER))
            session.commit()
        monkeypatch.setenv("ATELIER_DATABASE_URL", database_url)
        monkeypatch.setenv("ATELIER_DATA_DIR", str(tmp_path / "hub"))
        monkeypatch.setenv("ATELIER_MQTT_PORT", "1")  # no broker: publication reported only
        command = ["hub", "training", "first-trainer", CAMILLE, "--machine-type", "sewing"]
        for args, flag in (
            (
                ["hub", "training", "first-trainer", CAMILLE, "--machine-type", "loom"],
                "--machine-type",
            ),
            ([*command, "--expires", "30/06/2028"], "--expires"),
            ([*command, "--expires", "2001-01-01"], "--expires"),
            (
                [
                    "hub",
                    "training",
                    "first-trainer",
                    "nobody@example.org",
                    "--machine-type",
                    "sewing",
                ],
                "nobody",
            ),
        ):
            refused = runner.invoke(cli, args)
            assert refused.exit_code == 2, (args, refused.output)
            assert flag in refused.output and "Traceback" not in refused.output
        assert _sewing_trainings(engine) == []

        done = runner.invoke(cli, [*command, "--expires", "2028-06-30"])
        assert done.exit_code == 0, done.output
        assert "trainer for sewing" in done.output
        [training] = _sewing_trainings(engine)
        assert training.level == "trainer" and training.expires_at is not None
        assert training.expires_at.date().isoformat() == "2028-06-30"
        [entry] = _audit(engine)
        assert entry.actor.startswith("cli:") and entry.detail["machine_type"] == "sewing"

        again = runner.invoke(cli, command)
        assert again.exit_code == 2 and "--machine-type" in again.output
        assert "has trainers already" in again.output
        with Session(engine) as session:
            assert (
                len(
                    session.exec(
                        select(AuditEntry).where(col(AuditEntry.action) == "training.first_trainer")
                    ).all()
                )
                == 1
            )
    finally:
        engine.dispose()

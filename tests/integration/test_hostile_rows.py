"""Whatever a machine's stored status and telemetry hold, the machines API, /metrics and the
dashboard pages answer without an error.

The ingest validates statuses and telemetry (tests/integration/test_ingest_poison.py); these
rows are written straight into the database, as an older hub, a hand edit or a restore may
have left them: wrong types, NaN and infinities (SQLite keeps NaN in JSON text, PostgreSQL
keeps 1e400, which Python reads as infinity), NUL, far dates, deep nesting.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from hub.app import create_app
from hub.core.db import make_engine, migrate
from hub.core.settings import get_settings
from hub.demo.seed import seed_demo
from hub.models import Machine, MachineKind
from tests.support.api import admin_headers

pytestmark = pytest.mark.timeout(300)

HUGE = "\x01huge\x01"  # stands for a number JSON text holds and Python reads as NaN/infinity

leaves = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([2**63, -(2**64), 10**30])
    | st.floats()  # NaN and infinities become HUGE below
    | st.text(max_size=12)
    | st.sampled_from(["\x00", "a\x00b", "", "99999-01-01T00:00:00", "0001-01-01T00:00:00+14:00"])
    | st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)).map(
        datetime.isoformat
    )
)
anything = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
statuses = anything | st.fixed_dictionaries(
    {},
    optional={
        "session": anything
        | st.fixed_dictionaries(
            {}, optional={"session_id": anything, "member": anything, "started_at": anything}
        ),
        "busy": anything,
        "locked": anything,
        "state": anything,
    },
)
telemetries = anything | st.fixed_dictionaries(
    {},
    optional={
        key: anything
        for key in ("progress", "print_time_left_s", "tool0_actual", "tool0_target", "ts")
    },
)


def hugeify(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return HUGE
    if isinstance(value, dict):
        return {k: hugeify(v) for k, v in value.items()}
    if isinstance(value, list):
        return [hugeify(v) for v in value]
    return value


def raw_json(value: Any, dialect: str) -> str:
    """JSON text as a database holds it: SQLite keeps NaN as such, PostgreSQL's json refuses
    NaN but keeps 1e400 (infinity once read)."""
    dumped = json.dumps(hugeify(value))
    return dumped.replace(json.dumps(HUGE), "NaN" if dialect == "sqlite" else "1e400")


@pytest.fixture
def lab(database_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, Engine, list[str]]]:
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
        laser = session.exec(select(Machine).where(Machine.kind == MachineKind.LASER)).first()
        printer = session.exec(select(Machine).where(Machine.kind == MachineKind.PRINTER)).first()
        assert laser is not None and printer is not None
        codes = [laser.code, printer.code]
    app = create_app(
        get_settings(None, database_url=database_url, data_dir=tmp_path), start_ingest=False
    )
    with TestClient(app, headers=admin_headers(database_url)) as client:
        yield client, engine, codes
    engine.dispose()


def write_rows(engine: Engine, code: str, status: Any, telemetry: Any, sample: Any) -> None:
    dialect = engine.dialect.name
    as_json = "CAST(:{} AS json)" if dialect == "postgresql" else ":{}"
    with engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE machine SET online = :online, "
                f"last_status = {as_json.format('status')}, "
                f"last_telemetry = {as_json.format('telemetry')} WHERE code = :code"
            ),
            {
                "online": True,
                "status": raw_json(status, dialect),
                "telemetry": raw_json(telemetry, dialect),
                "code": code,
            },
        )
        conn.execute(
            text(
                'INSERT INTO telemetry_sample (machine, ts, resolution_s, "values") '
                f"VALUES (:code, :ts, 0, {as_json.format('values')})"
            ),
            {"code": code, "ts": datetime.now(UTC), "values": raw_json(sample, dialect)},
        )
        conn.execute(
            text(
                "INSERT INTO event (id, site, machine, seq, ts, type, data, received_at) VALUES "
                f"(:id, 'lab', :code, 1, :ts, 'machine.locked', {as_json.format('data')}, :ts)"
            ),
            {
                "id": uuid.uuid4().hex if dialect == "sqlite" else str(uuid.uuid4()),
                "code": code,
                "ts": datetime.now(UTC),
                "data": raw_json({"reason": sample, "note": telemetry}, dialect),
            },
        )


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(status=statuses, telemetry=telemetries, sample=anything)
def test_pages_and_the_api_render_whatever_is_stored(
    lab: tuple[TestClient, Engine, list[str]], status: Any, telemetry: Any, sample: Any
) -> None:
    client, engine, codes = lab
    for code in codes:
        write_rows(engine, code, status, telemetry, sample)
    for path in ["/api/v1/machines", "/metrics", "/", "/web/machines"] + [
        page
        for code in codes
        for page in (
            f"/api/v1/machines/{code}",
            f"/api/v1/machines/{code}/telemetry",
            f"/web/machines/{code}",
        )
    ]:
        answer = client.get(path)
        assert answer.status_code == 200, (path, answer.text[-500:])
        if path.startswith("/api/"):
            answer.json()  # valid JSON: no NaN, no Infinity

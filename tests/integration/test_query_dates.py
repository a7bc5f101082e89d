"""Far past or far future days and times in any query answer 422 naming the parameter,
never 500. The API's routes are found from its OpenAPI schema (every GET parameter with a
date or date-time format), so a route added later is covered; the web pages that take
dates (not in the schema) are listed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session

from hub.api.deps import EARLIEST_DAY, LATEST_DAY
from hub.app import create_app
from hub.core.db import make_engine, migrate
from hub.core.settings import get_settings
from hub.demo.seed import seed_demo
from tests.support.api import admin_headers

# Values for the path parameters of the routes found, from the demo lab.
PATH_VALUES = {"code": "laser-1", "member_id": "1", "request_id": "r1"}
# Web pages with date parameters: (path, parameter, format, the other parameters).
WEB = [
    ("/web/stats", "from", "date", {}),
    ("/web/stats", "to", "date", {}),
    ("/web/members/1/tap/r1", "until", "date-time", {"machine": "laser-1"}),
]
VALID = {"date": "2026-11-01", "date-time": "2026-11-01T00:00:00Z"}


def _date_params(schema: dict[str, Any]) -> list[tuple[str, str, str, dict[str, str]]]:
    found = []
    for path, operations in schema["paths"].items():
        get = operations.get("get")
        if not get:
            continue
        params = [p for p in get.get("parameters", []) if p["in"] == "query"]

        def fmt(param: dict[str, Any]) -> str | None:
            schema = param.get("schema", {})
            for option in [schema, *schema.get("anyOf", [])]:
                if option.get("format") in ("date", "date-time"):
                    return str(option["format"])
            return None

        for param in params:
            kind = fmt(param)
            if kind is None:
                continue
            # The other required date parameters get a sane value (usage needs both ends).
            others = {
                p["name"]: VALID[f]
                for p in params
                if p is not param and p.get("required") and (f := fmt(p)) is not None
            }
            found.append((path.format(**PATH_VALUES), param["name"], kind, others))
    return found


@pytest.fixture
def hub(database_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, dict[str, str]]]:
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
    engine.dispose()
    headers = admin_headers(database_url)
    app = create_app(
        get_settings(None, database_url=database_url, data_dir=tmp_path), start_ingest=False
    )
    with TestClient(app) as client:
        yield client, headers


zones = st.one_of(
    st.none(),
    st.just(UTC),
    st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(
        lambda minutes: timezone(timedelta(minutes=minutes))
    ),
)
# Mostly far from the window, with its edges (a day either side) drawn on purpose too.
days = st.one_of(
    st.dates(min_value=date(1, 1, 1), max_value=EARLIEST_DAY),
    st.dates(min_value=LATEST_DAY, max_value=date(9999, 12, 31)),
    st.sampled_from(
        [EARLIEST_DAY - timedelta(days=1), EARLIEST_DAY, LATEST_DAY, LATEST_DAY + timedelta(1)]
    ),
)
moments = st.builds(
    lambda day, seconds, zone: (
        datetime.combine(day, datetime.min.time(), zone)
        + (timedelta(seconds=seconds) if day < date(9999, 12, 31) else timedelta(0))
    ),
    days,
    st.integers(min_value=0, max_value=86_399),
    zones,
)


def _in_window(value: date) -> bool:
    return EARLIEST_DAY <= value <= LATEST_DAY


def test_the_schema_has_the_date_parameters_we_expect(
    hub: tuple[TestClient, dict[str, str]],
) -> None:
    client, _ = hub
    found = {(path, name) for path, name, _, _ in _date_params(client.app.openapi())}  # type: ignore[attr-defined]
    # If this shrinks to nothing the property test below would prove nothing.
    assert {("/api/v1/sessions", "from"), ("/api/v1/stats/usage", "to")} <= found


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(day=days, moment=moments)
def test_far_dates_in_any_query_answer_422_never_500(
    hub: tuple[TestClient, dict[str, str]], day: date, moment: datetime
) -> None:
    client, headers = hub
    targets = _date_params(client.app.openapi()) + WEB  # type: ignore[attr-defined]
    for path, name, kind, others in targets:
        value = day.isoformat() if kind == "date" else moment.isoformat()
        written_day = day if kind == "date" else moment.date()
        answer = client.get(path, params={**others, name: value}, headers=headers)
        assert answer.status_code < 500, (path, name, value, answer.text[:300])
        if not _in_window(written_day):
            assert answer.status_code == 422, (path, name, value, answer.status_code)
            if path.startswith("/api/"):
                [error] = answer.json()["detail"]
                assert error["loc"] == ["query", name] and "1970-01-01" in error["msg"]

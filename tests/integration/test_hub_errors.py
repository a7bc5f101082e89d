"""HubError end to end, on the maintenance feature: the service's code, field and params; the
CLI's flag and exit code 2; the catalogue's French for every code (the API's and the web's
mappings are checked in test_api_maintenance and test_web_screens)."""

from __future__ import annotations

import math
import re
import string
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from sqlmodel import Session
from typer.testing import CliRunner

from atelier_cli import app
from hub.core.errors import (
    MESSAGES,
    Conflict,
    Forbidden,
    HubError,
    InvalidValue,
    NotFound,
    describe,
)
from hub.services.maintenance.tasks import MAX_EVERY_DAYS, MAX_EVERY_HOURS, add_task
from hub.web.i18n import translator
from tests.support.databases import demo_lab

runner = CliRunner()
FIELDS = re.compile(r"\{(\w+)[^}]*\}")


def test_every_code_speaks_french_with_the_same_parameters() -> None:
    french = translator("fr")
    for code, template in MESSAGES.items():
        translated = french.gettext(template)
        assert translated != template, f"{code}: no French in messages.po"
        assert set(FIELDS.findall(translated)) == set(FIELDS.findall(template)), code


def test_each_kind_is_also_the_builtin_a_caller_expects() -> None:
    assert issubclass(InvalidValue, ValueError) and InvalidValue.status == 422
    assert issubclass(NotFound, LookupError) and NotFound.status == 404
    assert issubclass(Forbidden, PermissionError) and Forbidden.status == 403
    assert Conflict.status == 409
    for kind in (InvalidValue, NotFound, Forbidden, Conflict):
        assert issubclass(kind, HubError)


@settings(max_examples=60, deadline=None)
@given(
    code=st.one_of(
        st.sampled_from(sorted(MESSAGES)),
        st.from_regex(r"[a-z_]{1,20}\.[a-z_]{1,20}", fullmatch=True),  # a code retired or new
    ),
    params=st.dictionaries(
        st.text(string.ascii_lowercase + "_", min_size=1, max_size=12),
        st.one_of(
            st.text(max_size=300),  # NUL, surrogates' neighbours, braces
            st.integers(),
            st.floats(allow_nan=True, allow_infinity=True),
            st.none(),
        ),
        max_size=6,
    ),
)
def test_describing_an_error_never_fails(code: str, params: dict[str, object]) -> None:
    """Missing or odd parameters still give a line: reporting an error must not raise one."""
    error = NotFound(code, field="machine", params=params)
    text = describe(error, translator("fr").gettext)
    assert isinstance(text, str) and text
    assert str(error) and repr(code) in repr(error)


@pytest.fixture
def seeded(database_url: str) -> Iterator[Engine]:
    with demo_lab(database_url) as engine:
        yield engine


@pytest.fixture(scope="module")
def sqlite_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path_factory.mktemp('errors') / 'hub.db'}"
    with demo_lab(url) as engine:
        yield engine


BAD_HOURS = st.one_of(
    st.floats(max_value=0.0),
    st.just(math.nan),
    st.floats(min_value=MAX_EVERY_HOURS, exclude_min=True),  # includes +inf
)
BAD_DAYS = st.one_of(
    st.integers(max_value=0), st.integers(min_value=MAX_EVERY_DAYS + 1, max_value=10**30)
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    interval=st.one_of(
        BAD_HOURS.map(lambda h: ("every_hours", h)), BAD_DAYS.map(lambda d: ("every_days", d))
    )
)
def test_a_task_interval_out_of_range_is_refused_by_its_field(
    sqlite_lab: Engine, interval: tuple[str, float]
) -> None:
    field, value = interval
    with Session(sqlite_lab) as session:
        with pytest.raises(InvalidValue) as refused:
            add_task(session, title="t", actor="test", machine="laser-1", **{field: value})
        assert refused.value.field == field
        assert refused.value.code in {
            "maintenance.interval_not_positive",
            "maintenance.interval_too_long",
        }
        session.rollback()


@pytest.fixture
def cli_env(seeded: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Engine:
    monkeypatch.setenv("ATELIER_DATABASE_URL", seeded.url.render_as_string(hide_password=False))
    monkeypatch.setenv("ATELIER_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ATELIER_SITE", "lab")
    return seeded


@pytest.mark.parametrize(
    ("args", "flag", "words"),
    [
        (
            ["maintenance", "task", "add", "--title", "t", "--machine", "nope",
             "--every-days", "3"],
            "--machine",
            "no machine 'nope' (known: ",
        ),
        (
            ["maintenance", "task", "add", "--title", "t", "--machine-type", "lathe",
             "--every-days", "3"],
            "--machine-type",
            "no machine type 'lathe'",
        ),
        (
            ["maintenance", "task", "add", "--title", "t", "--machine", "laser-1",
             "--every-hours", "nan"],
            "--every-hours",
            "the interval must be more than 0",
        ),
        (
            ["maintenance", "sign-off", "99", "--by", "camille@example.org", "--note", "done"],
            "TASK",
            "no maintenance task 99",
        ),
        (["incident", "open", "nope", "--text", "smoke"], "MACHINE", "no machine 'nope'"),
        (["incident", "open", "laser-1", "--text", " "], "--text", "the text is empty"),
        (
            ["incident", "open", "laser-1", "--text", "smoke", "--by", "who@example.org"],
            "--by",
            "no member with email who@example.org",
        ),
        (["incident", "close", "7", "--note", "fixed"], "INCIDENT", "no incident 7"),
    ],
)  # fmt: skip
def test_the_cli_names_the_flag_and_exits_2(
    cli_env: Engine, args: list[str], flag: str, words: str
) -> None:
    result = runner.invoke(app, ["hub", *args])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"{flag}: {words}"), result.output
    assert "Traceback" not in result.output

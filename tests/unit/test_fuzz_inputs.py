"""What a person types, fuzzed: machine TOML and CSV imports give errors, never crashes."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.config import AgentConfig, ConfigError, load_config

SECTIONS = {
    "agent": {
        "site": "lab",
        "machine": "laser-1",
        "state_dir": "/tmp/x",
        "hub_public_key": "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=",
    },
    "gpio": {"pin_factory": "mock"},
    "relay": {"pin": 17},
    "reader": {"type": "sim"},
}
toml_scalars = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=30),
)


def to_toml(data: dict[str, dict[str, object]]) -> str:
    lines = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            if isinstance(value, bool):
                rendered = "true" if value else "false"
            elif isinstance(value, str):
                rendered = json.dumps(value, ensure_ascii=False)  # a valid TOML basic string
            else:
                rendered = repr(value)
            lines.append(f'"{key}" = {rendered}')
    return "\n".join(lines) + "\n"


mutated_configs = st.builds(
    lambda section, key, value, drop: {
        s: (
            {k: v for k, v in vals.items() if not (drop and s == section and k == key)}
            | ({} if drop else ({key: value} if s == section else {}))
        )
        for s, vals in SECTIONS.items()
    },
    st.sampled_from(sorted(SECTIONS) + ["mqtt", "session", "busy_input"]),
    st.sampled_from(
        [
            "pin",
            "site",
            "machine",
            "type",
            "pin_factory",
            "state_dir",
            "port",
            "idle_timeout_s",
            "protocol",
            "pinn",
            "hub_public_key",
            "x",
        ]
    ),
    toml_scalars,
    st.booleans(),
)


@settings(
    max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(config=mutated_configs)
def test_config_loader_reports_errors_and_never_crashes(tmp_path: Path, config: dict) -> None:
    path = tmp_path / "machine.toml"
    text = to_toml(config)
    tomllib.loads(text)  # the generator itself writes valid TOML
    path.write_text(text)
    try:
        loaded = load_config(path)
    except ConfigError as exc:
        assert exc.errors and all(":" in e for e in exc.errors)
        return
    assert isinstance(loaded, AgentConfig)


@settings(
    max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(max_size=400))
def test_config_loader_survives_any_text(tmp_path: Path, text: str) -> None:
    path = tmp_path / "machine.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    with pytest.raises(ConfigError):
        load_config(path)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory):
    from sqlmodel import Session

    from hub.core.db import make_engine, migrate
    from hub.demo.seed import seed_demo

    url = f"sqlite:///{tmp_path_factory.mktemp('csv') / 'hub.db'}"
    migrate(url)
    engine = make_engine(url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
    yield engine
    engine.dispose()


csv_cells = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        [
            "student",
            "company",
            "04AA00",
            "04AA0001",
            "a@b.fr",
            "laser",
            "trainer",
            "yes",
            "2027-01-01",
            "camille@example.org",
            "",
            ";",
            '"',
            "\n",
        ]
    ),
)
csv_rows = st.lists(st.lists(csv_cells, min_size=0, max_size=7), max_size=6)


@settings(
    max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    kind=st.sampled_from(["members", "trainings"]),
    rows=csv_rows,
    delimiter=st.sampled_from([",", ";", "\t"]),
)
def test_csv_importers_report_or_import_never_crash(
    engine, kind: str, rows: list[list[str]], delimiter: str
) -> None:
    from hub.imports import (
        MEMBER_COLUMNS,
        TRAINING_COLUMNS,
        ImportFileError,
        import_members,
        import_trainings,
    )

    header = MEMBER_COLUMNS if kind == "members" else TRAINING_COLUMNS
    text = "\n".join(delimiter.join(r) for r in [header, *rows]) + "\n"
    importer = import_members if kind == "members" else import_trainings
    try:
        report = importer(engine, text, dry_run=True)
    except ImportFileError as exc:
        assert str(exc)
        return
    assert report.ok or all(e.startswith("line ") for e in report.errors)


safety_values = st.one_of(
    toml_scalars,
    st.sampled_from([0, -1, 17, 27, 28, 600, 601, 86_400, 86_401, 1e308, -0.0, "", "\x00", "lid"]),
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    table=st.sampled_from(["interlock", "accessory"]),
    key=st.sampled_from(["name", "kind", "pin", "grace_s", "run_on_s", "training", "pull_up"]),
    value=safety_values,
)
def test_interlock_and_accessory_tables_name_the_bad_field(
    tmp_path: Path, table: str, key: str, value: object
) -> None:
    """[[interlock]] and [[accessory]] with any value in any field: loaded, or refused with
    errors that name the table and its field, never a crash."""
    base = {"name": "extraction", "pin": 5}
    if table == "interlock":
        base["kind"] = "extraction"
    entry = base | {key: value}
    rendered = to_toml({"x": entry}).replace("[x]", f"[[{table}]]")
    path = tmp_path / "machine.toml"
    path.write_text(to_toml(SECTIONS) + rendered)
    try:
        loaded = load_config(path)
    except ConfigError as exc:
        assert exc.errors and all(table in e for e in exc.errors), exc.errors
        return
    items = loaded.interlock if table == "interlock" else loaded.accessory
    assert len(items) == 1 and 0 <= items[0].pin <= 27

"""The one logging setup (edge/logs.py): text or one JSON object per line, chosen by option or
environment, never a doubled handler, never a line a parser cannot read."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.logs import FORMAT_ENV, JsonFormatter, LogSetupError, log_format, setup_logging


@pytest.fixture
def root_restored() -> Iterator[logging.Logger]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    logger = logging.getLogger("hub.ingest")
    record = logger.makeRecord("hub.ingest", logging.WARNING, __file__, 1, message, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


@settings(max_examples=80, deadline=None)
@given(
    message=st.text(max_size=2000),  # NUL, newlines, lone surrogates, any script
    extra=st.dictionaries(
        st.sampled_from(["machine", "site", "seq", "payload", "dead_letters"]),
        st.one_of(
            st.text(max_size=50),
            st.integers(),
            st.floats(allow_nan=True, allow_infinity=True),
            st.binary(max_size=20),
            st.none(),
        ),
        max_size=4,
    ),
)
def test_a_json_record_is_one_parseable_line(message: str, extra: dict[str, object]) -> None:
    line = JsonFormatter().format(_record(message, **extra))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == message
    assert (entry["level"], entry["logger"]) == ("warning", "hub.ingest")
    assert entry["ts"].endswith("+00:00")
    for key, value in extra.items():
        assert key in entry  # bytes and NaN come out as their repr, or JSON's NaN
        if isinstance(value, str | int) or value is None:
            assert entry[key] == value


def test_an_exception_travels_in_the_line() -> None:
    try:
        raise RuntimeError("broker gone")
    except RuntimeError:
        record = logging.getLogger("edge.agent").makeRecord(
            "edge.agent", logging.ERROR, __file__, 1, "publish failed", (), sys.exc_info()
        )
    entry = json.loads(JsonFormatter().format(record))
    assert "RuntimeError: broker gone" in entry["exception"]
    assert entry["message"] == "publish failed"


def test_the_option_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FORMAT_ENV, raising=False)
    assert log_format(None) == "text"
    monkeypatch.setenv(FORMAT_ENV, "JSON")
    assert log_format(None) == "json"
    assert log_format("text") == "text"
    monkeypatch.setenv(FORMAT_ENV, "yaml")
    with pytest.raises(LogSetupError, match=f"{FORMAT_ENV} 'yaml': give one of text, json"):
        log_format(None)
    with pytest.raises(LogSetupError, match="--log-format 'xml'"):
        log_format("xml")
    with pytest.raises(LogSetupError, match="--log-level 'loud'"):
        setup_logging("loud", "text")


def test_setting_up_twice_keeps_one_handler_and_quiets_the_chatty(
    root_restored: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    setup_logging("info", "text")
    assert setup_logging("debug", "json", quiet=["amqtt"]) == "json"
    ours = [h for h in root_restored.handlers if getattr(h, "_atelier", False)]
    assert len(ours) == 1 and isinstance(ours[0].formatter, JsonFormatter)
    assert logging.getLogger("amqtt").level == logging.WARNING
    logging.getLogger("hub.app").info("hub ready", extra={"port": 8000})
    logging.getLogger("amqtt").info("chatter")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(e["logger"], e["message"], e.get("port")) for e in lines] == [
        ("hub.app", "hub ready", 8000)
    ]


def test_the_entry_points_refuse_a_format_nobody_reads(
    root_restored: logging.Logger,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    from typer.testing import CliRunner

    from atelier_cli import app
    from edge.service import main as agent_main

    monkeypatch.setenv(FORMAT_ENV, "yaml")
    assert agent_main(["--config", str(tmp_path / "laser.toml")]) == 2
    assert f"{FORMAT_ENV} 'yaml': give one of text, json" in capsys.readouterr().err
    monkeypatch.delenv(FORMAT_ENV)
    result = CliRunner().invoke(app, ["hub", "ingest", "--log-format", "xml"])
    assert result.exit_code == 2
    assert "--log-format 'xml': give one of text, json" in result.output
    assert "Traceback" not in result.output

"""The agent's one error tree: each error is an EdgeError and the built-in callers catch."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import edge.config
import edge.hardware.readers
import edge.integrations.ruida
import edge.journal
from edge import errors
from edge.config import load_config


@pytest.mark.parametrize(
    ("kind", "builtin"),
    [
        (errors.ConfigError, ValueError),
        (errors.ReaderError, OSError),
        (errors.JournalFull, sqlite3.OperationalError),
        (errors.RuidaError, OSError),
    ],
)
def test_each_error_is_an_edge_error_and_its_builtin(kind: type, builtin: type) -> None:
    assert issubclass(kind, errors.EdgeError) and issubclass(kind, builtin)


def test_the_first_homes_still_name_the_same_classes() -> None:
    assert edge.config.ConfigError is errors.ConfigError
    assert edge.hardware.readers.ReaderError is errors.ReaderError
    assert edge.hardware.readers.EdgeError is errors.EdgeError
    assert edge.journal.JournalFull is errors.JournalFull
    assert edge.integrations.ruida.RuidaError is errors.RuidaError


def test_a_bad_config_is_caught_as_an_edge_error(tmp_path: Path) -> None:
    path = tmp_path / "laser.toml"
    path.write_text('[agent]\nmachine = "Laser 1"\n')
    with pytest.raises(errors.EdgeError) as caught:
        load_config(path)
    assert isinstance(caught.value, errors.ConfigError)
    assert "agent.machine" in caught.value.report() or "machine" in caught.value.report()

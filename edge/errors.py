"""The agent's one error tree: every error it raises is an `EdgeError` and the built-in a caller
would expect (gpiozero's pattern), so `except OSError` and `except EdgeError` both work.

    EdgeError
    ├── ConfigError (ValueError)            the machine TOML: every problem, by field
    ├── ReaderError (IOError)               a badge reader cannot be opened or stopped answering
    ├── JournalFull (sqlite3.OperationalError)  the disk and the memory reserve are full
    └── RuidaError (OSError)                a laser controller did not answer as it should

The classes stay importable where they were first defined (edge.config, edge.hardware.readers,
edge.journal, edge.integrations.ruida).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path


class EdgeError(Exception):
    """Root of the agent's errors."""


class ConfigError(EdgeError, ValueError):
    """A config a person must fix; `errors` lists every problem as 'section.field: message'."""

    def __init__(self, path: Path | str, errors: list[str]) -> None:
        self.path = str(path)
        self.errors = errors
        super().__init__(f"{path}: " + "; ".join(errors))

    def report(self) -> str:
        lines = [f"{self.path}: {len(self.errors)} problem(s):"]
        lines += [f"  - {e}" for e in self.errors]
        return "\n".join(lines)


class ReaderError(EdgeError, IOError):
    """A badge reader cannot be opened or stopped answering."""


class JournalFull(EdgeError, sqlite3.OperationalError):
    """The disk is full and the in-memory reserve too: the event could not be kept."""


class RuidaError(EdgeError, OSError):
    """The controller did not answer, refused, or answered something else."""

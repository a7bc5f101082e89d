"""The audit log: one row per change, written in the same transaction as the change."""

from __future__ import annotations

import getpass
import os
from typing import Any

from sqlmodel import Session

from hub.models import AuditEntry


def cli_actor() -> str:
    """Who runs a command: the system user (sudo's caller when there is one)."""
    return "cli:" + (os.environ.get("SUDO_USER") or getpass.getuser())


def record(
    session: Session, *, actor: str, action: str, entity: str, entity_id: str, **detail: Any
) -> None:
    session.add(
        AuditEntry(
            actor=actor[:100],
            action=action[:60],
            entity=entity[:40],
            entity_id=str(entity_id)[:100],
            detail=detail,
        )
    )

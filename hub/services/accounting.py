"""The month's books for the lab's accounting software: its sales (statements), credit notes
and prepaid top-ups as journal entries (hub/domain/accounting.py) on the accounts the lab
set, written as Paheko's or Dolibarr's import file (hub/reports/books.py)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, fields
from datetime import datetime, time
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from hub.audit import record
from hub.core.errors import InvalidValue
from hub.domain.accounting import Accounts, Document, Entry, TopUp, journal_entries
from hub.models import (
    CREDIT_NOTE,
    STATEMENT,
    BalanceMovement,
    LabSetting,
    Member,
    Statement,
    utcnow,
)
from hub.reports.books import FORMATS, write_books
from hub.services.billing.books import parse_month

ACCOUNT_FIELDS = tuple(f.name for f in fields(Accounts))
_ACCOUNT = re.compile(r"[0-9A-Za-z]{1,20}")
_JOURNAL = re.compile(r"[0-9A-Za-z]{1,10}")


def accounts(session: Session) -> Accounts:
    """The lab's accounts and journals, each absent one at the French chart's default."""
    kept = {
        row.key.removeprefix("books_"): row.value
        for row in session.exec(
            select(LabSetting).where(col(LabSetting.key).startswith("books_"))
        ).all()
    }
    return Accounts(**{k: v for k, v in kept.items() if k in ACCOUNT_FIELDS and v})


def set_accounts(session: Session, changes: Mapping[str, str | None], *, actor: str) -> Accounts:
    """Keep the accounts given (all checked first), audited. The caller commits."""
    checked: dict[str, str] = {}
    for name, given in changes.items():
        if name not in ACCOUNT_FIELDS:
            raise InvalidValue("books.unknown_field", field=name, params={"field": name[:40]})
        if given is None:
            continue
        value = given.strip()
        pattern = _JOURNAL if name.endswith("journal") else _ACCOUNT
        if not pattern.fullmatch(value):
            raise InvalidValue(
                "books.journal_code" if name.endswith("journal") else "books.account_code",
                field=name,
                params={"value": given[:40], "field": name},
            )
        checked[name] = value
    now = utcnow()
    for name, value in checked.items():
        row = session.get(LabSetting, f"books_{name}") or LabSetting(key=f"books_{name}")
        row.value, row.changed_at, row.changed_by = value, now, actor[:100]
        session.add(row)
    if checked:
        record(
            session,
            actor=actor,
            action="books.accounts",
            entity="lab_setting",
            entity_id="books",
            **checked,
        )
    session.flush()
    return accounts(session)


def month_entries(session: Session, month: str, *, tz: ZoneInfo) -> list[Entry]:
    """The month's statements and credit notes (dated the day they were issued) and the
    top-ups received in the month (lab time), as journal entries."""
    first, nxt = parse_month(month)
    documents = [
        Document(
            number=s.number,
            day=s.created_at.astimezone(tz).date(),
            payer=s.payer_name or s.payer_ref,
            total_cents=s.total_cents,
            prepaid_cents=s.prepaid_cents,
            credit_note=s.kind == CREDIT_NOTE,
        )
        for s in session.exec(
            select(Statement)
            .where(Statement.month == month, col(Statement.kind).in_([STATEMENT, CREDIT_NOTE]))
            .order_by(col(Statement.number))
        ).all()
    ]
    start = datetime.combine(first, time(), tz)
    end = datetime.combine(nxt, time(), tz)
    names = dict(session.exec(select(Member.id, Member.name)).all())
    top_ups = [
        TopUp(
            reference=f"R{m.id}",
            day=m.at.astimezone(tz).date(),
            payer=names.get(m.member_id, "") or str(m.member_id),
            cents=m.cents,
        )
        for m in session.exec(
            select(BalanceMovement)
            .where(
                BalanceMovement.kind == "topup",
                col(BalanceMovement.at) >= start,
                col(BalanceMovement.at) < end,
            )
            .order_by(col(BalanceMovement.at), col(BalanceMovement.id))
        ).all()
    ]
    return journal_entries(documents, top_ups, accounts(session))


def export_books(
    session: Session, month: str, out: Path, *, fmt: str, tz: ZoneInfo
) -> tuple[Path, list[Entry]]:
    """The month's entries written for `fmt` (paheko or dolibarr) at `out`."""
    if fmt not in FORMATS:
        raise InvalidValue(
            "books.format",
            field="format",
            params={"format": fmt[:40], "formats": ", ".join(FORMATS)},
        )
    entries = month_entries(session, month, tz=tz)
    return write_books(entries, out, fmt=fmt, accounts=accounts(session), tz=tz), entries


def accounts_as_dict(session: Session) -> dict[str, str]:
    return asdict(accounts(session))

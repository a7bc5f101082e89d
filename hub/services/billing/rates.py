"""Rates: prices per machine type and member category from a day on, set one by one or from CSV."""

from __future__ import annotations

import csv
import re
from datetime import date

from sqlmodel import Session, col, select

from hub.domain.billing import Rate
from hub.models import (
    MachineType,
    MemberCategory,
)
from hub.services.billing._tables import BillingRate
from hub.services.billing.books import BillingError, _closed_months, parse_month

# --- rates --------------------------------------------------------------------------------
RATE_FIELDS = [
    "machine_type",
    "category",
    "effective_from",
    "cents_per_hour",
    "basis",
    "start_fee_cents",
    "minimum_cents",
    "rounding_minutes",
    "daily_cap_cents",
    "included_minutes_per_month",
]
_REQUIRED_RATE_FIELDS = RATE_FIELDS[:4]


def check_rate(session: Session, values: dict[str, str]) -> BillingRate:
    """A rate from text values (a CSV row or command options); BillingError names the field."""
    missing = [f for f in _REQUIRED_RATE_FIELDS if not (values.get(f) or "").strip()]
    if missing:
        raise BillingError(f"{', '.join(missing)} must be given")
    machine_type = values["machine_type"].strip()
    known_types = set(session.exec(select(MachineType.code)).all())
    if machine_type not in known_types:
        raise BillingError(
            f"machine_type {machine_type!r} is not a machine type of this lab "
            f"(known: {', '.join(sorted(known_types)) or 'none yet'})"
        )
    category = values["category"].strip().lower()
    categories = [c.value for c in MemberCategory]
    if category not in categories:
        raise BillingError(f"category {category!r} must be one of {', '.join(categories)}")
    try:
        effective = date.fromisoformat(values["effective_from"].strip())
    except ValueError:
        raise BillingError(
            f"effective_from {values['effective_from']!r} must be a day like 2026-10-01"
        ) from None
    for month in _closed_months(session):
        if effective < parse_month(month)[1]:
            raise BillingError(
                f"effective_from {effective} is not after {month}, which is closed: a closed "
                "month cannot change; give a day after it"
            )
    basis = (values.get("basis") or "session").strip() or "session"
    if basis not in ("session", "busy"):
        raise BillingError(f"basis {basis!r} must be session or busy")

    def number(name: str, default: int | None, least: int) -> int | None:
        raw = (values.get(name) or "").strip()
        if not raw:
            return default
        if not re.fullmatch(r"\d+", raw) or int(raw) < least:
            raise BillingError(f"{name} {raw!r} must be a whole number, at least {least}")
        return int(raw)

    rate = BillingRate(
        machine_type=machine_type,
        category=category,
        effective_from=effective,
        cents_per_hour=number("cents_per_hour", 0, 0) or 0,
        basis=basis,
        start_fee_cents=number("start_fee_cents", 0, 0) or 0,
        minimum_cents=number("minimum_cents", 0, 0) or 0,
        rounding_minutes=number("rounding_minutes", 1, 1) or 1,
        daily_cap_cents=number("daily_cap_cents", None, 0),
        included_minutes_per_month=number("included_minutes_per_month", 0, 0) or 0,
    )
    rate.as_rate()  # the domain's own checks
    return rate


def set_rate(session: Session, rate: BillingRate) -> bool:
    """Add the rate, or replace the one with the same type, category and day. True if new."""
    existing = session.exec(
        select(BillingRate).where(
            BillingRate.machine_type == rate.machine_type,
            BillingRate.category == rate.category,
            BillingRate.effective_from == rate.effective_from,
        )
    ).first()
    if existing is None:
        session.add(rate)
        return True
    for name in RATE_FIELDS[3:]:
        setattr(existing, name, getattr(rate, name))
    session.add(existing)
    return False


def import_rates(session: Session, text: str) -> tuple[int, int]:
    """Rates from CSV text with a header of RATE_FIELDS; all rows or none (added, replaced)."""
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [f for f in _REQUIRED_RATE_FIELDS if f not in header]
    if missing:
        raise BillingError(
            f"the header lacks {', '.join(missing)}; expected columns: {','.join(RATE_FIELDS)}"
        )
    unknown = [h for h in header if h not in RATE_FIELDS]
    if unknown:
        raise BillingError(f"unknown column(s) {', '.join(unknown)}; expected {RATE_FIELDS}")
    rates: list[BillingRate] = []
    seen: set[tuple[str, str, date]] = set()
    for line_no, row in enumerate(reader, start=2):
        values = {(k or "").strip(): v or "" for k, v in row.items()}
        try:
            rate = check_rate(session, values)
        except (BillingError, ValueError) as exc:
            raise BillingError(f"line {line_no}: {exc}") from None
        key = (rate.machine_type, rate.category, rate.effective_from)
        if key in seen:
            raise BillingError(f"line {line_no}: the same rate is given twice {key}")
        seen.add(key)
        rates.append(rate)
    if not rates:
        raise BillingError("the file has a header but no rate")
    added = sum(set_rate(session, rate) for rate in rates)
    return added, len(rates) - added


def all_rates(session: Session) -> list[Rate]:
    rows = session.exec(
        select(BillingRate).order_by(
            col(BillingRate.machine_type),
            col(BillingRate.category),
            col(BillingRate.effective_from),
        )
    ).all()
    return [row.as_rate() for row in rows]

"""Rates: prices per machine type and member category from a day on, set one by one or from CSV."""

from __future__ import annotations

import csv
import re
from datetime import date

from sqlmodel import Session, col, select

from hub.audit import record
from hub.core.errors import Conflict, HubError, InvalidValue, NotFound
from hub.domain.billing import OFFLINE_JOB_CHOICES, Rate
from hub.models import (
    BillingRate,
    MachineType,
    MemberCategory,
)
from hub.services.billing.books import closed_months, parse_month

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
    """A rate from text values (a CSV row or a form); InvalidValue names the field at fault."""
    missing = [f for f in _REQUIRED_RATE_FIELDS if not (values.get(f) or "").strip()]
    if missing:
        raise InvalidValue("rate.missing", field=missing[0], params={"fields": ", ".join(missing)})
    machine_type = values["machine_type"].strip()
    known_types = set(session.exec(select(MachineType.code)).all())
    if machine_type not in known_types:
        raise NotFound(
            "machine_type.unknown",
            field="machine_type",
            params={"machine_type": machine_type, "known": ", ".join(sorted(known_types)) or "-"},
        )
    category = values["category"].strip().lower()
    categories = [c.value for c in MemberCategory]
    if category not in categories:
        raise InvalidValue(
            "rate.category",
            field="category",
            params={"category": category, "categories": ", ".join(categories)},
        )
    try:
        effective = date.fromisoformat(values["effective_from"].strip())
    except ValueError:
        raise InvalidValue(
            "rate.day_format", field="effective_from", params={"value": values["effective_from"]}
        ) from None
    for month in closed_months(session):
        if effective < parse_month(month)[1]:
            raise Conflict(
                "rate.month_closed",
                field="effective_from",
                params={"day": effective.isoformat(), "month": month},
            )
    basis = (values.get("basis") or "session").strip() or "session"
    if basis not in ("session", "busy"):
        raise InvalidValue("rate.basis", field="basis", params={"basis": basis})

    def number(name: str, default: int | None, least: int) -> int | None:
        raw = (values.get(name) or "").strip()
        if not raw:
            return default
        if not re.fullmatch(r"\d+", raw) or int(raw) < least:
            raise InvalidValue(
                "rate.whole_number", field=name, params={"value": raw, "least": least}
            )
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


def save_rate(session: Session, *, values: dict[str, str], actor: str) -> tuple[BillingRate, bool]:
    """Check and store a rate typed by a person, audited as `actor`: (the rate, True if new).
    The caller commits."""
    rate = check_rate(session, values)
    added = set_rate(session, rate)
    record(
        session,
        actor=actor,
        action="billing.rate_set",
        entity="billing_rate",
        entity_id=f"{rate.machine_type}/{rate.category}/{rate.effective_from}",
        **{k: v for k, v in values.items() if v},
    )
    return rate, added


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
    """Rates from CSV text with a header of RATE_FIELDS; all rows or none (added, replaced).

    A refused row raises its field's error with `line` added to its params (the CSV's line
    number, the header being line 1): the front end says which line and column."""
    reader = csv.DictReader(text.splitlines())
    header = [h.strip() for h in reader.fieldnames or []]
    expected = ",".join(RATE_FIELDS)
    missing = [f for f in _REQUIRED_RATE_FIELDS if f not in header]
    if missing:
        raise InvalidValue(
            "rates.header_missing",
            field="file",
            params={"missing": ", ".join(missing), "expected": expected},
        )
    unknown = [h for h in header if h not in RATE_FIELDS]
    if unknown:
        raise InvalidValue(
            "rates.header_unknown",
            field="file",
            params={"unknown": ", ".join(unknown), "expected": expected},
        )
    rates: list[BillingRate] = []
    seen: set[tuple[str, str, date]] = set()
    for line_no, row in enumerate(reader, start=2):
        values = {(k or "").strip(): v if isinstance(v, str) else "" for k, v in row.items()}
        try:
            rate = check_rate(session, values)
        except HubError as exc:
            raise type(exc)(
                exc.code, field=exc.field, params={**exc.params, "line": line_no}
            ) from None
        key = (rate.machine_type, rate.category, rate.effective_from)
        if key in seen:
            raise InvalidValue(
                "rates.twice",
                field="file",
                params={
                    "line": line_no,
                    "machine_type": key[0],
                    "category": key[1],
                    "day": key[2].isoformat(),
                },
            )
        seen.add(key)
        rates.append(rate)
    if not rates:
        raise InvalidValue("rates.empty", field="file")
    added = sum(set_rate(session, rate) for rate in rates)
    return added, len(rates) - added


def import_rates_file(
    session: Session, *, raw: bytes, name: str, actor: str, max_bytes: int | None = None
) -> tuple[int, int]:
    """A CSV file of rates as uploaded or read (UTF-8, a spreadsheet's BOM allowed), audited
    as `actor`: (added, replaced). The caller commits."""
    if max_bytes is not None and len(raw) > max_bytes:
        raise InvalidValue(
            "rates.too_large", field="file", params={"max_mb": f"{max_bytes / 1_000_000:g}"}
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidValue("rates.not_utf8", field="file") from None
    added, replaced = import_rates(session, text)
    record(
        session,
        actor=actor,
        action="billing.rates_import",
        entity="billing_rate",
        entity_id=name,
        added=added,
        replaced=replaced,
    )
    return added, replaced


def all_rates(session: Session) -> list[Rate]:
    rows = session.exec(
        select(BillingRate).order_by(
            col(BillingRate.machine_type),
            col(BillingRate.category),
            col(BillingRate.effective_from),
        )
    ).all()
    return [row.as_rate() for row in rows]


# --- jobs ended by the printer going offline -----------------------------------------------
def set_offline_jobs(session: Session, *, machine_type: str, choice: str, actor: str) -> str:
    """How a machine type's jobs that ended because the printer went offline are billed on a
    busy-time rate: "whole", "until-offline" or "free" (hub.domain.billing.OfflineJobs).
    Months already closed keep what they were billed. Audited; the caller commits. Returns
    the choice before."""
    wanted = choice.strip().lower()
    if wanted not in OFFLINE_JOB_CHOICES:
        raise InvalidValue(
            "billing.offline_jobs",
            field="offline_jobs",
            params={"value": choice, "choices": ", ".join(OFFLINE_JOB_CHOICES)},
        )
    mtype = session.exec(select(MachineType).where(MachineType.code == machine_type)).first()
    if mtype is None:
        known = session.exec(select(MachineType.code).order_by(col(MachineType.code))).all()
        raise NotFound(
            "machine_type.unknown",
            field="machine_type",
            params={"machine_type": machine_type, "known": ", ".join(known) or "-"},
        )
    before = mtype.offline_jobs
    mtype.offline_jobs = wanted
    session.add(mtype)
    record(
        session,
        actor=actor,
        action="billing.offline_jobs_set",
        entity="machine_type",
        entity_id=mtype.code,
        before=before,
        offline_jobs=wanted,
    )
    return before

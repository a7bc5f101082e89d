"""The booking rules of a machine type, or of one machine (which replace its type's)."""

from __future__ import annotations

from datetime import time
from typing import Any

from sqlmodel import Session, select

from hub.audit import record
from hub.core.errors import InvalidValue, NotFound
from hub.domain.bookings import (
    BookingRules,
    Opening,
)
from hub.models import (
    BookingRuleRow,
    Machine,
    MachineType,
)
from hub.services.machine_views import known_machine


# --- rules -------------------------------------------------------------------------------
def rules_of(row: BookingRuleRow | None) -> BookingRules:
    """The domain's rules from a stored row (no row: not bookable)."""
    if row is None:
        return BookingRules()
    return BookingRules(
        bookable=row.bookable,
        slot_minutes=row.slot_minutes,
        min_minutes=row.min_minutes,
        max_minutes=row.max_minutes,
        ahead_days=dict(row.ahead_days),
        week_hours=dict(row.week_hours),
        opening=tuple(
            Opening(int(d), time.fromisoformat(o), time.fromisoformat(c)) for d, o, c in row.opening
        ),
        trained_only=row.trained_only,
        grace_minutes=row.grace_minutes,
        no_show_fee=row.no_show_fee,
        late_cancel_hours=row.late_cancel_hours,
    )


def rule_row(session: Session, machine: Machine) -> BookingRuleRow | None:
    """The machine's own rules, else its type's, else None."""
    own = session.exec(
        select(BookingRuleRow).where(BookingRuleRow.machine_id == machine.id)
    ).first()
    if own is not None:
        return own
    return session.exec(
        select(BookingRuleRow).where(BookingRuleRow.machine_type_id == machine.machine_type_id)
    ).first()


def rules_for(session: Session, machine: Machine) -> BookingRules:
    return rules_of(rule_row(session, machine))


RULE_FIELDS = (
    "bookable",
    "slot_minutes",
    "min_minutes",
    "max_minutes",
    "ahead_days",
    "week_hours",
    "opening",
    "trained_only",
    "grace_minutes",
    "no_show_fee",
    "late_cancel_hours",
)


def set_rules(
    session: Session,
    *,
    machine_type: str | None = None,
    machine: str | None = None,
    values: dict[str, Any],
    actor: str,
) -> BookingRuleRow:
    """Set a machine type's rules, or one machine's override (exactly one of the two), from
    `values` (the RULE_FIELDS; the rest keep their stored or default values), and commit.
    Refuses with InvalidValue naming the field."""
    if (machine_type is None) == (machine is None):
        raise InvalidValue("booking.rules_scope", field="machine")
    unknown = sorted(set(values) - set(RULE_FIELDS))
    if unknown:
        raise InvalidValue(
            "booking.rule_unknown",
            field=unknown[0],
            params={"name": unknown[0], "known": ", ".join(RULE_FIELDS)},
        )
    if machine is not None:
        target = known_machine(session, machine)
        row = session.exec(
            select(BookingRuleRow).where(BookingRuleRow.machine_id == target.id)
        ).first() or BookingRuleRow(machine_id=target.id)
        if row.id is None:  # an override starts from its type's rules
            inherited = rule_row(session, target)
            if inherited is not None:
                for name in RULE_FIELDS:
                    setattr(row, name, getattr(inherited, name))
    else:
        mtype = known_machine_type(session, machine_type or "")
        row = session.exec(
            select(BookingRuleRow).where(BookingRuleRow.machine_type_id == mtype.id)
        ).first() or BookingRuleRow(machine_type_id=mtype.id)
    for name, value in values.items():
        setattr(row, name, _rule_value(name, value))
    try:
        rules_of(row)
    except (ValueError, TypeError) as exc:
        raise InvalidValue(
            "booking.rules_invalid", field="rules", params={"reason": str(exc)}
        ) from None
    session.add(row)
    record(
        session,
        actor=actor,
        action="booking.rules",
        entity="machine" if machine else "machine_type",
        entity_id=machine or machine_type or "",
        **{name: getattr(row, name) for name in RULE_FIELDS},
    )
    session.commit()
    return row


def known_machine_type(session: Session, code: str) -> MachineType:
    """The machine type with this code, or NotFound naming the codes there are."""
    mtype = (
        session.exec(select(MachineType).where(MachineType.code == code)).first()
        if "\x00" not in code
        else None
    )
    if mtype is None:
        known = ", ".join(session.exec(select(MachineType.code).order_by(MachineType.code)))
        raise NotFound(
            "machine_type.unknown",
            field="machine_type",
            params={"machine_type": code[:100], "known": known or "-"},
        )
    return mtype


_INTS = {"slot_minutes", "min_minutes", "max_minutes", "grace_minutes", "late_cancel_hours"}
_BOOLS = {"bookable", "trained_only", "no_show_fee"}


def _rule_value(name: str, value: Any) -> Any:
    bad = InvalidValue(
        "booking.rule_invalid", field=name, params={"name": name, "value": str(value)[:100]}
    )
    if name in _INTS:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 2**31 - 1:
            raise bad
        return value
    if name in _BOOLS:
        if not isinstance(value, bool):
            raise bad
        return value
    if name in ("ahead_days", "week_hours"):
        if not isinstance(value, dict):
            raise bad
        out: dict[str, Any] = {}
        for category, number in value.items():
            if (
                not isinstance(category, str)
                or not 0 < len(category) <= 20
                or "\x00" in category
                or isinstance(number, bool)
                or not isinstance(number, int | float)
                or number != number  # NaN
                or not 0 <= number <= 10_000
            ):
                raise bad
            out[category] = int(number) if name == "ahead_days" else float(number)
        return out
    # opening: [[weekday, "HH:MM", "HH:MM"], ...]
    if not isinstance(value, list) or len(value) > 100:
        raise bad
    spans = []
    for span in value:
        try:
            weekday, opens, closes = span
            Opening(int(weekday), time.fromisoformat(opens), time.fromisoformat(closes))
        except (TypeError, ValueError):
            raise bad from None
        spans.append([int(weekday), opens, closes])
    return spans

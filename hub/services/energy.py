"""The kWh the machines' smart plugs measured, per session and per machine and month."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import Session, col

from hub.domain.energy import EnergyTotal, EnergyUse, by_machine_month
from hub.models import BusyPeriod, Machine, MachineSession, MachineType


def session_kwh(session: Session, session_ids: Collection[str]) -> dict[str, float]:
    """By session, the kWh it is charged: its own, and its busy periods' run-on (what ran
    after it ended, billed to whoever started it). Sessions with no metering are left out."""
    if not session_ids:
        return {}
    ids = list(session_ids)
    totals: dict[str, float] = defaultdict(float)
    metered: set[str] = set()
    for sid, kwh in session.execute(
        sa.select(col(MachineSession.id), col(MachineSession.energy_kwh)).where(
            col(MachineSession.id).in_(ids), col(MachineSession.energy_kwh).is_not(None)
        )
    ):
        totals[sid] += kwh
        metered.add(sid)
    for sid, kwh in session.execute(
        sa.select(col(BusyPeriod.session_id), col(BusyPeriod.run_on_energy_kwh)).where(
            col(BusyPeriod.session_id).in_(ids), col(BusyPeriod.run_on_energy_kwh).is_not(None)
        )
    ):
        totals[sid] += kwh
        metered.add(sid)
    return {sid: totals[sid] for sid in metered}


def energy_uses(session: Session, *, first: date, nxt: date, tz: ZoneInfo) -> list[EnergyUse]:
    """The metered sessions started in [first, nxt) (lab days) with their kWh, and the busy
    periods with no session started then (the machine drawing power with nobody badged in)."""
    start = datetime.combine(first, time(), tz).astimezone(UTC)
    end = datetime.combine(nxt, time(), tz).astimezone(UTC)
    types = dict(
        session.execute(
            sa.select(col(Machine.code), col(MachineType.code)).join(
                MachineType, col(MachineType.id) == col(Machine.machine_type_id)
            )
        )
        .tuples()
        .all()
    )
    rows = (
        session.execute(
            sa.select(
                col(MachineSession.id), col(MachineSession.machine), col(MachineSession.started_at)
            ).where(
                col(MachineSession.started_at) >= start,
                col(MachineSession.started_at) < end,
            )
        )
        .tuples()
        .all()
    )
    kwh = session_kwh(session, [sid for sid, _, _ in rows])
    uses = [
        EnergyUse(machine, types.get(machine, "?"), started, kwh[sid], sid)
        for sid, machine, started in rows
        if sid in kwh and started is not None
    ]
    for machine, started, period_kwh in session.execute(
        sa.select(
            col(BusyPeriod.machine), col(BusyPeriod.started_at), col(BusyPeriod.energy_kwh)
        ).where(
            col(BusyPeriod.session_id).is_(None),
            col(BusyPeriod.energy_kwh).is_not(None),
            col(BusyPeriod.started_at) >= start,
            col(BusyPeriod.started_at) < end,
        )
    ):
        uses.append(EnergyUse(machine, types.get(machine, "?"), started, period_kwh, None))
    return uses


def monthly_energy(session: Session, *, first: date, nxt: date, tz: ZoneInfo) -> list[EnergyTotal]:
    """kWh per month and machine over [first, nxt), lab time."""
    return by_machine_month(energy_uses(session, first=first, nxt=nxt, tz=tz), tz)

"""Material and energy on a session's statement line (issue 21 item 4), beside its time.

Each priced session gets its material (one sub-line per use: `42 g of PLA black at 25,00
€/kg`) and, when the lab prices energy, its kWh (its own and its print's run-on) added to its
line: the line's cents grow by theirs and its explanation lists them after the time, so the
statement's total, what the prepaid balance draws and a credit note of the session all count
them. Sessions free on duty (trainers, maintainers) stay free.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlmodel import Session

from hub.domain.billing import DutyRole, Statement, StatementLine, UsageRecord
from hub.domain.energy import energy_cents
from hub.services.energy import session_kwh
from hub.services.materials import session_material_lines


def _euros(cents: float) -> str:
    whole = int(round(cents))
    return f"{whole // 100},{whole % 100:02d} €"


def energy_line(kwh: float, cents_per_kwh: float) -> tuple[str, int]:
    return (
        f"{kwh:.3f} kWh at {_euros(cents_per_kwh)}/kWh"
        if cents_per_kwh == int(cents_per_kwh)
        else f"{kwh:.3f} kWh at {cents_per_kwh:g} c/kWh",
        energy_cents(kwh, cents_per_kwh),
    )


def add_material_and_energy(
    session: Session,
    statements: Sequence[Statement],
    records: Sequence[UsageRecord],
    *,
    energy_cents_per_kwh: float | None = None,
) -> list[Statement]:
    """`statements` with each session's material, and energy if priced, on its line."""
    billed = {r.session_id: r for r in records if r.duty is DutyRole.NONE}
    if not billed:
        return list(statements)
    extra: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for line in session_material_lines(
        session, list(billed), {sid: r.category for sid, r in billed.items()}
    ):
        extra[line.session_id].append((line.explanation, line.cents))
    if energy_cents_per_kwh:
        for sid, kwh in session_kwh(session, list(billed)).items():
            if kwh > 0:
                extra[sid].append(energy_line(kwh, energy_cents_per_kwh))
    if not extra:
        return list(statements)
    return [
        Statement(s.payer_ref, s.month, tuple(_with_extra(line, extra) for line in s.lines))
        for s in statements
    ]


def _with_extra(line: StatementLine, extra: dict[str, list[tuple[str, int]]]) -> StatementLine:
    added = extra.get(line.session_id)
    if not added:
        return line
    return line._replace(
        cents=line.cents + sum(cents for _, cents in added),
        explanation="; ".join([line.explanation, *(text for text, _ in added)]),
    )

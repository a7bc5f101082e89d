"""What a member's recent sessions cost, for their page: the statement's line for a closed
month, the close's own pricing (hub.domain.billing.bill_month) for an open one."""

from __future__ import annotations

from collections.abc import Sequence
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from hub.core.errors import HubError
from hub.domain.billing import NoRateError, bill_month
from hub.models import STATEMENT, MachineSession, Member, Statement, StatementLine
from hub.services.billing.books import closed_months, parse_month
from hub.services.billing.rates import all_rates
from hub.services.billing.usage import _people, _usage


def session_costs(
    session: Session, *, member: Member, sessions: Sequence[MachineSession], tz: ZoneInfo
) -> dict[str, int | None]:
    """Cents by session id; None where it has no price yet (still open, or no rate for it:
    the close would refuse the month and say why)."""
    costs: dict[str, int | None] = {s.id: None for s in sessions}
    ended = [s for s in sessions if s.ended_at is not None and s.started_at is not None]
    if not ended:
        return costs
    closed = set(closed_months(session))
    by_month: dict[str, list[str]] = {}
    for s in ended:
        assert s.started_at is not None
        by_month.setdefault(s.started_at.astimezone(tz).strftime("%Y-%m"), []).append(s.id)
    billed = [sid for month, ids in by_month.items() if month in closed for sid in ids]
    if billed:
        rows = session.exec(
            select(StatementLine.session_id, StatementLine.cents)
            .join(Statement, col(Statement.id) == col(StatementLine.statement_id))
            .where(col(StatementLine.session_id).in_(billed), Statement.kind == STATEMENT)
        ).all()
        costs.update({sid: cents for sid, cents in rows})
    open_months = sorted(m for m in by_month if m not in closed)
    if open_months:
        rates = all_rates(session)
        people = _people(session, [member.ref])
        for month in open_months:
            first, nxt = parse_month(month)
            try:
                records = _usage(session, first, nxt, tz, people, member_ref=member.ref)
                priced = {
                    line.session_id: line.cents
                    for statement in bill_month(records, rates, month, tz)
                    for line in statement.lines
                }
            except (HubError, NoRateError, ValueError):
                continue  # no price to show; the close says why to whoever closes it
            costs.update({sid: priced[sid] for sid in by_month[month] if sid in priced})
    return costs

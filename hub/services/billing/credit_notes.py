"""Credit notes: sessions of a closed statement given back, and their prepaid money with them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from hub.audit import record
from hub.core.errors import Conflict, InvalidValue, NotFound
from hub.domain.billing import ReasonMissing, SessionsNotOnStatement, credit_note
from hub.domain.billing import Statement as DomainStatement
from hub.domain.billing import StatementLine as DomainLine
from hub.models import CREDIT_NOTE, STATEMENT, Member, Statement, StatementLine, utcnow
from hub.services.billing.books import lock_books
from hub.services.billing.close import lines_of
from hub.services.billing.ledger import _locked_account, _move
from hub.services.billing.numbering import issue_year, reserve_numbers


def _line_row(statement_id: int, position: int, line: DomainLine) -> StatementLine:
    return StatementLine(
        statement_id=statement_id,
        position=position,
        session_id=line.session_id,
        member_ref=line.member_ref,
        machine=line.machine,
        started_at=line.started_at,
        billed_minutes=line.billed_minutes,
        cents=line.cents,
        explanation=line.explanation[:2000],
    )


def _as_domain(statement: Statement, lines: Iterable[StatementLine]) -> DomainStatement:
    return DomainStatement(
        statement.payer_ref,
        statement.month,
        tuple(
            DomainLine(
                line.session_id,
                line.member_ref,
                line.machine,
                line.started_at,
                line.billed_minutes,
                line.cents,
                line.explanation,
            )
            for line in lines
        ),
    )


def credit(
    session: Session,
    number: str,
    session_ids: Sequence[str],
    reason: str,
    *,
    actor: str,
    tz: ZoneInfo | None = None,
    now: datetime | None = None,
) -> Statement:
    """A credit note giving back these sessions of a closed statement; what was drawn from a
    prepaid balance goes back to it, audited as `actor`. The statement itself never changes.
    The note takes the next number of the year of issue (`now` in the lab's zone `tz`), the
    series the statements draw from. The caller commits."""
    now = now or utcnow()
    tz = tz or ZoneInfo("UTC")
    # Held from here: the year's series is drawn one document at a time, and two notes
    # against one statement cannot both find its sessions not yet credited.
    lock_books(session)
    statement = session.exec(select(Statement).where(Statement.number == number)).first()
    if statement is None or statement.kind != STATEMENT:
        raise NotFound("statement.unknown", field="statement", params={"number": number})
    if not session_ids:
        raise InvalidValue("credit.no_session", field="session")
    earlier = list(
        session.exec(
            select(Statement)
            .where(Statement.credits_id == statement.id)
            .order_by(col(Statement.id))
        ).all()
    )
    credited = {
        line.session_id for note in earlier for line in lines_of(session, note) if line.cents
    }
    twice = sorted(set(session_ids) & credited)
    if twice:
        raise Conflict(
            "credit.already_credited",
            field="session",
            params={"sessions": ", ".join(twice), "number": number},
        )
    try:
        note = credit_note(_as_domain(statement, lines_of(session, statement)), session_ids, reason)
    except ReasonMissing:
        raise InvalidValue("credit.reason_empty", field="reason") from None
    except SessionsNotOnStatement as exc:
        raise InvalidValue(
            "credit.not_on_statement",
            field="session",
            params={"sessions": ", ".join(exc.missing), "number": number},
        ) from None
    row = Statement(
        number=reserve_numbers(session, issue_year(now, tz), 1)[0],
        month=statement.month,
        kind=CREDIT_NOTE,
        payer_ref=statement.payer_ref,
        payer_name=statement.payer_name,
        credits_id=statement.id,
        reason=reason.strip()[:500],
        total_cents=note.total_cents,
        created_at=now,
    )
    session.add(row)
    session.flush()
    assert row.id is not None
    for position, line in enumerate(note.lines, start=1):
        session.add(_line_row(row.id, position, line))
    returnable = statement.prepaid_cents + sum(e.prepaid_cents for e in earlier)
    back = min(returnable, -note.total_cents)
    payer = session.exec(select(Member).where(Member.ref == statement.payer_ref)).one()
    account = _locked_account(session, payer.id)
    if account is not None and back > 0:
        _move(
            session,
            account,
            "credit",
            back,
            statement_id=row.id,
            note=f"credit note {row.number}",
            actor=actor,
        )
    else:
        back = 0
    row.prepaid_cents = -back
    row.due_cents = note.total_cents + back
    session.add(row)
    record(
        session,
        actor=actor,
        action="billing.credit",
        entity="statement",
        entity_id=row.number,
        sessions=list(session_ids),
        reason=reason,
    )
    return row

"""Prepaid balances drawn at each session's end, inside the ingest's transaction."""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from hub.core.errors import HubError
from hub.domain.billing import (
    NoRateError,
    Rate,
    apply_prepaid,
    bill_month,
)
from hub.models import (
    BalanceMovement,
    BillingAccount,
    MachineSession,
    Member,
    utcnow,
)
from hub.services.billing.books import closed_months, parse_month
from hub.services.billing.extras import add_material_and_energy
from hub.services.billing.ledger import (
    _PROVISIONAL_NOTE,
    PROVISIONAL,
    _locked_balances,
    _movement,
    _write_movements,
)
from hub.services.billing.rates import all_rates
from hub.services.billing.usage import _people, _usage

log = logging.getLogger(__name__)


# --- prepaid balances drawn at each session's end -------------------------------------------
def draw_ended_sessions(session: Session, ended: Sequence[str], *, tz: ZoneInfo) -> set[int]:
    """Draw these just-ended sessions from their payers' prepaid balances, provisionally.

    Runs inside the ingest's transaction storing the ends. Only sessions whose payer holds
    money are priced (one indexed query finds them; for everyone else that is all it costs).
    A session is priced as the close would price it, with the member's earlier sessions of
    the month (included minutes, daily caps); the close replaces these movements by the
    final charge. Returns the prepaid-only accounts whose balance this emptied.
    """
    candidates = session.execute(
        select(
            MachineSession.id,
            MachineSession.member_ref,
            MachineSession.started_at,
            BillingAccount.member_id,
        )
        .join(Member, col(Member.ref) == col(MachineSession.member_ref))
        .join(
            BillingAccount,
            col(BillingAccount.member_id) == func.coalesce(Member.payer_id, Member.id),
        )
        .where(col(MachineSession.id).in_(ended), col(BillingAccount.balance_cents) > 0)
        .where(col(MachineSession.started_at).is_not(None))
    ).all()
    if not candidates:
        return set()
    already = set(
        session.execute(
            select(BalanceMovement.note).where(
                BalanceMovement.kind == PROVISIONAL,
                col(BalanceMovement.note).in_([_PROVISIONAL_NOTE + c[0] for c in candidates]),
            )
        ).scalars()
    )
    by_month: dict[tuple[str, str], list[tuple[str, int]]] = defaultdict(list)
    for sid, ref, started_at, account_id in candidates:
        if _PROVISIONAL_NOTE + sid not in already:
            by_month[ref, started_at.astimezone(tz).strftime("%Y-%m")].append((sid, account_id))
    closed = set(closed_months(session))
    rates: list[Rate] | None = None
    charges: list[tuple[str, int, int]] = []  # session, account, cents
    for (ref, month), wanted in sorted(by_month.items()):
        if month in closed:
            continue  # a late session of a closed month stays off it, and off the balance
        rates = rates if rates is not None else all_rates(session)
        first, nxt = parse_month(month)
        try:
            records = _usage(session, first, nxt, tz, _people(session, [ref]), member_ref=ref)
            # With the material recorded by then (a print that ended before the badge-out);
            # energy is priced only at the close, which has the lab's price of a kWh.
            priced = {
                line.session_id: line.cents
                for statement in add_material_and_energy(
                    session, bill_month(records, rates, month, tz), records
                )
                for line in statement.lines
            }
        except (HubError, NoRateError, ValueError) as exc:
            # The close will say the same to a person; the ingest must go on.
            log.warning("session(s) of %s not drawn from the prepaid balance: %s", ref, exc)
            continue
        charges += [(sid, account_id, priced.get(sid, 0)) for sid, account_id in wanted]
    if not charges:
        return set()
    accounts = sorted({account_id for _, account_id, _ in charges})
    balance = _locked_balances(session, accounts)
    before = dict(balance)
    now = utcnow()
    deltas: dict[int, int] = defaultdict(int)
    rows: list[dict[str, Any]] = []
    for sid, account_id, cents in charges:
        drawn = balance[account_id] - apply_prepaid(balance[account_id], cents)[0]
        if drawn <= 0:
            continue
        balance[account_id] -= drawn
        deltas[account_id] -= drawn
        rows.append(
            _movement(account_id, PROVISIONAL, -drawn, None, _PROVISIONAL_NOTE + sid, "ingest", now)
        )
    _write_movements(session, deltas, rows)
    prepaid_only = set(
        session.execute(
            select(BillingAccount.member_id).where(
                col(BillingAccount.member_id).in_(accounts), col(BillingAccount.prepaid_only)
            )
        ).scalars()
    )
    return {a for a in prepaid_only if before[a] > 0 >= balance[a]}


class PrepaidDrawdown:
    """The ingest's hook for ended sessions (hub/ingest/writer.py): draws them from prepaid
    balances in the ingest's own transaction, and once it is committed asks for the
    allow-lists to be published again when a prepaid-only balance ran out, so the machines
    refuse the member with the reason `balance`.

    `republish` (the hub's AllowListPublisher.publish) runs on a thread of its own: signing
    every machine's list takes longer than a batch of events and must not hold the ingest.
    """

    def __init__(self, tz: ZoneInfo, republish: Callable[[], object] | None = None) -> None:
        self.tz = tz
        self.republish = republish
        self.emptied = 0  # accounts emptied since start, for tests and metrics
        self._lock = threading.Lock()
        self._pending = False

    def __call__(self, session: Session, ended: Sequence[str]) -> Callable[[], None] | None:
        try:
            emptied = draw_ended_sessions(session, ended, tz=self.tz)
        except SQLAlchemyError:
            raise  # the batch is retried whole, balances with it
        except Exception:
            # A fault in billing must not stop the ingest; the close still charges in full.
            log.exception("sessions %s not drawn from prepaid balances", list(ended)[:5])
            return None
        if not emptied:
            return None
        self.emptied += len(emptied)
        return self._republish_soon if self.republish is not None else None

    def _republish_soon(self) -> None:
        with self._lock:
            if self._pending:
                return  # the publication about to run reads the balances after this commit
            self._pending = True
        threading.Thread(target=self._run, name="prepaid-republish", daemon=True).start()

    def _run(self) -> None:
        with self._lock:
            self._pending = False
        try:
            assert self.republish is not None
            self.republish()
        except Exception:
            log.exception("allow-lists not republished after a prepaid balance ran out")

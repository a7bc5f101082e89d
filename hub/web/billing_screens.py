"""The billing page: statements of the closed months, prepaid balances and rates, and its forms
(top-up, plan, a rate, a CSV of rates).

Each form calls the billing service the CLI calls (hub/services/billing/), so the rules and
the audit rows stay in one place; a refusal (HubError) is shown translated under its field,
a success redirects to the page with its message (hub/web/flash.py). Closing a month and a
credit note are here too (`close_month`, `credit`, as `atelier hub billing close/credit`);
their CSV and PDF files are the statements' downloads, made from the rows when asked.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, BackgroundTasks, Form, Path, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session, col, select

from hub.core.deps import MANAGE, SessionDep
from hub.core.errors import HubError, InvalidValue, NotFound, describe
from hub.models import STATEMENT, Machine, MachineType, Member, MemberCategory, Statement, User
from hub.services import billing
from hub.web.csrf import Checked
from hub.web.errors import field_errors
from hub.web.flash import done
from hub.web.i18n import N_, language_of, translator
from hub.web.render import Page, member_key, render

router = APIRouter(prefix="/web", include_in_schema=False)
log = logging.getLogger(__name__)
RATE_CSV_MAX = 1_000_000

# Words shown from code, for the catalogue.
WORDS = [
    N_("rate saved"),
    N_("rate replaced"),
    N_("choose the CSV file to import"),
]
TOPPED_UP = N_("{member}: +{amount} €, balance {balance} €")
PLAN_SAVED = N_("{member}: plan saved")
RATES_IMPORTED = N_("Rates imported: {added} added, {replaced} replaced")
CLOSED = N_("{month} is closed: {count} statement(s)")
ALREADY_CLOSED = N_("{month} was already closed: {count} statement(s), unchanged")
CREDITED = N_("Credit note {number}: {total} € ({back} € back on the prepaid balance)")
MONTHS_OFFERED = 12
MONEY_FIELDS = (
    "cents_per_hour",
    "start_fee_cents",
    "minimum_cents",
    "daily_cap_cents",
)  # the last months a manager may close from the page
IMPORT_REFUSED = N_("{file}: {problem}; nothing was imported")
IMPORT_LINE_REFUSED = N_("{file}: line {line}, {column}: {problem}; nothing was imported")


@router.get("/billing", response_class=HTMLResponse)
def billing_page(
    request: Request,
    session: SessionDep,
    user: Annotated[User, Page(MANAGE)],
    month: Annotated[str | None, Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")] = None,
) -> Response:
    return _page(request, session, user, month=month)


def _page(
    request: Request,
    session: Session,
    user: User,
    *,
    month: str | None = None,
    notice: str | None = None,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
) -> Response:
    seen = billing.overview(session, month=month)
    tz = ZoneInfo(request.app.state.settings.timezone)
    holders = sorted((m for m, _ in seen.accounts if m is not None), key=lambda m: m.name)
    return render(
        request,
        "billing.html",
        {
            "months": seen.months,
            "month": seen.month,
            "statements": seen.statements,
            "accounts": seen.accounts,
            "rates": seen.rates,
            # Suggestions for the top-up and plan forms: the account holders; any other
            # member is typed by email or number (a lab's whole member table is not sent).
            "member_options": [(member_key(m), m.name) for m in holders],
            "type_options": [
                (t.code, f"{t.name} ({t.code})")
                for t in session.exec(select(MachineType).order_by(col(MachineType.code)))
            ],
            "categories": list(MemberCategory),
            "closable": closable_months(seen.months, datetime.now(UTC).astimezone(tz).date()),
            "notice": notice,
            "errors": errors or {},
            "problem": (errors or {}).get(""),
            "v": values or {},
        },
        user=user,
        status_code=422 if errors else 200,
    )


def _refused(
    request: Request,
    session: Session,
    user: User,
    error: HubError,
    *,
    form: str,
    fields: list[str],
    values: dict[str, str],
) -> Response:
    """The page again with the form's values and the message under the field at fault (the
    form's inputs are named `<form>_<field>`)."""
    session.rollback()
    errors, problem = field_errors(request, error, {f: f"{form}_{f}" for f in fields})
    if problem is not None:
        errors[""] = problem
    return _page(request, session, user, errors=errors, values=values)


def _republish(request: Request, background: BackgroundTasks) -> None:
    """After the response: the machines' lists signed and published again, since a balance
    or a plan decides who may start a machine."""
    publisher = getattr(request.app.state, "publisher", None)
    if publisher is None:
        return

    def publish() -> None:
        try:
            publisher.publish(None)
        except Exception:  # the scheduled publication will catch up
            log.exception("publishing allow-lists after a billing change failed")

    background.add_task(publish)


def _actor(user: User) -> str:
    return f"user:{user.username}"


@router.post("/billing/topup", response_class=HTMLResponse, dependencies=[Checked])
def top_up(
    request: Request,
    session: SessionDep,
    background: BackgroundTasks,
    user: Annotated[User, Page(MANAGE)],
    member_id: Annotated[str, Form(max_length=320)] = "",
    amount: Annotated[str, Form(max_length=20)] = "",
    note: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    values = {"topup_member_id": member_id, "topup_amount": amount, "topup_note": note}
    try:
        member = billing.find_member(session, text=member_id)
        cents = billing.parse_euros(amount)
        account = billing.top_up(session, member, cents, actor=_actor(user), note=note.strip())
        session.commit()
    except HubError as error:
        fields = ["member_id", "amount", "note"]
        return _refused(request, session, user, error, form="topup", fields=fields, values=values)
    _republish(request, background)  # an empty balance may have been refusing the member
    return done(
        request,
        "/web/billing",
        TOPPED_UP,
        member=member.name,
        amount=billing.euros(cents),
        balance=billing.euros(account.balance_cents),
    )


@router.post("/billing/plan", response_class=HTMLResponse, dependencies=[Checked])
def set_plan(
    request: Request,
    session: SessionDep,
    background: BackgroundTasks,
    user: Annotated[User, Page(MANAGE)],
    member_id: Annotated[str, Form(max_length=320)] = "",
    plan: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    values = {"plan_member_id": member_id, "plan": plan}
    try:
        member = billing.find_member(session, text=member_id)
        if plan not in ("prepaid", "later"):
            raise InvalidValue("billing.plan", field="plan")
        billing.set_plan(session, member, prepaid_only=plan == "prepaid", actor=_actor(user))
        session.commit()
    except HubError as error:
        fields = ["member_id", "plan"]
        return _refused(request, session, user, error, form="plan", fields=fields, values=values)
    _republish(request, background)
    return done(request, "/web/billing", PLAN_SAVED, member=member.name)


@router.post("/billing/rates", response_class=HTMLResponse, dependencies=[Checked])
def set_rate(
    request: Request,
    session: SessionDep,
    user: Annotated[User, Page(MANAGE)],
    machine_type: Annotated[str, Form(max_length=63)] = "",
    category: Annotated[str, Form(max_length=20)] = "",
    effective_from: Annotated[str, Form(max_length=20)] = "",
    cents_per_hour: Annotated[str, Form(max_length=12)] = "",
    basis: Annotated[str, Form(max_length=10)] = "session",
    start_fee_cents: Annotated[str, Form(max_length=12)] = "",
    minimum_cents: Annotated[str, Form(max_length=12)] = "",
    rounding_minutes: Annotated[str, Form(max_length=12)] = "",
    daily_cap_cents: Annotated[str, Form(max_length=12)] = "",
    included_minutes_per_month: Annotated[str, Form(max_length=12)] = "",
) -> Response:
    values = {
        "machine_type": machine_type,
        "category": category,
        "effective_from": effective_from,
        "cents_per_hour": cents_per_hour,
        "basis": basis,
        "start_fee_cents": start_fee_cents,
        "minimum_cents": minimum_cents,
        "rounding_minutes": rounding_minutes,
        "daily_cap_cents": daily_cap_cents,
        "included_minutes_per_month": included_minutes_per_month,
    }
    try:
        # Money is typed in euros (8, 12,50); the rate keeps cents, as the CSV and the CLI.
        cents = {
            name: str(billing.parse_euros(values[name], field=name))
            for name in MONEY_FIELDS
            if values[name].strip()
        }
        _, added = billing.save_rate(session, values=values | cents, actor=_actor(user))
        session.commit()
    except HubError as error:
        shown = {f"rate_{k}": v for k, v in values.items()}
        return _refused(
            request, session, user, error, form="rate", fields=billing.RATE_FIELDS, values=shown
        )
    return done(request, "/web/billing", "rate saved" if added else "rate replaced")


@router.post("/billing/rates/import", response_class=HTMLResponse, dependencies=[Checked])
def import_rates(
    request: Request,
    session: SessionDep,
    user: Annotated[User, Page(MANAGE)],
    file: UploadFile | None = None,
) -> Response:
    gettext = translator(language_of(request)).gettext
    if file is None or not file.filename:
        errors = {"import_file": gettext("choose the CSV file to import")}
        return _page(request, session, user, errors=errors)
    name = file.filename
    raw = file.file.read(RATE_CSV_MAX + 1)  # one byte more tells a file too large
    try:
        added, replaced = billing.import_rates_file(
            session, raw=raw, name=name, actor=_actor(user), max_bytes=RATE_CSV_MAX
        )
        session.commit()
    except HubError as error:
        session.rollback()
        problem = describe(error, gettext)
        line = error.params.get("line")
        if line is not None and error.field not in (None, "file"):
            message = gettext(IMPORT_LINE_REFUSED).format(
                file=name, line=line, column=error.field, problem=problem
            )
        else:
            message = gettext(IMPORT_REFUSED).format(file=name, problem=problem)
        return _page(request, session, user, errors={"import_file": message})
    return done(request, "/web/billing", RATES_IMPORTED, added=added, replaced=replaced)


def closable_months(closed: list[str], today: date) -> list[str]:
    """The last months that are over and not closed yet, latest first."""
    year, month = today.year, today.month
    offered = []
    for _ in range(MONTHS_OFFERED):
        month -= 1
        if month == 0:
            year, month = year - 1, 12
        text = f"{year:04d}-{month:02d}"
        if text not in closed:
            offered.append(text)
    return offered


@router.post("/billing/close", response_class=HTMLResponse, dependencies=[Checked])
def close_month(
    request: Request,
    session: SessionDep,
    background: BackgroundTasks,
    user: Annotated[User, Page(MANAGE)],
    month: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    """Freeze a month: one statement per payer, drawn from prepaid balances (the CLI's
    `atelier hub billing close`). Closing it again changes nothing."""
    tz = ZoneInfo(request.app.state.settings.timezone)
    try:
        billing.parse_month(month.strip())
        closing = billing.close_month(
            session,
            month.strip(),
            tz=tz,
            now=datetime.now(UTC),
            actor=_actor(user),
            energy_cents_per_kwh=request.app.state.settings.energy_cents_per_kwh,
        )
        session.commit()
    except HubError as error:
        values = {"close_month": month}
        return _refused(
            request, session, user, error, form="close", fields=["month"], values=values
        )
    if closing.balances_changed:
        _republish(request, background)
    message = ALREADY_CLOSED if closing.already_closed else CLOSED
    return done(
        request,
        f"/web/billing?month={month.strip()}",
        message,
        month=month.strip(),
        count=len(closing.statements),
    )


def _statement(session: Session, number: str) -> Statement:
    row = session.exec(select(Statement).where(Statement.number == number)).first()
    if row is None:
        raise NotFound("statement.unknown", field="statement", params={"number": number})
    return row


def _statement_page(
    request: Request,
    session: Session,
    user: User,
    statement: Statement,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    chosen: list[str] | None = None,
) -> Response:
    lines = billing.lines_of(session, statement)
    refs = sorted({line.member_ref for line in lines})
    codes = sorted({line.machine for line in lines})
    names = (
        {m.ref: m.name for m in session.exec(select(Member).where(col(Member.ref).in_(refs)))}
        if refs
        else {}
    )
    machines = (
        {m.code: m.name for m in session.exec(select(Machine).where(col(Machine.code).in_(codes)))}
        if codes
        else {}
    )
    notes = (
        list(
            session.exec(
                select(Statement)
                .where(Statement.credits_id == statement.id)
                .order_by(col(Statement.id))
            ).all()
        )
        if statement.kind == STATEMENT
        else []
    )
    credited = {
        line.session_id for note in notes for line in billing.lines_of(session, note) if line.cents
    }
    return render(
        request,
        "statement.html",
        {
            "statement": statement,
            "lines": lines,
            "member_names": names,
            "machine_names": machines,
            "notes": notes,
            "credited": credited,
            "may_credit": statement.kind == STATEMENT,
            "chosen": set(chosen or []),
            "errors": errors or {},
            "problem": (errors or {}).get(""),
            "v": values or {},
        },
        user=user,
        status_code=422 if errors else 200,
    )


@router.get("/billing/statements/{number}", response_class=HTMLResponse)
def statement_page(
    request: Request,
    session: SessionDep,
    user: Annotated[User, Page(MANAGE)],
    number: Annotated[str, Path(max_length=40)],
) -> Response:
    try:
        statement = _statement(session, number)
    except HubError as error:
        return _refused(request, session, user, error, form="credit", fields=[], values={})
    return _statement_page(request, session, user, statement)


@router.post(
    "/billing/statements/{number}/credit", response_class=HTMLResponse, dependencies=[Checked]
)
def credit_note(
    request: Request,
    session: SessionDep,
    background: BackgroundTasks,
    user: Annotated[User, Page(MANAGE)],
    number: Annotated[str, Path(max_length=40)],
    sessions: Annotated[list[str] | None, Form(max_length=64)] = None,
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    """Give back the ticked sessions of a closed statement (the CLI's `billing credit`)."""
    chosen = [s for s in (sessions or []) if s][:1000]
    try:
        statement = _statement(session, number)
    except HubError as error:
        return _refused(request, session, user, error, form="credit", fields=[], values={})
    try:
        note = billing.credit(session, number, chosen, reason, actor=_actor(user))
        session.commit()
    except HubError as error:
        session.rollback()
        errors, problem = field_errors(
            request, error, {"session": "credit_session", "reason": "credit_reason"}
        )
        if problem is not None:
            errors[""] = problem
        values = {"credit_reason": reason}
        return _statement_page(
            request, session, user, statement, errors=errors, values=values, chosen=chosen
        )
    if note.prepaid_cents:
        _republish(request, background)
    return done(
        request,
        f"/web/billing/statements/{number}",
        CREDITED,
        number=note.number,
        total=billing.euros(note.total_cents),
        back=billing.euros(-note.prepaid_cents),
    )

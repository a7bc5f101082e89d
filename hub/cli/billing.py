"""`atelier hub billing ...`: prices, prepaid top-ups, closing a month, credit notes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer

from hub.audit import cli_actor
from hub.cli.support import database, fail, refusal, refusals
from hub.core.errors import HubError, describe

billing_app = typer.Typer(
    no_args_is_help=True, help="Billing: prices, prepaid balances, monthly statements."
)
rates_app = typer.Typer(no_args_is_help=True, help="Prices per machine type and member category.")
billing_app.add_typer(rates_app, name="rates")

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="hub TOML file (or ATELIER_CONFIG)")
]


_fail = fail

# The command line's names for the services' fields: arguments in capitals, `--from` for the
# first day of a rate; any other field is its option (`machine_type` is --machine-type).
FLAGS = {
    "member_email": "MEMBER_EMAIL",
    "amount": "AMOUNT",
    "statement": "STATEMENT",
    "file": "FILE",
    "effective_from": "--from",
    "offline_jobs": "--bill",
}


@contextmanager
def _database(config: Path | None) -> Iterator[tuple[Any, Any]]:
    """(settings, session); a HubError inside is rolled back and becomes the flag at fault,
    its message and exit code 2."""
    from sqlmodel import Session

    with database(config) as (settings, engine), Session(engine) as session:
        try:
            yield settings, session
        except HubError as error:
            session.rollback()
            raise refusal(error, FLAGS) from None


def _timezone(settings: Any) -> ZoneInfo:
    try:
        return ZoneInfo(settings.timezone)
    except (KeyError, ValueError):
        raise _fail(
            f"timezone {settings.timezone!r} in the hub settings is not a known time zone "
            "(e.g. Europe/Paris)"
        ) from None


def _publish(settings: Any, session: Any) -> None:
    """Balances decide who may start a machine: send the machines their new lists."""
    from hub.allowlist import publish_once
    from hub.core.security import load_or_create_signing_key

    engine = session.get_bind()
    try:
        count = publish_once(settings, engine, load_or_create_signing_key(settings.data_dir))
    except (ConnectionError, OSError) as exc:
        typer.echo(
            f"saved, but the allow-lists could not be published now ({exc}); "
            "the machines get them at the hub's next publication",
            err=True,
        )
        return
    typer.echo(f"published {count} allow-list(s)")


# --- rates --------------------------------------------------------------------------------
@rates_app.command("import")
def import_rates(
    file: Annotated[
        Path,
        typer.Argument(
            help="CSV: machine_type,category,effective_from,cents_per_hour,basis,"
            "start_fee_cents,minimum_cents,rounding_minutes,daily_cap_cents,"
            "included_minutes_per_month"
        ),
    ],
    config: ConfigOpt = None,
) -> None:
    """Rates from a CSV file; all rows or none. A row for an existing day replaces it."""
    from hub.services.billing import import_rates_file

    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise _fail(f"FILE: {file}: no such file") from None
    except OSError as exc:
        raise _fail(f"FILE: {file}: {exc.strerror or exc}") from None
    with _database(config) as (_, session):
        try:
            added, replaced = import_rates_file(session, raw=raw, name=file.name, actor=cli_actor())
        except HubError as error:
            session.rollback()
            raise _fail(f"{file}: {_where(error)}{describe(error)}; nothing was imported") from None
        session.commit()
    typer.echo(f"{file}: {added} rate(s) added, {replaced} replaced")


def _where(error: HubError) -> str:
    """A refused row's place in the file: its line and column (the header is line 1)."""
    line = error.params.get("line")
    if line is None or error.field in (None, "file"):
        return ""  # a refusal of the file as a whole says its line itself, if it has one
    return f"line {line}, {error.field}: "


@rates_app.command("set")
def set_rate(
    machine_type: Annotated[str, typer.Option("--machine-type", help="e.g. laser")],
    category: Annotated[str, typer.Option(help="individual, student, professional...")],
    effective_from: Annotated[str, typer.Option("--from", help="first day, e.g. 2026-10-01")],
    cents_per_hour: Annotated[str, typer.Option(help="price per hour in cents (8 €/h = 800)")],
    basis: Annotated[str, typer.Option(help="session or busy")] = "session",
    start_fee_cents: Annotated[str, typer.Option()] = "0",
    minimum_cents: Annotated[str, typer.Option()] = "0",
    rounding_minutes: Annotated[str, typer.Option(help="bill per started N minutes")] = "1",
    daily_cap_cents: Annotated[str, typer.Option(help="empty: no cap")] = "",
    included_minutes_per_month: Annotated[str, typer.Option()] = "0",
    config: ConfigOpt = None,
) -> None:
    """Add a price (or replace the one for the same type, category and day)."""
    from hub.services.billing import save_rate

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
    with _database(config) as (_, session):
        _, added = save_rate(session, values=values, actor=cli_actor())
        session.commit()
    verb = "added" if added else "replaced"
    typer.echo(
        f"rate {verb}: {machine_type} for {category} from {effective_from}, "
        f"{cents_per_hour} cents/h per {basis} time"
    )


@rates_app.command("list")
def list_rates(config: ConfigOpt = None) -> None:
    """Every price, old ones included (they still price the months they cover)."""
    from hub.services.billing import all_rates

    with _database(config) as (_, session):
        for r in all_rates(session):
            cap = r.daily_cap_cents if r.daily_cap_cents is not None else "-"
            typer.echo(
                f"{r.machine_type:<10} {r.category:<13} from {r.effective_from}  "
                f"{r.cents_per_hour:>6} c/h  {r.basis:<7} fee {r.start_fee_cents} "
                f"min {r.minimum_cents} unit {r.rounding_minutes} min cap {cap} "
                f"included {r.included_minutes_per_month} min"
            )


@billing_app.command("offline-jobs")
def offline_jobs(
    machine_type: Annotated[str, typer.Option("--machine-type", help="e.g. printer")],
    bill: Annotated[
        str,
        typer.Option(
            help="whole: all of the job; until-offline: up to when it was last seen printing; "
            "free: none of it"
        ),
    ],
    config: ConfigOpt = None,
) -> None:
    """How a job that ended because the printer went offline is billed on a busy-time rate."""
    from hub.services.billing import set_offline_jobs

    with _database(config) as (_, session):
        before = set_offline_jobs(
            session, machine_type=machine_type, choice=bill, actor=cli_actor()
        )
        session.commit()
    typer.echo(
        f"{machine_type}: jobs ended by the printer going offline billed {bill.strip().lower()}"
        f" (was {before})"
    )


# --- prepaid balances ---------------------------------------------------------------------
def _change_account(
    config: Path | None, email: str, apply: Callable[[Any, Any], str], publish: bool
) -> None:
    from hub.services.billing import member_by_email

    with _database(config) as (settings, session):
        member = member_by_email(session, email)
        typer.echo(apply(session, member))
        session.commit()
        if publish:
            _publish(settings, session)


@billing_app.command("topup")
def topup(
    member_email: Annotated[str, typer.Argument(metavar="MEMBER_EMAIL")],
    amount: Annotated[str, typer.Argument(metavar="AMOUNT", help="euros, e.g. 20 or 12,50")],
    note: Annotated[str, typer.Option(help="e.g. receipt number")] = "",
    config: ConfigOpt = None,
) -> None:
    """Add money to a member's prepaid balance; machines open again at once."""
    from hub.services.billing import euros, parse_euros, top_up

    with refusals(**FLAGS):
        cents = parse_euros(amount)

    def apply(session: Any, member: Any) -> str:
        account = top_up(session, member, cents, actor=cli_actor(), note=note)
        return f"{member.name}: +{euros(cents)} €, balance {euros(account.balance_cents)} €"

    _change_account(config, member_email, apply, publish=True)


@billing_app.command("plan")
def plan(
    member_email: Annotated[str, typer.Argument(metavar="MEMBER_EMAIL")],
    prepaid_only: Annotated[
        bool,
        typer.Option(
            "--prepaid-only/--pay-later",
            help="prepaid-only: machines refuse the member once the balance is empty",
        ),
    ],
    config: ConfigOpt = None,
) -> None:
    """Whether an empty prepaid balance refuses the member at the machines."""
    from hub.services.billing import euros, set_plan

    def apply(session: Any, member: Any) -> str:
        account = set_plan(session, member, prepaid_only=prepaid_only, actor=cli_actor())
        kind = "prepaid only" if prepaid_only else "pays later"
        return f"{member.name}: {kind}, balance {euros(account.balance_cents)} €"

    _change_account(config, member_email, apply, publish=True)


@billing_app.command("balance")
def balance(
    member_email: Annotated[str, typer.Argument(metavar="MEMBER_EMAIL")],
    config: ConfigOpt = None,
) -> None:
    """A member's prepaid balance and its movements."""
    from hub.services.billing import BillingAccount, account_state, euros, movements

    def apply(session: Any, member: Any) -> str:
        shown = [
            f"  {m.at:%Y-%m-%d %H:%M}  {m.kind:<7} {euros(m.cents):>10} €  {m.note}"
            for m in movements(session, member)
        ]
        account = account_state(session, member) or BillingAccount(member_id=member.id)
        plan = "prepaid only" if account.prepaid_only else "pays later"
        return "\n".join(
            [f"{member.name} ({plan}): balance {euros(account.balance_cents)} €", *shown]
        )

    _change_account(config, member_email, apply, publish=False)


# --- statements ---------------------------------------------------------------------------
OutOpt = Annotated[
    Path | None, typer.Option("--out", help="write the CSV and PDF files in this directory")
]
CsvDialectOpt = Annotated[
    str | None,
    typer.Option(
        "--csv-dialect",
        help="standard, or excel-fr (';', UTF-8 with BOM, decimal comma, day-first dates); "
        "default: excel-fr when the lab's locale is French",
    ),
]


@billing_app.command("close")
def close(
    month: Annotated[str, typer.Option("--month", help="the month to freeze, e.g. 2026-10")],
    out: OutOpt = None,
    csv_dialect: CsvDialectOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Freeze a month: one statement per member or payer. Closing it again changes nothing."""
    from hub.reports.statements import export_month
    from hub.services.billing import close_month, euros, parse_month
    from hub.services.lab import csv_dialect as dialect_of
    from hub.services.lab import identity

    with refusals(**FLAGS):
        parse_month(month)
    with _database(config) as (settings, session):
        tz = _timezone(settings)
        dialect = dialect_of(session, csv_dialect, default_locale=settings.notify_language)
        closing = close_month(
            session,
            month,
            tz=tz,
            now=datetime.now(UTC),
            actor=cli_actor(),
            energy_cents_per_kwh=settings.energy_cents_per_kwh,
        )
        session.commit()
        state = "was already closed" if closing.already_closed else "is closed"
        typer.echo(f"{month} {state}: {len(closing.statements)} statement(s)")
        for s in closing.statements:
            typer.echo(
                f"  {s.number}  {s.payer_name[:30]:<30} total {euros(s.total_cents):>10} €  "
                f"prepaid {euros(s.prepaid_cents):>9} €  to pay {euros(s.due_cents):>10} €"
            )
        if out is not None:
            lab = identity(
                session, default_name=settings.site, default_locale=settings.notify_language
            )
            for path in export_month(session, month, out, tz, lab, dialect).values():
                typer.echo(f"wrote {path}")
        if closing.balances_changed:
            _publish(settings, session)


@billing_app.command("credit")
def credit(
    statement: Annotated[str, typer.Argument(metavar="STATEMENT", help="e.g. 2026-000001")],
    sessions: Annotated[
        list[str], typer.Option("--session", help="a session to credit (repeat for several)")
    ],
    reason: Annotated[str, typer.Option(help="why, in words the member understands")],
    out: OutOpt = None,
    csv_dialect: CsvDialectOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Give back sessions of a closed statement with a credit note (the statement stays)."""
    from hub.reports.statements import write_csv, write_pdf
    from hub.services.billing import credit as store
    from hub.services.billing import euros
    from hub.services.lab import csv_dialect as dialect_of
    from hub.services.lab import identity

    with _database(config) as (settings, session):
        tz = _timezone(settings)
        dialect = dialect_of(session, csv_dialect, default_locale=settings.notify_language)
        note = store(
            session,
            statement,
            sessions,
            reason,
            actor=cli_actor(),
            tz=tz,
            now=datetime.now(UTC),
        )
        session.commit()
        typer.echo(
            f"credit note {note.number}: {euros(note.total_cents)} € "
            f"({euros(-note.prepaid_cents)} € back on the prepaid balance)"
        )
        if out is not None:
            lab = identity(
                session, default_name=settings.site, default_locale=settings.notify_language
            )
            out.mkdir(parents=True, exist_ok=True)
            for path in (
                write_csv(session, [note], out / f"{note.number}.csv", tz, dialect),
                write_pdf(session, [note], out / f"{note.number}.pdf", tz, lab),
            ):
                typer.echo(f"wrote {path}")
        if note.prepaid_cents:
            _publish(settings, session)


@billing_app.command("books")
def books(
    month: Annotated[str, typer.Option("--month", help="the month, e.g. 2026-10")],
    out: Annotated[Path, typer.Option("--out", help="the file to write")],
    fmt: Annotated[str, typer.Option("--format", help="paheko or dolibarr")] = "paheko",
    config: ConfigOpt = None,
) -> None:
    """The month's statements, credit notes and top-ups as journal entries for Paheko
    (simple import) or Dolibarr (general ledger import), on the lab's accounts."""
    from hub.services.accounting import export_books
    from hub.services.billing import euros, parse_month

    with refusals(**FLAGS):
        parse_month(month)
    with _database(config) as (settings, session):
        path, entries = export_books(session, month, out, fmt=fmt, tz=_timezone(settings))
        total = sum(e.cents for e in entries)
        typer.echo(f"{len(entries)} entrie(s), {euros(total)} € moved, written to {path}")

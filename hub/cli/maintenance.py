"""`atelier hub maintenance ...` and `atelier hub incident ...`: servicing by metered hours."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hub.cli.support import database, fail, refusals

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

maintenance_app = typer.Typer(
    no_args_is_help=True, help="Maintenance: tasks by metered hours or days, sign-offs, lockouts."
)
task_app = typer.Typer(no_args_is_help=True, help="Maintenance tasks.")
incident_app = typer.Typer(no_args_is_help=True, help="Incidents reported at a machine or here.")
maintenance_app.add_typer(task_app, name="task")

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="hub TOML file (or ATELIER_CONFIG)")
]


def register(app: typer.Typer) -> None:
    app.add_typer(maintenance_app, name="maintenance")
    app.add_typer(incident_app, name="incident")


_database = database
_fail = fail


def _publish(settings: Any, engine: Engine, machines: list[str]) -> None:
    """Send the changed lockouts to the machines now; the hub sends them later otherwise."""
    from hub.allowlist import publish_once
    from hub.core.security import load_or_create_signing_key

    if not machines:
        return
    try:
        publish_once(settings, engine, load_or_create_signing_key(settings.data_dir), machines)
    except (ConnectionError, OSError) as exc:
        typer.echo(
            f"saved, but the allow-lists could not be published now ({exc}); "
            "the machines get them at the hub's next publication",
            err=True,
        )
        return
    typer.echo(f"published {len(machines)} allow-list(s): the machines apply them within seconds")


def _hours(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} h"


# --- tasks --------------------------------------------------------------------------------
@task_app.command("add")
def task_add(
    title: Annotated[str, typer.Option(help="what is to be done, e.g. 'clean the lens'")],
    machine: Annotated[str | None, typer.Option(help="one machine, by code")] = None,
    machine_type: Annotated[
        str | None, typer.Option(help="every machine of this type, by code")
    ] = None,
    every_hours: Annotated[float | None, typer.Option(help="due every N metered hours")] = None,
    counter: Annotated[
        str,
        typer.Option(
            help="which hours: busy (beam on, printing), session (badge sessions), print (jobs);"
            " or grams (of filament) or kwh (from the plug), --every-hours then counting them"
        ),
    ] = "busy",
    every_days: Annotated[int | None, typer.Option(help="due every N days")] = None,
    critical: Annotated[
        bool, typer.Option("--critical", help="overdue locks the machine out")
    ] = False,
    description: Annotated[str, typer.Option(help="how to do it, parts, references")] = "",
    config: ConfigOpt = None,
) -> None:
    """Add a recurring task on a machine or a machine type.

    Hours count from the machine's first metered use until the task is first signed off;
    days count from today.
    """
    from sqlmodel import Session

    from hub.audit import cli_actor
    from hub.models import MaintenanceCounter
    from hub.services.maintenance.tasks import add_task, task_states

    try:
        kind = MaintenanceCounter(counter)
    except ValueError:
        raise _fail(
            f"--counter: {counter!r} is not one of busy (beam on, printing), session, print,"
            " grams, kwh"
        ) from None
    with _database(config) as (_, engine), Session(engine) as session:
        with refusals():
            row = add_task(
                session,
                title=title,
                actor=cli_actor(),
                machine=machine,
                machine_type=machine_type,
                counter=kind,
                every_hours=every_hours,
                every_days=every_days,
                critical=critical,
                description=description,
            )
        session.commit()
        typer.echo(f"task {row.id} added: {row.title}")
        states = [s for s in task_states(session, now=datetime.now(UTC)) if s.task.id == row.id]
        for s in states:
            locks = row.critical and s.state.status.value == "overdue"
            warn = " -- the next check locks it out (sign it off if done)" if locks else ""
            typer.echo(f"  {s.machine.code}: {s.state.status.value}{warn}")


@task_app.command("list")
def task_list(config: ConfigOpt = None) -> None:
    """Every task with its interval and scope."""
    from sqlmodel import Session, col, select

    from hub.models import Machine, MachineType, MaintenanceTaskRow

    with _database(config) as (_, engine), Session(engine) as session:
        machines = {m.id: m.code for m in session.exec(select(Machine))}
        types = {t.id: t.code for t in session.exec(select(MachineType))}
        rows = session.exec(select(MaintenanceTaskRow).order_by(col(MaintenanceTaskRow.id))).all()
        if not rows:
            typer.echo("no maintenance tasks yet: add one with `maintenance task add`")
            return
        for row in rows:
            scope = (
                machines.get(row.machine_id, "?")
                if row.machine_id
                else f"all {types.get(row.machine_type_id, '?')}"
            )
            every = []
            if row.every_hours is not None:
                every.append(f"{row.every_hours:g} {row.counter.value} h")
            if row.every_days is not None:
                every.append(f"{row.every_days} days")
            flags = (" critical" if row.critical else "") + ("" if row.active else " (inactive)")
            typer.echo(
                f"{row.id:>4}  {scope:<14} every {' or '.join(every):<24}{flags}  {row.title}"
            )


@maintenance_app.command("due")
def due(
    show_all: Annotated[bool, typer.Option("--all", help="also the tasks not yet due")] = False,
    config: ConfigOpt = None,
) -> None:
    """What is due soon, due or overdue, machine by machine."""
    from sqlmodel import Session

    from hub.services.maintenance.tasks import task_states

    with _database(config) as (_, engine), Session(engine) as session:
        states = task_states(session, now=datetime.now(UTC), with_estimates=True)
        shown = [s for s in states if show_all or s.state.status.value != "ok"]
        if not shown:
            typer.echo("nothing due" + ("" if show_all else " (--all lists every task)"))
            return
        for s in shown:
            critical = " CRITICAL" if s.task.critical else ""
            typer.echo(
                f"{s.machine.code:<12} task {s.task.id:<4} {s.state.status.value:<9}{critical:<9} "
                f"counter {_hours(s.counter_hours)}, left {_hours(s.state.busy_hours_left)}, "
                f"due {s.due_on or '-'}  {s.task.title}"
            )


@maintenance_app.command("sign-off")
def sign_off_command(
    task: Annotated[int, typer.Argument(help="the task number (see `maintenance task list`)")],
    by: Annotated[str, typer.Option("--by", help="email of the maintainer who did the work")],
    note: Annotated[str, typer.Option(help="what was done: parts, findings")],
    machine: Annotated[
        str | None, typer.Option(help="which machine, for a task on a machine type")
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Sign a task off: its counter starts again; the machine is released once nothing
    critical is overdue.

    The signer must hold a valid maintainer training for the machine's type.
    """
    from sqlmodel import Session

    from hub.audit import cli_actor
    from hub.services.maintenance.signoffs import sign_off_task

    with _database(config) as (settings, engine):
        with Session(engine) as session:
            with refusals(task_id="TASK"):
                result = sign_off_task(
                    session,
                    task_id=task,
                    by_email=by,
                    note=note,
                    now=datetime.now(UTC),
                    actor=cli_actor(),
                    machine=machine,
                )
            session.commit()
            typer.echo(
                f"task {task} signed off on {result.machine} at "
                f"{result.sign_off.counter_hours:.2f} h"
            )
            still = result.check.overdue_critical.get(result.machine)
        if result.unlocked:
            typer.echo(f"{result.machine} unlocked: nothing critical is overdue any more")
        elif still:
            typer.echo(f"{result.machine} stays locked: still overdue: {'; '.join(still)}")
        _publish(settings, engine, result.check.changed)


@maintenance_app.command("check")
def check(config: ConfigOpt = None) -> None:
    """Run the lockout check once (the hub runs it every few minutes)."""
    from hub.audit import cli_actor
    from hub.maintenance_watch import run_check

    with _database(config) as (settings, engine):
        result = run_check(engine, now=datetime.now(UTC), actor=cli_actor())
        for code in result.locked:
            typer.echo(f"{code} locked out: {'; '.join(result.overdue_critical[code])}")
        for code in result.released:
            typer.echo(f"{code} released: nothing critical is overdue")
        if not result.changed:
            typer.echo(
                f"no change: {len(result.overdue_critical)} machine(s) with critical work overdue"
            )
        _publish(settings, engine, result.changed)


# --- incidents ----------------------------------------------------------------------------
@incident_app.command("open")
def incident_open(
    machine: Annotated[str, typer.Argument(help="the machine's code")],
    text: Annotated[str, typer.Option(help="what is wrong")],
    by: Annotated[str | None, typer.Option(help="email of the member who reported it")] = None,
    config: ConfigOpt = None,
) -> None:
    """Open a ticket for a problem on a machine."""
    from sqlmodel import Session

    from hub.audit import cli_actor, record
    from hub.services.incidents import report_incident

    with _database(config) as (_, engine), Session(engine) as session:
        with refusals(machine="MACHINE"):
            incident, _ = report_incident(
                session,
                machine=machine,
                text=text,
                source="cli",
                reported_by=cli_actor(),
                reporter_email=by,
            )
        record(
            session,
            actor=cli_actor(),
            action="incident.open",
            entity="incident",
            entity_id=str(incident.id),
            machine=machine,
        )
        session.commit()
        typer.echo(f"incident {incident.id} opened on {machine}")


@incident_app.command("close")
def incident_close(
    incident: Annotated[int, typer.Argument(help="the incident number")],
    note: Annotated[str, typer.Option(help="what was found and done")],
    config: ConfigOpt = None,
) -> None:
    """Close a ticket."""
    from sqlmodel import Session

    from hub.audit import cli_actor
    from hub.services.incidents import resolve_incident

    with _database(config) as (_, engine), Session(engine) as session:
        with refusals(incident_id="INCIDENT"):
            resolve_incident(session, incident_id=incident, by=cli_actor(), note=note)
        session.commit()
    typer.echo(f"incident {incident} closed")


@incident_app.command("list")
def incident_list(
    show_all: Annotated[bool, typer.Option("--all", help="closed ones too")] = False,
    config: ConfigOpt = None,
) -> None:
    """Open incidents, newest first."""
    from sqlmodel import Session, col, select

    from hub.models import Incident, Machine

    with _database(config) as (_, engine), Session(engine) as session:
        machines = {m.id: m.code for m in session.exec(select(Machine))}
        query = select(Incident).order_by(col(Incident.opened_at).desc())
        if not show_all:
            query = query.where(col(Incident.closed_at).is_(None))
        rows = session.exec(query.limit(500)).all()
        if not rows:
            typer.echo("no open incidents" if not show_all else "no incidents")
            return
        for row in rows:
            state = f"closed {row.closed_at:%Y-%m-%d}" if row.closed_at else "open"
            who = row.reported_by_ref or row.reported_by or row.source
            code = machines.get(row.machine_id, "?")
            typer.echo(
                f"{row.id:>4}  {code:<12} {row.opened_at:%Y-%m-%d %H:%M}  {state:<17} "
                f"{row.source:<9} {who:<14} {row.text or row.kind}"
            )

"""`atelier hub badge|member|machine`: who may use what, published to the machines at once."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from hub.audit import cli_actor, record

badge_app = typer.Typer(no_args_is_help=True, help="Badges: revoke a lost or stolen one.")
member_app = typer.Typer(no_args_is_help=True, help="Members: suspend or reactivate.")
machine_app = typer.Typer(no_args_is_help=True, help="Machines: lock out for maintenance.")
telemetry_app = typer.Typer(no_args_is_help=True, help="Telemetry history.")
tls_app = typer.Typer(no_args_is_help=True, help="TLS: the lab's own certificate authority.")
training_app = typer.Typer(
    no_args_is_help=True, help="Trainings: the first trainer of a new machine type."
)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="hub TOML file (or ATELIER_CONFIG)")
]


def _change(
    config: Path | None,
    apply: Any,
    machines: list[str] | None = None,
    after_commit: Any = None,
) -> None:
    """Run `apply(session)` (which returns a sentence, or raises LookupError), commit, run
    `after_commit(engine)` if given, then publish the affected allow-lists."""
    from sqlmodel import Session

    from hub.allowlist import publish_once
    from hub.cli.support import load_settings
    from hub.core.db import make_engine, migrate
    from hub.core.security import load_or_create_signing_key

    settings = load_settings(config)
    migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        with Session(engine) as session:
            try:
                done = apply(session)
            except LookupError as exc:
                typer.echo(str(exc), err=True)
                raise typer.Exit(2) from None
            session.commit()
        if after_commit is not None:
            after_commit(engine)
        typer.echo(done)
        try:
            count = publish_once(
                settings, engine, load_or_create_signing_key(settings.data_dir), machines
            )
        except (ConnectionError, OSError) as exc:
            typer.echo(
                f"saved, but the allow-lists could not be published now ({exc}); "
                "the machines get them at the hub's next publication",
                err=True,
            )
            return
        typer.echo(f"published {count} allow-list(s): the machines apply them within seconds")
    finally:
        engine.dispose()


@badge_app.command("revoke")
def revoke_badge(
    uid: Annotated[str, typer.Argument(help="the card UID, e.g. 04A1B2C3")],
    config: ConfigOpt = None,
) -> None:
    """Revoke a badge (lost, stolen, returned): no machine opens for it any more."""
    from hub.cli.support import refusals
    from hub.services.badges import card_uid, revoke_card

    with refusals(uid="UID"):
        uid = card_uid(uid)

    def apply(session: Any) -> str:
        revoke_card(session, uid=uid, actor=cli_actor())  # NotFound is a LookupError
        return f"badge {uid} revoked"

    _change(config, apply)


def _set_member_status(email: str, status: str, config: Path | None) -> None:
    from hub.models import MemberStatus
    from hub.services.members import set_member_status

    def apply(session: Any) -> str:
        member = set_member_status(
            session, email=email, status=MemberStatus(status), actor=cli_actor()
        )
        return f"{member.name} is now {status}"

    _change(config, apply)


@member_app.command("suspend")
def suspend_member(email: str, config: ConfigOpt = None) -> None:
    """Suspend a member: every machine refuses their badges (member_inactive)."""
    _set_member_status(email, "suspended", config)


@member_app.command("activate")
def activate_member(email: str, config: ConfigOpt = None) -> None:
    """Reactivate a suspended member."""
    _set_member_status(email, "active", config)


def _set_lock(code: str, locked: bool, reason: str, config: Path | None) -> None:
    from sqlmodel import select

    from hub.models import Machine

    def apply(session: Any) -> str:
        machine = session.exec(select(Machine).where(Machine.code == code)).first()
        if machine is None:
            raise LookupError(f"no machine {code}")
        machine.locked = locked
        machine.lock_reason = reason if locked else None
        session.add(machine)
        record(
            session,
            actor=cli_actor(),
            action="machine.lock" if locked else "machine.unlock",
            entity="machine",
            entity_id=code,
            reason=reason,
        )
        return f"{code} {'locked out' if locked else 'unlocked'}" + (
            f" ({reason})" if locked else ""
        )

    _change(config, apply, [code])


@machine_app.command("lock")
def lock_machine(
    code: str,
    reason: Annotated[str, typer.Option(help="why, shown to members")],
    config: ConfigOpt = None,
) -> None:
    """Lock a machine out: only maintainers may use it, and a running session ends."""
    _set_lock(code, True, reason, config)


@machine_app.command("unlock")
def unlock_machine(code: str, config: ConfigOpt = None) -> None:
    """Give a locked-out machine back to its users."""
    _set_lock(code, False, "", config)


@tls_app.command("init")
def tls_init(
    directory: Annotated[
        Path, typer.Option("--dir", help="where to write the certificates")
    ] = Path("/etc/atelier/tls"),
    broker_name: Annotated[
        list[str] | None,
        typer.Option(
            help="a name or IP address agents use to reach the broker (repeat); "
            "the first is the certificate's common name"
        ),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Create the lab CA (kept if it exists), the broker certificate, and a client
    certificate for every machine in the hub's database."""
    from sqlmodel import Session, select

    from hub.cli.support import load_settings
    from hub.core.db import make_engine, migrate
    from hub.models import Machine
    from hub.tls import init_tls, tighten_keys

    settings = load_settings(config)
    migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        machines = [m.agent_id or m.code for m in session.exec(select(Machine))]
    engine.dispose()
    names = broker_name or ["localhost", "127.0.0.1"]
    tightened = tighten_keys(directory)
    written = init_tls(directory, site=settings.site, broker_names=names, agents=machines)
    for path in tightened:
        typer.echo(f"{path}: others could read this private key; now 0600 (owner only)")
    typer.echo(f"lab CA: {directory / 'ca.crt'} (keep {directory / 'ca.key'} offline if you can)")
    typer.echo(f"broker: {written['broker'].cert} for {', '.join(names)}")
    typer.echo(f"{len(machines)} agent certificate(s) in {directory / 'agents'}")


@member_app.command("export")
def export_member_command(
    email: str,
    out: Annotated[Path | None, typer.Option(help="write the JSON here instead of stdout")] = None,
    config: ConfigOpt = None,
) -> None:
    """Everything the hub holds about a member, as JSON (their right of access)."""
    import json

    from sqlmodel import Session

    from hub.cli.support import load_settings
    from hub.core.db import make_engine
    from hub.core.files import private_file
    from hub.services.member_data import find_member
    from hub.services.members import export_member_data

    settings = load_settings(config)
    engine = make_engine(settings.database_url)
    try:
        with Session(engine) as session:
            try:
                member = find_member(session, email)
            except LookupError as exc:
                typer.echo(str(exc), err=True)
                raise typer.Exit(2) from None
            assert member.id is not None
            # Reading someone's personal data is recorded too (the service audits it).
            data = export_member_data(session, member_id=member.id, actor=cli_actor())
            session.commit()
    finally:
        engine.dispose()
    text = json.dumps(data, indent=2, ensure_ascii=False)
    if out is None:
        typer.echo(text)
    else:
        private_file(out).write_text(text + "\n")  # personal data: owner only
        typer.echo(f"wrote {out}")


@member_app.command("erase")
def erase_member_command(
    email: str,
    yes: Annotated[bool, typer.Option("--yes", help="confirm: this cannot be undone")] = False,
    config: ConfigOpt = None,
) -> None:
    """Erase a member's name, email, card UIDs and login; history stays under their
    reference."""
    from hub.core.db import forget_erased
    from hub.services.member_data import find_member
    from hub.services.members import erase_member_data

    if not yes:
        typer.echo("erasure cannot be undone: add --yes to confirm", err=True)
        raise typer.Exit(2)

    def apply(session: Any) -> str:
        member = find_member(session, email)
        assert member.id is not None
        counts = erase_member_data(session, member_id=member.id, actor=cli_actor())
        return (
            f"member {member.ref} erased: {counts['badges']} badge(s) revoked, card UIDs "
            f"removed from {counts['sessions']} session(s) and {counts['events']} event(s), "
            f"{counts['logins']} login(s) disabled and {counts['tokens']} token(s) revoked, "
            f"{counts['audit']} audit entr(ies), {counts['statements']} statement(s), "
            f"{counts['dead_letters']} dead letter(s) and {counts['notes']} note(s) cleaned"
        )

    _change(config, apply, after_commit=forget_erased)


@training_app.command("first-trainer")
def first_trainer_command(
    email: Annotated[str, typer.Argument(help="the member's email")],
    machine_type: Annotated[
        str, typer.Option("--machine-type", help="the machine type's code, e.g. laser")
    ],
    expires: Annotated[
        str | None,
        typer.Option(help="last day of the training, e.g. 2028-06-30 (default: no end)"),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Make a member the first trainer of a machine type that has none yet (a new type);
    from then on its trainers grant it. Audited as training.first_trainer."""
    from datetime import date, time

    from sqlmodel import select

    from hub.core.errors import HubError
    from hub.models import MachineType
    from hub.services.member_data import find_member
    from hub.services.trainings import appoint_first_trainer

    expires_at = None
    if expires is not None:
        try:
            expires_at = datetime.combine(date.fromisoformat(expires), time.max, tzinfo=UTC)
        except ValueError:
            typer.echo(f"--expires {expires!r} is not a day like 2028-06-30", err=True)
            raise typer.Exit(2) from None
    flags = {"machine_type": "--machine-type", "expires_at": "--expires"}

    def apply(session: Any) -> str:
        member = find_member(session, email)
        mtype = session.exec(select(MachineType).where(MachineType.code == machine_type)).first()
        if mtype is None:
            known = ", ".join(session.exec(select(MachineType.code)).all()) or "none yet"
            raise LookupError(f"--machine-type: no machine type {machine_type!r} (known: {known})")
        try:
            appoint_first_trainer(
                session,
                member=member,
                machine_type=mtype,
                actor=cli_actor(),
                now=datetime.now(UTC),
                expires_at=expires_at,
            )
        except HubError as exc:  # _change reports a LookupError as the person's mistake
            field = exc.field or ""
            raise LookupError(f"{flags.get(field, field)}: {exc}") from None
        return f"{member.name} is now a trainer for {mtype.code}: they grant its trainings"

    _change(config, apply)


@telemetry_app.command("compact")
def telemetry_compact(config: ConfigOpt = None) -> None:
    """Downsample old telemetry and age out what is past retention (the hub does it hourly)."""
    from datetime import UTC, datetime

    from hub.cli.support import load_settings
    from hub.core.db import make_engine, migrate
    from hub.telemetry import compact

    settings = load_settings(config)
    migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        counts = compact(
            engine,
            now=datetime.now(UTC),
            raw_hours=settings.telemetry_raw_hours,
            bucket_s=settings.telemetry_downsample_s,
            keep_days=settings.telemetry_keep_days,
        )
    finally:
        engine.dispose()
    typer.echo(
        f"{counts['downsampled']} raw sample(s) merged into {counts['buckets']} "
        f"bucket(s); {counts['aged_out']} sample(s) past retention removed"
    )

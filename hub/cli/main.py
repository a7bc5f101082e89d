"""`atelier hub ...`: serve, run an ingest worker, migrate, keys."""

from __future__ import annotations

import json
import logging
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from hub.cli.support import load_settings, refusal
from hub.core.errors import HubError

__all__ = ["app", "load_settings"]

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="hub TOML file (or ATELIER_CONFIG)")
]


LogFormatOpt = Annotated[
    str | None,
    typer.Option(
        "--log-format",
        help="text, or json (one object per line, for journald and log shippers); "
        "default ATELIER_LOG_FORMAT, else text",
    ),
]


def _logging(level: str, fmt: str | None = None) -> None:
    """The one logging setup (edge/logs.py); a level or format nobody can use exits 2."""
    from edge.logs import LogSetupError, setup_logging

    try:
        setup_logging(level, fmt)
    except LogSetupError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


@app.command()
def serve(
    config: ConfigOpt = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning")] = "info",
    log_format: LogFormatOpt = None,
) -> None:
    """Run the hub: HTTP API and pages, MQTT ingest, allow-list publishing."""
    import uvicorn

    from hub.app import create_app

    _logging(log_level, log_format)
    settings = load_settings(config)
    uvicorn.run(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        log_level=log_level.lower(),
        log_config=None,  # uvicorn's lines go through the one setup, in its format
        access_log=False,
    )


@app.command()
def ingest(
    config: ConfigOpt = None,
    shared: Annotated[
        str | None,
        typer.Option(help="share the event subscription with other workers ($share/GROUP/...)"),
    ] = None,
    worker: Annotated[str, typer.Option(help="a name unique among the workers")] = "1",
    log_level: str = "info",
    log_format: LogFormatOpt = None,
) -> None:
    """Run one ingest worker without HTTP (atelier-ingest@.service)."""
    from hub.core.db import make_engine, migrate

    _logging(log_level, log_format)
    settings = load_settings(config)
    if shared and settings.mqtt_protocol != "5":
        typer.echo('--shared needs mqtt_protocol = "5" (shared subscriptions are MQTT 5)', err=True)
        raise typer.Exit(2)
    migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    from hub.runtime import HubRuntime

    runtime = HubRuntime(settings, engine, worker=worker, shared_group=shared)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    runtime.start()
    consumer = runtime.consumer
    assert consumer is not None
    try:
        while not done.wait(1):
            pass
    finally:
        runtime.stop()
        engine.dispose()
        logging.getLogger("hub.ingest").info(
            "ingest worker %s stopped: %s", worker, json.dumps(consumer.stats.as_dict())
        )


@app.command()
def migrate(config: ConfigOpt = None) -> None:
    """Bring the database schema to the newest version."""
    from hub.core.db import migrate as run_migrations

    settings = load_settings(config)
    run_migrations(settings.database_url)
    typer.echo("database schema is up to date")


@app.command()
def keys(config: ConfigOpt = None) -> None:
    """Create the hub's signing key pair if needed and print the public key for agent configs."""
    from hub.core.security import KEY_FILE, load_or_create_signing_key
    from protocol.allowlist import key_id, public_key_b64

    settings = load_settings(config)
    key = load_or_create_signing_key(settings.data_dir)
    typer.echo(f"private key: {settings.data_dir / KEY_FILE} (keep it secret, back it up)")
    typer.echo(f"key id:      {key_id(key.public_key())}")
    typer.echo("public key (agent.hub_public_key in each machine's TOML):")
    typer.echo(public_key_b64(key.public_key()))


@app.command("mqtt-credentials")
def mqtt_credentials(
    password_file: Annotated[Path, typer.Option(help="Mosquitto password_file to write")],
    acl_file: Annotated[Path, typer.Option(help="Mosquitto acl_file to write")],
    secrets_dir: Annotated[
        Path, typer.Option(help="where each agent's password is kept (one 0600 file per machine)")
    ] = Path("/etc/atelier/agents"),
    rotate: Annotated[
        list[str] | None, typer.Option(help="give this account a new password (repeat for several)")
    ] = None,
    bridges: Annotated[
        bool,
        typer.Option(
            "--bridges",
            help="on a regional broker: an account bridge-<site> for every site in the machines "
            "table, for that site broker's bridge",
        ),
    ] = False,
    bridge_site: Annotated[
        list[str] | None,
        typer.Option(help="a bridge-<site> account for this site too (repeat for several)"),
    ] = None,
    site: Annotated[
        list[str] | None,
        typer.Option(
            help="accounts only for the machines (and plugs) of this site (repeat for several): "
            "a site broker's own; default every machine"
        ),
    ] = None,
    no_agents: Annotated[
        bool,
        typer.Option(
            "--no-agents",
            help="no machine or plug accounts at all: a regional broker all of whose sites "
            "bridge (their agents connect to their site broker)",
        ),
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """One broker account per machine, confined to its own topics; the hub's reads all.

    A machine with a plug_topic also gets an account for its smart plug, plug-<code>, allowed
    to publish that topic only; its password is in the secrets directory like the agents'.
    With --bridges (or --bridge-site), each site's bridge gets an account bridge-<site>,
    allowed to publish its site's events, telemetry and status and to read its acl and cmd."""
    from hub.core.db import make_engine
    from hub.core.db import migrate as run_migrations
    from hub.services.broker_accounts import secret_path, write_credentials

    if no_agents and site:
        typer.echo("--no-agents and --site: give one or the other", err=True)
        raise typer.Exit(2)
    settings = load_settings(config)
    if not settings.mqtt_username:
        typer.echo(
            "mqtt_username is not set: the hub's own broker account needs a name "
            "(ATELIER_MQTT_USERNAME or mqtt_username in the hub TOML)",
            err=True,
        )
        raise typer.Exit(2)
    run_migrations(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        written = write_credentials(
            engine,
            password_file=password_file,
            acl_file=acl_file,
            secrets_dir=secrets_dir,
            hub_user=settings.mqtt_username,
            hub_password=settings.mqtt_password,
            rotate=set(rotate or []),
            bridges=bridges,
            bridge_sites=bridge_site or [],
            sites=site or [],
            agents=not no_agents,
        )
    except HubError as exc:  # a plug topic, site or account name the ACL cannot take
        typer.echo("nothing written.", err=True)
        raise refusal(exc) from None
    finally:
        engine.dispose()
    for name in sorted(set(site or []) - {a.site for a in written.agents}):
        typer.echo(f"--site {name}: no machine of that site in the machines table", err=True)
    counts = f"{len(written.agents)} agent account(s), {len(written.plugs)} plug account(s)"
    if bridges or bridge_site:
        counts += f", {len(written.bridges)} bridge account(s)"
    typer.echo(
        f"{counts} and the hub's written to {password_file} and {acl_file}; "
        f"passwords are in {secrets_dir}"
    )
    for bridge in written.bridges:
        typer.echo(
            f"bridge of site {bridge.site}: MQTT user {bridge.username}, may publish "
            f"atelier/v1/{bridge.site}/+/event, telemetry and status and read its acl and cmd "
            f"only; password in {secret_path(secrets_dir, bridge.username)} "
            f"(broker_bridge_password on {bridge.site}'s broker)"
        )
    for plug in written.plugs:
        typer.echo(
            f"plug of {plug.machine}: MQTT user {plug.username}, may publish {plug.topic} only; "
            f"password in {secret_path(secrets_dir, plug.username)}"
        )
    if written.removed:
        typer.echo(
            f"deleted the kept password of {len(written.removed)} account(s) no longer in the "
            f"machines table: {', '.join(written.removed)} (a machine given one of these names "
            "later gets a new password)"
        )
    typer.echo("reload the broker to apply: systemctl reload mosquitto (or kill -HUP)")


import_app = typer.Typer(no_args_is_help=True, help="Import members or trainings from CSV.")
app.add_typer(import_app, name="import")


def _admin_apps() -> None:
    from hub.cli.admin import (
        badge_app,
        machine_app,
        member_app,
        telemetry_app,
        tls_app,
        training_app,
    )

    app.add_typer(badge_app, name="badge")
    app.add_typer(member_app, name="member")
    app.add_typer(machine_app, name="machine")
    from hub.cli.machine_setup import register as machine_setup  # add, check

    machine_setup(machine_app)
    app.add_typer(tls_app, name="tls")
    app.add_typer(telemetry_app, name="telemetry")
    app.add_typer(training_app, name="training")
    from hub.cli.users import user_app

    app.add_typer(user_app, name="user")
    from hub.cli.retention import retention_app

    app.add_typer(retention_app, name="retention")
    from hub.cli.billing import billing_app

    app.add_typer(billing_app, name="billing")
    from hub.cli.displays import display_app

    app.add_typer(display_app, name="display")
    from hub.cli.energy import energy
    from hub.cli.materials import material_app, spool_app

    app.add_typer(material_app, name="material")
    app.add_typer(spool_app, name="spool")

    app.command("energy")(energy)
    from hub.cli.helloasso import helloasso_app

    app.add_typer(helloasso_app, name="helloasso")
    from hub.cli.rgpd import rgpd_app

    app.add_typer(rgpd_app, name="rgpd")


_admin_apps()
from hub.cli.export import export_app  # noqa: E402

app.add_typer(export_app, name="export")
from hub.cli.maintenance import register as _maintenance  # noqa: E402

_maintenance(app)


def _run_import(kind: str, file: Path, dry_run: bool, config: Path | None) -> None:
    from hub.core.db import make_engine
    from hub.core.db import migrate as run_migrations
    from hub.imports import ImportFileError, decode, import_members, import_trainings

    settings = load_settings(config)
    try:
        text = decode(file.read_bytes())
    except FileNotFoundError:
        typer.echo(f"{file}: no such file", err=True)
        raise typer.Exit(2) from None
    except ImportFileError as exc:
        typer.echo(f"{file}: {exc}", err=True)
        raise typer.Exit(2) from None
    run_migrations(settings.database_url)
    engine = make_engine(settings.database_url)
    importer = import_members if kind == "members" else import_trainings

    def progress(rows: Any) -> Any:
        with typer.progressbar(rows, label=f"checking {kind}", file=None) as bar:
            yield from bar

    try:
        from hub.audit import cli_actor

        if kind == "members":
            from zoneinfo import ZoneInfo

            report = import_members(
                engine,
                text,
                dry_run=dry_run,
                progress=progress,
                actor=cli_actor(),
                tz=ZoneInfo(settings.timezone),  # the lab's today, for category changes
            )
        else:
            report = importer(engine, text, dry_run=dry_run, progress=progress, actor=cli_actor())
    except ImportFileError as exc:
        typer.echo(f"{file}: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        engine.dispose()
    if not report.ok:
        typer.echo(f"{file}: {len(report.errors)} problem(s); nothing was imported:", err=True)
        for error in report.errors:
            typer.echo(f"  {error}", err=True)
        raise typer.Exit(2)
    verb = "would import" if dry_run else "imported"
    typer.echo(
        f"{file}: {verb} {report.created} {kind} ({report.skipped} already known, "
        f"{report.rows} rows)"
    )
    changes = report.category_changes
    if changes:
        verb_change = "would change" if dry_run else "changed"
        typer.echo(f"{file}: {verb_change} the category of {changes} known member(s), from today")
    if not dry_run and report.created:
        typer.echo(
            "machines get their new allow-lists at the hub's next publication "
            "(restart the hub to publish at once)"
        )


@import_app.command("members")
def import_members_command(
    file: Annotated[Path, typer.Argument(help="CSV: name,email,category,badges")],
    dry_run: Annotated[bool, typer.Option(help="check and report, change nothing")] = False,
    config: ConfigOpt = None,
) -> None:
    """Members (and their badges) from a CSV file; all rows or none."""
    _run_import("members", file, dry_run, config)


@import_app.command("trainings")
def import_trainings_command(
    file: Annotated[
        Path,
        typer.Argument(
            help="CSV: member_email,machine_type,level,expires,supervised_only,granted_by_email"
        ),
    ],
    dry_run: Annotated[bool, typer.Option(help="check and report, change nothing")] = False,
    config: ConfigOpt = None,
) -> None:
    """Trainings from a CSV file; each granted by a trainer for that machine type."""
    _run_import("trainings", file, dry_run, config)


@app.command("seed-demo")
def seed_demo(config: ConfigOpt = None) -> None:
    """Add the demo lab's members, machines and trainings (idempotent)."""
    from sqlmodel import Session

    from hub.core.db import make_engine
    from hub.core.db import migrate as run_migrations
    from hub.demo.seed import seed_demo as seed

    settings = load_settings(config)
    run_migrations(settings.database_url)
    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        seed(session, site=settings.site)
    engine.dispose()
    typer.echo("demo data is in place")

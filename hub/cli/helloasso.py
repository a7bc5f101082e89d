"""`atelier hub helloasso ...`: HelloAsso's exports into the hub (members from memberships,
prepaid credit from top-up payments) and the mapping of membership tiers to categories."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer

from hub.audit import cli_actor
from hub.cli.support import database, fail, refusal
from hub.core.errors import HubError, describe

helloasso_app = typer.Typer(
    no_args_is_help=True, help="HelloAsso: import memberships and top-ups, map tiers."
)
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="hub TOML file (or ATELIER_CONFIG)")
]
FLAGS = {"file": "FILE", "tier": "TIER", "category": "CATEGORY"}


@helloasso_app.command("import")
def import_file(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="the CSV exported from HelloAsso")],
    kind: Annotated[
        str, typer.Option("--kind", help="memberships (adhésions) or payments (top-ups)")
    ] = "memberships",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="say what would change, change nothing")
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Members from a memberships export, prepaid credit from a payments export. Importing
    the same file again changes nothing; every refused line is listed with its reason."""
    from sqlmodel import Session

    from hub.services.helloasso import import_export

    try:
        data = file.read_bytes()
    except OSError as exc:
        raise fail(f"FILE: {file}: {exc.strerror or exc}") from None
    with database(config) as (settings, engine), Session(engine) as session:
        try:
            tz = ZoneInfo(settings.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise fail(f"timezone: {settings.timezone!r} is not a time zone") from None
        try:
            report = import_export(
                session, data, kind=kind, actor=cli_actor(), tz=tz, dry_run=dry_run
            )
            if not dry_run:
                session.commit()
        except HubError as error:
            session.rollback()
            raise refusal(error, FLAGS) from None
        _print(report)
        if report.balances_changed:
            from hub.cli.billing import _publish

            _publish(settings, session)


def _print(report: Any) -> None:
    from hub.services.billing import euros

    head = "dry run, nothing changed: " if report.dry_run else ""
    would = "would be " if report.dry_run else ""
    typer.echo(
        f"{head}{report.rows} line(s): {report.count('created')} member(s) {would}created, "
        f"{report.count('category')} category change(s), {report.count('topup')} top-up(s), "
        f"{report.count('unchanged')} already there, {len(report.rejected)} refused"
    )
    for change in report.changes:
        if change.what == "unchanged":
            continue
        amount = f" {euros(change.cents)} €" if change.what == "topup" else ""
        typer.echo(f"  line {change.line}: {change.what} {change.email} {change.detail}{amount}")
    for problem in report.rejected:
        typer.echo(
            f"  line {problem.params.get('line')}: {problem.field}: {describe(problem)}", err=True
        )


@helloasso_app.command("tier")
def tier(
    name: Annotated[str, typer.Argument(metavar="TIER", help="the tier (tarif) as on HelloAsso")],
    category: Annotated[
        str | None, typer.Argument(metavar="CATEGORY", help="the member category it gives")
    ] = None,
    forget: Annotated[bool, typer.Option("--forget", help="forget this tier")] = False,
    config: ConfigOpt = None,
) -> None:
    """Map a membership tier to a member category (or --forget it); no argument but TIER
    shows the mapping."""
    from sqlmodel import Session

    from hub.services.helloasso import set_tier, tier_mapping

    with database(config) as (_settings, engine), Session(engine) as session:
        try:
            if category is None and not forget:
                mapping = tier_mapping(session)
            else:
                mapping = set_tier(session, name, None if forget else category, actor=cli_actor())
                session.commit()
        except HubError as error:
            session.rollback()
            raise refusal(error, FLAGS) from None
    for shown, given in sorted(mapping.items()):
        typer.echo(f"{shown} -> {given}")

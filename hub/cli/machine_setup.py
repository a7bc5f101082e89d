"""`atelier hub machine add` and `atelier hub machine check`: a machine from nothing to working.

`add` takes one machine from its options, or a whole lab from a CSV file whose columns are the
options' names (code,name,machine_type,kind,site,location,reader,relay_pin,busy_pin,ruida_host,
octoprint_url,octoprint_api_key,plug_kind,plug_topic): every row is checked before any is
added. The messages are in the language of LANG (French or English).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer

from hub.cli.support import database, fail

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="hub TOML file (or ATELIER_CONFIG)")
]
CSV_COLUMNS = (
    "code",
    "name",
    "machine_type",
    "kind",
    "site",
    "location",
    "reader",
    "relay_pin",
    "busy_pin",
    "ruida_host",
    "octoprint_url",
    "octoprint_api_key",
    "plug_kind",
    "plug_topic",
)
FLAGS = {name: "--" + name.replace("_", "-") for name in CSV_COLUMNS}
FLAGS["machine_type"] = "--type"
FLAGS["code"] = "CODE"


def _gettext() -> Any:
    from hub.web.i18n import translator

    wanted = os.environ.get("LANGUAGE") or os.environ.get("LC_ALL") or os.environ.get("LANG", "")
    return translator("fr" if wanted.lower().startswith("fr") else "en").gettext


def _problem(exc: Any, where: str = "") -> typer.Exit:
    """A choice that cannot be taken: its flag (or CSV column) and the fix, exit 2."""
    _ = _gettext()
    flag = where or FLAGS.get(exc.field, "--" + exc.field.replace("_", "-"))
    return fail(f"{flag}: {exc.text(_)}")


def _int(value: str, column: str, where: str) -> int | None:
    if not value.strip():
        return None
    try:
        return int(value)
    except ValueError:
        raise fail(f"{where} {column}: {value!r} is not a whole number") from None


def _default(value: int | None, default: int) -> int:
    """An empty pin field: the default (GPIO 0 is a pin, not "nothing")."""
    return default if value is None else value


def _rows(file: Path, site: str) -> list[tuple[str, Any]]:
    from hub.services.machines import MachineChoices

    try:
        text = file.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise fail(f"--from-csv {file}: no such file") from None
    except UnicodeDecodeError:
        raise fail(f"--from-csv {file}: not UTF-8 text; save the sheet as CSV UTF-8") from None
    reader = csv.DictReader(io.StringIO(text))
    unknown = sorted(set(reader.fieldnames or []) - set(CSV_COLUMNS))
    if unknown or not {"code", "name", "machine_type"} <= set(reader.fieldnames or []):
        raise fail(
            f"--from-csv {file}: columns are {', '.join(CSV_COLUMNS)} (code, name and "
            f"machine_type required); unknown: {', '.join(unknown) or 'none'}"
        )
    out = []
    for number, row in enumerate(reader, start=2):
        where = f"{file} line {number}"
        values = {k: (v or "").strip() for k, v in row.items() if k}
        choices = MachineChoices(
            code=values["code"],
            name=values["name"],
            machine_type=values["machine_type"],
            site=values.get("site") or site,
            kind=values.get("kind") or None,
            location=values.get("location", ""),
            reader=values.get("reader") or "mfrc522",
            relay_pin=_default(_int(values.get("relay_pin", ""), "relay_pin", where), 17),
            busy_pin=_int(values.get("busy_pin", ""), "busy_pin", where),
            ruida_host=values.get("ruida_host") or None,
            octoprint_url=values.get("octoprint_url") or None,
            octoprint_api_key=values.get("octoprint_api_key") or None,
            plug_kind=values.get("plug_kind") or None,
            plug_topic=values.get("plug_topic") or None,
        )
        out.append((where, choices))
    if not out:
        raise fail(f"--from-csv {file}: no machine in it (one row per machine after the header)")
    return out


def add(
    code: Annotated[str | None, typer.Argument(help="the machine's code, e.g. laser-2")] = None,
    name: Annotated[str, typer.Option(help="its name, as members know it")] = "",
    machine_type: Annotated[str, typer.Option("--type", help="its machine type's code")] = "",
    kind: Annotated[
        str | None, typer.Option(help="laser, printer, cnc or other; default: its type's")
    ] = None,
    site: Annotated[str | None, typer.Option(help="its lab site; default: the hub's")] = None,
    location: str = "",
    reader: Annotated[str, typer.Option(help="mfrc522 or keyboard (USB wedge)")] = "mfrc522",
    relay_pin: Annotated[int, typer.Option(help="the relay's BCM GPIO")] = 17,
    busy_pin: Annotated[
        int | None, typer.Option(help="a laser's fire signal or a tool's busy input (BCM GPIO)")
    ] = None,
    ruida_host: Annotated[str | None, typer.Option(help="a laser's Ruida controller")] = None,
    octoprint_url: Annotated[str | None, typer.Option(help="a printer's OctoPrint")] = None,
    octoprint_api_key: Annotated[
        str | None, typer.Option(help="an OctoPrint application key (checked at once)")
    ] = None,
    plug_kind: Annotated[
        str | None, typer.Option(help="tasmota, shelly-gen2 or shelly-gen1")
    ] = None,
    plug_topic: Annotated[str | None, typer.Option(help="the smart plug's MQTT topic")] = None,
    from_csv: Annotated[
        Path | None, typer.Option(help="a whole lab: one machine per row, columns as the options")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="write <out>/<code>/edge.toml and credentials/ there (else print it)"),
    ] = None,
    config: ConfigOpt = None,
) -> None:
    """Add a machine (or a whole lab) with its broker account and its agent's config."""
    from sqlmodel import Session

    from hub.audit import cli_actor
    from hub.core.security import load_or_create_signing_key
    from hub.services.machines import (
        MachineChoices,
        MachineSetupError,
        accounts_of,
        add_machine,
        agent_config,
        broker_account,
        target_of,
    )
    from protocol.allowlist import public_key_b64

    if (code is None) == (from_csv is None):
        raise fail("give a machine's CODE or --from-csv FILE (one or the other)")
    with database(config) as (settings, engine):
        site = site or settings.site
        if from_csv is not None:
            rows = _rows(from_csv, site)
        else:
            assert code is not None
            rows = [
                (
                    "",
                    MachineChoices(
                        code=code,
                        name=name or code,
                        machine_type=machine_type,
                        site=site,
                        kind=kind,
                        location=location,
                        reader=reader,
                        relay_pin=relay_pin,
                        busy_pin=busy_pin,
                        ruida_host=ruida_host,
                        octoprint_url=octoprint_url,
                        octoprint_api_key=octoprint_api_key,
                        plug_kind=plug_kind,
                        plug_topic=plug_topic,
                    ),
                )
            ]
        codes = [choices.code for _, choices in rows]
        for where, choices in rows:
            if codes.count(choices.code) > 1:
                raise fail(f"{where} code: {choices.code!r} is given twice")
        accounts = accounts_of(settings)
        target = target_of(
            settings, public_key_b64(load_or_create_signing_key(settings.data_dir).public_key())
        )
        added = []
        with Session(engine) as session:
            # Every row checked (OctoPrint asked) before any is kept: a lab is added whole.
            for where, choices in rows:
                try:
                    added.append(
                        add_machine(
                            session,
                            choices=choices,
                            actor=cli_actor(),
                            accounts=accounts,
                            commit=False,
                        )
                    )
                except MachineSetupError as exc:
                    session.rollback()
                    where_flag = f"{where} {exc.field}" if where else ""
                    raise _problem(exc, where_flag) from None
            session.commit()
            results = []
            for item in added:
                session.refresh(item.machine)
                password, written = broker_account(session, item.machine, accounts)
                type_code = rows[0][1].machine_type
                for _, choices in rows:
                    if choices.code == item.machine.code:
                        type_code = choices.machine_type
                results.append(
                    (item.machine, password, written, agent_config(item.machine, type_code, target))
                )
        _publish(settings, engine, [machine.code for machine, *_ in results])
    _ = _gettext()
    for machine, password, written, text in results:
        kind_note = _("kind %(kind)s") % {"kind": machine.kind}
        typer.echo(f"{machine.code}: {_('added')} ({kind_note})", err=out is None)
        if out is None:
            typer.echo(text)
        else:
            folder = out / machine.code
            (folder / "credentials").mkdir(parents=True, exist_ok=True, mode=0o700)
            (folder / "edge.toml").write_text(text)
            _secret_file(folder / "credentials" / "mqtt-password", password)
            if machine.octoprint_api_key:
                _secret_file(folder / "octoprint-api-key", machine.octoprint_api_key)
            if settings.mqtt_tls_ca:
                shutil.copyfile(settings.mqtt_tls_ca, folder / "ca.crt")
            typer.echo(
                _("  agent config in %(folder)s: copy it to /etc/atelier/ on the Pi")
                % {"folder": folder}
            )
        if not written:
            typer.echo(
                _(
                    "  broker account: password kept in %(dir)s; run atelier hub mqtt-credentials "
                    "and reload the broker"
                )
                % {"dir": settings.mqtt_secrets_dir},
                err=True,
            )
    typer.echo(_("then: atelier hub machine check CODE"), err=out is None)


def _publish(settings: Any, engine: Any, codes: list[str]) -> None:
    """The new machines' first allow-lists, retained on the broker before their agents start."""
    from hub.allowlist import publish_once
    from hub.core.security import load_or_create_signing_key

    try:
        publish_once(settings, engine, load_or_create_signing_key(settings.data_dir), codes)
    except (ConnectionError, OSError) as exc:
        _ = _gettext()
        message = _(
            "the allow-lists could not be published now (%(error)s); the machines get them at "
            "the hub's next publication"
        )
        typer.echo(message % {"error": exc}, err=True)


def _secret_file(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")


def check(
    code: Annotated[str, typer.Argument(help="the machine's code")],
    config: ConfigOpt = None,
) -> None:
    """What still stops the machine from working, in words; exit 1 while something does."""
    from sqlmodel import Session

    from hub.services.machine_checks import is_ready, setup_check
    from hub.services.machines import MachineSetupError

    _ = _gettext()
    with database(config) as (settings, engine), Session(engine) as session:
        try:
            findings = setup_check(
                session, code=code, now=datetime.now(UTC), tz=ZoneInfo(settings.timezone)
            )
        except MachineSetupError as exc:
            raise _problem(exc) from None
    for finding in findings:
        mark = "ok " if finding.ok else "NO "
        typer.echo(f"{mark} {finding.text(_)}")
    if is_ready(findings):
        typer.echo(_("%(code)s is ready: the first badge works") % {"code": code})
        return
    typer.echo(_("%(code)s is not ready yet") % {"code": code})
    raise typer.Exit(1)


def register(machine_app: typer.Typer) -> None:
    machine_app.command("add")(add)
    machine_app.command("check")(check)

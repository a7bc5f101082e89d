"""`atelier edge ...`: run the agent, tap a simulated badge, check a machine config."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False)

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="the machine's TOML file")]


def _load(config: Path):  # type: ignore[no-untyped-def]
    from edge.config import ConfigError, load_config

    try:
        return load_config(config)
    except ConfigError as exc:
        typer.echo(exc.report(), err=True)
        raise typer.Exit(2) from None


@app.command("check-config")
def check_config(
    config_file: Annotated[Path, typer.Argument(help="the machine's TOML file")],
) -> None:
    """Validate a machine config and report every problem at once (exit 2 when invalid)."""
    cfg = _load(config_file)
    typer.echo(
        f"{config_file}: ok — machine {cfg.agent.machine} on site {cfg.agent.site}, "
        f"reader {cfg.reader.type}, relay on GPIO{cfg.relay.pin}"
    )


@app.command("run")
def run(
    config: ConfigOpt,
    log_level: Annotated[str, typer.Option(help="debug, info, warning")] = "info",
    log_format: Annotated[
        str | None,
        typer.Option(help="text or json (one object per line); default ATELIER_LOG_FORMAT"),
    ] = None,
) -> None:
    """Run the agent until SIGTERM/SIGINT; the relay is opened on every way out.

    systemd runs the same agent as `atelier-agent --config FILE`, which leaves Typer out."""
    from edge.service import LOG_LEVELS, run_agent

    if log_level.lower() not in LOG_LEVELS:
        typer.echo(f"--log-level {log_level!r}: give one of {', '.join(LOG_LEVELS)}", err=True)
        raise typer.Exit(2)
    code = run_agent(config, log_level.lower(), log_format)
    if code:
        raise typer.Exit(code)


@app.command("tap")
def tap(
    config: ConfigOpt,
    uid: Annotated[str, typer.Option(help="the card UID as hex, e.g. 04A1B2C3")],
    remove: Annotated[bool, typer.Option(help="take the card off (card-present mode)")] = False,
) -> None:
    """Tap a badge on a running agent whose reader is `sim`."""
    import json

    from edge.hardware.sim_reader import request
    from protocol.badges import normalise_uid

    cfg = _load(config)
    if cfg.reader.type != "sim":
        typer.echo(
            f"{config}: reader.type is {cfg.reader.type!r}; taps can only be simulated "
            "on an agent whose reader is 'sim'",
            err=True,
        )
        raise typer.Exit(2)
    try:
        uid = normalise_uid(uid)
    except ValueError as exc:
        typer.echo(f"--uid: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        reply = request(cfg.sim_socket, {"op": "remove" if remove else "tap", "uid": uid})
    except (FileNotFoundError, ConnectionRefusedError):
        typer.echo(
            f"no agent is running for {config} (no socket at {cfg.sim_socket}); "
            f"start it with `atelier edge run --config {config}`",
            err=True,
        )
        raise typer.Exit(2) from None
    typer.echo(json.dumps(reply))
    if not reply.get("ok"):
        raise typer.Exit(2)


@app.command("state")
def state(config: ConfigOpt) -> None:
    """Show a running sim agent's state (relay pin, session, allow-list version)."""
    import json

    from edge.hardware.sim_reader import request

    cfg = _load(config)
    try:
        typer.echo(json.dumps(request(cfg.sim_socket, {"op": "state"})))
    except (FileNotFoundError, ConnectionRefusedError):
        typer.echo(f"no agent is running for {config}", err=True)
        raise typer.Exit(2) from None


@app.command("enrol-card")
def enrol_card(
    config: ConfigOpt,
    wait: Annotated[
        float, typer.Option(help="seconds to wait for a card on the reader", min=1, max=600)
    ] = 30.0,
) -> None:
    """Make the card on a desk reader a secure card of this site (reader.secure = true).

    Writes the card's own keys and secret, derived from the site secret and its UID, then
    prints its UID to enrol on the hub. Stop the agent using the same reader first."""
    import time

    from edge.hardware.mfrc522_reader import MFRC522Reader
    from edge.hardware.readers import ReaderError

    cfg = _load(config)
    if cfg.reader.type != "mfrc522" or not cfg.reader.secure:
        typer.echo(
            f'{config}: enrol-card writes secure cards: it needs reader.type = "mfrc522" and '
            "reader.secure = true with reader.site_key_file",
            err=True,
        )
        raise typer.Exit(2)
    try:
        reader = MFRC522Reader.from_config(cfg)
        reader.open()
    except ReaderError as exc:
        typer.echo(f"{config}: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        reader.start_enrolment(wait)
        typer.echo(f"show the card to the reader ({wait:.0f} s)...", err=True)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            read = next((r for r in reader.poll_once() if r.present), None)
            if read is not None:
                break
            time.sleep(reader.poll_interval_s)
        else:
            typer.echo(f"no card was shown within {wait:.0f} s; try again", err=True)
            raise typer.Exit(2)
    finally:
        reader.stop()
    if read.card == "refused":
        typer.echo(f"{reader.enrol_error} ({read.refusal})", err=True)
        raise typer.Exit(2)
    done = "keys written" if read.card == "written" else "already a secure card of this site"
    typer.echo(f"{read.uid}: {done}; enrol it on the hub with this UID")


@app.command("schema")
def schema() -> None:
    """Print the machine config's JSON Schema (firmware_config/schema.json is this output)."""
    import json

    from edge.config import config_schema

    typer.echo(json.dumps(config_schema(), indent=2, sort_keys=True))


@app.command("provision")
def provision(
    machine: Annotated[str, typer.Option(help="machine id, e.g. laser-1")],
    site: Annotated[str, typer.Option(help="site id, e.g. fablab")],
    hub_public_key: Annotated[str, typer.Option(help="what `atelier hub keys` prints")],
    broker: Annotated[str, typer.Option(help="host:port of the broker")],
    out: Annotated[Path, typer.Option(help="folder to write edge.toml and credentials/ into")],
    password_file: Annotated[
        Path | None,
        typer.Option(
            help="the machine's broker password, as written by `atelier hub mqtt-credentials`"
        ),
    ] = None,
    machine_type: str = "other",
    reader: Annotated[str, typer.Option(help="mfrc522, keyboard or sim")] = "mfrc522",
    relay_pin: Annotated[int, typer.Option(help="BCM GPIO of the relay")] = 17,
    relay_active_high: bool = False,
    pin_factory: str = "lgpio",
    tls_ca: Annotated[Path | None, typer.Option(help="the lab CA certificate on the Pi")] = None,
    state_dir: Path = Path("/var/lib/atelier-edge"),
) -> None:
    """Write a new Pi's /etc/atelier files: edge.toml and credentials/mqtt-password."""
    import os

    from edge.config import ConfigError, parse_config

    host, _, port_text = broker.rpartition(":")
    if not host or not port_text.isdigit():
        typer.echo(f"--broker {broker!r}: give host:port, e.g. hub.fablab.lan:8883", err=True)
        raise typer.Exit(2)
    data: dict[str, dict[str, object]] = {
        "agent": {
            "site": site,
            "machine": machine,
            "machine_type": machine_type,
            "state_dir": str(state_dir),
            "hub_public_key": hub_public_key,
        },
        "mqtt": {"host": host, "port": int(port_text), "username": machine},
        "gpio": {"pin_factory": pin_factory},
        "relay": {"pin": relay_pin, "active_high": relay_active_high},
        "reader": {"type": reader},
    }
    if tls_ca is not None:
        data["mqtt"] |= {"tls": True, "ca_file": str(tls_ca)}
    if reader == "keyboard":
        data["reader"]["input_device"] = "/dev/input/by-id/REPLACE-WITH-THE-READER"
    try:
        parse_config(data, "the provisioned config")
    except ConfigError as exc:
        typer.echo(exc.report(), err=True)
        raise typer.Exit(2) from None
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# Written by `atelier edge provision` for {machine} on site {site}.",
        "# Check it on the Pi with: atelier edge check-config /etc/atelier/edge.toml",
        "",
    ]
    for section, values in data.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            rendered = (
                str(value).lower()
                if isinstance(value, bool)
                else (str(value) if isinstance(value, int) else f'"{value}"')
            )
            lines.append(f"{key} = {rendered}")
        lines.append("")
    (out / "edge.toml").write_text("\n".join(lines))
    if password_file is not None:
        try:
            password = password_file.read_text().strip()
        except FileNotFoundError:
            typer.echo(
                f"--password-file {password_file}: no such file (run "
                "`atelier hub mqtt-credentials` on the hub first)",
                err=True,
            )
            raise typer.Exit(2) from None
        creds = out / "credentials"
        creds.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(creds / "mqtt-password", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(password + "\n")
    typer.echo(
        f"wrote {out / 'edge.toml'}"
        + (f" and {out / 'credentials' / 'mqtt-password'}" if password_file else "")
        + f"; copy them to /etc/atelier/ on the Pi of {machine}"
    )

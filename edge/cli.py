"""`atelier edge ...`: run the agent, tap a simulated badge, check a machine config."""

from __future__ import annotations

import logging
import signal
import threading
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
    config: ConfigOpt, log_level: Annotated[str, typer.Option(help="debug, info, warning")] = "info"
) -> None:
    """Run the agent until SIGTERM/SIGINT; the relay is opened on every way out."""
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    cfg = _load(config)
    from edge.agent import Agent
    from edge.hardware.readers import EdgeError

    agent = Agent(cfg)
    done = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        agent.start()
    except (EdgeError, OSError) as exc:
        agent.stop()
        typer.echo(f"the agent could not start: {exc}", err=True)
        raise typer.Exit(1) from None
    try:
        while not done.wait(0.5):
            pass
    finally:
        agent.stop()


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

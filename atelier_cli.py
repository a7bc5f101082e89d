"""The `atelier` command: `demo`, `hub ...` and `edge ...` (Typer).

A machine's Pi has only the agent's packages (`atelier[edge,pi]`): `atelier edge ...` never
imports the hub, and `atelier hub ...` there says which packages are missing rather than
failing with a traceback.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

import typer

HELP = "Atelier: badge access, machine hours, billing and statistics for fablabs."
EDGE_HELP = "The agent on a machine's Pi."
HUB_HELP = "The lab's hub: ingest, API, dashboard."
DEMO_HELP = "Hub + embedded broker + simulated machines on http://127.0.0.1:8000."


@functools.cache
def build_app() -> typer.Typer:
    from edge.cli import app as edge_app

    app = typer.Typer(help=HELP, no_args_is_help=True, pretty_exceptions_enable=False)
    app.add_typer(edge_app, name="edge", help=EDGE_HELP)
    try:
        from hub.cli.main import app as hub_app
        from hub.demo.run import demo_command
    except ModuleNotFoundError as exc:  # the hub's packages are not installed here
        missing = exc.name or "a hub package"

        def not_installed(ctx: typer.Context) -> None:
            typer.echo(
                f"`atelier {ctx.info_name}` needs the hub's packages ({missing} is not "
                "installed): pip install 'atelier[hub]'. On a machine's Pi, use "
                "`atelier edge ...`.",
                err=True,
            )
            raise typer.Exit(2)

        anything = {"allow_extra_args": True, "ignore_unknown_options": True}
        for name, text in (("hub", HUB_HELP), ("demo", DEMO_HELP)):
            app.command(name, help=f"{text} (not installed here)", context_settings=anything)(
                not_installed
            )
        return app
    app.add_typer(hub_app, name="hub", help=HUB_HELP)
    app.command("demo", help=DEMO_HELP)(demo_command)
    return app


def __getattr__(name: str) -> Any:
    # `from atelier_cli import app`: the whole command, built on first use.
    if name == "app":
        return build_app()
    raise AttributeError(name)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["edge"]:
        # The agent's own commands load nothing of the hub (memory on a Pi, and a Pi has
        # no hub packages): `atelier edge run` is the agent alone.
        from edge.cli import app as edge_app

        typer.main.get_command(edge_app)(args=args[1:], prog_name="atelier edge")
        return
    typer.main.get_command(build_app())(args=args, prog_name="atelier")


if __name__ == "__main__":
    main()

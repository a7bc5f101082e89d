"""The `atelier` command: `demo`, `hub ...` and `edge ...` (Typer)."""

from __future__ import annotations

import typer

from edge.cli import app as edge_app
from hub.cli import app as hub_app
from hub.demo import demo_command

app = typer.Typer(
    help="Atelier: badge access, machine hours, billing and statistics for fablabs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(edge_app, name="edge", help="The agent on a machine's Raspberry Pi.")
app.add_typer(hub_app, name="hub", help="The lab's hub: ingest, API, dashboard.")
app.command("demo", help="Hub + embedded broker + simulated machines on http://127.0.0.1:8000.")(
    demo_command
)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

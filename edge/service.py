"""`atelier-agent --config FILE`: the agent as systemd runs it on a machine's Pi.

The same agent as `atelier edge run`, started without the command-line toolkit: Typer (and
Click, Rich) would cost the running agent about 5 MB of its 45 MB budget for a help screen
nobody reads on a Pi (docs/performance.md). Bad config exits 2 with every problem listed;
a start that fails on the hardware (no SPI, no GPIO chip) exits 1.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from edge.logs import LOG_FORMATS, LOG_LEVELS, LogSetupError, setup_logging

__all__ = ["LOG_FORMATS", "LOG_LEVELS", "main", "run_agent"]


def run_agent(config_path: Path, log_level: str = "info", log_format: str | None = None) -> int:
    """Run the agent until SIGTERM/SIGINT; the relay is opened on every way out."""
    from edge.config import ConfigError, load_config

    try:
        setup_logging(log_level, log_format)
    except LogSetupError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        sys.stderr.write(exc.report() + "\n")
        return 2
    from edge.agent import Agent
    from edge.hardware.readers import EdgeError

    agent = Agent(config)
    done = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        agent.start()
    except (EdgeError, OSError) as exc:
        agent.stop()
        sys.stderr.write(f"the agent could not start: {exc}\n")
        return 1
    try:
        while not done.wait(0.5):
            pass
    finally:
        agent.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="atelier-agent",
        description="Run the Atelier agent of one machine until SIGTERM "
        "(the same as `atelier edge run`, without the command-line toolkit).",
    )
    parser.add_argument("--config", "-c", type=Path, required=True, help="the machine's TOML")
    parser.add_argument("--log-level", default="info", choices=LOG_LEVELS)
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        help="json: one JSON object per line, for journald and log shippers "
        "(default: ATELIER_LOG_FORMAT, else text)",
    )
    args = parser.parse_args(argv)  # a mistake here exits 2 with argparse's message
    return run_agent(args.config, args.log_level, args.log_format)


if __name__ == "__main__":
    sys.exit(main())

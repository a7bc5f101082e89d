"""A machine's Pi has only the agent's packages (`atelier[edge,pi]`): the hub's are absent.

Each case runs in a fresh interpreter whose import system refuses the hub's packages, as a
Pi's virtualenv would: `atelier edge ...` and `atelier-agent` work there and load nothing of
the hub; `atelier hub ...` says which packages to install, exit 2, no traceback.
"""

from __future__ import annotations

import base64
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from nacl.signing import SigningKey

REPO = Path(__file__).resolve().parents[2]
HUB_ONLY = ["sqlmodel", "sqlalchemy", "fastapi", "uvicorn", "alembic", "pydantic_settings"]


def prelude(absent: list[str]) -> str:
    """Code that makes these top-level packages impossible to import, as if not installed
    (`import` raises ModuleNotFoundError naming them, `find_spec` finds nothing)."""
    return f"import sys\nsys.modules.update(dict.fromkeys({absent!r}))\n"


PRELUDE = prelude(HUB_ONLY)


def run_as_on_a_pi(code: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return run_without(HUB_ONLY, code)


def run_without(absent: list[str], code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", prelude(absent) + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


@pytest.fixture
def edge_toml(tmp_path: Path) -> Path:
    key = base64.b64encode(bytes(SigningKey.generate().verify_key)).decode()
    path = tmp_path / "edge.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            [agent]
            site = "lab"
            machine = "laser-1"
            state_dir = "{tmp_path / "state"}"
            hub_public_key = "{key}"

            [mqtt]
            port = 1

            [gpio]
            pin_factory = "mock"

            [relay]
            pin = 17

            [reader]
            type = "sim"
            """
        )
    )
    return path


def test_edge_commands_run_without_the_hub_and_load_none_of_it(
    tmp_path: Path, edge_toml: Path
) -> None:
    done = run_as_on_a_pi(
        f"""
        import atelier_cli
        try:
            atelier_cli.main(["edge", "check-config", {str(edge_toml)!r}])
        except SystemExit as exit:
            code = exit.code
        loaded = sorted(
            m for m, mod in sys.modules.items()
            if mod is not None and m.split(".")[0] in ("hub", *{HUB_ONLY!r})
        )
        print("exit", code, "loaded", loaded)
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert f"{edge_toml}: ok — machine laser-1 on site lab" in done.stdout
    assert "exit 0 loaded []" in done.stdout


def test_hub_commands_on_a_pi_name_what_to_install(tmp_path: Path) -> None:
    for argv in (["hub", "serve", "--config", "/etc/atelier/hub.toml"], ["demo"]):
        done = run_as_on_a_pi(f"import atelier_cli; atelier_cli.main({argv!r})", tmp_path)
        assert done.returncode == 2, (argv, done.stdout, done.stderr)
        assert "pip install 'atelier[hub]'" in done.stderr
        # names the first of the hub's packages it missed (which one depends on import order)
        assert any(f"{name}" in done.stderr for name in HUB_ONLY)
        assert "is not installed" in done.stderr
        assert "Traceback" not in done.stderr
    listed = run_as_on_a_pi("import atelier_cli; atelier_cli.main(['--help'])", tmp_path)
    assert "(not installed here)" in listed.stdout and "edge" in listed.stdout


def test_atelier_agent_reports_bad_config_and_bad_arguments(
    tmp_path: Path, edge_toml: Path
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(edge_toml.read_text().replace("pin = 17", 'pin = "seventeen"'))
    done = run_as_on_a_pi(
        f"from edge.service import main; sys.exit(main(['--config', {str(bad)!r}]))", tmp_path
    )
    assert done.returncode == 2 and "relay.pin" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    no_config = run_as_on_a_pi("from edge.service import main; sys.exit(main([]))", tmp_path)
    assert no_config.returncode == 2 and "--config" in no_config.stderr


def test_atelier_agent_runs_the_agent_and_stops_on_sigterm(tmp_path: Path, edge_toml: Path) -> None:
    """The agent as systemd starts it: up (its sim socket answers), then SIGTERM ends it with
    exit 0, relay open. The broker is unreachable (port 1): the agent works offline."""
    import signal
    import time

    from edge.hardware.sim_reader import request

    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            PRELUDE + "from edge.service import main; sys.exit(main())",
            "--config",
            str(edge_toml),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
    )
    try:
        socket_path = tmp_path / "state" / "sim-reader.sock"
        deadline = time.monotonic() + 30
        state = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                state = request(socket_path, {"op": "state"})
                break
            except (FileNotFoundError, ConnectionRefusedError):
                time.sleep(0.1)
        assert state is not None, "the agent never answered on its sim socket"
        assert state["relay"] == "open" and state["session"] is None
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
        assert process.returncode == 0, output
        assert "Traceback" not in output
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_the_demo_on_a_hub_only_install_names_what_to_install() -> None:
    """`atelier[hub]` alone: the hub's commands work, the demo (real agents) says what to add."""
    done = run_without(
        ["gpiozero"], "import atelier_cli; atelier_cli.main(['demo', '--port', '1'])"
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "gpiozero is not installed: pip install 'atelier[hub,edge]'" in done.stderr
    assert "Traceback" not in done.stderr

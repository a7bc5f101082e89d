"""`atelier demo`: serves the dashboard, stops cleanly on Ctrl-C, reuses its data."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import httpx
from sqlmodel import Session, select

from hub.core.db import make_engine
from hub.demo.seed import DEMO_PASSWORD
from hub.models import Event, MachineSession, Member
from tests.support.mosquitto import free_port
from tests.support.processes import Proc, wait_until


def run_demo(tmp_path: Path, name: str) -> tuple[Proc, str]:
    port = free_port()
    proc = Proc(
        [
            "demo",
            "--port",
            str(port),
            "--broker-port",
            str(free_port()),
            "--data-dir",
            str(tmp_path / "demo"),
            "--pace",
            "0.5",
        ],
        log=tmp_path / f"{name}.log",
    )
    return proc, f"http://127.0.0.1:{port}"


def stop_with_ctrl_c(proc: Proc) -> None:
    proc.signal(signal.SIGINT)
    proc.popen.wait(timeout=20)
    assert proc.popen.returncode == 0, proc.output()[-3000:]
    assert "Traceback" not in proc.output(), proc.output()[-3000:]


def test_demo_serves_the_dashboard_and_restarts_on_its_data(tmp_path: Path) -> None:
    proc, url = run_demo(tmp_path, "first")
    try:
        wait_until(
            lambda: httpx.get(url + "/health", timeout=2).status_code == 200,
            timeout=60,
            what="the demo hub",
            proc=proc,
        )
        # The demo's own logins (printed at start) open the dashboard.
        client = httpx.Client(base_url=url, timeout=5)
        form = client.get("/login")  # the form's CSRF token goes with a pre-session cookie
        token = re.search(r'name="csrf" value="([0-9a-f]{64})"', form.text)
        assert token, form.text
        login = client.post(
            "/login",
            data={"username": "manager", "password": DEMO_PASSWORD, "csrf": token.group(1)},
        )
        assert login.status_code == 303, login.text
        page = client.get("/")
        assert page.status_code == 200
        for name in ("Trotec Speedy 100", "Prusa MK4 #1", "Prusa MK4 #2", "Shapeoko 4"):
            assert name in page.text
        # Simulated members badge in: sessions reach the hub.
        wait_until(
            lambda: client.get("/api/v1/sessions").json(),
            timeout=60,
            what="a simulated session",
            proc=proc,
        )
        machines = client.get("/api/v1/machines").json()
        assert all(m["online"] for m in machines), machines
    finally:
        stop_with_ctrl_c(proc)
    db_url = f"sqlite:///{tmp_path / 'demo' / 'atelier.db'}"
    first_count = len(rows(db_url, MachineSession))
    assert first_count > 0

    proc, url = run_demo(tmp_path, "second")
    try:
        wait_until(
            lambda: httpx.get(url + "/health", timeout=2).status_code == 200,
            timeout=60,
            what="the second start",
            proc=proc,
        )
        # Same key: the agents accept the lists of the second start (same data dir).
        assert "allow-list refused" not in proc.output()
    finally:
        stop_with_ctrl_c(proc)
    # The second start reused the data: seed not repeated, sessions kept, journals continued.
    assert len(rows(db_url, Member)) == 6
    assert len(rows(db_url, MachineSession)) >= first_count
    starts = sorted(
        e.seq for e in rows(db_url, Event) if e.type == "agent.started" and e.machine == "laser-1"
    )
    assert len(starts) == 2 and starts[1] > starts[0]


def rows(url: str, model: type) -> list:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            return list(session.exec(select(model)).all())
    finally:
        engine.dispose()

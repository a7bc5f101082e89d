"""Issue 20's acceptance on a real OctoPrint virtual printer: a member's print stopped half
way reaches the hub as job.failed, and its member gets an email with the camera's picture."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import Session, select

from edge.agent import Agent
from edge.config import parse_config
from edge.integrations.octoprint import OctoPrintClient
from hub.models import Notification
from hub.notify import email as smtp
from hub.notify.worker import OutboxWorker, email_sender
from tests.integration.test_agent_offline import HUGO, Hub, hub  # noqa: F401
from tests.integration.test_octoprint import gcode, octoprint  # noqa: F401
from tests.support import octoprint as support
from tests.support.camera import Camera
from tests.support.processes import wait_until
from tests.support.smtp import Recorder, start_smtp

pytestmark = pytest.mark.slow


def test_a_stopped_print_emails_its_member_with_the_snapshot(
    hub: Hub,  # noqa: F811 - the fixture imported above
    octoprint: support.OctoPrintServer,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    config = hub.agent_config(
        "printer-1",
        octoprint={
            "url": octoprint.url,
            "api_key": octoprint.api_key,
            "poll_interval_s": 0.3,
            "telemetry_min_interval_s": 0,
        },
    )
    recorder = Recorder()
    controller = start_smtp(recorder)
    camera = Camera()
    agent = Agent(parse_config(config))
    agent.start()
    try:
        wait_until(lambda: agent.state()["acl_version"], timeout=15, what="the allow-list")
        assert agent.tap(HUGO)["decision"] == "granted"
        client = OctoPrintClient(octoprint.url, octoprint.api_key, timeout_s=5)
        client.upload_and_print(gcode(tmp_path / "bracket.gcode", dwells=200))
        wait_until(lambda: agent.state()["busy"], timeout=20, what="the printer busy")
        client.cancel()  # stopped half way, as a member does when the first layer lifts

        def message() -> Notification | None:
            with Session(hub.engine) as session:
                return session.exec(select(Notification)).first()

        note = wait_until(message, timeout=60, what="the notification in the outbox")
        assert note.kind == "print.cancelled" and note.recipient == "hugo@example.org"
        config_smtp = smtp.SmtpConfig(
            host="127.0.0.1", port=controller.port, security="none", sender="lab@example.org"
        )
        worker = OutboxWorker(
            hub.engine,
            {
                "email": email_sender(
                    config_smtp, lab_language="fr", snapshots={"printer-1": camera.url}
                )
            },
        )
        assert worker.run_once() == 1
        recorder.wait_for(1)
    finally:
        agent.stop()
        camera.stop()
        controller.stop()
    [mail] = recorder.messages
    assert mail["To"] == "hugo@example.org"
    assert mail["Subject"] == "Votre impression sur Prusa MK4 #1 a été annulée"
    text = mail.get_body(("plain",))
    assert text is not None and "bracket.gcode" in text.get_content()
    [picture] = list(mail.iter_attachments())
    assert picture.get_content_type() == "image/png" and picture.get_content() == camera.picture

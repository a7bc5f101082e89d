"""Enrol a card by tapping it on a machine's reader: the hub asks, the agent reports the next
card instead of deciding, the manager enrols it, and the card opens the machine."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from edge.agent import Agent
from edge.config import parse_config
from hub.app import create_app
from hub.core.settings import get_settings
from hub.models import Machine, Member
from tests.integration.test_agent_offline import Hub, hub, started_agent  # noqa: F401
from tests.support.api import admin_headers
from tests.support.processes import wait_until

NEW_CARD = "0A0B0C0D"


def test_a_card_tapped_on_the_laser_is_enrolled_and_then_opens_it(hub: Hub) -> None:  # noqa: F811
    url = hub.engine.url.render_as_string(hide_password=False)
    headers = admin_headers(url)
    agent = started_agent(hub, "laser-1")
    try:

        def online() -> bool:
            with Session(hub.engine) as session:
                machine = session.exec(select(Machine).where(Machine.code == "laser-1")).one()
                return machine.online

        wait_until(online, timeout=15, what="the hub to see laser-1 online")
        settings = get_settings(None, database_url=url, data_dir=hub.tmp / "hub")
        with TestClient(create_app(settings, start_ingest=False), headers=headers) as client:
            client.app.state.publisher = hub.publisher  # the running hub's connection
            asked = client.post("/api/v1/badges/read-requests", json={"machine": "laser-1"})
            assert asked.status_code == 202, asked.text
            request_id = asked.json()["request_id"]
            wait_until(lambda: agent.state()["enrolling"], timeout=10, what="the enrol command")
            read = agent.tap(NEW_CARD)
            assert read["decision"] == "read" and read["relay"] == "open"

            def card() -> str | None:
                answer = client.get(
                    f"/api/v1/badges/read-requests/{request_id}", params={"machine": "laser-1"}
                )
                return answer.json()["badge"]

            assert wait_until(card, timeout=15, what="the card read at the hub") == NEW_CARD
            with Session(hub.engine) as session:
                hugo = session.exec(select(Member).where(Member.email == "hugo@example.org")).one()
            version = agent.state()["acl_version"]
            enrolled = client.post("/api/v1/badges", json={"uid": NEW_CARD, "member_id": hugo.id})
            assert enrolled.status_code == 201, enrolled.text
            wait_until(
                lambda: agent.state()["acl_version"] > version,
                timeout=15,
                what="the new allow-list at the laser",
            )
            assert agent.tap(NEW_CARD)["decision"] == "granted"
            offline = client.post("/api/v1/badges/read-requests", json={"machine": "cnc-1"})
            assert offline.status_code == 409 and "offline" in offline.json()["detail"]
    finally:
        agent.stop()


def test_the_member_page_enrols_a_tapped_card(hub: Hub) -> None:  # noqa: F811
    from hub.auth import create_user
    from hub.models import Badge, Role
    from tests.e2e.web import csrf_of, sign_in
    from tests.support.api import PASSWORD

    url = hub.engine.url.render_as_string(hide_password=False)
    with Session(hub.engine) as session:
        create_user(session, username="desk", password=PASSWORD, role=Role.MANAGER)
        session.commit()
        lea = session.exec(select(Member).where(Member.email == "lea@example.org")).one()
    agent = started_agent(hub, "printer-1")
    try:
        settings = get_settings(None, database_url=url, data_dir=hub.tmp / "hub")
        with TestClient(create_app(settings, start_ingest=False)) as client:
            client.app.state.publisher = hub.publisher
            csrf = sign_in(client, "desk", PASSWORD)
            page = client.get(f"/web/members/{lea.id}")
            assert f'hx-get="/web/members/{lea.id}/tap"' in page.text
            wait_until(
                lambda: "printer-1" in client.get(f"/web/members/{lea.id}/tap").text,
                timeout=15,
                what="printer-1 offered as an online reader",
            )
            waiting = client.post(
                f"/web/members/{lea.id}/tap",
                data={"machine": "printer-1"},
                headers={"X-CSRF-Token": csrf},
            )
            assert "Show the card to the reader of printer-1" in waiting.text
            poll = re.search(r'hx-get="([^"]+)"', waiting.text).group(1).replace("&amp;", "&")
            wait_until(lambda: agent.state()["enrolling"], timeout=10, what="the enrol command")
            assert agent.tap(NEW_CARD)["decision"] == "read"

            def card_on_page() -> str | None:
                answer = client.get(poll).text
                return answer if NEW_CARD in answer else None

            read = wait_until(card_on_page, timeout=15, what="the card on the page")
            enrolled = client.post(
                f"/web/members/{lea.id}/badges", data={"uid": NEW_CARD, "csrf": csrf_of(read)}
            )
            assert enrolled.status_code == 200 and NEW_CARD in enrolled.text
            refused = client.post(f"/web/members/{lea.id}/tap", data={"machine": "printer-1"})
            assert refused.status_code == 403  # no CSRF token
    finally:
        agent.stop()
    with Session(hub.engine) as session:
        badge = session.exec(select(Badge).where(Badge.uid == NEW_CARD)).one()
    assert badge.member_id == lea.id


def test_a_secure_reader_writes_the_sites_keys_on_the_card_it_enrols(
    hub: Hub,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The web's enrol-by-tap on a laser whose MFRC522 reader is secure: the blank card gets
    the site's keys, is enrolled and opens the laser; another site's card is refused."""
    from hub.auth import create_user
    from hub.models import Role
    from protocol.card_keys import card_keys
    from tests.e2e.web import csrf_of, sign_in
    from tests.support.api import PASSWORD
    from tests.support.fake_rpi import install_fake_spi
    from tests.support.mfrc522_chip import MifareClassic1K

    spi = install_fake_spi(monkeypatch)
    secret = b"the-lab-site-secret-0123456789"
    (hub.tmp / "site-secret").write_bytes(secret)
    reader = {
        "type": "mfrc522",
        "poll_interval_s": 0.02,
        "secure": True,
        "site_key_file": str(hub.tmp / "site-secret"),
    }
    url = hub.engine.url.render_as_string(hide_password=False)
    with Session(hub.engine) as session:
        create_user(session, username="desk", password=PASSWORD, role=Role.MANAGER)
        session.commit()
        hugo = session.exec(select(Member).where(Member.email == "hugo@example.org")).one()
    agent = Agent(parse_config(hub.agent_config("laser-1", reader=reader)))
    agent.start()
    chip = spi.chip()
    try:
        settings = get_settings(None, database_url=url, data_dir=hub.tmp / "hub")
        with TestClient(create_app(settings, start_ingest=False)) as client:
            client.app.state.publisher = hub.publisher
            csrf = sign_in(client, "desk", PASSWORD)
            wait_until(
                lambda: "laser-1" in client.get(f"/web/members/{hugo.id}/tap").text,
                timeout=15,
                what="laser-1 offered as an online reader",
            )

            def tap_to_enrol(card: MifareClassic1K) -> str:
                waiting = client.post(
                    f"/web/members/{hugo.id}/tap",
                    data={"machine": "laser-1"},
                    headers={"X-CSRF-Token": csrf},
                )
                poll = re.search(r'hx-get="([^"]+)"', waiting.text)
                assert poll is not None, waiting.text
                wait_until(lambda: agent.state()["enrolling"], timeout=10, what="the enrol")
                chip.place(card)
                page = wait_until(
                    lambda: (
                        answer
                        if "Card read"
                        in (answer := client.get(poll.group(1).replace("&amp;", "&")).text)
                        or "another site" in answer
                        else None
                    ),
                    timeout=15,
                    what="the read on the page",
                )
                chip.remove()
                wait_until(lambda: not agent.state()["enrolling"], timeout=5, what="the window")
                return page

            other_site = MifareClassic1K(uid=bytes.fromhex("11223344"))
            other_site.blocks[8][:] = b"ATELIER1" + bytes(8)  # another site's tag
            other_site.set_keys(2, key_a=bytes.fromhex("A0A1A2A3A4A5"), key_b=bytes(6))
            refused = tap_to_enrol(other_site)
            assert "this card is another site&#39;s: use a blank card" in refused

            blank = MifareClassic1K(uid=bytes.fromhex("04A1B2C3D4E5F6"))
            page = tap_to_enrol(blank)
            assert "wrote this site&#39;s keys on the card" in page
            assert bytes(blank.blocks[4]) == card_keys(secret, "04A1B2C3D4E5F6").secret
            version = agent.state()["acl_version"]
            enrolled = client.post(
                f"/web/members/{hugo.id}/badges",
                data={"uid": "04A1B2C3D4E5F6", "csrf": csrf_of(page)},
            )
            assert enrolled.status_code == 200, enrolled.text
            wait_until(
                lambda: agent.state()["acl_version"] > version,
                timeout=15,
                what="the new allow-list at the laser",
            )
        chip.place(blank)
        wait_until(lambda: agent.state()["relay_pin"] == 1, timeout=10, what="the laser to open")
        assert agent.state()["session"]["badge"] == "04A1B2C3D4E5F6"
    finally:
        agent.stop()

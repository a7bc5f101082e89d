"""Every screen in French, as each role: the page's visible text must hold no English message.

The detector: every message of the catalogue whose French differs from its English (so a
French reader should never meet the English), with its {placeholders} as wildcards, searched
in the page's visible text (tags, scripts and attribute values out). Words that are the same
in both languages never count. A message left in English by the code, a template without
_(), or a code shown instead of a name is reported with the page and the role.
"""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from fastapi.testclient import TestClient
from sqlmodel import Session

from hub.app import create_app
from hub.core.db import make_engine, migrate
from hub.core.settings import get_settings
from hub.demo.seed import seed_demo
from hub.models import Event, Role
from hub.services.maintenance.tasks import add_task
from hub.web.words import DENY_REASONS, END_REASONS, EVENT_TYPES
from tests.e2e.test_web_staff import MONTH, _numbers, _sessions
from tests.e2e.web import sign_in
from tests.support.api import PASSWORD, role_tokens

PO = Path(__file__).resolve().parents[2] / "hub/web/locale/fr/LC_MESSAGES/messages.po"
SCREENS = [
    "/",
    "/web/machines",
    "/web/machines/laser-1",
    "/web/me",
    "/web/members",
    "/web/members/2",
    "/web/members/new",
    "/web/members/2/edit",
    "/web/trainings",
    "/web/trainings?member=2",
    "/web/maintenance",
    "/web/maintenance/tasks/new",
    "/web/maintenance/tasks/1/edit",
    "/web/stats",
    "/web/stats/review?year=2026",
    "/web/billing",
    f"/web/billing?month={MONTH}",
    "/web/billing/statements/{first_statement}",
    "/web/settings",
    "/web/users",
    "/web/users/1",
    "/web/account",
    "/web/notifications",
    "/web/machines/new",
    "/web/machines/laser-1/edit",
    "/web/machine-types",
    "/web/machines/add",
]
# Too short or too common to mean a page is in English (names, units, the same word).
SHORT = 12


@cache
def english_messages() -> list[tuple[str, re.Pattern[str]]]:
    with PO.open("rb") as handle:
        catalog = read_po(handle, locale="fr")
    found = []
    for message in catalog:
        msgid = message.id if isinstance(message.id, str) else message.id[0]
        french = message.string if isinstance(message.string, str) else message.string[0]
        if not msgid or not french or french == msgid:
            continue
        fixed = re.sub(r"%\(\w+\)s|\{[^}]*\}", "\x00", msgid)
        if len(fixed.replace("\x00", "").strip()) < SHORT or " " not in fixed.strip():
            continue
        parts = [re.escape(p) for p in fixed.split("\x00")]
        pattern = r".{1,80}?".join(parts)
        found.append((msgid, re.compile(pattern)))
    return found


# Codes the agents and the hub write: a page shows their words, never these.
CODES = sorted(set(EVENT_TYPES) | set(END_REASONS) | set(DENY_REASONS))
CODE = re.compile(r"(?<![\w.-])(" + "|".join(re.escape(c) for c in CODES) + r")(?![\w.-])")


def codes_in(text: str) -> list[str]:
    return sorted(set(CODE.findall(text)))


def visible_text(page: str) -> str:
    page = re.sub(r"(?is)<(script|style|svg)\b.*?</\1>", " ", page)
    page = re.sub(r"(?s)<[^>]*>", " ", page)
    return re.sub(r"\s+", " ", html.unescape(page))


def english_in(text: str) -> list[str]:
    return [msgid for msgid, pattern in english_messages() if pattern.search(text)]


def test_the_detector_finds_english_and_codes_and_passes_french() -> None:
    assert codes_in("13/10 · Hugo · badge-out · x") == ["badge-out"]
    assert codes_in("session.ended (not_trained)") == ["not_trained", "session.ended"]
    assert codes_in("badge-outs, my.session.ended2") == []
    assert english_in("Solde · The lab's name, address and opening hours are saved. ·")
    assert english_in("x Hugo Petit is certified to use the Laser cutter y")
    assert not english_in("Le nom, l’adresse et les horaires de l’atelier sont enregistrés.")
    assert len(english_messages()) > 300


@pytest.fixture
def hub(tmp_path: Path, database_url: str) -> Iterator[TestClient]:
    migrate(database_url)
    engine = make_engine(database_url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
        _sessions(session)
        add_task(session, title="Clean the spindle", actor="test", machine="cnc-1", every_days=9)
        # What the dashboard and a machine's page show of the agents' events, in words.
        now = datetime.now(UTC)
        for seq, (kind, data) in enumerate(
            [
                ("badge.denied", {"reason": "not_trained", "member": "x"}),
                ("session.started", {"session_id": "s1"}),
                ("session.ended", {"session_id": "s1", "reason": "idle-timeout"}),
                ("interlock.fault", {}),
            ],
            start=1,
        ):
            session.add(
                Event(
                    id=uuid.uuid4(),
                    site="lab",
                    machine="laser-1",
                    seq=seq,
                    ts=now,
                    type=kind,
                    data=data,
                )
            )
        session.commit()
    role_tokens(engine)
    engine.dispose()
    app = create_app(get_settings(None, database_url=database_url, data_dir=tmp_path))
    with TestClient(app) as client:
        token = sign_in(client, "test-manager", PASSWORD)
        client.post("/web/billing/close", data={"month": MONTH, "csrf": token})
        client.cookies.clear()
        yield client


@pytest.mark.parametrize("role", list(Role))
def test_every_screen_in_french_shows_no_english_message(hub: TestClient, role: Role) -> None:
    hub.cookies.set("atelier_lang", "fr")
    sign_in(hub, f"test-{role.value}", PASSWORD)
    hub.cookies.set("atelier_lang", "fr")
    seen = 0
    problems = []
    first_statement = _numbers(hub)[0]
    for screen in SCREENS:
        path = screen.replace("{first_statement}", first_statement)
        page = hub.get(path)
        if page.status_code in (403, 404):
            assert 'lang="fr"' in page.text, path
        assert page.status_code in (200, 403, 404), (path, page.status_code)
        seen += page.status_code == 200
        text = visible_text(page.text)
        problems += [(path, found) for found in english_in(text) + codes_in(text)]
    assert seen >= 5
    assert problems == []
    if role is Role.MEMBER:
        return  # members see no event list
    machine = visible_text(hub.get("/web/machines/laser-1").text)
    assert "badge refusé (pas formé·e sur cette machine)" in machine
    assert "session terminée (inactive trop longtemps)" in machine

"""Every message the pages show has its French translation, compiled from the .po at start."""

from __future__ import annotations

from pathlib import Path

from babel.messages.extract import extract_from_dir, extract_from_file

from hub.web.i18n import translator

WEB = Path(__file__).resolve().parents[2] / "hub" / "web"
# Outside the pages, messages a person reads in the CLI and in the pages alike.
SHARED = [
    WEB.parent / "services" / "machines.py",
    WEB.parent / "services" / "machine_checks.py",
    WEB.parent / "cli" / "machine_setup.py",
]
METHODS = [("**.py", "python"), ("templates/**.html", "jinja2")]
# The notifications' words (hub/notify) are in the same catalogue.
NOTIFY = WEB.parent / "notify"
NOTIFY_METHODS = [("**.py", "python"), ("templates/**", "jinja2")]


def test_every_message_has_a_french_translation() -> None:
    messages = {
        m[2] if isinstance(m[2], str) else m[2][0]
        for directory, methods in ((WEB, METHODS), (NOTIFY, NOTIFY_METHODS))
        for m in extract_from_dir(str(directory), methods)
    }
    assert len(messages) > 100  # the extraction found the templates
    shared = {
        m[1] if isinstance(m[1], str) else m[1][0]
        for path in SHARED
        for m in extract_from_file("python", str(path))
    }
    assert len(shared) > 40  # N_() in the machine service, _() in its CLI
    messages |= shared
    french = translator("fr")
    missing = sorted(m for m in messages if m and french.gettext(m) == m)
    # A few words are the same in both languages.
    same = {
        "Machine",
        "Sessions",
        "Session",
        "Machines",
        "Maintenance",
        "Type",
        "Actions",
        "Badges",
        "Total",
        "Minutes",
        "sessions",
        "Utilisation",
        "Date",
        "Minimum",
        "Note",
        "session",
        "Notifications",
        "Webhooks",
        "HelloAsso",
    }
    assert [m for m in missing if m not in same] == []

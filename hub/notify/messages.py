"""What each kind of notification says, in French and English, as subject, text and HTML."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from hub.web.i18n import translator

TEMPLATES = Path(__file__).resolve().parent / "templates"


def N_(message: str) -> str:  # noqa: N802  (gettext's name for "mark, translate later")
    return message


# kind -> (subject, body); %(name)s are the message's params (names, not ids).
KINDS: dict[str, tuple[str, str]] = {
    "print.finished": (
        N_("Your print on %(machine)s is finished"),
        N_("The print %(file)s on %(machine)s finished after %(duration)s."),
    ),
    "print.failed": (
        N_("Your print on %(machine)s failed"),
        N_("The print %(file)s on %(machine)s stopped after %(duration)s: %(error)s"),
    ),
    "print.cancelled": (
        N_("Your print on %(machine)s was cancelled"),
        N_("The print %(file)s on %(machine)s was cancelled after %(duration)s."),
    ),
    "incident.opened": (
        N_("Incident on %(machine)s"),
        N_("An incident was reported on %(machine)s (%(source)s): %(note)s"),
    ),
    "session.idle_ended": (
        N_("Your session on %(machine)s ended: nothing happened for a while"),
        N_("Your session on %(machine)s was ended by the idle timeout after %(duration)s."),
    ),
    "training.expiring": (
        N_("Your training for %(machine_type)s expires on %(expires)s"),
        N_("Your training for %(machine_type)s expires on %(expires)s; ask a trainer to renew it."),
    ),
    "balance.low": (
        N_("Your prepaid balance is low"),
        N_("Your prepaid balance is down to %(balance)s; top it up at the front desk."),
    ),
    "balance.empty": (
        N_("Your prepaid balance is empty"),
        N_("Your prepaid balance is %(balance)s; top it up before your next session."),
    ),
    "machine.offline": (
        N_("%(machine)s is offline"),
        N_("%(machine)s has not been heard from since %(since)s (UTC)."),
    ),
    "maintenance.due": (
        N_("Maintenance due on %(machine)s: %(task)s"),
        N_("The task %(task)s is due on %(machine)s."),
    ),
    "maintenance.overdue": (
        N_("Maintenance overdue on %(machine)s: %(task)s"),
        N_("The task %(task)s is overdue on %(machine)s; a critical one locks the machine."),
    ),
    "machine.locked": (
        N_("%(machine)s is locked"),
        N_("%(machine)s has been locked since %(since)s (UTC): %(reason)s"),
    ),
    "allowlist.stale": (
        N_("%(machine)s holds an older allow-list"),
        N_("%(machine)s does not hold the current allow-list; the hub is sending it again."),
    ),
    "dead_letters.rising": (
        N_("The hub refused %(count)s messages in the last hour"),
        N_("%(count)s messages could not be stored in the last hour: see the dead letters."),
    ),
    "booking.cancelled": (
        N_("Your booking of %(machine)s on %(when)s is cancelled"),
        N_(
            "%(machine)s is locked out (%(reason)s), so your booking on %(when)s is cancelled. "
            "Book another slot once it is back."
        ),
    ),
    "booking.reminder": (
        N_("Your booking of %(machine)s starts at %(when)s"),
        N_(
            "Your booking of %(machine)s starts at %(when)s. Badge on within %(grace)s minutes "
            "of the start, or it is released."
        ),
    ),
    "booking.no_show": (
        N_("Your booking of %(machine)s was released"),
        N_(
            "Nobody badged on %(machine)s for your booking on %(when)s, so it was released as "
            "a no-show."
        ),
    ),
    "test": (
        N_("Atelier test message"),
        N_("This test message from %(lab)s shows that notifications reach you."),
    ),
}


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str
    body: str = ""  # the message alone, without the footer (a digest lists them)


class UnknownKind(ValueError):
    def __init__(self, kind: str) -> None:
        super().__init__(f"unknown notification kind {kind!r} (known: {', '.join(sorted(KINDS))})")
        self.kind = kind


def _environment(language: str) -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        extensions=["jinja2.ext.i18n"],
    )
    env.install_gettext_translations(translator(language), newstyle=True)  # type: ignore[attr-defined]
    return env


class _Params(dict[str, str]):
    """A message whose cause left a value out says "?" there rather than not going at all."""

    def __missing__(self, key: str) -> str:
        return "?"


def _duration(seconds: Any) -> str:
    try:
        total = max(0, int(float(seconds)))
    except (TypeError, ValueError, OverflowError):  # None, "abc", NaN, infinity
        return "?"
    hours, rest = divmod(total, 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min {rest % 60:02d} s"


def render_digest(language: str, items: list[tuple[str, dict[str, Any]]]) -> Rendered:
    """Several messages to one person in one email (the rate limit's digest)."""
    translations = translator(language)
    parts = [render(kind, language, params) for kind, params in items]
    subject = translations.ngettext(
        "%(count)d notifications from Atelier", "%(count)d notifications from Atelier", len(parts)
    ) % {"count": len(parts)}
    env = _environment(language)
    context = {"subject": subject, "parts": parts, "language": language}
    return Rendered(
        subject=subject,
        text=env.get_template("digest.txt").render(context),
        html=env.get_template("digest.html").render(context),
    )


def render(kind: str, language: str, params: dict[str, Any]) -> Rendered:
    """The message in `language` (English when the lab has no catalogue for it)."""
    if kind not in KINDS:
        raise UnknownKind(kind)
    gettext = translator(language).gettext
    values = _Params({key: str(value) for key, value in params.items()})
    values.setdefault("error", "")
    values["duration"] = _duration(params.get("duration_s"))
    subject_id, body_id = KINDS[kind]
    subject = gettext(subject_id) % values
    body = gettext(body_id) % values
    env = _environment(language)
    context = {"subject": subject, "body": body, "language": language}
    return Rendered(
        subject=subject,
        text=env.get_template("notification.txt").render(context),
        html=env.get_template("notification.html").render(context),
        body=body,
    )

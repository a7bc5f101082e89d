"""French and English for the pages: gettext catalogues compiled from the .po files at import.

The .po files in hub/web/locale are the source; they are compiled in memory with Babel when
the hub starts, so a clean clone needs no build step and no .mo file is ever stale.
"""

from __future__ import annotations

from fastapi import Request

from hub.core.translations import CATALOGUES, DEFAULT, LANGUAGES, LOCALE_DIR, translator

__all__ = ["CATALOGUES", "DEFAULT", "LANGUAGES", "LOCALE_DIR", "translator"]
LANG_COOKIE = "atelier_lang"


def _accepted(header: str) -> list[str]:
    """Accept-Language's languages, best first (RFC 9110 q-values)."""
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(header.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        if tag and quality > 0:
            ranked.append((-quality, position, tag.strip().lower().split("-")[0]))
    return [tag for _, _, tag in sorted(ranked)]


def language_of(request: Request) -> str:
    """The switch's choice (cookie) first, then the browser's, then English."""
    chosen = request.cookies.get(LANG_COOKIE, "")
    if chosen in LANGUAGES:
        return chosen
    for tag in _accepted(request.headers.get("accept-language", "")):
        if tag in LANGUAGES:
            return tag
    return DEFAULT


def N_(message: str) -> str:  # noqa: N802  (gettext's name for "mark, translate later")
    """Marks a word for the catalogue; the page translates it where it shows it."""
    return message


# Words the pages show from data or from code: states, roles, categories, statuses, days,
# the menu, refusals. Listed so `pybabel extract` puts them in the catalogue.
DATA_WORDS = [
    N_("Offline"),
    N_("Free"),
    N_("In use"),
    N_("Working"),
    N_("Printing"),
    N_("Locked out"),
    N_("Dashboard"),
    N_("Machines"),
    N_("Members"),
    N_("Trainings"),
    N_("Maintenance"),
    N_("Statistics"),
    N_("member"),
    N_("trainer"),
    N_("maintainer"),
    N_("manager"),
    N_("admin"),
    N_("user"),
    N_("individual"),
    N_("student"),
    N_("professional"),
    N_("company"),
    N_("staff"),
    N_("active"),
    N_("suspended"),
    N_("left"),
    N_("ok"),
    N_("due_soon"),
    N_("due"),
    N_("overdue"),
    N_("printing"),
    N_("finished"),
    N_("failed"),
    N_("Mon"),
    N_("Tue"),
    N_("Wed"),
    N_("Thu"),
    N_("Fri"),
    N_("Sat"),
    N_("Sun"),
    N_("Billing"),
    N_("statement"),
    N_("credit_note"),
    N_("topup"),
    N_("charge"),
    N_("credit"),
    N_("session"),
    N_("busy"),
    N_("Nozzle"),
    N_("Bed"),
    N_("Chamber"),
    N_("This page is not open to your role."),
    N_("This login is not linked to a member."),
    N_("wrong username or password"),
]

"""The French and English catalogues, compiled from the .po files at import: for the pages,
the notifications and the documents (statements) alike, with no web framework."""

from __future__ import annotations

import gettext
import io
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

# The .po files stay beside the pages that show most of their words.
LOCALE_DIR = Path(__file__).resolve().parent.parent / "web" / "locale"
DEFAULT = "en"
LANGUAGES = {"en": "English", "fr": "Français"}


def _compile(language: str) -> gettext.NullTranslations:
    po = LOCALE_DIR / language / "LC_MESSAGES" / "messages.po"
    if not po.exists():
        return gettext.NullTranslations()
    with po.open("rb") as handle:
        catalog = read_po(handle, locale=language)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


CATALOGUES: dict[str, gettext.NullTranslations] = {code: _compile(code) for code in LANGUAGES}


def translator(language: str) -> gettext.NullTranslations:
    return CATALOGUES.get(language, CATALOGUES[DEFAULT])

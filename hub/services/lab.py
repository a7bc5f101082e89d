"""The lab's settings as the API, the web and the CLI change them: its legal identity (what
every statement prints) and its locale, each value checked before it is kept."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from sqlmodel import Session, select

from hub.audit import record
from hub.core.errors import InvalidValue
from hub.models import (
    LAB_ADDRESS_MAX,
    LAB_NAME_MAX,
    LAB_VAT_MENTION_MAX,
    LabIdentityPublic,
    LabSetting,
    utcnow,
)
from hub.reports.csv_files import CsvDialect, dialect_for

IDENTITY_FIELDS = ("name", "address", "siret", "rna", "vat_mention", "locale", "privacy_contact")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
LOCALES = ("en", "fr")
# What an association that does not charge VAT (franchise en base) must print.
DEFAULT_VAT_MENTION = "TVA non applicable, art. 293 B du CGI"
_MAX = {"name": LAB_NAME_MAX, "address": LAB_ADDRESS_MAX, "vat_mention": LAB_VAT_MENTION_MAX}
_RNA = re.compile(r"W\d{9}")


def _settings(session: Session) -> dict[str, str]:
    return {row.key: row.value for row in session.exec(select(LabSetting)).all()}


def identity(
    session: Session, *, default_name: str = "", default_locale: str = "en"
) -> LabIdentityPublic:
    """The lab's identity as kept, each field absent taking its default: the hub's site name,
    the hub's notification language, the VAT exemption mention of an association."""
    kept = _settings(session)
    return LabIdentityPublic(
        name=kept.get("name") or default_name,
        address=kept.get("address", ""),
        siret=kept.get("siret", ""),
        rna=kept.get("rna", ""),
        vat_mention=kept.get("vat_mention", DEFAULT_VAT_MENTION),
        locale=kept.get("locale") or (default_locale if default_locale in LOCALES else "en"),
        privacy_contact=kept.get("privacy_contact", ""),
    )


def lab_locale(session: Session, *, default: str = "en") -> str:
    """The lab's language: statements of members who chose none, and the CSV dialect."""
    value = session.get(LabSetting, "locale")
    if value is not None and value.value in LOCALES:
        return value.value
    return default if default in LOCALES else "en"


def _luhn_ok(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def check_siret(text: str) -> str:
    """A SIRET as kept (14 digits, spaces dropped) or InvalidValue naming `siret`."""
    digits = re.sub(r"[\s.]", "", text)
    if not digits:
        return ""
    if not re.fullmatch(r"\d{14}", digits):
        raise InvalidValue("lab.siret_format", field="siret", params={"siret": text[:40]})
    # La Poste's establishments (SIREN 356000000) use a sum of digits divisible by 5.
    valid = (
        sum(int(c) for c in digits) % 5 == 0 if digits.startswith("356000000") else _luhn_ok(digits)
    )
    if not valid:
        raise InvalidValue("lab.siret_checksum", field="siret", params={"siret": digits})
    return digits


def check_rna(text: str) -> str:
    """An RNA number (W and nine digits, the register of associations) or InvalidValue."""
    value = text.strip().upper()
    if value and not _RNA.fullmatch(value):
        raise InvalidValue("lab.rna_format", field="rna", params={"rna": text[:40]})
    return value


def _check_text(field: str, text: str) -> str:
    value = text.strip()
    if any(unicodedata.category(c) == "Cc" and c not in "\n" for c in value):
        raise InvalidValue("lab.control_character", field=field, params={"field": field})
    if len(value) > _MAX[field]:
        raise InvalidValue("lab.too_long", field=field, params={"field": field, "max": _MAX[field]})
    if field != "address" and "\n" in value:
        raise InvalidValue("lab.control_character", field=field, params={"field": field})
    return value


def check_identity(changes: Mapping[str, str | None]) -> dict[str, str]:
    """The values to keep for the fields given (None or absent: unchanged), each checked."""
    checked: dict[str, str] = {}
    for field, given in changes.items():
        if field not in IDENTITY_FIELDS:
            raise InvalidValue("lab.unknown_field", field=field, params={"field": field})
        if given is None:
            continue
        if field == "siret":
            checked[field] = check_siret(given)
        elif field == "rna":
            checked[field] = check_rna(given)
        elif field == "privacy_contact":
            value = given.strip().lower()
            if value and (not _EMAIL.fullmatch(value) or len(value) > 320):
                raise InvalidValue(
                    "import.email_invalid", field=field, params={"email": given[:80]}
                )
            checked[field] = value
        elif field == "locale":
            if given.strip() not in LOCALES:
                raise InvalidValue(
                    "lab.locale",
                    field="locale",
                    params={"locale": given[:10], "locales": ", ".join(LOCALES)},
                )
            checked[field] = given.strip()
        else:
            value = _check_text(field, given.replace("\r\n", "\n"))
            if field == "name" and not value:
                raise InvalidValue("lab.name_empty", field="name")
            checked[field] = value
    return checked


def set_identity(
    session: Session,
    changes: Mapping[str, str | None],
    *,
    actor: str,
    default_name: str = "",
    default_locale: str = "en",
) -> LabIdentityPublic:
    """Keep the fields given, all checked before any is written, audited as `actor`. The
    caller commits."""
    checked = check_identity(changes)
    now = utcnow()
    for key, value in checked.items():
        row = session.get(LabSetting, key) or LabSetting(key=key)
        row.value = value
        row.changed_at = now
        row.changed_by = actor[:100]
        session.add(row)
    if checked:
        record(
            session,
            actor=actor,
            action="lab.identity",
            entity="lab_setting",
            entity_id="identity",
            fields=sorted(checked),
        )
    session.flush()
    return identity(session, default_name=default_name, default_locale=default_locale)


def csv_dialect(
    session: Session, name: str | None, *, default_locale: str = "en", field: str = "csv_dialect"
) -> CsvDialect:
    """The CSV dialect named (`standard`, `excel-fr`), or the lab's default: `excel-fr` when
    its locale is French. InvalidValue names `field`."""
    return dialect_for(name, locale=lab_locale(session, default=default_locale), field=field)


def rgpd_kit_inputs(session: Session, settings: Any) -> Any:
    """What the RGPD kit is written from: the lab's identity, the retention rules in force,
    and whether members come from HelloAsso (a tier is mapped)."""
    from hub.reports.rgpd import KitInputs
    from hub.services import retention

    return KitInputs(
        lab=identity(session, default_name=settings.site, default_locale=settings.notify_language),
        retention=retention.policy(session, settings),
        helloasso=session.get(LabSetting, "helloasso_tiers") is not None,
    )

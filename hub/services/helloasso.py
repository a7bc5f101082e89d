"""HelloAsso's back-office exports into the hub: memberships (adhésions) become members, in
the category the lab maps each membership tier (tarif) to; top-up payments become prepaid
credit. Idempotent (each applied line is recorded by a hash of its key), a dry run says what
would change, and every line refused is reported with its line number and reason.

The columns are those of HelloAsso's order exports (semicolon-separated, UTF-8 with a BOM,
French dates and amounts): `Référence commande`, `Date de la commande`, `Statut de la
commande`, `Nom adhérent`, `Prénom adhérent` (memberships) or `Nom payeur`, `Prénom payeur`
(payments), `Email payeur`, `Tarif`, `Montant tarif`; an `Email` column (the form's own email
field) is used before `Email payeur` when present. Other columns (custom fields) are ignored.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, select

from hub.audit import record
from hub.category_history import change_category
from hub.core.errors import HubError, InvalidValue
from hub.models import ImportRecord, LabSetting, Member, MemberCategory, MemberCreate, utcnow
from hub.services.billing.ledger import top_up
from hub.services.members import create_member

Kind = Literal["memberships", "payments"]
KINDS: tuple[Kind, ...] = ("memberships", "payments")
SOURCE = "helloasso"
TIERS_KEY = "helloasso_tiers"
MAX_BYTES = 20 * 1024 * 1024
MAX_TOPUP_CENTS = 10_000_000  # 100 000 €: more is a typo or a column mix-up
COMMON = ["Référence commande", "Date de la commande", "Statut de la commande", "Email payeur"]
COLUMNS: dict[str, list[str]] = {
    "memberships": [*COMMON, "Nom adhérent", "Prénom adhérent", "Tarif", "Montant tarif"],
    "payments": [*COMMON, "Nom payeur", "Prénom payeur", "Tarif", "Montant tarif"],
}
# What HelloAsso writes in `Statut de la commande` for an order that is paid.
PAID = {"validé", "valide", "validée", "payé", "payée", "autorisé", "processed", "validated"}
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


@dataclass
class LineChange:
    line: int
    what: str  # created, category, topup, unchanged
    email: str
    detail: str = ""
    cents: int = 0


@dataclass
class HelloAssoReport:
    kind: str
    dry_run: bool
    rows: int = 0
    changes: list[LineChange] = field(default_factory=list)
    rejected: list[HubError] = field(default_factory=list)

    def count(self, what: str) -> int:
        return sum(1 for c in self.changes if c.what == what)

    @property
    def balances_changed(self) -> bool:
        return not self.dry_run and self.count("topup") > 0


def _problem(code: str, line: int, column: str, **params: Any) -> InvalidValue:
    return InvalidValue(code, field=column, params={**params, "line": line})


# --- the lab's mapping of tiers to categories ----------------------------------------------
def _tier_key(tier: str) -> str:
    return unicodedata.normalize("NFC", " ".join(tier.split())).casefold()


def tier_mapping(session: Session) -> dict[str, str]:
    """Each HelloAsso membership tier (as the lab named it there) and the member category it
    gives."""
    row = session.get(LabSetting, TIERS_KEY)
    if row is None or not row.value:
        return {}
    kept = json.loads(row.value)
    return {str(k): str(v) for k, v in kept.items()} if isinstance(kept, dict) else {}


def set_tier(session: Session, tier: str, category: str | None, *, actor: str) -> dict[str, str]:
    """Map `tier` to `category` (None: forget the tier), audited. The caller commits."""
    shown = " ".join(tier.split())
    if not shown or len(shown) > 200 or any(unicodedata.category(c) == "Cc" for c in shown):
        raise InvalidValue("helloasso.tier_name", field="tier", params={"tier": tier[:60]})
    mapping = {k: v for k, v in tier_mapping(session).items() if _tier_key(k) != _tier_key(shown)}
    if category is not None:
        if category not in {c.value for c in MemberCategory}:
            raise InvalidValue(
                "import.category_unknown",
                field="category",
                params={
                    "category": category[:40],
                    "categories": ", ".join(c.value for c in MemberCategory),
                },
            )
        mapping[shown] = category
    text = json.dumps(mapping, ensure_ascii=False, sort_keys=True)
    if len(text) > 2000:
        raise InvalidValue("helloasso.too_many_tiers", field="tier")
    row = session.get(LabSetting, TIERS_KEY) or LabSetting(key=TIERS_KEY)
    row.value, row.changed_at, row.changed_by = text, utcnow(), actor[:100]
    session.add(row)
    record(
        session,
        actor=actor,
        action="helloasso.tier",
        entity="lab_setting",
        entity_id=TIERS_KEY,
        tier=shown,
        category=category,
    )
    session.flush()
    return mapping


# --- reading the file -----------------------------------------------------------------------
def _header_key(name: str) -> str:
    return unicodedata.normalize("NFC", name.strip().strip('"')).casefold()


def read_export(data: bytes, kind: str) -> list[tuple[int, dict[str, str]]]:
    """The export's lines by their first physical line number, cells by HelloAsso's column
    names; ImportFileError (field `file`) when the file is not such an export."""
    from hub.imports import ImportFileError, decode

    if kind not in KINDS:
        raise InvalidValue(
            "helloasso.kind", field="kind", params={"kind": kind[:40], "kinds": ", ".join(KINDS)}
        )
    if len(data) > MAX_BYTES:
        raise ImportFileError("rates.too_large", max_mb=MAX_BYTES // (1024 * 1024))
    text = decode(data)
    if "\x00" in text:
        raise ImportFileError("helloasso.binary")
    first = text.split("\n", 1)[0]
    delimiter = max(";,\t", key=first.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader, [])
        wanted = {_header_key(c): c for c in [*COLUMNS[kind], "Email"]}
        index = {
            wanted[_header_key(h)]: i for i, h in enumerate(header) if _header_key(h) in wanted
        }
        missing = [c for c in COLUMNS[kind] if c not in index]
        if missing:
            raise ImportFileError(
                "helloasso.columns_missing",
                kind=kind,
                missing=", ".join(missing),
                found=", ".join(h.strip() for h in header[:30]) or "none",
            )
        rows: list[tuple[int, dict[str, str]]] = []
        ended = reader.line_num
        for cells in reader:
            if any(c.strip() for c in cells):
                rows.append(
                    (
                        ended + 1,
                        {
                            name: (cells[i].strip() if i < len(cells) else "")
                            for name, i in index.items()
                        },
                    )
                )
            ended = reader.line_num
    except csv.Error as exc:
        raise ImportFileError(
            "import.csv_unreadable", line=reader.line_num + 1, reason=str(exc)
        ) from None
    if not rows:
        raise ImportFileError("helloasso.empty", kind=kind)
    return rows


def parse_day(text: str) -> date:
    """`31/12/2026`, `31/12/2026 14:05` or `31/12/2026 14:05:33` (HelloAsso's French form)."""
    for pattern in ("%d/%m/%Y %H:%M:%S", "%d/%m/%Y %H:%M", "%d/%m/%Y"):
        try:
            return datetime.strptime(text.strip(), pattern).date()
        except ValueError:
            continue
    raise ValueError(text)


def parse_cents(text: str) -> int:
    """`10,00`, `1 234,50 €`, `10.5` or `Gratuit` as cents."""
    cleaned = text.replace("€", "").replace("\u202f", "").replace("\xa0", "").strip()
    if cleaned.casefold() in ("gratuit", "free"):
        return 0
    cleaned = cleaned.replace(" ", "")
    match = re.fullmatch(r"(\d{1,9})(?:[.,](\d{1,2}))?", cleaned)
    if not match:
        raise ValueError(text)
    return int(match.group(1)) * 100 + int((match.group(2) or "0").ljust(2, "0"))


def _line_key(kind: str, ref: str, email: str, tier: str, cents: int) -> str:
    # Hashed: the record keeps no email once a member's data is erased.
    text = "\x1f".join([kind, ref, email, _tier_key(tier), str(cents)])
    return hashlib.sha256(text.encode()).hexdigest()


# --- applying it ----------------------------------------------------------------------------
def import_export(
    session: Session,
    data: bytes,
    *,
    kind: str,
    actor: str,
    tz: ZoneInfo,
    dry_run: bool = False,
) -> HelloAssoReport:
    """Apply the export's lines (refused ones reported, the others applied) in the caller's
    transaction; with `dry_run` everything is rolled back after being worked out, so the
    report is exactly what a real import would do. The caller commits a real one."""
    rows = read_export(data, kind)
    report = HelloAssoReport(kind=kind, dry_run=dry_run, rows=len(rows))
    mapping = {_tier_key(k): v for k, v in tier_mapping(session).items()}
    applied = set(
        session.exec(
            select(ImportRecord.key).where(ImportRecord.source == SOURCE, ImportRecord.kind == kind)
        ).all()
    )
    by_email = {
        m.email.lower(): m
        for m in session.exec(select(Member).where(col(Member.email).is_not(None)))
        if m.email
    }
    seen: dict[str, int] = {}
    for line, row in rows:
        problem = _check_line(kind, line, row, mapping)
        if isinstance(problem, HubError):
            report.rejected.append(problem)
            continue
        email, name, tier, cents = problem
        key = _line_key(kind, row["Référence commande"], email, tier, cents)
        if key in seen:
            report.rejected.append(
                _problem("helloasso.line_repeated", line, "Référence commande", first=seen[key])
            )
            continue
        seen[key] = line
        if key in applied:
            report.changes.append(LineChange(line, "unchanged", email))
            continue
        member = by_email.get(email)
        if kind == "memberships":
            category = mapping[_tier_key(tier)]
            if member is None:
                member = create_member(
                    session,
                    data=MemberCreate(name=name, email=email, category=MemberCategory(category)),
                    actor=actor,
                )
                by_email[email] = member
                report.changes.append(LineChange(line, "created", email, category, cents))
            elif change_category(session, member, category, actor=actor, tz=tz) is not None:
                report.changes.append(LineChange(line, "category", email, category, cents))
            else:
                report.changes.append(LineChange(line, "unchanged", email, category, cents))
        else:
            if member is None:
                report.rejected.append(
                    _problem("import.member_unknown", line, "Email payeur", email=email)
                )
                continue
            top_up(
                session,
                member,
                cents,
                actor=actor,
                note=f"HelloAsso {row['Référence commande'][:60]}",
            )
            report.changes.append(LineChange(line, "topup", email, tier, cents))
        session.add(
            ImportRecord(
                source=SOURCE,
                kind=kind,
                key=key,
                member_id=member.id,
                cents=cents,
                actor=actor[:100],
            )
        )
        applied.add(key)
    session.flush()
    if dry_run:
        session.rollback()
    else:
        record(
            session,
            actor=actor,
            action="helloasso.import",
            entity="import_record",
            entity_id=kind,
            rows=report.rows,
            applied=len(report.changes) - report.count("unchanged"),
            rejected=len(report.rejected),
        )
    return report


def _check_line(
    kind: str, line: int, row: Mapping[str, str], mapping: Mapping[str, str]
) -> HubError | tuple[str, str, str, int]:
    """(email, name, tier, cents) of a line, or the first thing wrong with it."""
    ref = row["Référence commande"]
    if not ref or len(ref) > 60 or any(unicodedata.category(c) == "Cc" for c in ref):
        return _problem("helloasso.reference", line, "Référence commande", value=ref[:60])
    status = row["Statut de la commande"]
    if status.casefold() not in PAID:
        return _problem("helloasso.not_paid", line, "Statut de la commande", status=status[:40])
    try:
        parse_day(row["Date de la commande"])
    except ValueError:
        return _problem(
            "helloasso.date", line, "Date de la commande", value=row["Date de la commande"][:40]
        )
    email_column = "Email" if row.get("Email") else "Email payeur"
    email = row.get(email_column, "").strip().lower()
    if not EMAIL.fullmatch(email) or len(email) > 320:
        return _problem("import.email_invalid", line, email_column, email=email[:80])
    try:
        cents = parse_cents(row["Montant tarif"])
    except ValueError:
        return _problem("helloasso.amount", line, "Montant tarif", value=row["Montant tarif"][:40])
    tier = row["Tarif"]
    who = "adhérent" if kind == "memberships" else "payeur"
    name = " ".join(f"{row[f'Prénom {who}']} {row[f'Nom {who}']}".split())
    if kind == "memberships":
        if not name or len(name) > 200 or any(unicodedata.category(c) == "Cc" for c in name):
            return _problem("import.name_empty", line, f"Nom {who}")
        if _tier_key(tier) not in mapping:
            return _problem("helloasso.tier_unmapped", line, "Tarif", tier=tier[:80])
    elif not 0 < cents <= MAX_TOPUP_CENTS:
        return _problem(
            "helloasso.topup_amount", line, "Montant tarif", value=row["Montant tarif"][:40]
        )
    return email, name, tier, cents

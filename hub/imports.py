"""CSV imports of members and trainings: every bad row reported by line, nothing half-imported.

Members: `name,email,category,badges` (badges separated by `;`, as hex UIDs). A member already
known by email is not imported again; a category given for them that differs from theirs is a
category change, effective today in the lab's zone and recorded in their history
(hub/category_history.py).
Trainings: `member_email,machine_type,level,expires,supervised_only,granted_by_email`; the
grantor must hold a valid `trainer` training for that machine type (the same rule as in the
hub), and is recorded as the one who granted it.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from hub.audit import record
from hub.category_history import change_category
from hub.core.errors import HubError, InvalidValue, describe
from hub.models import (
    Badge,
    MachineType,
    Member,
    MemberCategory,
    Training,
    TrainingLevel,
)
from hub.services.trainings import trains
from protocol.badges import normalise_uid

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
MEMBER_COLUMNS = ["name", "email", "category", "badges"]
TRAINING_COLUMNS = [
    "member_email",
    "machine_type",
    "level",
    "expires",
    "supervised_only",
    "granted_by_email",
]
YES = {"yes", "y", "true", "1", "oui"}
NO = {"no", "n", "false", "0", "non", ""}


@dataclass
class ImportReport:
    rows: int = 0
    # Every refused cell: a HubError naming its column, the CSV line in params["line"].
    problems: list[HubError] = field(default_factory=list)
    created: int = 0
    skipped: int = 0  # already known (by email); those whose category changed included
    category_changes: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def errors(self) -> list[str]:
        """The problems in English, as "line 7: email: ... (fix)"."""
        return [worded(problem) for problem in self.problems]


def worded(problem: HubError, translate: Callable[[str], str] = lambda text: text) -> str:
    """A row's problem for a person: its line, its column and what to fix."""
    return f"line {problem.params.get('line')}: {problem.field}: {describe(problem, translate)}"


def _problem(code: str, line: int, field: str, **params: Any) -> InvalidValue:
    return InvalidValue(code, field=field, params={**params, "line": line})


class ImportFileError(InvalidValue):
    """The file itself cannot be read as the expected CSV (field `file`)."""

    def __init__(self, code: str, **params: Any) -> None:
        super().__init__(code, field="file", params=params)


def _read(text: str, expected: list[str]) -> list[tuple[int, dict[str, str]]]:
    # Spreadsheets save with commas, semicolons (French locale) or tabs: the header, whose
    # names we know, says which.
    first_line = text.split("\n", 1)[0]
    delimiter = max(",;\t", key=first_line.count)
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = [
        c for c in expected if c not in header and c not in ("badges", "expires", "supervised_only")
    ]
    if missing:
        raise ImportFileError(
            "import.columns_missing",
            expected=", ".join(expected),
            missing=", ".join(missing),
            found=", ".join(header) or "none",
        )
    unknown = [h for h in header if h not in expected]
    if unknown:
        raise ImportFileError(
            "import.columns_unknown", unknown=", ".join(unknown), expected=", ".join(expected)
        )
    reader.fieldnames = header
    rows = []
    try:
        ended = reader.line_num  # the header's last physical line
        for row in reader:
            # The row's first line, header included: a quoted cell may hold a line break, and
            # DictReader's line_num is where the row ends.
            rows.append((ended + 1, {k: (v or "").strip() for k, v in row.items() if k}))
            ended = reader.line_num
    except csv.Error as exc:
        raise ImportFileError(
            "import.csv_unreadable", line=reader.line_num + 1, reason=str(exc)
        ) from None
    return rows


def decode(data: bytes) -> str:
    for encoding in ("utf-8-sig", "cp1252"):  # spreadsheets in French labs save either
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise ImportFileError("import.encoding")


def import_members(
    engine: Engine,
    text: str,
    *,
    dry_run: bool = False,
    actor: str = "import",
    progress: Callable[[Iterable[Any]], Iterable[Any]] = lambda it: it,
    tz: ZoneInfo | None = None,
) -> ImportReport:
    """`tz` is the lab's zone, whose today a category change takes effect from (the hub's
    settings' when None)."""
    rows = _read(text, MEMBER_COLUMNS)
    report = ImportReport(rows=len(rows))
    if tz is None:
        from hub.core.settings import get_settings

        tz = ZoneInfo(get_settings().timezone)
    with Session(engine) as session:
        known = {m.email.lower(): m for m in session.exec(select(Member)) if m.email}
        known_emails = set(known)
        recategorised: list[tuple[int, Member, MemberCategory]] = []
        known_badges = {b.uid for b in session.exec(select(Badge)) if b.revoked_at is None}
        seen_emails: dict[str, int] = {}
        seen_badges: dict[str, int] = {}
        new: list[tuple[Member, list[str]]] = []
        for line, row in progress(rows):
            errors: list[HubError] = []
            name, email = row.get("name", ""), row.get("email", "").lower()
            if not name:
                errors.append(_problem("import.name_empty", line, "name"))
            if email and not EMAIL.match(email):
                errors.append(_problem("import.email_invalid", line, "email", email=email))
            if email and email in seen_emails:
                errors.append(
                    _problem(
                        "import.email_repeated",
                        line,
                        "email",
                        email=email,
                        first=seen_emails[email],
                    )
                )
            given_category = row.get("category", "").lower()
            category = given_category or "individual"
            if category not in {c.value for c in MemberCategory}:
                errors.append(
                    _problem(
                        "import.category_unknown",
                        line,
                        "category",
                        category=category,
                        categories=", ".join(c.value for c in MemberCategory),
                    )
                )
            if email in known_emails and email:
                # Already a member: imports can be run again. A category given for them that
                # differs is a change (an empty cell leaves theirs alone).
                report.skipped += 1
                if given_category and given_category != known[email].category.value:
                    if given_category in {c.value for c in MemberCategory}:
                        recategorised.append((line, known[email], MemberCategory(given_category)))
                    else:
                        report.problems += [e for e in errors if e.field == "category"]
                continue
            badges: list[str] = []
            for raw in filter(None, (b.strip() for b in row.get("badges", "").split(";"))):
                try:
                    uid = normalise_uid(raw)
                except ValueError:
                    errors.append(_problem("badge.uid_invalid", line, "badges", uid=raw))
                    continue
                if uid in known_badges:
                    errors.append(_problem("import.badge_taken", line, "badges", uid=uid))
                elif uid in seen_badges:
                    errors.append(
                        _problem(
                            "import.badge_repeated", line, "badges", uid=uid, first=seen_badges[uid]
                        )
                    )
                else:
                    seen_badges[uid] = line
                    badges.append(uid)
            if email:
                seen_emails[email] = line
            if errors:
                report.problems += errors
                continue
            new.append(
                (Member(name=name, email=email or None, category=MemberCategory(category)), badges)
            )
        if report.problems or dry_run:
            report.created = 0 if report.problems else len(new)
            report.category_changes = 0 if report.problems else len(recategorised)
            return report
        for line, member, new_category in recategorised:
            previous = member.category.value
            try:
                change_category(session, member, new_category, actor=actor, tz=tz)
            except HubError as exc:  # today is never in a closed month; kept safe
                session.rollback()
                report.problems.append(
                    type(exc)(exc.code, field="category", params={**exc.params, "line": line})
                )
                return report
            record(
                session,
                actor=actor,
                action="member.update",
                entity="member",
                entity_id=member.ref,
                fields=["category"],
                category=new_category.value,
                previous_category=previous,
            )
        report.category_changes = len(recategorised)
        for member, badges in new:
            session.add(member)
            session.flush()
            assert member.id is not None
            for uid in badges:
                session.add(Badge(uid=uid, member_id=member.id))
            record(
                session,
                actor=actor,
                action="member.import",
                entity="member",
                entity_id=member.ref,
                badges=badges,
                category=member.category.value,
            )
        session.commit()
        report.created = len(new)
    return report


def _is_trainer(session: Session, member_id: int, machine_type_id: int, now: datetime) -> bool:
    return trains(session, member_id=member_id, machine_type_id=machine_type_id, now=now)


def import_trainings(
    engine: Engine,
    text: str,
    *,
    dry_run: bool = False,
    actor: str = "import",
    progress: Callable[[Iterable[Any]], Iterable[Any]] = lambda it: it,
    now: datetime | None = None,
) -> ImportReport:
    rows = _read(text, TRAINING_COLUMNS)
    report = ImportReport(rows=len(rows))
    moment = now or datetime.now(UTC)
    with Session(engine) as session:
        members = {m.email.lower(): m for m in session.exec(select(Member)) if m.email}
        types = {t.code: t for t in session.exec(select(MachineType))}
        new: list[Training] = []
        for line, row in progress(rows):
            errors: list[HubError] = []
            member = members.get(row.get("member_email", "").lower())
            if member is None:
                errors.append(
                    _problem(
                        "import.member_unknown",
                        line,
                        "member_email",
                        email=row.get("member_email", ""),
                    )
                )
            mtype = types.get(row.get("machine_type", "").lower())
            if mtype is None:
                errors.append(
                    _problem(
                        "import.machine_type_unknown",
                        line,
                        "machine_type",
                        machine_type=row.get("machine_type", ""),
                        known=", ".join(sorted(types)),
                    )
                )
            level = row.get("level", "").lower() or "user"
            if level not in {lv.value for lv in TrainingLevel}:
                errors.append(_problem("import.level_unknown", line, "level", level=level))
            expires: datetime | None = None
            if row.get("expires"):
                try:
                    expires = datetime.combine(
                        date.fromisoformat(row["expires"]), time.max, tzinfo=UTC
                    )
                except ValueError:
                    errors.append(
                        _problem("import.expires_invalid", line, "expires", value=row["expires"])
                    )
            supervised = row.get("supervised_only", "").lower()
            if supervised not in YES | NO:
                errors.append(
                    _problem("import.yes_or_no", line, "supervised_only", value=supervised)
                )
            grantor = members.get(row.get("granted_by_email", "").lower())
            if grantor is None:
                errors.append(
                    _problem(
                        "import.grantor_unknown",
                        line,
                        "granted_by_email",
                        email=row.get("granted_by_email", ""),
                    )
                )
            elif mtype is not None and not _is_trainer(
                session, grantor.id or -1, mtype.id or -1, moment
            ):
                errors.append(
                    _problem(
                        "import.grantor_not_trainer",
                        line,
                        "granted_by_email",
                        email=grantor.email,
                        machine_type=mtype.code,
                    )
                )
            if errors:
                report.problems += errors
                continue
            assert member is not None and mtype is not None and grantor is not None
            assert member.id is not None and mtype.id is not None
            new.append(
                Training(
                    member_id=member.id,
                    machine_type_id=mtype.id,
                    level=TrainingLevel(level),
                    granted_by_id=grantor.id,
                    granted_at=moment,
                    expires_at=expires,
                    supervised_only=supervised in YES,
                )
            )
        if report.problems or dry_run:
            report.created = 0 if report.problems else len(new)
            return report
        for training in new:
            session.add(training)
            session.flush()
            record(
                session,
                actor=actor,
                action="training.import",
                entity="training",
                entity_id=str(training.id),
                member_id=training.member_id,
                machine_type_id=training.machine_type_id,
                level=training.level.value,
                granted_by_id=training.granted_by_id,
            )
        session.commit()
        report.created = len(new)
    return report

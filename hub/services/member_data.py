"""A member's data rights: export everything held about them, or erase what identifies them.

Erasure keeps the history (sessions, events, trainings, statements) under the member's
pseudonymous reference, so billing totals and statistics stay correct, but removes what links
that reference back to a person: the name, the email, the card UIDs and the login, wherever
the hub has copied them (audit log, statements, dead letters, badge reads, machine statuses,
free-text notes). docs/security.md lists the places; the erasure test searches every table
and the raw SQLite file for them.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import or_
from sqlmodel import Session, col, select

from hub.billing_store import BalanceMovement, BillingMonth, Statement, StatementLine
from hub.core.errors import NotFound
from hub.models import (
    ApiToken,
    AuditEntry,
    Badge,
    DeadLetter,
    Event,
    Incident,
    Machine,
    MachineSession,
    MachineType,
    MaintenanceSignOff,
    Member,
    MemberCategoryChange,
    MemberStatus,
    PrintJob,
    Training,
    User,
)
from hub.services.accounts import revoke_token

ERASED_NAME = "(erased)"
ERASED = "ERASED"
# Events whose data may carry the member's card UID, or text naming them (a job's file name,
# a note typed at the machine).
BADGE_EVENT_TYPES = ("badge.granted", "badge.denied", "badge.read", "session.started")
PERSONAL_EVENT_TYPES = (
    *BADGE_EVENT_TYPES,
    "job.started",
    "job.finished",
    "job.failed",
    "incident.reported",
)
# A password hash no password matches (argon2 hashes start with $argon2).
UNUSABLE_PASSWORD = "!erased"


def find_member(session: Session, email: str) -> Member:
    """The member with this email (any case); NotFound (a LookupError) naming `email`."""
    member = session.exec(select(Member).where(Member.email == email.lower())).first()
    if member is None:
        raise NotFound("member.unknown_email", field="email", params={"email": email})
    return member


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def export_member(session: Session, member: Member) -> dict[str, Any]:
    types = {t.id: t.code for t in session.exec(select(MachineType))}
    machines = {m.id: m.code for m in session.exec(select(Machine))}
    badges = session.exec(select(Badge).where(Badge.member_id == member.id)).all()
    trainings = session.exec(select(Training).where(Training.member_id == member.id)).all()
    categories = session.exec(
        select(MemberCategoryChange)
        .where(MemberCategoryChange.member_id == member.id)
        .order_by(col(MemberCategoryChange.effective_from), col(MemberCategoryChange.id))
    ).all()
    sessions = session.exec(
        select(MachineSession)
        .where(MachineSession.member_ref == member.ref)
        .order_by(col(MachineSession.started_at))
    ).all()
    users = session.exec(select(User).where(User.member_id == member.id)).all()
    movements = session.exec(
        select(BalanceMovement)
        .where(BalanceMovement.member_id == member.id)
        .order_by(col(BalanceMovement.at), col(BalanceMovement.id))
    ).all()
    # Their own statements, and those of a payer that carry lines of theirs.
    line_statements = select(StatementLine.statement_id).where(
        StatementLine.member_ref == member.ref
    )
    statements = session.exec(
        select(Statement)
        .where(or_(col(Statement.payer_ref) == member.ref, col(Statement.id).in_(line_statements)))
        .order_by(col(Statement.month), col(Statement.id))
    ).all()
    lines = session.exec(
        select(StatementLine)
        .where(StatementLine.member_ref == member.ref)
        .order_by(col(StatementLine.statement_id), col(StatementLine.position))
    ).all()
    incidents = session.exec(
        select(Incident)
        .where(Incident.reported_by_ref == member.ref)
        .order_by(col(Incident.opened_at))
    ).all()
    jobs = session.exec(
        select(PrintJob).where(PrintJob.member_ref == member.ref).order_by(col(PrintJob.started_at))
    ).all()

    def tokens_of(user: User) -> list[dict[str, Any]]:
        # Metadata only: the secret is never stored, and its hash is no use to anyone.
        return [
            {
                "name": t.name,
                "kind": t.kind,
                "prefix": t.prefix,
                "created_at": _iso(t.created_at),
                "expires_at": _iso(t.expires_at),
                "last_used_at": _iso(t.last_used_at),
                "revoked_at": _iso(t.revoked_at),
            }
            for t in session.exec(
                select(ApiToken).where(ApiToken.user_id == user.id).order_by(col(ApiToken.id))
            )
        ]

    return {
        "exported_at": datetime.now(UTC).isoformat(),
        "member": {
            "ref": member.ref,
            "name": member.name,
            "email": member.email,
            "category": member.category.value,
            "status": member.status.value,
            "created_at": _iso(member.created_at),
        },
        # What billing priced them as, and from when (hub/category_history.py).
        "category_changes": [
            {
                "from": c.previous_category,
                "to": c.category,
                "effective_from": c.effective_from.isoformat(),
                "recorded_at": _iso(c.recorded_at),
            }
            for c in categories
        ],
        "badges": [
            {"uid": b.uid, "enrolled_at": _iso(b.enrolled_at), "revoked_at": _iso(b.revoked_at)}
            for b in badges
        ],
        "trainings": [
            {
                "machine_type": types.get(t.machine_type_id),
                "level": t.level.value,
                "granted_at": _iso(t.granted_at),
                "expires_at": _iso(t.expires_at),
                "supervised_only": t.supervised_only,
            }
            for t in trainings
        ],
        "sessions": [
            {
                "machine": s.machine,
                "started_at": _iso(s.started_at),
                "ended_at": _iso(s.ended_at),
                "duration_s": s.duration_s,
                "busy_s": s.busy_s,
                "end_reason": s.end_reason,
                "mode": s.mode,
            }
            for s in sessions
        ],
        "logins": [
            {
                "username": u.username,
                "role": u.role.value,
                "active": u.active,
                "created_at": _iso(u.created_at),
                "tokens": tokens_of(u),
            }
            for u in users
        ],
        "balance_movements": [
            {
                "at": _iso(m.at),
                "kind": m.kind,
                "cents": m.cents,
                "statement_id": m.statement_id,
                "note": m.note,
            }
            for m in movements
        ],
        "statements": [
            {
                "id": s.id,
                "number": s.number,
                "month": s.month,
                "kind": s.kind,
                "payer_ref": s.payer_ref,
                "payer_name": s.payer_name if s.payer_ref == member.ref else None,
                "total_cents": s.total_cents if s.payer_ref == member.ref else None,
                "prepaid_cents": s.prepaid_cents if s.payer_ref == member.ref else None,
                "due_cents": s.due_cents if s.payer_ref == member.ref else None,
                "created_at": _iso(s.created_at),
            }
            for s in statements
        ],
        "statement_lines": [
            {
                "statement_id": line.statement_id,
                "session_id": line.session_id,
                "machine": line.machine,
                "started_at": _iso(line.started_at),
                "billed_minutes": line.billed_minutes,
                "cents": line.cents,
                "explanation": line.explanation,
            }
            for line in lines
        ],
        "incidents": [
            {
                "machine": machines.get(i.machine_id),
                "source": i.source,
                "kind": i.kind,
                "text": i.text,
                "opened_at": _iso(i.opened_at),
                "closed_at": _iso(i.closed_at),
                "resolution": i.resolution,
            }
            for i in incidents
        ],
        "print_jobs": [
            {
                "machine": j.machine,
                "job_id": j.job_id,
                "file": j.file,
                "started_at": _iso(j.started_at),
                "ended_at": _iso(j.ended_at),
                "duration_s": j.duration_s,
                "state": j.state,
                "error": j.error,
            }
            for j in jobs
        ],
    }


@dataclass
class _Identity:
    """What identifies the member, as it may have been copied around the database."""

    name: str
    email: str | None
    uids: set[str]
    usernames: set[str]
    words: list[str] = field(default_factory=list)
    pattern: re.Pattern[str] | None = None

    def __post_init__(self) -> None:
        words = {self.name, *(self.email and [self.email] or []), *self.usernames}
        for uid in self.uids:
            words.add(uid)
            # A reader or a person may have written it with separators: 04:C3:D4:E5.
            pairs = [uid[i : i + 2] for i in range(0, len(uid), 2)]
            words.update(sep.join(pairs) for sep in (":", "-", " "))
        # Longest first, so "Hugo Petit" goes before a shorter word inside it.
        self.words = sorted((w for w in words if w and w != ERASED_NAME), key=len, reverse=True)
        # Whole words only: a member called "Al" must not turn "Alarm" into "ERASEDarm".
        self.pattern = (
            re.compile(
                r"(?<!\w)(?:" + "|".join(re.escape(w) for w in self.words) + r")(?!\w)",
                re.IGNORECASE,
            )
            if self.words
            else None
        )

    def scrub(self, value: Any) -> Any:
        """The value with every identifying string replaced, JSON-like structures walked."""
        if isinstance(value, str):
            return self.pattern.sub(ERASED, value) if self.pattern else value
        if isinstance(value, dict):
            return {self.scrub(k): self.scrub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.scrub(v) for v in value]
        return value

    def found(self, text: str) -> bool:
        return bool(self.pattern and self.pattern.search(text))


def _like_any(column: Any, words: Iterable[str]) -> Any:
    """A pre-filter the database applies (case-insensitively) before Python scrubs."""
    return or_(*(col(column).ilike(f"%{w}%") for w in words))


def erase_member(session: Session, member: Member) -> dict[str, int]:
    """Remove what identifies the member; keep the history under their reference.

    Does not commit; after the commit, call `hub.core.db.forget_erased(engine)` so SQLite's
    write-ahead log no longer holds the old pages."""
    now = datetime.now(UTC)
    badges = session.exec(select(Badge).where(Badge.member_id == member.id)).all()
    users = session.exec(select(User).where(User.member_id == member.id)).all()
    who = _Identity(
        name=member.name,
        email=member.email,
        uids={b.uid for b in badges if b.uid != ERASED},
        usernames={u.username for u in users},
    )
    counts = {
        "badges": len(badges),
        "sessions": 0,
        "events": 0,
        "logins": len(users),
        "tokens": 0,
        "audit": 0,
        "statements": 0,
        "dead_letters": 0,
        "notes": 0,
        "notifications": 0,
    }
    for badge in badges:
        badge.revoked_at = badge.revoked_at or now
        badge.uid = ERASED
        session.add(badge)
    for row in session.exec(select(MachineSession).where(MachineSession.member_ref == member.ref)):
        row.badge = ""
        session.add(row)
        counts["sessions"] += 1

    # The login: disabled, its tokens revoked, its name (often the person's) replaced.
    for user in users:
        for token in session.exec(select(ApiToken).where(ApiToken.user_id == user.id)):
            if token.revoked_at is None:
                counts["tokens"] += 1
            revoke_token(session, token, now=now)
        user.active = False
        user.password_hash = UNUSABLE_PASSWORD
        user.username = f"erased-{user.id or secrets.token_hex(4)}"
        session.add(user)

    uid_list = sorted(who.uids)
    for event in session.exec(select(Event).where(col(Event.type).in_(PERSONAL_EVENT_TYPES))):
        if event.data.get("member") == member.ref or event.data.get("badge") in uid_list:
            event.data = who.scrub({k: v for k, v in event.data.items() if k != "badge"})
            session.add(event)
            counts["events"] += 1

    if who.words:
        # The audit log links card UIDs and logins to the member (badge.enrol names the
        # card and the member's ref; user.create the login; actors are logins).
        for entry in session.exec(
            select(AuditEntry).where(
                or_(
                    _like_any(AuditEntry.entity_id, who.words),
                    _like_any(AuditEntry.actor, who.words),
                    col(AuditEntry.entity) == "badge",
                    col(AuditEntry.action).in_(("member.import", "token.create", "user.update")),
                )
            )
        ):
            scrubbed = (
                who.scrub(entry.actor),
                who.scrub(entry.entity_id),
                who.scrub(entry.detail),
            )
            if scrubbed != (entry.actor, entry.entity_id, entry.detail):
                entry.actor, entry.entity_id, entry.detail = scrubbed
                session.add(entry)
                counts["audit"] += 1
        for statement in session.exec(
            select(Statement).where(
                or_(
                    col(Statement.payer_ref) == member.ref,
                    _like_any(Statement.payer_name, [who.name]),
                )
            )
        ):
            if statement.payer_ref == member.ref or who.found(statement.payer_name):
                statement.payer_name = ERASED_NAME
                session.add(statement)
                counts["statements"] += 1
        for line in session.exec(
            select(StatementLine).where(_like_any(StatementLine.explanation, who.words))
        ):
            line.explanation = who.scrub(line.explanation)
            session.add(line)
        # A dead letter is whatever arrived: a malformed badge event may hold a UID or a name.
        # Read in Python (a payload is bytes, which the databases do not search alike); the
        # retention rules keep the table to months of garbage.
        for letter in session.exec(select(DeadLetter)):
            text = bytes(letter.payload).decode("utf-8", "replace")
            if who.found(text) or who.found(letter.detail) or who.found(letter.topic):
                letter.payload = who.scrub(text).encode()
                letter.detail = who.scrub(letter.detail)
                letter.topic = who.scrub(letter.topic)
                session.add(letter)
                counts["dead_letters"] += 1
        # The retained status of a machine in use names the session's card.
        for machine in session.exec(select(Machine).where(col(Machine.last_status).is_not(None))):
            status = who.scrub(machine.last_status)
            if status != machine.last_status:
                machine.last_status = status
                session.add(machine)
        counts["notes"] += _scrub_notes(session, who)

    counts["notifications"] = _erase_notifications(session, member, [u.id for u in users])

    member.name = ERASED_NAME
    member.email = None
    member.status = MemberStatus.LEFT
    session.add(member)
    return counts


def _erase_notifications(session: Session, member: Member, user_ids: list[int | None]) -> int:
    """Messages to the member's address go (sent ones are only a log, pending ones must not
    reach an erased person); messages to webhooks lose the member's reference and files."""
    from hub.models import Notification, NotificationPreference

    changed = 0
    if member.email:
        for note in session.exec(
            select(Notification).where(Notification.recipient == member.email)
        ):
            session.delete(note)
            changed += 1
    for note in session.exec(select(Notification).where(Notification.channel == "webhook")):
        if note.params.get("member") == member.ref:
            note.params = {k: v for k, v in note.params.items() if k not in ("member", "file")}
            session.add(note)
            changed += 1
    ids = [i for i in user_ids if i is not None]
    if ids:
        for choice in session.exec(
            select(NotificationPreference).where(col(NotificationPreference.user_id).in_(ids))
        ):
            session.delete(choice)
    return changed


def _scrub_notes(session: Session, who: _Identity) -> int:
    """Free text and actor columns that may name the person: who reported, closed or signed."""
    changed = 0
    targets: list[tuple[Any, tuple[str, ...]]] = [
        (Incident, ("reported_by", "text", "closed_by", "resolution")),
        (MaintenanceSignOff, ("note",)),
        (BalanceMovement, ("note", "actor")),
        (BillingMonth, ("closed_by",)),
        (MemberCategoryChange, ("actor",)),
        (PrintJob, ("file",)),
    ]
    for model, names in targets:
        query = select(model).where(or_(*(_like_any(getattr(model, n), who.words) for n in names)))
        for row in session.exec(query):
            for name in names:
                value = getattr(row, name)
                if isinstance(value, str) and who.found(value):
                    setattr(row, name, who.scrub(value))
            session.add(row)
            changed += 1
    return changed

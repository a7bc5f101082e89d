"""Who wants which notification on which channel: a person's choice, else the lab's default."""

from __future__ import annotations

from sqlmodel import Session, col, select

from hub.models import NotificationDefault, NotificationPreference, PreferencePublic, Role, User
from hub.services.notifications import NotificationError

# What a member hears about, and what staff hear about (hub/notify/messages.py words them).
MEMBER_KINDS = (
    "print.finished",
    "print.failed",
    "print.cancelled",
    "session.idle_ended",
    "training.expiring",
    "balance.low",
    "balance.empty",
    "booking.cancelled",
    "booking.reminder",
    "booking.no_show",
)
STAFF_KINDS = (
    "incident.opened",
    "maintenance.due",
    "maintenance.overdue",
    "machine.offline",
    "machine.locked",
    "allowlist.stale",
    "dead_letters.rising",
)
KINDS = MEMBER_KINDS + STAFF_KINDS
CHANNELS = ("email",)
STAFF_ROLES = (Role.MAINTAINER, Role.MANAGER, Role.ADMIN)
# Without any choice: a finished print is worth a mail, so is a failure, and so is an incident.
BUILT_IN = dict.fromkeys(KINDS, True)


def _check(kind: str, channel: str) -> None:
    if kind not in KINDS:
        raise NotificationError(
            "notification.kind", "kind", f"kind: give one of {', '.join(KINDS)}", kind=kind[:40]
        )
    if channel not in CHANNELS:
        raise NotificationError(
            "notification.channel", "channel", f"channel: give one of {', '.join(CHANNELS)}"
        )


def kinds_for(role: Role) -> tuple[str, ...]:
    return KINDS if role in STAFF_ROLES else MEMBER_KINDS


def _lab(session: Session) -> dict[tuple[str, str], bool]:
    return {(d.kind, d.channel): d.enabled for d in session.exec(select(NotificationDefault))}


def wants(session: Session, *, user_id: int | None, kind: str, channel: str) -> bool:
    if user_id is not None:
        own = session.get(NotificationPreference, (user_id, kind, channel))
        if own is not None:
            return own.enabled
    lab = session.get(NotificationDefault, (kind, channel))
    return lab.enabled if lab is not None else BUILT_IN.get(kind, False)


def preferences(session: Session, *, user: User | None) -> list[PreferencePublic]:
    """Every kind this person (or, for None, the lab) may receive, with where it comes from."""
    lab = _lab(session)
    own: dict[tuple[str, str], bool] = {}
    if user is not None:
        own = {
            (p.kind, p.channel): p.enabled
            for p in session.exec(
                select(NotificationPreference).where(NotificationPreference.user_id == user.id)
            )
        }
    rows = []
    for kind in kinds_for(user.role) if user is not None else KINDS:
        for channel in CHANNELS:
            key = (kind, channel)
            if key in own:
                rows.append(
                    PreferencePublic(kind=kind, channel=channel, enabled=own[key], source="own")
                )
            elif key in lab:
                rows.append(
                    PreferencePublic(kind=kind, channel=channel, enabled=lab[key], source="lab")
                )
            else:
                rows.append(
                    PreferencePublic(
                        kind=kind, channel=channel, enabled=BUILT_IN[kind], source="built-in"
                    )
                )
    return rows


def set_preference(session: Session, *, user: User, kind: str, channel: str, enabled: bool) -> None:
    _check(kind, channel)
    if kind not in kinds_for(user.role):
        raise NotificationError(
            "notification.kind", "kind", f"kind: {kind} is for staff", kind=kind
        )
    assert user.id is not None
    row = session.get(NotificationPreference, (user.id, kind, channel))
    row = row or NotificationPreference(user_id=user.id, kind=kind, channel=channel)
    row.enabled = enabled
    session.add(row)
    session.flush()


def set_default(session: Session, *, kind: str, channel: str, enabled: bool) -> None:
    _check(kind, channel)
    row = session.get(NotificationDefault, (kind, channel))
    row = row or NotificationDefault(kind=kind, channel=channel)
    row.enabled = enabled
    session.add(row)
    session.flush()


def staff_recipients(session: Session) -> list[tuple[int, int]]:
    """(user id, member id) of the active staff logins linked to a member."""
    rows = session.exec(
        select(User.id, User.member_id).where(
            col(User.role).in_(STAFF_ROLES),
            col(User.active).is_(True),
            col(User.member_id).is_not(None),
        )
    ).all()
    return [(int(u), int(m)) for u, m in rows if u is not None and m is not None]

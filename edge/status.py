"""What the agent says about itself: a tap's answer, its state, and the retained status.

A tap's answer (`atelier edge tap`, the sim reader's socket) is read off the actions the
session machine returned for the read; the status the hub reads is the agent's state in the
wire's shape (protocol.messages.Status).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from edge import __version__
from edge.domain.session import Action, ActiveSession, Beep, Emit
from protocol import lite
from protocol.vocab import EventType


def tap_answer(actions: list[Action]) -> dict[str, Any]:
    """granted, denied, ended (a badge-out), extended (the same badge again) or ignored."""
    reply: dict[str, Any] = {"ok": True, "decision": "ignored", "reason": None}
    for action in actions:
        if isinstance(action, Emit):
            if action.type is EventType.BADGE_GRANTED:
                reply.update(
                    decision="granted",
                    session_id=action.data["session_id"],
                    member=action.data["member"],
                )
            elif action.type is EventType.BADGE_DENIED:
                reply.update(decision="denied", reason=action.data["reason"])
            elif action.type is EventType.SPOOL_ATTACHED:
                reply.update(decision="spool", spool=action.data["spool"])
            elif action.type is EventType.SESSION_ENDED and reply["decision"] == "ignored":
                reply.update(
                    decision="ended",
                    reason=action.data["reason"],
                    session_id=action.data["session_id"],
                )
        elif isinstance(action, Beep) and action.kind == "grant" and reply["decision"] == "ignored":
            reply["decision"] = "extended"
    return reply


def session_view(session: ActiveSession | None) -> dict[str, Any] | None:
    if session is None:
        return None
    return {
        "session_id": session.session_id,
        "member": session.member,
        "badge": session.badge,
        "mode": session.mode,
        "started_at": session.started_at.isoformat(),
    }


def status_message(
    machine: str, state: dict[str, Any], *, ts: datetime, uptime_s: float, reader_ok: bool
) -> lite.Message:
    """The retained status: the agent's state (`Agent.state`) in the wire's shape."""
    return lite.status(
        machine=machine,
        state="online",
        ts=ts,
        version=__version__,
        uptime_s=round(uptime_s, 1),
        relay=state["relay"],
        session=state["session"],
        busy=state["busy"],
        locked=state["locked"],
        reader_ok=reader_ok,
        backlog=state["backlog"],
        acl_version=state["acl_version"],
        acl_refused=state["acl_refused"],
        acl_offered=state["acl_offered"],
        last_seq=state["last_seq"] or None,
        # Status takes additive fields: the hub sees a full journal at once.
        journal="full" if state["journal_full"] else "ok",
        interlocks=state["interlocks"] or None,
        accessories=state["accessories"] or None,
    )

"""The guided setup's check: what still stops a machine from working, and what is in place.

`atelier hub machine check` and the setup page both show these findings; adding the machine
is hub/services/machines.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import Session, col, or_, select

from hub.allowlist_watch import list_state
from hub.billing_store import BillingRate
from hub.models import Machine, MachineKind, MachineType, Training, TrainingLevel
from hub.services.machines import (
    CLOCK_TOLERANCE_S,
    N_,
    MachineSetupError,
    OctoPrintProbe,
    ask_octoprint,
)


# --- the setup check ------------------------------------------------------------------------
@dataclass(frozen=True)
class Finding:
    """One line of the setup check: `ok`, a code for tests and scripts, an English template."""

    code: str
    ok: bool
    message: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def text(self, gettext: Callable[[str], str] = str) -> str:
        return gettext(self.message) % dict(self.params)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def setup_check(
    session: Session,
    *,
    code: str,
    now: datetime,
    tz: ZoneInfo,
    probe: OctoPrintProbe = ask_octoprint,
) -> list[Finding]:
    """What still stops the machine from working, and what is in place, in a fixed order."""
    machine = session.exec(select(Machine).where(Machine.code == code)).first()
    if machine is None:
        raise MachineSetupError("code", N_("no machine %(value)r"), value=code)
    mtype = session.get(MachineType, machine.machine_type_id)
    type_code = mtype.code if mtype else "?"
    out: list[Finding] = []
    if machine.online:
        out.append(Finding("agent_online", True, N_("the agent is connected")))
    elif machine.last_seen is None:
        out.append(
            Finding(
                "agent_never_connected",
                False,
                N_(
                    "the agent has never connected: start it on the machine's Pi (systemctl "
                    "enable --now atelier-edge) with the config the hub gave when it was added"
                ),
            )
        )
    else:
        seen = _aware(machine.last_seen).astimezone(tz)
        same_day = seen.date() == now.astimezone(tz).date()
        out.append(
            Finding(
                "agent_offline",
                False,
                N_("the agent is offline since %(when)s: check the Pi's power and network"),
                {"when": seen.strftime("%H:%M") if same_day else seen.strftime("%Y-%m-%d %H:%M")},
            )
        )
    held = list_state(machine)
    if held is not None:
        if held.is_current:
            out.append(Finding("acl_current", True, N_("its allow-list is the current one")))
        else:
            out.append(
                Finding(
                    "acl_not_current",
                    False,
                    N_(
                        "its allow-list is not the current one (it holds %(held)s, the hub issued "
                        "%(current)s%(refused)s): check the hub_public_key in its config"
                    ),
                    {
                        "held": held.held if held.held is not None else "none",
                        "current": held.current,
                        "refused": f"; refused: {held.refused}" if held.refused else "",
                    },
                )
            )
    skew = _clock_skew(machine)
    if skew is not None:
        if abs(skew) > CLOCK_TOLERANCE_S:
            out.append(
                Finding(
                    "clock_off",
                    False,
                    N_(
                        "its clock is off by %(seconds)d s: enable NTP on the Pi "
                        "(timedatectl set-ntp true)"
                    ),
                    {"seconds": round(skew)},
                )
            )
        else:
            out.append(Finding("clock_ok", True, N_("its clock is right")))
    if machine.octoprint_url:
        answer = probe(machine.octoprint_url, machine.octoprint_api_key or "")
        if answer.state == "ok":
            out.append(
                Finding(
                    "octoprint_ok",
                    True,
                    N_("OctoPrint answers at %(url)s"),
                    {"url": machine.octoprint_url},
                )
            )
        elif answer.state == "refused":
            out.append(
                Finding(
                    "octoprint_key_refused",
                    False,
                    N_("OctoPrint at %(url)s refuses the key: give a new application key"),
                    {"url": machine.octoprint_url},
                )
            )
        else:
            out.append(
                Finding(
                    "octoprint_unreachable",
                    False,
                    N_("OctoPrint does not answer at %(url)s (%(detail)s)"),
                    {"url": machine.octoprint_url, "detail": answer.detail},
                )
            )
    elif machine.kind == MachineKind.PRINTER:
        out.append(
            Finding(
                "octoprint_missing",
                False,
                N_("a printer without OctoPrint shows no progress: give its OctoPrint address"),
            )
        )
    if mtype is not None and machine.kind != mtype.kind:
        out.append(
            Finding(
                "kind_differs",
                True,
                N_("its kind (%(kind)s) is not its type's (%(type_kind)s): set on purpose"),
                {"kind": machine.kind, "type_kind": mtype.kind},
            )
        )
    out += _type_findings(session, mtype, type_code, now)
    return out


def _clock_skew(machine: Machine) -> float | None:
    """The agent's clock minus the hub's, from its last status (sent as it was received)."""
    status = machine.last_status if isinstance(machine.last_status, dict) else {}
    if not machine.online or machine.last_seen is None or not isinstance(status.get("ts"), str):
        return None
    try:
        agent_ts = _aware(datetime.fromisoformat(status["ts"]))
    except ValueError:
        return None
    return (agent_ts - _aware(machine.last_seen)).total_seconds()


def _type_findings(
    session: Session, mtype: MachineType | None, type_code: str, now: datetime
) -> list[Finding]:
    out = []
    rate = session.exec(select(BillingRate.id).where(BillingRate.machine_type == type_code)).first()
    if rate is None:
        out.append(
            Finding(
                "no_rate",
                False,
                N_("no rate is set for its type %(type)s: its use cannot be billed"),
                {"type": type_code},
            )
        )
    else:
        out.append(
            Finding(
                "rate_set", True, N_("a rate is set for its type %(type)s"), {"type": type_code}
            )
        )
    type_id = mtype.id if mtype else -1
    valid = or_(col(Training.expires_at).is_(None), col(Training.expires_at) > now)
    trainings = session.exec(
        select(Training.level).where(Training.machine_type_id == type_id, valid)
    ).all()
    levels = {TrainingLevel(level) for level in trainings}
    if not trainings:
        out.append(
            Finding(
                "nobody_trained",
                False,
                N_("nobody is trained on its type %(type)s yet: no badge opens it"),
                {"type": type_code},
            )
        )
    else:
        out.append(
            Finding(
                "members_trained",
                True,
                N_("%(count)d member(s) trained on its type %(type)s"),
                {"count": len(trainings), "type": type_code},
            )
        )
    if TrainingLevel.TRAINER not in levels:
        out.append(
            Finding(
                "no_trainer",
                False,
                N_("no trainer exists for its type %(type)s: nobody can train new members"),
                {"type": type_code},
            )
        )
    else:
        out.append(
            Finding(
                "trainer_exists",
                True,
                N_("a trainer exists for its type %(type)s"),
                {"type": type_code},
            )
        )
    return out


def is_ready(findings: list[Finding]) -> bool:
    return all(f.ok for f in findings)


KIND_CONFLICTS = {
    "octoprint_on_non_printer": N_(
        "an OctoPrint is set on a machine whose kind is not printer: it shows no print progress"
    ),
    "ruida_on_non_laser": N_(
        "a Ruida controller is set on a machine whose kind is not laser: no beam time is counted"
    ),
}


def kind_conflict(machine: Machine) -> str | None:
    """A kind its integrations disagree with: an OctoPrint on a machine that is not a printer,
    a Ruida controller on one that is not a laser. None when they agree."""
    if machine.octoprint_url and machine.kind != MachineKind.PRINTER:
        return "octoprint_on_non_printer"
    if (machine.setup or {}).get("ruida_host") and machine.kind != MachineKind.LASER:
        return "ruida_on_non_laser"
    return None

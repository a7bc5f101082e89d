"""The codes the agents and the hub write (event types, why a session ended, why a badge was
refused) in words a person reads, for the catalogue; a page shows these, never the code."""

from __future__ import annotations

from hub.web.i18n import N_

EVENT_TYPES = {
    "badge.granted": N_("badge accepted"),
    "badge.denied": N_("badge refused"),
    "badge.read": N_("card read for enrolment"),
    "session.started": N_("session started"),
    "session.ended": N_("session ended"),
    "machine.busy": N_("machine working"),
    "machine.idle": N_("machine idle"),
    "machine.locked": N_("machine locked out"),
    "machine.unlocked": N_("machine unlocked"),
    "job.started": N_("job started"),
    "job.finished": N_("job finished"),
    "job.failed": N_("job failed"),
    "incident.reported": N_("incident reported"),
    "agent.started": N_("agent started"),
    "interlock.fault": N_("safety interlock fault"),
    "interlock.cleared": N_("safety interlock back in order"),
    "accessory.refused": N_("accessory left off (no training for it)"),
}
END_REASONS = {
    "badge-out": N_("badged out"),
    "idle-timeout": N_("idle too long"),
    "card-removed": N_("card removed"),
    "handover": N_("handed over"),
    "lockout": N_("machine locked out"),
    "agent-restart": N_("agent restarted"),
    "hub-command": N_("ended from the hub"),
}
DENY_REASONS = {
    "unknown_badge": N_("unknown card"),
    "not_trained": N_("not trained on this machine"),
    "training_expired": N_("training expired"),
    "member_inactive": N_("membership not active"),
    "locked_out": N_("machine locked out"),
    "balance": N_("prepaid balance empty"),
    "quota": N_("quota used up"),
    "supervision_required": N_("a trainer must be present"),
    "no_allow_list": N_("the machine has no access list yet"),
    "allow_list_expired": N_("the machine's access list expired"),
    "machine_already_running": N_("machine already running"),
    "in_use": N_("machine in use by someone else"),
    "card_secret_mismatch": N_("card secret does not match"),
    "card_uid_clone": N_("copied card"),
    "card_factory_key": N_("card still on its factory key"),
    "card_blank": N_("blank card"),
    "card_other_site": N_("another site's card"),
    "interlock_open": N_("a safety interlock is open"),
}


def word_for(code: object, table: dict[str, str]) -> str:
    """The English words for a code (translated by the page), or the code when unknown."""
    text = str(code or "")
    return table.get(text, text)

"""The hub's one error tree: a stable code, the field at fault and its parameters, no wording.

A service raises `NotFound(code="machine.unknown", field="machine", params={...})`; each front
end words it: the API answers 4xx JSON with the code and field (hub/api/errors.py), the web
shows the translated message under the field, the CLI names the flag and exits 2
(hub/cli/support.py). The English templates below are the catalogue's source: the French is in
hub/web/locale/fr/LC_MESSAGES/messages.po, and a test checks every code has both.

Like gpiozero's tree, each kind also inherits the built-in a caller would expect
(`NotFound` is a `LookupError`, `InvalidValue` a `ValueError`...).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar


def N_(message: str) -> str:  # noqa: N802  (gettext's name for "mark, translate later")
    """Marks a template for `pybabel extract`; the front end translates it where it shows it."""
    return message


class HubError(Exception):
    """A request the hub refuses: `code` is stable (clients and tests match it), `field` names
    the input at fault (or None when the request as a whole is refused), `params` fill the
    message. `status` is the HTTP status the API answers with."""

    status: ClassVar[int] = 400

    def __init__(
        self, code: str, *, field: str | None = None, params: Mapping[str, Any] | None = None
    ) -> None:
        self.code = code
        self.field = field
        self.params: dict[str, Any] = dict(params or {})
        super().__init__(code, field, self.params)

    def __str__(self) -> str:
        # For logs and tracebacks; people read `describe(...)`.
        return describe(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, field={self.field!r}, params={self.params!r})"


class InvalidValue(HubError, ValueError):
    """A value the hub cannot take (empty, out of range, inconsistent with another)."""

    status = 422


class NotFound(HubError, LookupError):
    """The thing named does not exist (or is not active)."""

    status = 404


class Conflict(HubError):
    """The request is well formed but the current state refuses it."""

    status = 409


class Forbidden(HubError, PermissionError):
    """This person may not do this."""

    status = 403


# code -> English template; {names} are the error's params. Codes are stable: clients and
# tests match them, so a code is added or retired, never renamed.
MESSAGES: dict[str, str] = {
    "machine.unknown": N_("no machine {machine!r} (known: {known})"),
    "machine_type.unknown": N_("no machine type {machine_type!r} (known: {known})"),
    "member.unknown_email": N_("no member with email {email}"),
    "member.not_active": N_("{email} is {status}, not an active member"),
    "maintenance.title_empty": N_(
        "the title is empty: say what is to be done, e.g. 'clean the lens'"
    ),
    "maintenance.scope": N_(
        "give either a machine (one machine) or a machine type (all of a type), not both"
    ),
    "maintenance.interval_missing": N_("give an interval in hours, in days, or both"),
    "maintenance.interval_not_positive": N_("the interval must be more than 0"),
    "maintenance.interval_too_long": N_("the interval can be at most {max}"),
    "maintenance.task_unknown": N_("no maintenance task {task} (see the list of tasks)"),
    "maintenance.not_maintainer": N_(
        "{email} holds no valid maintainer training for {machine_type}; "
        "a maintainer must sign the work off"
    ),
    "maintenance.login_without_member": N_(
        "link this login to your member record (with an email) to sign work off"
    ),
    "maintenance.note_empty": N_("the note is empty: say what was done (parts, findings)"),
    "maintenance.task_other_machine": N_("task {task} is for {expected}, not {machine}"),
    "maintenance.task_not_for_machine": N_("task {task} does not apply to {machine!r}"),
    "maintenance.machine_ambiguous": N_(
        "task {task} applies to several machines ({machines}): say which machine"
    ),
    "maintenance.counter_went_back": N_(
        "the machine's counter ({current} h) is below the last sign-off ({last} h); "
        "is the counter right?"
    ),
    "incident.unknown": N_("no incident {incident}"),
    "incident.closed": N_("incident {incident} is already closed (by {by}, {at} UTC)"),
    "incident.text_empty": N_("the text is empty: say what is wrong"),
    "incident.note_empty": N_("the note is empty: say what was found and done"),
    "session.not_own": N_("members may only see their own sessions"),
    "lockout.reason_empty": N_("the reason is empty: say why, members see it"),
    "retention.unknown_kind": N_("{kind!r} is not kept by the hub: use {kinds}"),
    "retention.telemetry_forever": N_("telemetry cannot be kept for good: give a number of days"),
    "retention.too_long": N_("{kind}: at most {max} days; to keep them for good, say so"),
    "retention.too_short": N_("{kind}: keep them at least {min} days"),
    "retention.events_too_short": N_(
        "{kind}: keep them at least {min} days (an agent may still replay them)"
    ),
}


def describe(error: HubError, translate: Callable[[str], str] = lambda text: text) -> str:
    """The error in words: its template, translated, filled with its params.

    An unknown code or a missing parameter still gives a readable line (the code and the
    params), never an exception while reporting one.
    """
    template = MESSAGES.get(error.code)
    if template is None:
        return f"{error.code} {error.params}" if error.params else error.code
    try:
        return translate(template).format(**error.params)
    except (KeyError, IndexError, ValueError):
        return template.format_map(_Lenient(error.params))


class _Lenient(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"

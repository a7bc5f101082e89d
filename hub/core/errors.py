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
    "member.name_shared": N_(
        "several members are called {name}: give the email or number of the one you mean ({emails})"
    ),
    "member.unknown_id": N_("no member with id {member}"),
    "import.columns_missing": N_(
        "the header must name the columns {expected}; missing: {missing} (found: {found})"
    ),
    "import.columns_unknown": N_("unknown column(s) {unknown}; the columns are {expected}"),
    "import.csv_unreadable": N_(
        "line {line}: not readable as CSV ({reason}); check for a stray quote or line break "
        "in a cell"
    ),
    "import.encoding": N_("the file is neither UTF-8 nor Windows-1252 text"),
    "import.name_empty": N_("empty (give the member's name)"),
    "import.email_invalid": N_("{email!r} is not an email address"),
    "import.email_repeated": N_("{email} is already on line {first}"),
    "import.category_unknown": N_("{category!r} is not one of {categories}"),
    "import.badge_taken": N_("{uid} already belongs to a member"),
    "import.badge_repeated": N_("{uid} is already on line {first}"),
    "import.member_unknown": N_("no member with email {email!r} (import the members first)"),
    "import.machine_type_unknown": N_("{machine_type!r} is not one of {known}"),
    "import.level_unknown": N_("{level!r} is not one of user, trainer, maintainer"),
    "import.expires_invalid": N_("{value!r} is not a date like 2027-06-30"),
    "import.yes_or_no": N_("{value!r} is not yes or no"),
    "import.grantor_unknown": N_("no member with email {email!r}"),
    "import.grantor_not_trainer": N_(
        "{email} is not a trainer for {machine_type} (only a trainer for a machine type may "
        "grant it)"
    ),
    "member.name_empty": N_("give the member's name"),
    "member.email_taken": N_("another member already has email {email}"),
    "member.own_payer": N_("a member cannot be their own payer: leave it empty"),
    "member.field_null": N_("{field} may not be null"),
    "member.has_history": N_(
        "member {member} has badges, trainings, sessions, payees or a login: set their status "
        "to `left`, or erase their personal data"
    ),
    "category.day_without_category": N_(
        "category_from is the day a new category takes effect: give it with the new category"
    ),
    "category.unchanged": N_(
        "the member is already in category {category}; give the day with a new category"
    ),
    "category.after_today": N_(
        "{day} is after today ({today} in the lab); record the change on the day"
    ),
    "category.closed_month": N_(
        "{day} is in or before the closed billing month {month}, whose statements cannot "
        "change; give {open_from} or later"
    ),
    "category.before_latest": N_(
        "{day} is before the member's latest category change, effective {latest}; "
        "give {latest} or later"
    ),
    "category.never_changed": N_("the member's category has never changed"),
    "category.undo_closed_month": N_(
        "the latest change, effective {day}, is in or before the closed billing month {month}, "
        "which was billed with it; correct it with a credit note and a new change"
    ),
    "member.unknown_text": N_(
        "no member with email or number {value!r}: give a member's email or number, "
        "or leave it empty"
    ),
    "badge.uid_invalid": N_(
        "badge uid {uid!r} is not a card UID: give 4, 7 or 10 bytes as hex, e.g. 04A1B2C3"
    ),
    "badge.enrolled": N_("card {uid} is already enrolled (badge {badge}); revoke it first"),
    "badge.unknown": N_("no badge with id {badge}"),
    "badge.not_active": N_("no active badge {uid}"),
    "badge.reader_offline": N_("{machine} is offline: choose a machine whose reader is connected"),
    "maintenance.title_empty": N_(
        "the title is empty: say what is to be done, e.g. 'clean the lens'"
    ),
    "maintenance.scope": N_(
        "give either a machine (one machine) or a machine type (all of a type), not both"
    ),
    "maintenance.interval_missing": N_("give an interval in hours, in days, or both"),
    "maintenance.interval_not_positive": N_("the interval must be more than 0"),
    "maintenance.interval_too_long": N_("the interval can be at most {max}"),
    "maintenance.hours_format": N_("{value!r} is not a number of hours: write it like 50 or 12,5"),
    "maintenance.days_format": N_("{value!r} is not a whole number of days: write it like 90"),
    "maintenance.counter": N_("{value!r} is not a counter: choose busy, session or print hours"),
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
    "user.password_short": N_("the password must have at least {min} characters"),
    "user.username_invalid": N_("the username must be 1 to {max} characters without spaces"),
    "user.exists": N_("a user {username!r} already exists"),
    "user.member_required": N_(
        "a `member` user must be linked to a member (give the member's email)"
    ),
    "user.role_unknown": N_(
        "{role!r} is not a role: use member, trainer, maintainer, manager or admin"
    ),
    "user.unknown_id": N_("no user with id {user}"),
    "user.unknown": N_("no user {username!r}"),
    "token.others_admin_only": N_("only an admin sees or revokes other users' tokens"),
    "token.name_empty": N_("say what the token is for"),
    "token.days_out_of_range": N_("1 to {max} days, or none for a token that does not expire"),
    "token.unknown_id": N_("no token with id {token}"),
    "token.unknown_prefix": N_("no single token with prefix {prefix!r}"),
    "training.not_trainer": N_(
        "only a trainer for {machine_type} may grant or change its trainings"
    ),
    "training.time_zone_missing": N_("give a time zone, e.g. 2027-06-30T00:00:00Z"),
    "training.unknown": N_("no training with id {training}"),
    "training.not_null": N_("{field} may not be null"),
    "training.expired_already": N_("the training would be expired already"),
    "training.type_has_trainers": N_(
        "{machine_type} has trainers already ({names}): one of them grants it"
    ),
    "member.own_data_only": N_("members may only see their own data"),
    "incident.unknown": N_("no incident {incident}"),
    "incident.closed": N_("incident {incident} is already closed (by {by}, {at} UTC)"),
    "incident.text_empty": N_("the text is empty: say what is wrong"),
    "incident.note_empty": N_("the note is empty: say what was found and done"),
    # statistics and the yearly review (hub/reports/inputs.py)
    "stats.not_a_day": N_("{text!r} is not a date; write it as YYYY-MM-DD, e.g. 2026-01-01"),
    "stats.day_out_of_range": N_("{day} is out of range: give a day from {earliest} to {latest}"),
    "stats.window_backwards": N_(
        "{end} is not after the first day, {start}: the end is the day after the last one"
    ),
    "stats.window_too_long": N_("at most {years} years at once; export in parts"),
    "stats.not_a_choice": N_("{value!r} is not one of {allowed}"),
    "stats.share_out_of_range": N_("{value} is not a share of the opening hours: give 0 to 1"),
    "stats.not_a_year": N_("{year} is not a year from {first} to {last}, like 2026"),
    "stats.opening_not_a_day": N_("{name!r} in {spec!r} is not a day; use {days}"),
    "stats.opening_no_times": N_("{entry!r} has no times; e.g. {example!r}"),
    "stats.opening_not_a_range": N_(
        "{text!r} is not a time range like 14:00-19:00; e.g. {example!r}"
    ),
    "stats.opening_closes_first": N_(
        "{text!r}: the lab must close after it opens, the same day, between 00:00 and 23:59; "
        "e.g. {example!r}"
    ),
    "stats.opening_empty": N_("no opening slot in {spec!r}; e.g. {example!r}"),
    # Billing (hub/services/billing/).
    "billing.month_format": N_("{month!r} is not a month: write it like 2026-10"),
    "billing.month_not_over": N_("{month} is not over yet; close it from {next} on"),
    "billing.sessions_open": N_(
        "{count} session(s) of the month have not ended ({sessions}); wait for the machines "
        "to report them (or end them) before closing"
    ),
    "billing.session_member_unknown": N_(
        "session {session}: member {member} is not known to the hub"
    ),
    "billing.session_machine_unknown": N_(
        "session {session}: machine {machine} is not known to the hub"
    ),
    "billing.negative_fee": N_(
        "booking {booking} has a negative fee ({cents} cents); set its fee_cents to 0 or "
        "more, then close the month again"
    ),
    "billing.fee_too_large": N_(
        "the statement of {payer} would total {cents} cents with its booking fees, more than a "
        "statement can hold; correct the bookings' fee_cents, then close the month again"
    ),
    "billing.no_rate": N_(
        "no rate for machine type {machine_type!r} and category {category!r} on {day}; "
        "add one from that day or earlier, then close the month again"
    ),
    "billing.amount_format": N_("{amount!r} is not an amount in euros: write it like 20 or 12,50"),
    "billing.amount_not_positive": N_("the amount must be more than zero"),
    "billing.member_missing": N_("give the member by email or number"),
    "billing.member_unknown": N_(
        "no member with email or number {member!r}; give the member by email or number"
    ),
    "billing.plan": N_("choose prepaid only or pay later"),
    "rate.missing": N_("{fields} must be given"),
    "rate.category": N_("{category!r} is not a member category: give one of {categories}"),
    "rate.day_format": N_("{value!r} is not a day: write it like 2026-10-01"),
    "rate.month_closed": N_(
        "{day} is not after {month}, which is closed: a closed month cannot change; "
        "give a day after it"
    ),
    "rate.basis": N_("{basis!r} must be session or busy"),
    "material.code": N_(
        "{value!r} is not a code: use lowercase letters, digits and dashes, like pla-black"
    ),
    "material.number": N_("{value!r} must be a number from {least} to {most}"),
    "material.name": N_("give a name of 1 to 200 characters"),
    "material.unit": N_("{unit!r} is not a unit: choose one of {units}"),
    "material.exists": N_("a material {material!r} exists already"),
    "material.unknown": N_("no material {material!r} (known: {known})"),
    "spool.exists": N_("a spool {spool!r} exists already"),
    "spool.unknown": N_("no spool {spool!r}"),
    "spool.tag_format": N_(
        "{tag!r} is not a tag: give its UID as hex, 4, 7 or 10 bytes, e.g. 04A1B2C3"
    ),
    "spool.tag_is_badge": N_("tag {tag} is a member's badge: a spool needs a tag of its own"),
    "spool.tag_taken": N_("tag {tag} is spool {spool}'s already"),
    "spool.other_material": N_("spool {spool} is not of {material}"),
    "use.session_unknown": N_("no session {session!r}"),
    "badge.is_spool": N_("{uid} is a spool's tag: a badge must be a card of its own"),
    "billing.offline_jobs": N_(
        "{value!r} is not a way to bill a job the printer dropped: choose one of {choices}"
    ),
    "rate.whole_number": N_("{value!r} must be a whole number, at least {least}"),
    "rates.header_missing": N_("the header lacks {missing}; expected columns: {expected}"),
    "rates.header_unknown": N_("unknown column(s) {unknown}; expected columns: {expected}"),
    "rates.twice": N_(
        "line {line}: the same rate is given twice ({machine_type}, {category}, {day})"
    ),
    "rates.empty": N_("the file has a header but no rate"),
    "rates.too_large": N_("the file is larger than {max_mb} MB; split it"),
    "rates.not_utf8": N_("the file is not UTF-8 text; save the sheet as CSV UTF-8"),
    "statement.unknown": N_("no statement numbered {number!r}"),
    "csv.dialect": N_("{dialect!r} is not a CSV dialect: use {dialects}"),
    # HelloAsso exports (hub/services/helloasso.py)
    "helloasso.kind": N_("{kind!r} is not a HelloAsso export this hub reads: use {kinds}"),
    "helloasso.binary": N_("the file holds NUL characters: export it again from HelloAsso as CSV"),
    "helloasso.columns_missing": N_(
        "this is not HelloAsso's {kind} export: missing column(s) {missing} (found: {found})"
    ),
    "helloasso.empty": N_("the {kind} export has a header but no line"),
    "helloasso.line_repeated": N_("the same order line is already on line {first}"),
    "helloasso.reference": N_(
        "{value!r} is not an order reference (empty, too long or with control characters)"
    ),
    "helloasso.not_paid": N_("the order is {status!r}, not paid: it is left out"),
    "helloasso.date": N_("{value!r} is not a date like 31/12/2026 or 31/12/2026 14:05"),
    "helloasso.amount": N_("{value!r} is not an amount like 20,00"),
    "helloasso.tier_unmapped": N_(
        "the tier {tier!r} gives no category: map it with `atelier hub helloasso tier`"
    ),
    "helloasso.topup_amount": N_("{value!r}: a top-up is more than 0 and at most 100 000 €"),
    "helloasso.tier_name": N_(
        "{tier!r} is not a tier name (empty, over 200 characters or with control characters)"
    ),
    "helloasso.too_many_tiers": N_("too many tiers mapped: forget the ones no longer sold"),
    # the books for Paheko and Dolibarr (hub/services/accounting.py)
    "books.unknown_field": N_("{field!r} is not one of the lab's accounts or journals"),
    "books.account_code": N_(
        "{field}: {value!r} is not an account number: 1 to 20 letters or digits, e.g. 706"
    ),
    "books.journal_code": N_(
        "{field}: {value!r} is not a journal code: 1 to 10 letters or digits, e.g. VT"
    ),
    "books.format": N_("{format!r} is not a books format: use {formats}"),
    # the lab's legal identity (hub/services/lab.py)
    "lab.siret_format": N_("{siret!r} is not a SIRET: write its 14 digits, e.g. 123 456 789 00012"),
    "lab.siret_checksum": N_(
        "{siret} is not a valid SIRET (its check digit is wrong): copy it again from your "
        "Kbis or the INSEE notice"
    ),
    "lab.rna_format": N_("{rna!r} is not an RNA number: write W and nine digits, e.g. W751234567"),
    "lab.control_character": N_("{field}: remove the control characters (tabs, NUL...)"),
    "lab.too_long": N_("{field}: at most {max} characters"),
    "lab.name_empty": N_("give the lab's name as it is registered"),
    "lab.locale": N_("{locale!r} is not a language of the hub: use {locales}"),
    "lab.unknown_field": N_("{field!r} is not part of the lab's identity"),
    "credit.no_session": N_("name at least one session of the statement to credit"),
    "credit.already_credited": N_("{sessions} already credited on {number}"),
    "credit.not_on_statement": N_("session(s) {sessions} are not on statement {number}"),
    "credit.reason_empty": N_("a credit note needs a reason the member can read"),
    "session.not_own": N_("members may only see their own sessions"),
    # machines and machine types (hub/services/machine_records.py)
    "machine.exists": N_("a machine {machine!r} already exists"),
    "machine.slug_invalid": N_(
        "{value!r} is not a valid id: use 1-63 lowercase letters, digits, '-' or '_', "
        "starting with a letter or digit"
    ),
    "machine.name_empty": N_("give the machine's name"),
    "machine.not_null": N_("{field} may not be null"),
    "machine.kind_unknown": N_("{kind!r} is not a kind of machine: use {kinds}"),
    "machine.has_history": N_(
        "this machine has recorded use; lock it out instead, the history stays"
    ),
    "machine_type.exists": N_("a machine type {machine_type!r} already exists"),
    "machine_type.name_empty": N_("give the machine type's name"),
    "machine_type.unknown_id": N_("no machine type {machine_type}"),
    "plug_topic.length": N_("a plug topic has 1 to {max} characters"),
    "plug_topic.not_ascii": N_(
        "plug topic {topic!r}: use printable ASCII without spaces, e.g. tele/plug-laser/SENSOR"
    ),
    "plug_topic.wildcard": N_("plug topic {topic!r}: name the one topic, without + or # wildcards"),
    "plug_topic.reserved": N_("plug topic {topic!r}: not a $ topic nor one of Atelier's own"),
    # the broker's accounts (hub/services/broker_accounts.py, `atelier hub mqtt-credentials`)
    "broker.site_invalid": N_(
        "{value!r} is not a site id: use 1-63 lowercase letters, digits, '-' or '_', "
        "starting with a letter or digit"
    ),
    "broker.plug_topic_stored": N_(
        "machine {machine}'s plug topic {topic!r} cannot be an ACL line: correct it on the "
        "machine's page"
    ),
    "broker.account_twice": N_(
        "broker account {username!r} would be both {first} and {second}: rename the machine "
        "or change its agent_id"
    ),
    "broker.account_is_hub": N_(
        "broker account {username!r} would be both {first} and {second}: rename the machine "
        "or change its agent_id (or the hub's mqtt_username)"
    ),
    "booking.end_before_start": N_("the end ({ends_at}) must be after the start ({starts_at})"),
    "booking.in_past": N_("this slot is in the past (it is now {now}): pick a later one"),
    "booking.not_bookable": N_("this machine cannot be booked: use it when it is free"),
    "booking.member_missing": N_("say whom the booking is for"),
    "booking.not_trained": N_(
        "only members trained on this machine type may book it: ask a trainer for the "
        "training first"
    ),
    "booking.off_slot": N_(
        "bookings start and last in steps of {slot_minutes} minutes (e.g. 14:00 to 15:30)"
    ),
    "booking.too_short": N_("a booking lasts at least {min_minutes} minutes"),
    "booking.too_long": N_(
        "a booking lasts at most {max_minutes} minutes: book two if you need more"
    ),
    "booking.category_may_not_book": N_("members of category {category} may not book this machine"),
    "booking.too_far_ahead": N_(
        "members of category {category} may book at most {days} days ahead"
    ),
    "booking.closed": N_(
        "the lab is closed during part of this slot: book within the opening hours"
    ),
    "booking.week_hours": N_(
        "at most {hours} hours booked per week (you have {booked_hours} booked): pick a "
        "shorter slot or another week"
    ),
    "booking.maintenance_due": N_(
        "maintenance ({task}) is due from {starts_at} to {ends_at}: pick another slot"
    ),
    "booking.taken": N_(
        "the machine is already booked from {starts_at} to {ends_at}: pick another slot"
    ),
    "booking.blocked": N_(
        "the machine is held by the lab from {starts_at} to {ends_at} (training or event): "
        "pick another slot"
    ),
    "booking.not_booked": N_("this booking is {status}: only a booking still to come can change"),
    "booking.not_yours": N_(
        "this is another member's booking: only they or the staff may change it"
    ),
    "booking.started": N_("this booking started at {starts_at}: ask the staff to change it"),
    "booking.rules_scope": N_("give either a machine type or a machine, not both"),
    "booking.rule_unknown": N_("{name!r} is not a booking rule (the rules are {known})"),
    "booking.rules_invalid": N_("these rules do not hold together: {reason}"),
    "booking.rule_invalid": N_("{value!r} is not a valid value for {name}"),
    "booking.period_empty": N_("the end of the period must be after its start ({since})"),
    "booking.period_too_long": N_("a period spans at most {days} days"),
    "booking.status_unknown": N_("{status!r} is not a booking status (use {known})"),
    "booking.limit": N_("the limit is 1 to {max}"),
    "booking.unknown": N_("no booking {booking}"),
    "booking.naive_time": N_("give the time with its zone, e.g. 2027-03-01T14:00:00+01:00"),
    "booking.time_range": N_("this date is out of range: give one between 2000 and 2200"),
    "booking.staff_only": N_("only the staff may book for another member or block a machine"),
    "booking.member_inactive": N_("{member} is {status}, not an active member: they cannot book"),
    "booking.note_invalid": N_("the note holds at most {max} characters and no NUL"),
    "booking.time_invalid": N_("give a day like 2027-03-01 and a time like 14:30"),
    "lockout.reason_empty": N_("the reason is empty: say why, members see it"),
    "retention.unknown_kind": N_("{kind!r} is not kept by the hub: use {kinds}"),
    "retention.telemetry_forever": N_("telemetry cannot be kept for good: give a number of days"),
    "retention.too_long": N_("{kind}: at most {max} days; to keep them for good, say so"),
    "retention.too_short": N_("{kind}: keep them at least {min} days"),
    "retention.events_too_short": N_(
        "{kind}: keep them at least {min} days (an agent may still replay them)"
    ),
    # wall displays (hub/services/displays.py, `atelier hub display`, /web/displays)
    "display.name_empty": N_("say which screen it is for, e.g. hall screen"),
    "display.name_too_long": N_("a display's name has at most {max} characters"),
    "display.unknown": N_(
        "no single display {display!r}: give its number or the start of its secret, as the "
        "list of displays shows them"
    ),
    "display.grouping_unknown": N_("{group!r} is not a grouping: use {known}"),
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

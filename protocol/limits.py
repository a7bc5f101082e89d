"""What the hub's database can hold, stated once: the message models refuse the rest, and the
hub's columns and migrations are sized from the same constants.

A value the protocol accepts must be storable on SQLite and on PostgreSQL alike: PostgreSQL
refuses a NUL in text, NaN or Infinity in JSON, an integer wider than its column and a string
longer than its VARCHAR, and Python's datetime overflows near years 1 and 9999. Before these
checks one such envelope from any agent account could stop the ingest.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import Enum
from typing import Any

# --- sizes ---------------------------------------------------------------------------------
# An event is a small fact; anything near this size is a bug or an attack. Checked on the raw
# bytes before any parsing, so a huge payload costs nothing to refuse.
MAX_PAYLOAD_BYTES = 16 * 1024
# The broker's `message_size_limit` (deploy/mosquitto/mosquitto.conf.j2, the Ansible broker
# role, the tests' broker). Above MAX_PAYLOAD_BYTES on purpose: a message up to this size
# reaches the hub, which keeps it as a dead letter (too_large) and acknowledges it, so an agent
# never loops on it. A larger one is refused by the broker itself, which Mosquitto 2.0 does by
# dropping it (MQTT 3.1.1) or disconnecting the client (MQTT 5): no honest agent sends one, and
# it cannot queue megabytes for the hub.
BROKER_MESSAGE_SIZE_LIMIT = 4 * MAX_PAYLOAD_BYTES
# A dead letter keeps at most this much of its payload (with the full size and a sha256), so a
# flood of refused messages cannot fill the disk.
DEAD_LETTER_PAYLOAD_BYTES = 4 * 1024

# --- integers, by the column width that stores them -----------------------------------------
INT32_MAX = 2**31 - 1  # INTEGER
INT64_MAX = 2**63 - 1  # BIGINT
INT64_MIN = -(2**63)
SEQ_MAX = INT64_MAX  # event.seq, agent_seq.max_seq and .seen are BIGINT
COUNT_MAX = INT32_MAX  # small counters sent by agents (recovered sessions, backlog)
VERSION_MAX = INT64_MAX  # allow-list versions the agent reports
# Numbers inside JSON (data, status, telemetry) are stored as JSON text: bounded so that sums
# and means over them (telemetry compaction) stay finite and fit a BIGINT when cast.
JSON_INT_MIN = INT64_MIN
JSON_INT_MAX = INT64_MAX
JSON_FLOAT_ABS_MAX = 1e15
# Nesting in free-form JSON: enough for any real payload, far below any recursion limit.
JSON_DEPTH_MAX = 16

# --- time ------------------------------------------------------------------------------------
# Any timestamp on the wire. 1970 admits a Raspberry Pi that booted without its clock (its
# events are kept and the clock-jump handling dates them); both ends are far from datetime's
# and the databases' own limits, even after subtracting a duration.
TS_MIN = datetime(1970, 1, 1, tzinfo=UTC)
TS_MAX = datetime(2200, 1, 1, tzinfo=UTC)
# A session, busy period or job longer than a year is a broken counter, not a fact.
DURATION_MAX_S = 366 * 24 * 3600.0
# A session's or busy period's energy: a 100 kW machine running for a year is under a million kWh.
ENERGY_MAX_KWH = 1_000_000.0
# A print's filament: 10 km is some 30 kg of 1.75 mm PLA, past any spool.
FILAMENT_MAX_MM = 10_000_000.0
# An agent's uptime in its status: twenty years is past any Pi's life.
UPTIME_MAX_S = 20 * 366 * 24 * 3600.0

# --- text lengths, as the columns that store them ---------------------------------------------
SLUG_MAX_CHARS = 63  # site, machine, machine type codes
MEMBER_REF_MAX_CHARS = 20  # "m-" + 8 hex
BADGE_MAX_CHARS = 20  # a 10-byte UID in hex
SESSION_ID_MAX_CHARS = 64
SOURCE_MAX_CHARS = 20  # what reported busy: beam, print, current...
REASON_MAX_CHARS = 40  # a session's end reason, a dead letter's reason
JOB_ID_MAX_CHARS = 100
JOB_FILE_MAX_CHARS = 255
JOB_ERROR_MAX_CHARS = 500
MODE_MAX_CHARS = 20
DEAD_LETTER_TOPIC_MAX_CHARS = 512
DEAD_LETTER_DETAIL_MAX_CHARS = 2000
# Any other text on the wire (notes, versions, free-form data): the payload limit bounds the
# total, this bounds one string.
TEXT_MAX_CHARS = 4096


def check_timestamp(value: datetime) -> datetime:
    """`value` if it lies in [TS_MIN, TS_MAX), else ValueError naming the window."""
    if not TS_MIN <= value < TS_MAX:
        raise ValueError(
            f"timestamp {value.isoformat()} is outside {TS_MIN.year}-{TS_MAX.year}; "
            "check the agent's clock"
        )
    return value


def check_text(value: str) -> str:
    """`value` if a database can store it: no NUL, no lone surrogate, at most TEXT_MAX_CHARS."""
    if len(value) > TEXT_MAX_CHARS:
        raise ValueError(f"text is {len(value)} characters, the limit is {TEXT_MAX_CHARS}")
    if "\x00" in value:
        raise ValueError("text contains a NUL character, which no database column can store")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("text contains a lone UTF-16 surrogate (not valid Unicode)") from None
    return value


def check_json(value: Any, where: str = "", depth: int = 0) -> None:
    """Raise ValueError (naming the path) unless `value` is JSON every database stores as is:
    finite bounded numbers, clean text in keys and values, at most JSON_DEPTH_MAX levels."""
    if depth > JSON_DEPTH_MAX:
        raise ValueError(f"{where or 'value'}: nested deeper than {JSON_DEPTH_MAX} levels")
    if value is None or isinstance(value, bool | datetime | uuid.UUID | Enum):
        return  # (the last three come from typed fields, already checked)
    if isinstance(value, int):
        if not JSON_INT_MIN <= value <= JSON_INT_MAX:
            raise ValueError(f"{where or 'value'}: integer {value} does not fit 64 bits")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where or 'value'}: {value} is not a number JSON can carry")
        if abs(value) > JSON_FLOAT_ABS_MAX:
            raise ValueError(f"{where or 'value'}: {value} is beyond ±{JSON_FLOAT_ABS_MAX:g}")
        return
    if isinstance(value, str):
        try:
            check_text(value)
        except ValueError as exc:
            raise ValueError(f"{where or 'value'}: {exc}") from None
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where or 'value'}: key {key!r} is not text")
            try:
                check_text(key)
            except ValueError as exc:
                raise ValueError(f"{where or 'value'}: a key: {exc}") from None
            check_json(item, f"{where}.{key}" if where else key, depth + 1)
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_json(item, f"{where}[{index}]", depth + 1)
        return
    raise ValueError(f"{where or 'value'}: {type(value).__name__} is not JSON")


def fit_text(value: str, max_chars: int = TEXT_MAX_CHARS) -> str:
    """`value` as a column stores it: NUL and lone surrogates replaced (U+FFFD), cut to
    `max_chars`. For text from outside the agent (a printer's file name), never for ids."""
    value = value.replace("\x00", "\ufffd")
    if not value.isascii():
        value = value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return value[:max_chars]


def fit_json(value: Any, depth: int = 0) -> Any:
    """`value` made to pass `check_json`: text fitted, numbers past 64 bits or ±JSON_FLOAT_ABS_MAX
    clamped to them, NaN and infinities (no number at all) as None, keys as text, nesting past
    JSON_DEPTH_MAX as None."""
    if depth > JSON_DEPTH_MAX:
        return None
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return min(max(value, JSON_INT_MIN), JSON_INT_MAX)
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return min(max(value, -JSON_FLOAT_ABS_MAX), JSON_FLOAT_ABS_MAX)
    if isinstance(value, str):
        return fit_text(value)
    if isinstance(value, Mapping):
        return {fit_text(str(k)): fit_json(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [fit_json(v, depth + 1) for v in value]
    return value

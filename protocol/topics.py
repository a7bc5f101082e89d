"""The MQTT topic tree: atelier/v1/{site}/{machine}/{kind}."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from protocol.limits import SLUG_MAX_CHARS

ROOT = "atelier/v1"

# Site and machine ids appear in topics, file names and broker ACLs, so they are kept to a
# conservative slug: no MQTT wildcards, no slashes, no spaces.
SLUG_PATTERN = rf"^[a-z0-9][a-z0-9_-]{{0,{SLUG_MAX_CHARS - 1}}}$"
_SLUG = re.compile(SLUG_PATTERN)


class TopicKind(StrEnum):
    EVENT = "event"  # edge -> hub, QoS 1, journaled
    TELEMETRY = "telemetry"  # edge -> hub, QoS 0
    STATUS = "status"  # edge -> hub, retained, last will "offline"
    ACL = "acl"  # hub -> edge, retained, signed allow-list
    CMD = "cmd"  # hub -> edge, QoS 1


@dataclass(frozen=True, slots=True)
class TopicParts:
    site: str
    machine: str
    kind: TopicKind


def is_slug(value: str) -> bool:
    return bool(_SLUG.match(value))


def check_slug(value: str, what: str) -> str:
    if not is_slug(value):
        raise ValueError(
            f"{what} {value!r} is not a valid id: use 1-63 lowercase letters, digits, '-' or '_',"
            " starting with a letter or digit"
        )
    return value


def topic(site: str, machine: str, kind: TopicKind) -> str:
    """The topic for one machine's stream of one kind."""
    check_slug(site, "site")
    check_slug(machine, "machine")
    return f"{ROOT}/{site}/{machine}/{kind.value}"


def subscription(kind: TopicKind, site: str = "+", machine: str = "+") -> str:
    """A subscription filter, e.g. all events of all machines: atelier/v1/+/+/event."""
    return f"{ROOT}/{site}/{machine}/{kind.value}"


def parse_topic(value: str) -> TopicParts:
    """Split a concrete topic; raises ValueError naming what is wrong."""
    parts = value.split("/")
    if len(parts) != 5 or f"{parts[0]}/{parts[1]}" != ROOT:
        raise ValueError(f"topic {value!r} is not of the form {ROOT}/<site>/<machine>/<kind>")
    site, machine, kind = parts[2], parts[3], parts[4]
    check_slug(site, "site")
    check_slug(machine, "machine")
    try:
        return TopicParts(site=site, machine=machine, kind=TopicKind(kind))
    except ValueError:
        raise ValueError(
            f"topic {value!r} has unknown kind {kind!r}; expected one of "
            + ", ".join(k.value for k in TopicKind)
        ) from None

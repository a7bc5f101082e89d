"""Bookings end to end: a real Mosquitto, the hub's real ingest, allow-list publisher and
booking release, two real agents (laser-1 and printer-1) on the real clock; then the same
decisions with the broker stopped, taken from the last signed list."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session, select

from edge.agent import Agent
from hub.booking_watch import run_release
from hub.models import BillingRate, Booking, Event, Member
from hub.services import bookings
from hub.services.bookings import Actor
from tests.integration.test_agent_offline import Hub, hub, started_agent  # noqa: F401
from tests.support.processes import wait_until

TZ = ZoneInfo("Europe/Paris")
HUGO, DURAND, INES = "04C3D4E5", "04D4E5F6", "04E5F607"  # laser: Hugo, Durand; printer: Inès
STAFF = Actor(name="test:staff", staff=True)

pytestmark = pytest.mark.slow


def minute(now: datetime, offset: int) -> datetime:
    return now.replace(second=0, microsecond=0) + timedelta(minutes=offset)


def member_id(session: Session, email: str) -> int:
    row = session.exec(select(Member).where(Member.email == email)).one()
    assert row.id is not None
    return row.id


@pytest.fixture
def booked_lab(hub: Hub) -> Iterator[tuple[Hub, dict[str, Any]]]:  # noqa: F811
    """The demo lab with one-minute slots on lasers and printers, rates, and three bookings
    made ten minutes ago: Hugo holds laser-1 from this minute, Léa printer-1 from five
    minutes on, Inès held printer-2 until three minutes ago and never came."""
    now = datetime.now(UTC)
    made = now - timedelta(minutes=10)
    values = {
        "bookable": True,
        "slot_minutes": 1,
        "min_minutes": 1,
        "max_minutes": 240,
        "grace_minutes": 2,
        "no_show_fee": True,
    }
    with Session(hub.engine) as session:
        for mtype in ("laser", "printer"):
            bookings.set_rules(session, machine_type=mtype, values=values, actor="test")
        session.add(
            BillingRate(
                machine_type="printer",
                category="professional",
                effective_from=date(2020, 1, 1),
                cents_per_hour=600,
            )
        )
        session.commit()
        slots = {
            "hugo": bookings.book(
                session,
                machine="laser-1",
                starts_at=minute(now, 0),
                ends_at=minute(now, 30),
                member_id=member_id(session, "hugo@example.org"),
                actor=STAFF,
                now=made,
                tz=TZ,
            ),
            "lea": bookings.book(
                session,
                machine="printer-1",
                starts_at=minute(now, 5),
                ends_at=minute(now, 35),
                member_id=member_id(session, "lea@example.org"),
                actor=STAFF,
                now=made,
                tz=TZ,
            ),
            "ines": bookings.book(
                session,
                machine="printer-2",
                starts_at=minute(now, -8),
                ends_at=minute(now, -3),
                member_id=member_id(session, "ines@example.org"),
                actor=STAFF,
                now=made,
                tz=TZ,
            ),
        }
        ids = {name: row.id for name, row in slots.items()}
        ends = {name: row.ends_at for name, row in slots.items()}
    hub.publisher.publish()
    yield hub, {"ids": ids, "ends": ends}


def events(lab: Hub, machine: str, type_: str) -> list[Event]:
    return [e for e in lab.events(machine) if e.type == type_]


def decisions(laser: Agent, printer: Agent) -> list[tuple[str, str | None]]:
    """The acceptance's decisions, as (decision, reason), leaving both machines free."""
    out = []
    durand = laser.tap(DURAND)  # another trained member during Hugo's slot
    out.append((durand["decision"], durand["reason"]))
    hugo = laser.tap(HUGO)  # the booker
    out.append((hugo["decision"], hugo["reason"]))
    out.append((laser.tap(HUGO)["decision"], None))  # badge-out
    walk_in = printer.tap(INES)  # Léa's booking starts in five minutes
    out.append((walk_in["decision"], walk_in["reason"]))
    wait_until(
        lambda: printer.machine.session is not None and printer.machine.session.until_warned,
        timeout=5,
        what="the walk-in's warning",
    )
    out.append((printer.tap(INES)["decision"], None))  # badge-out
    return out


EXPECTED = [
    ("denied", "booked"),
    ("granted", None),
    ("ended", None),
    ("granted", None),
    ("ended", None),
]


def test_bookings_are_honoured_online_and_with_the_broker_stopped(
    booked_lab: tuple[Hub, dict[str, Any]],
) -> None:
    lab, made = booked_lab
    laser, printer = started_agent(lab, "laser-1"), started_agent(lab, "printer-1")
    try:
        assert laser.allowlist is not None and len(laser.allowlist.bookings) == 1
        assert decisions(laser, printer) == EXPECTED
        wait_until(
            lambda: (
                events(lab, "laser-1", "badge.denied")
                and events(lab, "printer-1", "session.warned")
            ),
            timeout=15,
            what="the denial and the warning at the hub",
        )
        (denied,) = events(lab, "laser-1", "badge.denied")
        assert denied.data["reason"] == "booked"
        assert denied.data["free_at"] == made["ends"]["hugo"].isoformat().replace("+00:00", "Z")
        (warned,) = events(lab, "printer-1", "session.warned")
        assert warned.data["member"] and warned.data["until"]
        started = [e for e in events(lab, "printer-1", "session.started")]
        assert started[0].data["until"] == warned.data["until"]

        wait_until(
            lambda: events(lab, "laser-1", "session.ended"),
            timeout=15,
            what="Hugo's session at the hub",
        )
        # The no-show on printer-2: released by the hub's watch, priced by billing.
        published: list[list[str]] = []
        result = run_release(lab.engine, now=datetime.now(UTC), tz=TZ, publish=published.append)
        assert made["ids"]["ines"] in result.no_shows and published == [["printer-2"]]
        assert made["ids"]["hugo"] in result.used  # Hugo badged on within the grace
        with Session(lab.engine) as session:
            ines = session.get(Booking, made["ids"]["ines"])
            assert ines is not None and ines.status == "no_show"
            assert ines.fee_cents == 50  # five minutes at 6 EUR/h
            hugo = session.get(Booking, made["ids"]["hugo"])
            assert hugo is not None and hugo.status == "used" and hugo.session_id

        # The broker goes away: the same decisions from the last signed lists.
        lab.broker.stop()
        wait_until(
            lambda: not laser.state()["connected"] and not printer.state()["connected"],
            timeout=15,
            what="the agents to notice the broker is gone",
        )
        assert decisions(laser, printer) == EXPECTED
        lab.broker.start()
        wait_until(
            lambda: (
                len(events(lab, "laser-1", "badge.denied")) == 2
                and len(events(lab, "printer-1", "session.warned")) == 2
            ),
            timeout=60,
            what="the offline denial and warning to reach the hub",
        )
        assert all(e.data["reason"] == "booked" for e in events(lab, "laser-1", "badge.denied"))
    finally:
        laser.stop()
        printer.stop()

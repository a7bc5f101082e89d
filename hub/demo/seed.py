"""Demo data: a small lab with one laser cutter, two 3D printers and a CNC mill."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlmodel import Session, select

from hub.models import (
    Badge,
    Machine,
    MachineKind,
    MachineType,
    Member,
    MemberCategory,
    Role,
    Training,
    TrainingLevel,
    User,
)

MACHINE_TYPES = [
    ("laser", "Laser cutter", MachineKind.LASER),
    ("printer", "3D printer", MachineKind.PRINTER),
    ("cnc", "CNC mill", MachineKind.CNC),
]
MACHINES = [
    ("laser-1", "Trotec Speedy 100", "laser", "Atelier bois"),
    ("printer-1", "Prusa MK4 #1", "printer", "Salle impression"),
    ("printer-2", "Prusa MK4 #2", "printer", "Salle impression"),
    ("cnc-1", "Shapeoko 4", "cnc", "Atelier bois"),
]
# name, email, category, badge uid, trainings (type, level)
MEMBERS = [
    (
        "Camille Martin",
        "camille@example.org",
        MemberCategory.STAFF,
        "04A1B2C3",
        [
            ("laser", TrainingLevel.TRAINER),
            ("printer", TrainingLevel.TRAINER),
            ("cnc", TrainingLevel.MAINTAINER),
        ],
    ),
    (
        "Léa Bernard",
        "lea@example.org",
        MemberCategory.STUDENT,
        "04B2C3D4",
        [("printer", TrainingLevel.USER)],
    ),
    (
        "Hugo Petit",
        "hugo@example.org",
        MemberCategory.INDIVIDUAL,
        "04C3D4E5",
        [("laser", TrainingLevel.USER), ("printer", TrainingLevel.USER)],
    ),
    (
        "Atelier Durand SARL",
        "contact@durand.example",
        MemberCategory.COMPANY,
        "04D4E5F6",
        [("cnc", TrainingLevel.USER), ("laser", TrainingLevel.USER)],
    ),
    (
        "Inès Moreau",
        "ines@example.org",
        MemberCategory.PROFESSIONAL,
        "04E5F607",
        [("printer", TrainingLevel.USER), ("cnc", TrainingLevel.USER)],
    ),
    ("Nathan Roux", "nathan@example.org", MemberCategory.INDIVIDUAL, "04F60718", []),
]
UNTRAINED_BADGE = "04F60718"


def seed_demo(session: Session, *, site: str = "lab") -> None:
    """Idempotent: rows that exist (by code, or by badge uid) are left as they are."""
    types: dict[str, MachineType] = {}
    for code, name, kind in MACHINE_TYPES:
        mtype = session.exec(select(MachineType).where(MachineType.code == code)).first()
        if mtype is None:
            mtype = MachineType(code=code, name=name, kind=kind)
            session.add(mtype)
            session.flush()
        types[code] = mtype
    for code, name, type_code, location in MACHINES:
        if session.exec(select(Machine).where(Machine.code == code)).first() is None:
            mtype = types[type_code]
            assert mtype.id is not None
            session.add(
                Machine(
                    code=code,
                    name=name,
                    site=site,
                    location=location,
                    kind=mtype.kind,
                    machine_type_id=mtype.id,
                    agent_id=code,
                )
            )
    now = datetime.now(UTC)
    trainer: Member | None = None
    for name, email, category, uid, trainings in MEMBERS:
        if session.exec(select(Badge).where(Badge.uid == uid)).first() is not None:
            continue
        member = Member(name=name, email=email, category=category)
        session.add(member)
        session.flush()
        assert member.id is not None
        trainer = trainer or member
        session.add(Badge(uid=uid, member_id=member.id))
        for type_code, level in trainings:
            mtype = types[type_code]
            assert mtype.id is not None
            session.add(
                Training(
                    member_id=member.id,
                    machine_type_id=mtype.id,
                    level=level,
                    granted_by_id=trainer.id,
                    granted_at=now,
                    expires_at=now + timedelta(days=730),
                )
            )
    session.commit()


def demo_badges(session: Session) -> list[tuple[str, str]]:
    """(badge uid, member name) of every seeded member, for the simulated taps."""
    rows = session.exec(select(Badge, Member).join(Member)).all()
    return [(badge.uid, member.name) for badge, member in rows]


# Logins of the demo lab, all with DEMO_PASSWORD: never for a real lab.
DEMO_PASSWORD = "atelier-demo"
DEMO_USERS = [
    ("admin", Role.ADMIN, None),
    ("manager", Role.MANAGER, None),
    ("camille", Role.TRAINER, "camille@example.org"),
    ("hugo", Role.MEMBER, "hugo@example.org"),
]


def seed_demo_users(session: Session, password: str = DEMO_PASSWORD) -> list[str]:
    """Idempotent: the demo's logins, linked to their members."""
    from hub.services.accounts import create_user

    made = []
    for username, role, email in DEMO_USERS:
        if session.exec(select(User).where(User.username == username)).first() is not None:
            continue
        member = (
            session.exec(select(Member).where(Member.email == email)).first() if email else None
        )
        create_user(session, username=username, password=password, role=role, member=member)
        made.append(username)
    session.commit()
    return made

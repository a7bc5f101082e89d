"""Who is trained, and who may train: the access blocks about people, as pure rules.

A training is valid until its `expires_at` (exclusive; None: for good). A member may grant or
change a machine type's trainings when they hold a valid training of a trainer's level for it:
`trainer` or `maintainer` (a maintainer also inducts). The hub's queries that filter
trainings in SQL (hub/services/trainings.py) are tested equal to these rules.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

# Training levels (hub.models.TrainingLevel's values) that may train others.
TRAINER_LEVELS = frozenset({"trainer", "maintainer"})


@dataclass(frozen=True)
class TrainingFacts:
    """What the rules need of a training: its level and until when it holds."""

    level: str
    expires_at: datetime | None


def training_valid(expires_at: datetime | None, now: datetime) -> bool:
    """A training holds at `now` unless it has expired (its end is exclusive)."""
    return expires_at is None or expires_at > now


def may_train(training: TrainingFacts, now: datetime) -> bool:
    """This training lets its holder grant the type's trainings at `now`."""
    return training.level in TRAINER_LEVELS and training_valid(training.expires_at, now)


def is_trainer(trainings: Iterable[TrainingFacts], now: datetime) -> bool:
    """Any of a member's trainings for one machine type makes them its trainer at `now`."""
    return any(may_train(training, now) for training in trainings)

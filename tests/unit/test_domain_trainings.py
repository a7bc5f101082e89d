"""The access blocks about people (hub/domain/trainings.py): a training's validity and the
trainer level, with plain values and an explicit `now`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from hub.domain.trainings import TrainingFacts, is_trainer, may_train, training_valid
from hub.models import TrainingLevel

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def test_a_training_ends_at_its_expiry_exactly() -> None:
    assert training_valid(None, NOW)
    assert training_valid(NOW + timedelta(microseconds=1), NOW)
    assert not training_valid(NOW, NOW)
    assert not training_valid(NOW - timedelta(days=1), NOW)


def test_trainers_and_maintainers_train_users_do_not() -> None:
    assert set(TrainingLevel) >= {TrainingLevel.TRAINER, TrainingLevel.MAINTAINER}
    for level in TrainingLevel:
        facts = TrainingFacts(level.value, None)
        assert may_train(facts, NOW) is (level is not TrainingLevel.USER)
    assert not may_train(TrainingFacts("trainer", NOW), NOW)  # expired this instant
    assert not is_trainer([], NOW)
    assert is_trainer([TrainingFacts("user", None), TrainingFacts("maintainer", None)], NOW)


@given(
    trainings=st.lists(
        st.builds(
            TrainingFacts,
            level=st.sampled_from([lv.value for lv in TrainingLevel]),
            expires_at=st.none()
            | st.datetimes(
                min_value=datetime(1, 1, 2),
                max_value=datetime(9999, 12, 30),
                timezones=st.just(UTC),
            ),
        ),
        max_size=6,
    )
)
def test_a_member_trains_iff_one_of_their_trainings_lets_them(
    trainings: list[TrainingFacts],
) -> None:
    assert is_trainer(trainings, NOW) == any(
        t.level != "user" and (t.expires_at is None or t.expires_at > NOW) for t in trainings
    )

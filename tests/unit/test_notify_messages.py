"""Every notification kind is worded in English and French, whatever its params hold."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.notify.messages import KINDS, render
from hub.services.notification_preferences import KINDS as CHOOSABLE
from hub.web.i18n import translator

PARAMS = ("machine", "file", "error", "note", "source", "lab", "since", "count", "expires")


def test_every_kind_a_person_may_choose_has_words_in_both_languages() -> None:
    assert set(CHOOSABLE) <= set(KINDS)
    french = translator("fr")
    for subject, body in KINDS.values():
        assert french.gettext(subject) != subject and french.gettext(body) != body


def test_far_durations_do_not_break_a_message() -> None:
    def text(duration: object) -> str:
        params = {"machine": "m", "file": "f", "duration_s": duration}
        return render("print.failed", "en", params).text

    for unknown in (float("inf"), float("-inf"), float("nan"), None, "soon"):
        assert "after ?:" in text(unknown)
    assert "after 0 min 00 s:" in text(-5)
    assert "after 277 h 46 min:" in text(10**6)
    assert " h " in text(10**30)  # absurd, but a message all the same


@settings(max_examples=40, deadline=None)
@given(
    kind=st.sampled_from(sorted(KINDS)),
    language=st.sampled_from(["en", "fr", "de", ""]),
    values=st.fixed_dictionaries(
        {"machine": st.text(max_size=300)},
        optional={name: st.text(max_size=300) for name in PARAMS[1:]}
        | {"duration_s": st.one_of(st.floats(), st.integers(), st.text(max_size=5))},
    ),
)
def test_any_params_render_and_html_is_escaped(
    kind: str, language: str, values: dict[str, object]
) -> None:
    values = {**values, "machine": "<b>" + str(values["machine"])}
    rendered = render(kind, language, values)
    assert rendered.subject and rendered.text
    assert "<b>" not in rendered.html  # a machine named with markup is shown, not obeyed

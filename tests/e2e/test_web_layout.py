"""Issue 18 item 5 over HTTP, on SQLite and PostgreSQL: an HTML 404 page and a favicon, the
statistics dates refused under their box with the form kept, and the rates import answering
in the reader's language. The 390 px walk and the rates card's layout are in
tests/e2e/test_browser_layout.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.app import create_app
from hub.core.settings import get_settings
from hub.web.i18n import LANG_COOKIE
from tests.e2e.web import csrf_of, sign_in
from tests.support.api import PASSWORD, role_tokens
from tests.support.databases import demo_lab


@pytest.fixture
def hub(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    with demo_lab(database_url) as engine:
        role_tokens(engine)
        settings_ = get_settings(None, database_url=database_url, data_dir=tmp_path)
        with TestClient(create_app(settings_, start_ingest=False)) as client:
            yield client


def test_an_unknown_address_is_a_page_and_the_api_keeps_its_json(hub: TestClient) -> None:
    signed_out = hub.get("/web/no-such-page")
    assert signed_out.status_code == 404
    assert signed_out.headers["content-type"].startswith("text/html")
    assert "Page not found" in signed_out.text and "no page at this address" in signed_out.text
    sign_in(hub, "test-manager", PASSWORD)
    hub.cookies.set(LANG_COOKIE, "fr")
    signed_in = hub.get("/somewhere/else")
    assert signed_in.status_code == 404 and "Page introuvable" in signed_in.text
    assert 'href="/web/stats"' in signed_in.text  # the menu, to go on from there
    api = hub.get("/api/v1/no-such-route")
    assert api.status_code == 404 and api.json() == {"detail": "Not Found"}
    assert hub.get("/static/no-such-file.js").status_code == 404
    icon = hub.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"] == "image/svg+xml"
    assert icon.text.startswith("<svg") and hub.get("/static/favicon.svg").status_code == 200
    assert '<link rel="icon" href="/static/favicon.svg"' in hub.get("/").text


def test_the_statistics_dates_are_refused_under_their_box(hub: TestClient) -> None:
    sign_in(hub, "test-manager", PASSWORD)
    page = hub.get("/web/stats", params={"from": "2026-13-45", "to": "2026-02-01"})
    assert page.status_code == 422
    # The form is back as typed, the refusal under the box at fault, no figures drawn.
    assert 'id="from" name="from" type="date" value="2026-13-45"' in page.text
    assert re.search(r'id="from"[^>]*aria-invalid="true" aria-describedby="from-error"', page.text)
    assert 'id="from-error">From: &#39;2026-13-45&#39; is not a date' in page.text
    assert 'value="2026-02-01"' in page.text and "heatmap" not in page.text
    backwards = hub.get("/web/stats", params={"from": "2026-03-01", "to": "2026-02-01"})
    assert backwards.status_code == 422 and 'id="to-error"' in backwards.text
    assert 'id="from-error"' not in backwards.text
    assert 'min="1970-01-01" max="3000-01-01"' in backwards.text
    fine = hub.get("/web/stats", params={"from": "2026-01-01", "to": "2026-02-01"})
    assert fine.status_code == 200 and "heatmap" in fine.text and "-error" not in fine.text


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    since=st.text(max_size=40) | st.dates().map(str),
    until=st.text(max_size=40) | st.dates().map(str),
)
def test_any_statistics_dates_give_the_page_or_its_form_back(
    hub: TestClient, since: str, until: str
) -> None:
    if "test-manager" not in hub.get("/web/account").text:
        sign_in(hub, "test-manager", PASSWORD)
    page = hub.get("/web/stats", params={"from": since, "to": until})
    assert page.status_code in (200, 422), page.text[-300:]
    assert page.headers["content-type"].startswith("text/html")
    if page.status_code == 422:
        assert 'class="error"' in page.text and "heatmap" not in page.text


def test_the_rates_import_answers_in_the_readers_language(hub: TestClient) -> None:
    token = sign_in(hub, "test-manager", PASSWORD)
    hub.cookies.set(LANG_COOKIE, "fr")
    empty = hub.post("/web/billing/rates/import", data={"csrf": token})
    assert 'id="import_file-error"' in empty.text
    csv = "machine_type,category,effective_from,cents_per_hour\nlaser,student,2026-01-01,900\n"
    done = hub.post(
        "/web/billing/rates/import",
        data={"csrf": csrf_of(hub.get("/web/billing").text)},
        files={"file": ("rates.csv", csv.encode(), "text/csv")},
    )
    assert done.status_code == 200
    assert "Tarifs importés : 1 ajoutés, 0 remplacés" in done.text  # after the redirect
    assert 'aria-describedby="import_file-hint"' in done.text

"""schemathesis against the hub's own OpenAPI schema: no request it generates gets a 5xx."""

from __future__ import annotations

from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance
from sqlmodel import Session

from hub.app import create_app
from hub.core.db import make_engine, migrate
from hub.core.settings import get_settings
from hub.demo.seed import seed_demo
from hub.ingest.writer import Incoming, IngestWriter
from protocol import EventType, encode_envelope, new_envelope
from tests.support.api import admin_headers


def build_app(tmp: Path):  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp / 'api.db'}"
    migrate(url)
    engine = make_engine(url)
    with Session(engine) as session:
        seed_demo(session, site="lab")
    writer = IngestWriter(engine)
    for seq, (kind, data) in enumerate(
        [
            (EventType.SESSION_STARTED, {"session_id": "s1", "member": "m-1", "badge": "04A1B2C3"}),
            (
                EventType.SESSION_ENDED,
                {"session_id": "s1", "member": "m-1", "reason": "badge-out", "duration_s": 60},
            ),
        ],
        start=1,
    ):
        writer.write_batch(
            [
                Incoming(
                    "atelier/v1/lab/laser-1/event",
                    encode_envelope(new_envelope(machine="laser-1", type=kind, seq=seq, data=data)),
                )
            ]
        )
    global HEADERS
    HEADERS = admin_headers(url)
    app = create_app(get_settings(None, database_url=url, data_dir=tmp), start_ingest=False)
    # The lifespan runs the same set-up; state set here also serves transports without it.
    app.state.engine = engine
    app.state.consumer = None
    return app


HEADERS: dict[str, str] = {}
_tmp = Path(__import__("tempfile").mkdtemp(prefix="atelier-api-"))
# Signed in as an admin, so every endpoint is reached. Signing out and changing a user
# (which may disable the admin or revoke its tokens) would end the run's access: they are
# covered by test_api_roles.py and test_api_crud.py instead.
schema = (
    schemathesis.openapi.from_asgi("/openapi.json", build_app(_tmp))
    .exclude(path="/api/v1/auth/logout")
    .exclude(path="/api/v1/users/{user_id}", method="PATCH")
    .exclude(path="/api/v1/tokens/{token_id}", method="DELETE")
)


@schema.parametrize()
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_gets_a_server_error(case: schemathesis.Case) -> None:
    # Every check (no 5xx, status codes and responses as documented, content types) except
    # the rejection of "invalid" values: the API reads `from`/`to` leniently, accepting a
    # Unix timestamp where the schema says date-time (a choice, see docs/decisions.md).
    # Nor the acceptance of every schema-valid body: a schema cannot say that member_id must
    # name an existing member, and the API answers such a body with a 422 naming the field.
    case.call_and_validate(
        headers=HEADERS, excluded_checks=[negative_data_rejection, positive_data_acceptance]
    )


def test_schema_lists_the_endpoints() -> None:
    paths = set(schema.raw_schema["paths"])
    assert {"/health", "/api/v1/machines", "/api/v1/sessions"} <= paths

"""The hub's FastAPI application: migrations, ingest and allow-lists run in its lifespan."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles

from hub import __version__
from hub.core.db import make_engine, migrate
from hub.core.settings import Settings

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "web" / "static"


def create_app(settings: Settings, *, start_ingest: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from hub.runtime import HubRuntime

        migrate(settings.database_url)
        engine = make_engine(settings.database_url)
        app.state.engine = engine
        runtime = HubRuntime(settings, engine, shared_group=settings.ingest_shared_group)
        if start_ingest:
            runtime.build()
        # The routes reach the workers here (the publisher re-publishes after a change).
        app.state.runtime = runtime
        app.state.publisher = runtime.publisher
        app.state.prepaid = runtime.prepaid
        app.state.consumer = runtime.consumer
        app.state.compactor = runtime.compactor
        app.state.gap_repairer = runtime.gap_repairer
        app.state.maintenance_watch = runtime.maintenance_watch
        app.state.allowlist_watch = runtime.allowlist_watch
        app.state.notify_worker = runtime.notify_worker
        app.state.notify_watch = runtime.notify_watch
        app.state.homeassistant = runtime.homeassistant
        if start_ingest:
            runtime.start()
        log.info(
            "hub ready on http://%s:%s (database %s)",
            settings.http_host,
            settings.http_port,
            engine.url.render_as_string(hide_password=True),
        )
        try:
            yield
        finally:
            runtime.stop()
            engine.dispose()

    from hub.api import (
        accounts,
        badges,
        bookings,
        health,
        helloasso,
        lab,
        machines,
        maintenance,
        members,
        metrics,
        notifications,
        retention,
        sessions,
        trainings,
    )
    from hub.api import errors as api_errors
    from hub.api.deps import MANAGE, STAFF, Allow
    from hub.api.stats import router as stats_router
    from hub.web import pages

    app = FastAPI(title="Atelier hub", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    api_errors.install(app)  # HubError -> 4xx with its code and field (hub/api/errors.py)
    # Every route but /health and the login needs a signed-in user; each names its roles.
    guarded: dict[int | str, dict[str, Any]] = {
        400: {"description": "The body is not valid JSON"},
        401: {"description": "Not signed in"},
        403: {"description": "Not allowed for this role"},
    }
    app.include_router(health.router, responses=guarded)
    app.include_router(metrics.router, responses=guarded)
    app.include_router(accounts.router, responses=guarded)
    app.include_router(members.router, responses=guarded)
    app.include_router(badges.router, responses=guarded)
    app.include_router(trainings.router, responses=guarded)
    app.include_router(trainings.first_trainer_router, responses=guarded)
    app.include_router(machines.router, responses=guarded)
    app.include_router(machines.types_router, responses=guarded)
    app.include_router(sessions.router, responses=guarded)
    app.include_router(sessions.events_router, responses=guarded)
    app.include_router(retention.router, responses=guarded)
    app.include_router(lab.router, responses=guarded)
    app.include_router(helloasso.router, responses=guarded)
    app.include_router(notifications.router, responses=guarded)
    app.include_router(notifications.preferences_router, responses=guarded)
    app.include_router(bookings.router, responses=guarded)
    app.include_router(bookings.rules_router, responses=guarded)
    app.include_router(maintenance.router, responses=guarded, dependencies=[Allow(STAFF)])
    app.include_router(stats_router, responses=guarded, dependencies=[Allow(MANAGE)])
    pages.install(app)  # the web pages and their screens (hub/web)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    allowed_methods: list[tuple[re.Pattern[str], str]] = []

    @app.middleware("http")
    async def allow_header(request: Request, call_next: Any) -> Any:
        # Starlette lists only the first matching route's methods in a 405's Allow header;
        # a path served by several routes (GET and POST) must list them all (RFC 9110).
        response = await call_next(request)
        if response.status_code == 405:
            if not allowed_methods:
                for path, operations in app.openapi()["paths"].items():
                    pattern = re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$")
                    allowed_methods.append((pattern, ", ".join(m.upper() for m in operations)))
            for pattern, methods in allowed_methods:
                if pattern.match(request.url.path):
                    response.headers["Allow"] = methods
                    break
        return response

    return app

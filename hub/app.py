"""The hub's FastAPI application: migrations, ingest and allow-lists run in its lifespan."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles

from hub import __version__
from hub.core.db import make_engine, migrate
from hub.core.security import load_or_create_signing_key
from hub.core.settings import Settings

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "web" / "static"


def create_app(settings: Settings, *, start_ingest: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from hub.allowlist import AllowListPublisher
        from hub.gaps import GapRepairer
        from hub.ingest.consumer import IngestConsumer
        from hub.telemetry import TelemetryCompactor

        migrate(settings.database_url)
        engine = make_engine(settings.database_url)
        app.state.engine = engine
        app.state.consumer = None
        app.state.publisher = None
        if start_ingest:
            key = load_or_create_signing_key(settings.data_dir)
            app.state.publisher = AllowListPublisher(settings, engine, key)
            # A session's end draws its payer's prepaid balance in the ingest's own transaction;
            # a prepaid-only balance emptied that way re-publishes the lists (hub/billing_store).
            from hub.billing_store import PrepaidDrawdown

            app.state.prepaid = PrepaidDrawdown(
                ZoneInfo(settings.timezone), republish=app.state.publisher.publish
            )
            app.state.consumer = IngestConsumer(
                settings,
                engine,
                shared_group=settings.ingest_shared_group,
                on_sessions_ended=app.state.prepaid,
            )
            app.state.consumer.start()
            app.state.publisher.start()
            app.state.compactor = TelemetryCompactor(settings, engine)
            app.state.compactor.start()
            app.state.gap_repairer = GapRepairer(engine, app.state.publisher.send_command)
            app.state.gap_repairer.start()
            from hub.allowlist_watch import AllowListWatch
            from hub.notify.watch import telling_stale_lists

            app.state.allowlist_watch = AllowListWatch(
                engine, telling_stale_lists(engine, app.state.publisher.publish)
            )
            app.state.allowlist_watch.start()
            from hub.maintenance_service import MaintenanceWatch

            app.state.maintenance_watch = MaintenanceWatch(
                engine,
                app.state.publisher.publish,
                period_s=settings.maintenance_check_s,
            )
            app.state.maintenance_watch.start()
            from hub.notify.worker import worker_from

            app.state.notify_worker = worker_from(settings, engine)
            app.state.notify_worker.start()
            from hub.notify.watch import NotificationWatch

            app.state.notify_watch = NotificationWatch(engine, settings)
            app.state.notify_watch.start()
            app.state.homeassistant = None
            if settings.homeassistant_discovery:
                from hub.notify.homeassistant import HomeAssistantDiscovery

                app.state.homeassistant = HomeAssistantDiscovery(settings, engine)
                app.state.homeassistant.start()
        log.info(
            "hub ready on http://%s:%s (database %s)",
            settings.http_host,
            settings.http_port,
            engine.url.render_as_string(hide_password=True),
        )
        try:
            yield
        finally:
            if start_ingest:
                app.state.notify_watch.stop()
                app.state.notify_worker.stop()
                if app.state.homeassistant is not None:
                    app.state.homeassistant.stop()
                app.state.maintenance_watch.stop()
                app.state.allowlist_watch.stop()
                app.state.publisher.stop()
                app.state.compactor.stop()
                app.state.gap_repairer.stop()
                app.state.consumer.stop()
            engine.dispose()

    from hub.api import (
        accounts,
        badges,
        health,
        machines,
        maintenance,
        members,
        metrics,
        notifications,
        retention,
        sessions,
        trainings,
    )
    from hub.api.deps import MANAGE, STAFF, Allow
    from hub.api.stats import router as stats_router
    from hub.web import pages

    app = FastAPI(title="Atelier hub", version=__version__, lifespan=lifespan)
    app.state.settings = settings
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
    app.include_router(notifications.router, responses=guarded)
    app.include_router(notifications.preferences_router, responses=guarded)
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

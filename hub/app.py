"""The hub's FastAPI application: migrations, ingest and allow-lists run in its lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
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
            app.state.consumer = IngestConsumer(settings, engine)
            app.state.consumer.start()
            app.state.publisher = AllowListPublisher(settings, engine, key)
            app.state.publisher.start()
            app.state.compactor = TelemetryCompactor(settings, engine)
            app.state.compactor.start()
            app.state.gap_repairer = GapRepairer(engine, app.state.publisher.send_command)
            app.state.gap_repairer.start()
        log.info(
            "hub ready on http://%s:%s (database %s)",
            settings.http_host,
            settings.http_port,
            engine.url.render_as_string(hide_password=True),
        )
        try:
            yield
        finally:
            if app.state.publisher is not None:
                app.state.publisher.stop()
                app.state.compactor.stop()
                app.state.gap_repairer.stop()
            if app.state.consumer is not None:
                app.state.consumer.stop()
            engine.dispose()

    from hub.api import health, machines, metrics, sessions
    from hub.web import pages

    app = FastAPI(title="Atelier hub", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(machines.router)
    app.include_router(sessions.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    return app

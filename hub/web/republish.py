"""After a page saves a change to who may use what: the affected machines' allow-lists are
signed and published once the page is sent, so the change reaches the machines in seconds."""

from __future__ import annotations

import logging

from fastapi import BackgroundTasks, Request

log = logging.getLogger(__name__)


def republish(request: Request, background: BackgroundTasks, codes: list[str] | None) -> None:
    """Publish these machines' lists (all when None) after the response; without a publisher
    (tests, `hub ingest` pages) the scheduled publication catches up."""
    publisher = getattr(request.app.state, "publisher", None)
    if publisher is None:
        return

    def publish() -> None:
        try:
            publisher.publish(codes)
        except Exception:  # the scheduled publication catches up
            log.exception("publishing the allow-lists of %s failed", codes or "every machine")

    background.add_task(publish)

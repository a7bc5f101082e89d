"""The hub's background workers, started and stopped one way for the app, `hub ingest` and the demo.

The hub (`atelier hub serve`, and the demo, which serves the same app) runs them all: the
allow-list publisher, the ingest consumer with its prepaid draw-down, the telemetry compactor,
the gap repairer, the maintenance watch, the booking watch and the allow-list watch. An ingest
worker (`atelier hub ingest`) runs only the consumer and a publisher of its own that publishes when
a draw-down empties a balance; the hub keeps the lists fresh.

They start publisher first and stop in the reverse order, publisher last: whatever a worker
does while it stops (the consumer's last batch drawing a balance, the watch lifting a lock)
can still reach the machines.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from hub.allowlist import AllowListPublisher
    from hub.allowlist_watch import AllowListWatch
    from hub.booking_watch import BookingWatch
    from hub.core.settings import Settings
    from hub.gaps import GapRepairer
    from hub.ingest.consumer import IngestConsumer
    from hub.maintenance_watch import MaintenanceWatch
    from hub.notify.homeassistant import HomeAssistantDiscovery
    from hub.notify.watch import NotificationWatch
    from hub.notify.worker import OutboxWorker
    from hub.services.billing import PrepaidDrawdown
    from hub.telemetry import TelemetryCompactor

log = logging.getLogger(__name__)


@dataclass
class HubRuntime:
    """The workers of one process. `worker` names an ingest worker (`hub ingest --worker N`):
    only the consumer and a publisher that publishes when asked then run, each on an MQTT
    client id of its own; `shared_group` is its `$share/GROUP/...` subscription."""

    settings: Settings
    engine: Engine
    worker: str | None = None
    shared_group: str | None = None
    publisher: AllowListPublisher | None = field(default=None, init=False)
    prepaid: PrepaidDrawdown | None = field(default=None, init=False)
    consumer: IngestConsumer | None = field(default=None, init=False)
    compactor: TelemetryCompactor | None = field(default=None, init=False)
    gap_repairer: GapRepairer | None = field(default=None, init=False)
    maintenance_watch: MaintenanceWatch | None = field(default=None, init=False)
    booking_watch: BookingWatch | None = field(default=None, init=False)
    allowlist_watch: AllowListWatch | None = field(default=None, init=False)
    notify_worker: OutboxWorker | None = field(default=None, init=False)
    notify_watch: NotificationWatch | None = field(default=None, init=False)
    homeassistant: HomeAssistantDiscovery | None = field(default=None, init=False)
    _started: list[Any] = field(default_factory=list, init=False, repr=False)

    @property
    def ingest_only(self) -> bool:
        return self.worker is not None

    def build(self) -> None:
        """Make the workers without starting them (the app exposes them on `app.state`)."""
        from hub.allowlist import AllowListPublisher
        from hub.core.security import load_or_create_signing_key
        from hub.ingest.consumer import IngestConsumer
        from hub.services.billing import PrepaidDrawdown

        settings = self.settings
        key = load_or_create_signing_key(settings.data_dir)
        if self.ingest_only:
            # A worker draws prepaid balances as the hub does, and re-publishes the lists when
            # one runs out: it holds the hub's key (the same data_dir), on a connection of its own.
            self.publisher = AllowListPublisher(
                settings.model_copy(
                    update={"mqtt_client_id": f"{settings.mqtt_client_id}-{self.worker}"}
                ),
                self.engine,
                key,
                schedule=False,
            )
        else:
            self.publisher = AllowListPublisher(settings, self.engine, key)
        # A session's end draws its payer's prepaid balance in the ingest's own transaction;
        # a prepaid-only balance emptied that way re-publishes the lists (services/billing).
        self.prepaid = PrepaidDrawdown(
            ZoneInfo(settings.timezone), republish=self.publisher.publish
        )
        self.consumer = IngestConsumer(
            settings,
            self.engine,
            shared_group=self.shared_group,
            client_id=(
                f"{settings.mqtt_client_id}-ingest-{self.worker}" if self.ingest_only else None
            ),
            on_sessions_ended=self.prepaid,
        )
        if self.ingest_only:
            return
        from hub.allowlist_watch import AllowListWatch
        from hub.gaps import GapRepairer
        from hub.maintenance_watch import MaintenanceWatch
        from hub.telemetry import TelemetryCompactor

        self.compactor = TelemetryCompactor(settings, self.engine)
        self.gap_repairer = GapRepairer(self.engine, self.publisher.send_command)
        self.maintenance_watch = MaintenanceWatch(
            self.engine, self.publisher.publish, period_s=settings.maintenance_check_s
        )
        from hub.booking_watch import BookingWatch

        # No-shows released (and priced), lockouts' bookings cancelled, reminders sent.
        self.booking_watch = BookingWatch(
            self.engine, self.publisher.publish, tz=ZoneInfo(settings.timezone)
        )
        from hub.notify.watch import NotificationWatch, telling_stale_lists
        from hub.notify.worker import worker_from

        # An agent holding another list than the current one is alerted on (staff are told)
        # and sent it again.
        self.allowlist_watch = AllowListWatch(
            self.engine, telling_stale_lists(self.engine, self.publisher.publish)
        )
        # The outbox's sender and the watch of time-based notifications (docs/notifications.md).
        self.notify_worker = worker_from(settings, self.engine)
        self.notify_watch = NotificationWatch(self.engine, settings)
        if settings.homeassistant_discovery:
            from hub.notify.homeassistant import HomeAssistantDiscovery

            self.homeassistant = HomeAssistantDiscovery(settings, self.engine)

    def start(self) -> None:
        if self.publisher is None:
            self.build()
        for worker in (
            self.publisher,
            self.consumer,
            self.compactor,
            self.gap_repairer,
            self.maintenance_watch,
            self.booking_watch,
            self.allowlist_watch,
            self.notify_worker,
            self.notify_watch,
            self.homeassistant,
        ):
            if worker is not None:
                worker.start()
                self._started.append(worker)

    def stop(self) -> None:
        """Stop what started, the last started first; safe to call twice."""
        while self._started:
            worker = self._started.pop()
            try:
                worker.stop()
            except Exception:  # one worker's failure must not keep the others running
                log.exception("%s did not stop cleanly", type(worker).__name__)

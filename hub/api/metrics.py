"""GET /metrics: ingest counters and machine states for Prometheus, read at each scrape."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlmodel import Session, select

from hub.allowlist_watch import list_state
from hub.api.deps import MANAGE, Allow
from hub.models import Machine
from hub.services.machine_views import machine_state

if TYPE_CHECKING:  # imported by the app's start, not by every page
    from hub.ingest.consumer import IngestConsumer

# Prometheus scrapes with a manager's API token (`authorization.credentials` in its config).
router = APIRouter(tags=["health"], dependencies=[Allow(MANAGE)])

STATES = ("offline", "idle", "in_use", "busy", "printing", "locked")


class HubCollector(Collector):
    def __init__(self, app: Any) -> None:
        self.app = app

    def collect(self) -> Iterator[Any]:
        consumer = getattr(self.app.state, "consumer", None)
        stats = consumer.stats.as_dict() if consumer is not None else {}
        for name, value in sorted(stats.items()):
            family = CounterMetricFamily(
                f"atelier_ingest_{name}", f"Ingest: {name.replace('_', ' ')} since start"
            )
            family.add_metric([], value)
            yield family
        if consumer is not None:
            yield from ingest_metrics(consumer)
        broker = GaugeMetricFamily("atelier_broker_connected", "1 when the ingest is connected")
        broker.add_metric([], 1 if consumer is not None and consumer.connected else 0)
        yield broker
        state = GaugeMetricFamily(
            "atelier_machine_state",
            "1 for the machine's current state",
            labels=["machine", "state"],
        )
        lists = GaugeMetricFamily(
            "atelier_machine_allowlist_current",
            "1 when the machine's agent holds the hub's current allow-list, 0 when it holds "
            "another or refused one (online machines that report their version)",
            labels=["machine"],
        )
        with Session(self.app.state.engine) as session:
            for machine in session.exec(select(Machine).order_by(Machine.code)):
                current, _ = machine_state(machine)
                for name in STATES:
                    state.add_metric([machine.code, name], 1 if name == current else 0)
                held = list_state(machine)
                if held is not None:
                    lists.add_metric([machine.code], 1 if held.is_current else 0)
        yield state
        yield lists
        watch = getattr(self.app.state, "allowlist_watch", None)
        alerts = CounterMetricFamily(
            "atelier_allowlist_behind_alerts",
            "Machines found holding another allow-list than the current one since start",
        )
        alerts.add_metric([], watch.alerts if watch is not None else 0)
        yield alerts


def ingest_metrics(consumer: IngestConsumer) -> Iterator[Any]:
    """The writer's liveness and lag, and the dead letters by reason (alert on these)."""
    running = GaugeMetricFamily(
        "atelier_ingest_writer_running", "1 while the ingest writer thread runs"
    )
    running.add_metric([], 1 if consumer.writer_running() else 0)
    yield running
    lag = GaugeMetricFamily(
        "atelier_ingest_lag_seconds",
        "How long the oldest message not yet stored has waited (0 when none waits)",
    )
    lag.add_metric([], consumer.lag_s())
    yield lag
    waiting = GaugeMetricFamily(
        "atelier_ingest_waiting_messages", "Messages received and not yet stored"
    )
    waiting.add_metric([], consumer.waiting())
    yield waiting
    since = consumer.since_commit_s()
    if since is not None:
        commit = GaugeMetricFamily(
            "atelier_ingest_seconds_since_commit", "Seconds since the writer last stored a batch"
        )
        commit.add_metric([], since)
        yield commit
    dead = CounterMetricFamily(
        "atelier_ingest_dead_letters_by_reason",
        "Messages kept as dead letters since start, by reason",
        labels=["reason"],
    )
    for reason, count in sorted(consumer.stats.dead_letters_by_reason().items()):
        dead.add_metric([reason], count)
    yield dead


@router.get("/metrics", response_class=Response)
def metrics(request: Request) -> Response:
    registry = getattr(request.app.state, "metrics_registry", None)
    if registry is None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(HubCollector(request.app))
        request.app.state.metrics_registry = registry
    return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")
